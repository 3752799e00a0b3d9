"""25,000 CSV rows and 6,000 .xlsx rows written and read as streams: tracemalloc's peak stays a few megabytes
while the rows themselves, held as Python lists, would take tens. Measured at 100,000 rows: CSV write 0.2 MB, read
5 MB (the 1 MB chunks the encoding check decodes); .xlsx write 0.5 MB, read 10 MB (openpyxl's read-only parser
keeps an emptied XML element per row read, about 80 bytes each). Fewer rows here keep the suite's time (tracemalloc
slows every allocation). No timing assertions (tests never depend on the machine's speed)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bufsync.files.read import open_sheet
from bufsync.files.values import parse_cell
from bufsync.files.write import write_sheet
from bufsync.mapping.types import parse_type

ROWS = {"big.csv": 25_000, "big.xlsx": 6_000}  # xlsx: openpyxl's allocations per cell make tracemalloc slow
COLUMNS = [("Фамилия", "string(50)"), ("Логин", "string(100)"), ("Балл", "decimal(5,2)"),
           ("Дата рождения", "date"), ("Изменено", "datetime")]
# bytes: a list of the 25,000 CSV rows alone is over 10 MB; openpyxl loading 6,000 rows whole, several MB
MODEST = {"big.csv": 8 * 1024 * 1024, "big.xlsx": 2 * 1024 * 1024}
# a workbook gets three of the columns, one of each kind of cell (text, number, date): tracemalloc makes each of
# openpyxl's many allocations per cell slow, and three columns already tell a stream from a loaded workbook
WIDTH = {"big.csv": 5, "big.xlsx": 3}
PICK = {5: [0, 1, 2, 3, 4], 3: [1, 2, 4]}

T = TypeVar("T")


def generated(width: int, rows: int) -> Iterator[list[Any]]:
    for n in range(rows):
        row = [f"Студентова-{n}", f"user{n:06d}", Decimal(n % 500) / 100, date(2000 + n % 20, 1 + n % 12, 1 + n % 28),
               datetime(2026, 1, 1, n % 24, n % 60, n % 60)]
        yield [row[i] for i in PICK[width]]


def peak(work: Callable[[], T]) -> tuple[T, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def read_all(path: Path, width: int) -> tuple[int, int, list[Any]]:
    """Every row parsed and dropped: (rows, the last row's line, the last row's values)."""
    kinds = [parse_type(COLUMNS[i][1]) for i in PICK[width]]
    count, last_line, last = 0, 0, []
    for line, cells in open_sheet(path).rows():
        last = [parse_cell(raw, kind) for raw, kind in zip(cells, kinds, strict=True)]
        count, last_line = count + 1, line
    return count, last_line, last


@pytest.mark.parametrize("name", ["big.csv", "big.xlsx"])
def test_many_rows_stream(tmp_path: Path, name: str) -> None:
    path, width = tmp_path / name, WIDTH[name]
    header = [COLUMNS[i][0] for i in PICK[width]]
    rows = ROWS[name]
    # the modules a first write and read import (openpyxl's, the parsers') load outside the traced window: what is
    # measured is the stream, whatever this worker imported before
    warm = tmp_path / f"warm-{name}"
    write_sheet(warm, header, generated(width, 2))
    read_all(warm, width)
    written, write_peak = peak(lambda: write_sheet(path, header, generated(width, rows)))
    assert written == rows
    assert path.stat().st_size > 64 * 1024
    (count, line, last), read_peak = peak(lambda: read_all(path, width))
    n = rows - 1
    assert (count, line) == (rows, rows + 1)
    expected = [f"Студентова-{n}", f"user{n:06d}", Decimal(n % 500) / 100, date(2000 + n % 20, 1 + n % 12, 1 + n % 28),
                datetime(2026, 1, 1, n % 24, n % 60, n % 60)]
    assert last == [expected[i] for i in PICK[width]]
    assert write_peak < MODEST[name], f"writing {name} peaked at {write_peak // 1024} KB"
    assert read_peak < MODEST[name], f"reading {name} peaked at {read_peak // 1024} KB"
