"""write_sheet: CSV (UTF-8 with BOM, cp1251) and .xlsx files read back with the csv module and openpyxl
directly, and through open_sheet + parse_cell to the same values for every portable type; atomic writes."""

from __future__ import annotations

import csv
import gc
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bufsync.files.read import FileProblem, open_sheet
from bufsync.files.values import parse_cell
from bufsync.files.write import write_sheet
from bufsync.mapping.types import parse_type

COLUMNS = [("Фамилия", "string(50)"), ("Комментарий", "text"), ("Идентификатор", "string(20)"),
           ("Курс", "integer"), ("Номер", "bigint"), ("Балл", "decimal(5,2)"), ("Активен", "boolean"),
           ("Дата рождения", "date"), ("Изменено", "datetime")]
HEADER = [name for name, _ in COLUMNS]
KINDS = [parse_type(kind) for _, kind in COLUMNS]
ROWS: list[list[Any]] = [
    ["Иванов", 'Текст; с "кавычками"\nи переносом\r\nстроки', "007", 3, 9007199254740993, Decimal("4.50"), True,
     date(2001, 2, 3), datetime(2026, 12, 31, 10, 30, 15)],
    ["Ёлкина-Щукина", "=1+1", "0042", -5, -12, Decimal("-0.25"), False, date(1999, 12, 31),
     datetime(2026, 1, 2, 0, 0, 0)],
    [None] * 9,
    ["O'Brien", "«ёлочки» — тире, запятая; точка с запятой", "12345", 0, 0, Decimal("123.00"), True,
     date(2026, 2, 28), datetime(2026, 3, 1, 23, 59, 59)],
]
CSV_TEXT = [
    ["Иванов", 'Текст; с "кавычками"\nи переносом\r\nстроки', "007", "3", "9007199254740993", "4,50", "1",
     "03.02.2001", "31.12.2026 10:30:15"],
    ["Ёлкина-Щукина", "=1+1", "0042", "-5", "-12", "-0,25", "0", "31.12.1999", "02.01.2026 00:00:00"],
    [""] * 9,
    ["O'Brien", "«ёлочки» — тире, запятая; точка с запятой", "12345", "0", "0", "123,00", "1", "28.02.2026",
     "01.03.2026 23:59:59"],
]


def read_back(path: Path) -> list[list[Any]]:
    sheet = open_sheet(path, is_header=lambda cells: cells == HEADER)
    assert sheet.header == HEADER
    return [[parse_cell(raw, kind) for raw, kind in zip(cells, KINDS, strict=True)] for _, cells in sheet.rows()]


@pytest.mark.parametrize("encoding, bom", [("utf-8-sig", True), ("cp1251", False), ("windows-1251", False)])
def test_csv_round_trip(tmp_path: Path, encoding: str, bom: bool) -> None:
    path = tmp_path / "export.csv"
    assert write_sheet(path, HEADER, iter(ROWS), encoding=encoding) == 4
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") is bom
    assert data.startswith("\ufeffФамилия;Комментарий;".encode() if bom else "Фамилия;Комментарий;".encode("cp1251"))
    assert data.endswith(b";28.02.2026;01.03.2026 23:59:59\r\n")
    assert data.count(b"\r\n") == 6   # 5 records and the CR LF inside the comment; the comment's LF stays bare
    with path.open(encoding="utf-8-sig" if bom else "cp1251", newline="") as stream:
        assert list(csv.reader(stream, delimiter=";")) == [HEADER, *CSV_TEXT]
    sheet = open_sheet(path)
    assert (sheet.encoding, sheet.delimiter) == ("utf-8-sig" if bom else "cp1251", ";")
    assert [line for line, _ in sheet.rows()] == [2, 5, 7]   # the comment spans lines 2-4; 6 is empty, skipped
    assert read_back(path) == [row for row in ROWS if any(v is not None for v in row)]


def test_xlsx_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    assert write_sheet(path, HEADER, iter(ROWS), sheet_title="Студенты: ИС-21/2026") == 4
    wb = load_workbook(path)
    ws = wb.active
    assert ws is not None
    assert ws.title == "Студенты_ ИС-21_2026"   # Excel refuses ':' and '/' in a sheet name
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:I5"
    assert [c.value for c in ws[1]] == HEADER
    assert all(c.font.b for c in ws[1])
    first = ws[2]
    assert [c.value for c in first] == [
        "Иванов", 'Текст; с "кавычками"\nи переносом\nстроки', "007", 3, "9007199254740993", 4.5, True,
        datetime(2001, 2, 3), datetime(2026, 12, 31, 10, 30, 15)]
    assert [c.data_type for c in first] == ["s", "s", "s", "n", "s", "n", "b", "d", "d"]
    assert first[5].number_format == "0.00"   # 4.50 shows as 4,50 in Russian Excel
    assert (first[7].number_format, first[8].number_format) == ("dd.mm.yyyy", "dd.mm.yyyy hh:mm:ss")
    assert (ws["B3"].value, ws["B3"].data_type) == ("=1+1", "s")   # a text that looks like a formula stays text
    assert [c.value for c in ws[4]] == [None] * 9
    assert ws.max_row == 5
    expected = [row for row in ROWS if any(v is not None for v in row)]
    expected[0] = [*expected[0][:1], 'Текст; с "кавычками"\nи переносом\nстроки', *expected[0][2:]]
    assert read_back(path) == expected


