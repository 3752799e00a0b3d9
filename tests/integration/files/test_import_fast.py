"""`bufsync import` on PostgreSQL takes a clean CSV of text columns whole (pyarrow, files/columnar.py) and every
other file row by row: for clean files written the ways offices and scripts write them, both ways leave the buffer
table holding exactly the same rows and report the same counts, into an empty table and through the stage; a file
with a bad row goes the row path and gets its report, line by line, whichever way was asked for."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync.config import load_settings
from bufsync.files.importing import import_file
from bufsync.mapping import load_mappings
from bufsync.schema import build_metadata
from tests.integration.reconcile.conftest import Buffer

TABLES = {"users": "buf_users", "user_fields": "buf_user_fields"}
EXCEL = ("Выгрузка пользователей на 01.12.2026;;;;;;\r\n"          # a title row above the headings
         "Код;Фамилия;Имя;Отчество;;Логин;Статус\r\n"               # an empty heading: its cells are not loaded
         "P001;Иванов;Пётр;Петрович;заметка;user001;active\r\n"
         "P002; Смирнова ;Анна;;;user002;\r\n"                        # empty cells; no status: the default, if new
         "P003;Сидоров;Иван;;;user003;suspended\r\n"
         ";;;;;;\r\n"                                                 # an empty row Excel keeps
         "P004;Ёлкин;Фёдор;Ильич;;user004;active\r\n"
         ";;;;;;\r\n\r\n")
SCRIPT = ("\ufeffКод,Фамилия,Имя,Логин,Почта,Статус\n"
          'P001,"Иванов, ""Ваня""","две\r\nстроки",user001,"a;b@example.edu",active\n'
          "P005,O\"Brien,\xa0Джон\u3000,user005,,suspended\n"            # a quote inside a field; spaces around
          'P006,Пустова,Анна,user006,"  ",""\n'                           # quoted empty cells
          '"P007","Петров","Пётр","user007","p@example.edu","active"\n'
          "\n\n")
TRAILING = ("Код;Фамилия;Имя;Логин;\r\n"                                 # every line ends with the separator
            "P001;Иванов;Пётр;user001;\r\n"
            "P008;Кузнецов;Олег;user008;\r\n")
FIELDS = ("sep=\t\r\n"                                                     # Excel's hint, not data
          "Код человека\tПоле\tЗначение\r\n"
          "P001\tsnils\t123-456-789 00\r\n"
          "P001\tgroup\t\"ИС-21\tвечерняя\"\r\n"
          "P002\tsnils\t\r\n")
CLEAN = {  # name: (mapping, bytes)
    "excel.csv": ("users", EXCEL.encode("cp1251")),
    "script.csv": ("users", SCRIPT.encode("utf-8")),
    "trailing.csv": ("users", TRAILING.encode("cp1251")),
    "fields.txt": ("user_fields", FIELDS.encode("utf-8")),
}
# what the stage is compared over: rows the files change, keep, or leave alone
HELD = {"users": "Код;Фамилия;Имя;Логин;Статус\r\nP001;Старов;Пётр;user001;suspended\r\nP002;Смирнова;Анна;user002;"
                 "suspended\r\nP099;Нетов;Нет;user099;active\r\n",
        "user_fields": "Код человека;Поле;Значение\r\nP001;snils;000\r\nP002;snils;111\r\nP003;snils;222\r\n"}


@pytest.fixture
def buffer(_pg_upgraded_url: str) -> Iterator[Buffer]:
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": _pg_upgraded_url})
    engine = sa.create_engine(_pg_upgraded_url)
    yield Buffer(loaded, engine, dict(build_metadata(load_mappings(loaded.mappings_dir)).tables))
    engine.dispose()


