"""The import's fast path reads a CSV as read.py's csv.reader does, or not at all: for any file it takes, its rows
are the row path's, value for value (hypothesis writes the files from the characters that make CSV hard); the
files it must not take (a quote csv refuses, a ragged row, a bad row) it refuses; and pyarrow's trim strips what
str.strip strips."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bufsync.files.columnar import Clean, Rule, read_clean
from bufsync.files.read import FileProblem, open_sheet


def text_rules(header: list[str]) -> list[Rule | None]:
    return [Rule(name or f"empty{i}", None, False, None, None) if name else None for i, name in enumerate(header)]


def row_path(path: Path) -> list[list[str | None]] | None:
    """What the row path reads: the cells stripped, an empty one None (None: it fails the file)."""
    sheet = open_sheet(path)
    try:
        return [[cell.strip() or None for cell, name in zip(cells, sheet.header, strict=True) if name]
                for _, cells in sheet.rows()]
    except FileProblem:
        return None


def fast_path(path: Path, rules: list[Rule | None] | None = None, key: list[str] | None = None) -> Clean | str:
    sheet = open_sheet(path)
    return read_clean(sheet, text_rules(sheet.header) if rules is None else rules, key or [])


def as_rows(clean: Clean) -> list[list[str | None]]:
    return [list(row.values()) for row in clean.table.to_pylist()]


def test_the_trim_strips_what_str_strip_strips_for_every_code_point() -> None:
    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000]
    framed = pa.array([f"{c}x{c}" for c in chars])
    assert pc.utf8_trim_whitespace(framed).to_pylist() == [f"{c}x{c}".strip() for c in chars]


# anything at all made of what makes CSV hard, and records of fields that are mostly right (quoted or not)
TOKENS = st.lists(st.sampled_from(['a', 'я', ' ', '\xa0', ';', ',', '\t', '"', '""', '\r', '\n', '\r\n', ';;']),
                  max_size=40).map("".join)
PLAIN = st.text(alphabet="aя \xa0,\t\u3000", max_size=5)
QUOTED = st.text(alphabet='aя ;,"\r\n', max_size=6).map(lambda v: '"' + v.replace('"', '""') + '"')
ODD = st.sampled_from(['a"b', '"a"b', '"a', ' "a"', '""', ' '])
RECORD = st.one_of(st.lists(st.one_of(PLAIN, QUOTED), min_size=3, max_size=3),
                   st.lists(st.one_of(PLAIN, QUOTED, ODD), min_size=2, max_size=4)).map(";".join)
RECORDS = st.lists(st.tuples(RECORD, st.sampled_from(["\r\n", "\n", "\r", "\r\n\r\n"])), max_size=6).map(
    lambda records: "".join(record + end for record, end in records))
BODY = st.one_of(TOKENS, RECORDS, RECORDS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY, encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1251"]))
def test_any_file_the_fast_path_takes_reads_as_the_row_path_reads_it(tmp_path: Path, body: str,
                                                                     encoding: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(("Код;Фамилия;Имя\r\n" + body).encode(encoding, errors="replace"))
    fast = fast_path(path)
    event("taken" if isinstance(fast, Clean) else "refused")
    if isinstance(fast, Clean):
        rows = row_path(path)
        assert rows is not None, "the fast path took a file the row path fails"
        assert as_rows(fast) == rows and fast.lines == len(rows)


@pytest.mark.parametrize("body, reads", [
    ('P1;"Иванов ""Ваня""";"две\r\nстроки"\r\n', [["P1", 'Иванов "Ваня"', "две\r\nстроки"]]),
    ("P1;O\"Brien; x \r\n;;\r\n\r\n\r\n", [["P1", 'O"Brien', "x"]]),     # a quote inside a field; blank records
    ("P1;\xa0Иванов\u3000;\r\nP2;a;b", [["P1", "Иванов", None], ["P2", "a", "b"]]),  # no line break at the end
])
def test_clean_files_read_as_the_row_path_reads_them(tmp_path: Path, body: str, reads: list[list[str]]) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(("Код;Фамилия;Имя\r\n" + body).encode("utf-8"))
    fast = fast_path(path)
    assert isinstance(fast, Clean), fast
    assert as_rows(fast) == reads == row_path(path)


@pytest.mark.parametrize("body, why", [
    ('P1;"Иванов"ич;x\r\n', "a quote"),              # csv(strict): ';' expected after '"'
    ('P1;"Иванов;x\r\nP2;a;b\r\n', "a quote"),       # a quote never closed
    ("P1;a\r\nP2;a;b\r\n", "pyarrow"),               # a short row: the row path pads it
    ("P1;a;b;c\r\n", "pyarrow"),                     # a long one: the row path cuts it
    ("P1;a;b\r\n   \r\n", "pyarrow"),                # a line of spaces: an empty record to csv, a row of 1 to pyarrow
])
def test_what_pyarrow_reads_otherwise_goes_the_row_path(tmp_path: Path, body: str, why: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(("Код;Фамилия;Имя\r\n" + body).encode("utf-8"))
    fast = fast_path(path)
    assert isinstance(fast, str) and fast.startswith(why), fast


def test_a_bad_row_of_any_kind_sends_the_file_to_the_row_path(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    rules = [Rule("id", 4, True, None, None), Rule("name", None, True, None, None),
             Rule("status", None, False, frozenset({"active", "suspended"}), None)]
    files = {"P1;a;active\r\nP2;b;\r\n": None,
             "P1;a;active\r\nP2222;b;active\r\n": "id: a value longer than 4",
             "P1;a;active\r\nP2; ;active\r\n": "name: an empty cell",
             "P1;a;active\r\nP2;b;уволен\r\n": "status: a value outside",
             "P1;a;active\r\nP1;b;active\r\n": "a key repeated"}
    for body, why in files.items():
        path.write_bytes(("id;name;status\r\n" + body).encode("utf-8"))
        fast = fast_path(path, rules, ["id"])
        assert isinstance(fast, Clean) if why is None else isinstance(fast, str) and fast.startswith(why), fast
    path.write_bytes(b"id;name;status\r\nP1;a;\r\nP2;b;suspended\r\n")
    defaults = [*rules[:2], Rule("status", None, False, frozenset({"active", "suspended"}), "active")]
    fast = fast_path(path, defaults, ["id"])
    assert isinstance(fast, Clean) and as_rows(fast) == [["P1", "a", "active"], ["P2", "b", "suspended"]]