def test_long_numbers_are_text_in_a_workbook(tmp_path: Path) -> None:
    """Excel keeps 15 significant digits of a number: longer ones are written as text and still read back."""
    path = tmp_path / "long.xlsx"
    values = [10**15 - 1, 10**15, Decimal("12345678901234567.89"), Decimal("0.1234567890123456"), 1.5, -(10**18)]
    write_sheet(path, ["a", "b", "c", "d", "e", "f"], [values])
    ws = load_workbook(path).active
    assert ws is not None
    assert [c.value for c in ws[2]] == [10**15 - 1, "1000000000000000", "12345678901234567,89",
                                        "0,1234567890123456", 1.5, "-1000000000000000000"]
    kinds = [parse_type(k) for k in ("bigint", "bigint", "decimal(38,2)", "decimal(20,16)", "decimal(3,1)",
                                     "bigint")]
    [(_, cells)] = list(open_sheet(path).rows())
    assert [parse_cell(raw, kind) for raw, kind in zip(cells, kinds, strict=True)] == [
        10**15 - 1, 10**15, Decimal("12345678901234567.89"), Decimal("0.1234567890123456"), Decimal("1.5"),
        -(10**18)]


def test_only_a_header(tmp_path: Path) -> None:
    for name in ("empty.csv", "empty.xlsx"):
        assert write_sheet(tmp_path / name, HEADER, []) == 0
        sheet = open_sheet(tmp_path / name)
        assert (sheet.header, list(sheet.rows())) == (HEADER, [])
    assert (tmp_path / "empty.csv").read_bytes() == ("\ufeff" + ";".join(HEADER) + "\r\n").encode()


def test_a_character_cp1251_lacks(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"the previous export")
    rows = [["Иванов", "ivanov"], ["Ödön Kovács", "kovacs"]]   # ö is in cp1251? no: Latin-1 letters are not
    with pytest.raises(FileProblem) as caught:
        write_sheet(path, ["ФИО", "Логин"], rows, encoding="cp1251")
    assert str(caught.value) == ("Файл «export.csv» не записан: в строке 3 (строка 1 — заголовок), колонке «ФИО» "
                                 "символ «Ö» (U+00D6), которого нет в кодировке cp1251. Выгрузите в UTF-8 (по "
                                 "умолчанию) или в .xlsx")
    assert path.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]
    assert write_sheet(path, ["ФИО", "Логин"], rows) == 2   # UTF-8 holds it
    assert [cells for _, cells in open_sheet(path).rows()][1] == ["Ödön Kovács", "kovacs"]


def test_a_control_character_in_a_workbook(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match=r"в строке 2 \(строка 1 — заголовок\), колонке «Логин» управляющий "
                                          r"символ U\+0001, который нельзя записать в \.xlsx"):
        write_sheet(tmp_path / "x.xlsx", ["ФИО", "Логин"], [["Иванов", "iva\x01nov"]])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", ["export.csv", "export.xlsx"])
def test_atomic_an_error_midway_leaves_the_old_file(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is left behind: not the temporary file beside the export, not openpyxl's own in the temp folder."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / name
    write_sheet(path, ["a"], [[1], [2]])
    before = path.read_bytes()

    def rows() -> Iterator[Sequence[Any]]:
        yield [3]
        raise RuntimeError("the buffer went away")

    with pytest.raises(RuntimeError, match="the buffer went away"):
        write_sheet(path, ["a"], rows())
    assert path.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == [name]
    with pytest.raises(FileProblem, match="управляющий символ" if name.endswith("xlsx") else "нет в кодировке"):
        write_sheet(path, ["a"], [["ok"], ["\x02" if name.endswith("xlsx") else "ő"]], encoding="cp1251")
    assert path.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == [name]
    gc.collect()   # a generator openpyxl left open would complain now
    assert list(temp.iterdir()) == []


def test_the_file_mode_follows_the_umask(tmp_path: Path) -> None:
    """Not tempfile's 0600: an export in a shared folder is readable as any file its user makes."""
    old = os.umask(0o022)
    try:
        write_sheet(tmp_path / "a.csv", ["a"], [[1]])
        write_sheet(tmp_path / "a.xlsx", ["a"], [[1]])
    finally:
        os.umask(old)
    assert {(tmp_path / n).stat().st_mode & 0o777 for n in ("a.csv", "a.xlsx")} == {0o644}


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match=r"записывает только \.csv и \.xlsx, а не «\.xls»"):
        write_sheet(tmp_path / "a.xls", ["a"], [])
    with pytest.raises(FileProblem, match="нет папки"):
        write_sheet(tmp_path / "missing" / "a.csv", ["a"], [])
    with pytest.raises(ValueError, match="must be utf-8-sig or cp1251"):
        write_sheet(tmp_path / "a.csv", ["a"], [], encoding="utf-8")
    with pytest.raises(ValueError, match="row 2 has 1 values for 2 header columns"):
        write_sheet(tmp_path / "a.csv", ["a", "b"], [[1, 2], [3]])
    for name in ("a.csv", "a.xlsx"):
        with pytest.raises(ValueError, match="a datetime with a zone"):
            write_sheet(tmp_path / name, ["a"], [[datetime(2026, 1, 1, tzinfo=UTC)]])
    assert list(tmp_path.iterdir()) == []


def test_other_values(tmp_path: Path) -> None:
    """Floats (not the buffer's type, but a caller may hold one) and large or tiny decimals without an exponent."""
    write_sheet(tmp_path / "a.csv", ["a", "b", "c", "d"], [[1.5, 12.0, 1e-7, Decimal("1E+3")]])
    [(_, cells)] = list(open_sheet(tmp_path / "a.csv").rows())
    assert cells == ["1,5", "12", "0,0000001", "1000"]