def loaded_by(buffer: Buffer, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, mapping: str,
              data: bytes, fast: bool, held: bool) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(the way the rows were read, the report's counts and problems, what the table holds after) for the file
    imported into an emptied table, or one holding HELD's rows."""
    buffer.delete(TABLES[mapping])
    if held:
        assert import_file(buffer.loaded, mapping, path_of(tmp_path, "held.csv", HELD[mapping].encode("cp1251")),
                           fast=False).outcome == "ok"
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bufsync.files"):
        report = import_file(buffer.loaded, mapping, path_of(tmp_path, name, data), fast=fast)
    ways = [r.getMessage() for r in caplog.records if "read row by row" in r.getMessage()
            or "read column by column" in r.getMessage()]
    assert len(ways) == 1, ways
    rows = sorted(buffer.rows(TABLES[mapping]), key=lambda r: sorted((k, str(v)) for k, v in r.items()))
    return ways[0], {"outcome": report.outcome, "counts": report.counts, "problems": report.problems}, rows


def path_of(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.postgres
@pytest.mark.parametrize("held", [False, True], ids=["empty table", "staged"])
@pytest.mark.parametrize("name", list(CLEAN))
def test_a_clean_file_loads_the_same_rows_whole_as_row_by_row(buffer: Buffer, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture, name: str,
                                                             held: bool) -> None:
    mapping, data = CLEAN[name]
    fast_way, fast_report, fast_rows = loaded_by(buffer, tmp_path, caplog, name, mapping, data, True, held)
    row_way, row_report, row_rows = loaded_by(buffer, tmp_path, caplog, name, mapping, data, False, held)
    assert "read column by column (pyarrow)" in fast_way and "read row by row (asked for)" in row_way
    assert fast_report == row_report and fast_report["outcome"] == "ok"
    assert fast_rows == row_rows


@pytest.mark.postgres
def test_the_clean_files_hold_what_they_say(buffer: Buffer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The values themselves, read back (the comparison above would pass if both ways lost the same thing)."""
    _, report, rows = loaded_by(buffer, tmp_path, caplog, "script.csv", "users", SCRIPT.encode(), True, False)
    assert report["counts"] == {"rows": 4, "inserted": 4, "updated": 0, "unchanged": 0, "rejected": 0}
    by_key = {r["external_id"]: r for r in rows}
    assert (by_key["P001"]["last_name"], by_key["P001"]["first_name"]) == ('Иванов, "Ваня"', "две\r\nстроки")
    assert by_key["P001"]["email"] == "a;b@example.edu" and by_key["P005"]["email"] is None
    assert (by_key["P005"]["last_name"], by_key["P005"]["first_name"]) == ('O"Brien', "Джон")
    assert by_key["P006"]["status"] == "active" and by_key["P006"]["email"] is None  # the default; empty
    _, report, rows = loaded_by(buffer, tmp_path, caplog, "excel.csv", "users", EXCEL.encode("cp1251"), True, True)
    assert report["counts"] == {"rows": 4, "inserted": 2, "updated": 1, "unchanged": 1, "rejected": 0}
    by_key = {r["external_id"]: r for r in rows}
    assert by_key["P002"]["status"] == "suspended"  # an empty status keeps a held row's own
    assert by_key["P002"]["last_name"] == "Смирнова" and by_key["P002"]["middle_name"] is None
    assert by_key["P001"]["last_name"] == "Иванов" and set(by_key) == {"P001", "P002", "P003", "P004", "P099"}


@pytest.mark.postgres
@pytest.mark.parametrize("held", [False, True], ids=["empty table", "staged"])
def test_a_file_with_one_bad_row_gets_the_row_paths_report(buffer: Buffer, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture, held: bool) -> None:
    data = EXCEL.replace("P003;Сидоров;Иван;;;user003;suspended", "P003;Сидоров;Иван;;;user003;уволен").encode("cp1251")
    reports, errors = [], []
    for fast in (True, False):
        way, report, rows = loaded_by(buffer, tmp_path, caplog, "excel.csv", "users", data, fast, held)
        assert "read row by row" in way
        assert way.endswith("(status: a value outside ['active', 'suspended'])" if fast else "(asked for)")
        reports.append((report, rows))
        errors.append((tmp_path / "excel.errors.csv").read_bytes())
    assert reports[0] == reports[1] and errors[0] == errors[1]
    report, rows = reports[0]
    assert report["outcome"] == "rejected" and report["counts"]["rejected"] == 1
    assert [(p["line"], p["column"]) for p in report["problems"]] == [("5", "Статус (status)")]
    assert "P003" not in {r["external_id"] for r in rows} and "P004" in {r["external_id"] for r in rows}
