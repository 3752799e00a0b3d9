"""`bufsync import`, end to end on SQLite and PostgreSQL: files as Russian offices write them land in the buffer
table (what the table holds is read back), bad rows are listed by line in an errors file beside the input and
load nothing, `replace` removes what the file left out within the guards, and the ordinary run takes the rows
to the sandbox Moodle (read back through its Web Services)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from bufsync.files.importing import FileRejected, import_file
from bufsync.reconcile.guards import GuardRefused
from tests.integration.reconcile.conftest import World

HEADER = "Код;Фамилия;Имя;Логин;Почта;Статус"


def cp1251(path: Path, *lines: str) -> Path:
    """A CSV as Russian Excel saves it: cp1251, ';', CRLF."""
    path.write_bytes("\r\n".join(lines).encode("cp1251") + b"\r\n")
    return path


def person(n: int, status: str = "active", last: str = "Иванов") -> str:
    return f"P{n:03d};{last};Пётр;user{n:03d};user{n:03d}@example.edu;{status}"


def users(world: World) -> dict[str, dict[str, object]]:
    return {r["external_id"]: r for r in world.rows("buf_users")}


def test_a_cp1251_sheet_headed_in_russian_loads_and_the_run_takes_it_to_moodle(world: World, tmp_path: Path) -> None:
    path = cp1251(tmp_path / "люди.csv", HEADER, *(person(n) for n in range(5)))
    report = import_file(world.loaded, "users", path)
    assert report.outcome == "ok", report.render()
    assert report.counts == {"rows": 5, "inserted": 5, "updated": 0, "unchanged": 0, "rejected": 0}
    rows = users(world)
    assert rows["P003"]["last_name"] == "Иванов" and rows["P003"]["first_name"] == "Пётр"
    assert rows["P003"]["username"] == "user003" and rows["P003"]["status"] == "active"
    assert rows["P003"]["sync_status"] is None  # the run's business, not the import's
    assert world.run("users").outcome == "ok"
    assert world.ws_user(username="user003")["lastname"] == "Иванов"  # what Moodle holds, through its API

    again = import_file(world.loaded, "users", path)  # the same file: nothing to write
    assert again.counts == {"rows": 5, "inserted": 0, "updated": 0, "unchanged": 5, "rejected": 0}
    changed = cp1251(tmp_path / "люди.csv", HEADER, *(person(n, last="Петров" if n == 1 else "Иванов")
                                                       for n in range(5)))
    report = import_file(world.loaded, "users", changed)
    assert report.counts["updated"] == 1 and users(world)["P001"]["last_name"] == "Петров"
    assert users(world)["P001"]["sync_status"] == "ok"  # the engine's columns are never touched by a file


def test_bad_rows_are_listed_by_line_beside_the_input_and_load_nothing(world: World, tmp_path: Path) -> None:
    path = cp1251(tmp_path / "users.csv", HEADER,
                  person(1),
                  "P002;;Анна;anna;anna@example.edu;active",                     # a required column empty
                  person(3, status="активен"),                                   # outside the closed set
                  f"P004;Иванов;Пётр;{'x' * 101};x@example.edu;active",          # longer than string(100)
                  person(1, last="Сидоров"),                                     # the key again
                  '"P006";"Смирнова";"Ольга ""Оля""";"olga";"olga@example.edu";"active"')
    report = import_file(world.loaded, "users", path)
    assert report.outcome == "rejected" and report.exit_code == 1
    assert report.counts["inserted"] == 2 and report.counts["rejected"] == 4
    assert set(users(world)) == {"P001", "P006"} and users(world)["P001"]["last_name"] == "Иванов"
    assert users(world)["P006"]["first_name"] == 'Ольга "Оля"'
    errors = tmp_path / "users.errors.csv"
    assert report.errors_file == str(errors)
    with errors.open(encoding="cp1251", newline="") as f:  # in the input's encoding, for the same Excel
        listed = list(csv.reader(f, delimiter=";"))
    assert listed[0] == ["Строка", "Колонка", "Значение", "Причина"]
    by_line = {(row[0], row[1]): row[3] for row in listed[1:]}
    # each column as the file heads it, with its name in the table
    last, status, login, code = "Фамилия (last_name)", "Статус (status)", "Логин (username)", "Код (external_id)"
    assert set(by_line) == {("3", last), ("4", status), ("5", login), ("6", code)}
    assert "(required)" in by_line[("3", last)] and "(badvalue)" in by_line[("4", status)]
    assert "active, suspended" in by_line[("4", status)] and "(toolong)" in by_line[("5", login)]
    assert "строке 2" in by_line[("6", code)] and "(duplicatekey)" in by_line[("6", code)]

    fixed = cp1251(tmp_path / "users.csv", HEADER, person(1), person(6))
    assert import_file(world.loaded, "users", fixed).outcome == "ok"
    assert not errors.exists()  # the last import's errors file goes with its errors


def test_a_heading_the_table_lacks_or_a_required_column_missing_fails_the_file(world: World, tmp_path: Path) -> None:
    with pytest.raises(FileRejected, match=r"колонка «Отдел» .* не из таблицы buf_users; принимаются: external_id "
                                           r"\(Код\), username \(Логин\)"):
        import_file(world.loaded, "users", cp1251(tmp_path / "a.csv", HEADER + ";Отдел", person(1) + ";x"))
    with pytest.raises(FileRejected, match=r"нет обязательных колонок: username \(Логин\)"):
        import_file(world.loaded, "users", cp1251(tmp_path / "b.csv", "Код;Фамилия;Имя", "P1;Иванов;Пётр"))
    with pytest.raises(Exception, match="written by bufsync itself"):
        import_file(world.loaded, "grades", cp1251(tmp_path / "c.csv", "x", "y"))
    assert world.rows("buf_users") == []


def test_replace_removes_what_the_file_left_out_within_the_guard(world: World, tmp_path: Path) -> None:
    import_file(world.loaded, "users", cp1251(tmp_path / "all.csv", HEADER, *(person(n) for n in range(30))))
    # 5 of 30 left out: more than max_remove_ratio 10% (3) allows
    short = cp1251(tmp_path / "short.csv", HEADER, *(person(n) for n in range(25)))
    with pytest.raises(GuardRefused, match="the file leaves out 5 of 30 rows"):
        import_file(world.loaded, "users", short, mode="replace")
    assert len(users(world)) == 30  # refused: nothing changed
    report = import_file(world.loaded, "users", short, mode="replace", allow_removals=5)
    assert report.counts["deleted"] == 5 and set(users(world)) == {f"P{n:03d}" for n in range(25)}
    # a load marker for the whole list, in the same transaction
    marker = [r for r in world.rows("buf_batches") if r["entity"] == "users"]
    assert len(marker) == 1 and marker[0]["status"] == "ready" and marker[0]["rows_expected"] == 25


def test_replace_keeps_the_row_of_a_bad_line_instead_of_removing_it(world: World, tmp_path: Path) -> None:
    import_file(world.loaded, "users", cp1251(tmp_path / "all.csv", HEADER, *(person(n) for n in range(30))))
    lines = [person(n) for n in range(30)]
    lines[7] = "P007;Иванов;Пётр;user007;user007@example.edu;уволен"  # a typo in one status
    report = import_file(world.loaded, "users", cp1251(tmp_path / "typo.csv", HEADER, *lines), mode="replace")
    assert report.outcome == "rejected" and report.counts["deleted"] == 0 and report.counts["kept"] == 1
    assert users(world)["P007"]["status"] == "active"  # as it was: a typo never removes a person


def test_a_dry_run_counts_and_writes_nothing(world: World, tmp_path: Path) -> None:
    import_file(world.loaded, "users", cp1251(tmp_path / "all.csv", HEADER, *(person(n) for n in range(4))))
    before = world.rows("buf_users")
    path = cp1251(tmp_path / "next.csv", HEADER, person(0, last="Петров"), person(1), person(9))
    report = import_file(world.loaded, "users", path, mode="replace", dry_run=True, allow_removals=2)
    assert report.counts == {"rows": 3, "inserted": 1, "updated": 1, "unchanged": 1, "rejected": 0,
                             "deleted": 2, "kept": 0}
    assert world.rows("buf_users") == before and world.rows("buf_batches") == []


def test_an_xlsx_with_a_merged_title_and_typed_cells_loads(world: World, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Записи на курсы (выгрузка 1С)"])
    sheet.merge_cells("A1:F1")
    sheet.append(["Код человека", "Код курса", "Роль", "Начало", "Окончание", "Статус"])
    sheet.append(["P001", "C-1", "student", datetime(2026, 9, 1), "31.12.2026", "active"])
    sheet.append([1234, "C-1", "student", "2026-09-01", None, "suspended"])  # a code typed as a number
    for _ in range(5):
        sheet.append([None] * 6)  # empty trailing rows Excel keeps
    path = tmp_path / "subscriptions.xlsx"
    book.save(path)
    report = import_file(world.loaded, "subscriptions", path)
    assert report.outcome == "ok", report.render()
    rows = {r["user_external_id"]: r for r in world.rows("buf_subscriptions")}
    assert set(rows) == {"P001", "1234"}
    assert rows["P001"]["time_start"] == datetime(2026, 9, 1) and rows["P001"]["time_end"] == datetime(2026, 12, 31)
    assert rows["1234"]["status"] == "suspended" and rows["1234"]["time_end"] is None


def test_typed_columns_refuse_what_is_not_their_type(world: World, tmp_path: Path) -> None:
    """UTF-8 with a BOM and ',' (what a script writes): a date, a boolean and a number that are none, each named."""
    path = tmp_path / "courses.csv"
    path.write_bytes("\ufeffКод курса,Краткое название,Полное название,Дата начала,Видимый\r\n"
                     "C-1,py,Python,01.09.2026,да\r\n"
                     "C-2,js,JavaScript,32.13.2026,нет\r\n"
                     "C-3,go,Go,2026-09-01,может быть\r\n".encode("utf-8"))
    report = import_file(world.loaded, "courses", path)
    assert report.counts["inserted"] == 1 and report.counts["rejected"] == 2
    reasons = {(p["line"], p["column"]): p["reason"] for p in report.problems}
    start, visible = "Дата начала (start_date)", "Видимый (visible)"
    assert set(reasons) == {("3", start), ("4", visible)}
    assert reasons[("3", start)].endswith("(notdate)") and reasons[("4", visible)].endswith("(notboolean)")
    (row,) = world.rows("buf_courses")
    assert (row["external_id"], row["visible"], str(row["start_date"])[:10]) == ("C-1", True, "2026-09-01")
    with (tmp_path / "courses.errors.csv").open(encoding="utf-8-sig", newline="") as f:
        assert len(list(csv.reader(f, delimiter=";"))) == 3  # the heading and two bad rows, with a BOM for Excel


@pytest.mark.parametrize("loaded_before", [False, True], ids=["empty table", "staged"])
def test_a_broken_quote_late_in_the_file_fails_it_by_line_on_every_database(world: World, tmp_path: Path,
                                                                            loaded_before: bool) -> None:
    """On PostgreSQL the rows are COPYed while the file is read: a quote broken after the first rows went must still
    fail the file with its line (not as the server's "COPY from stdin failed"), and write nothing."""
    if loaded_before:
        import_file(world.loaded, "users", cp1251(tmp_path / "first.csv", HEADER, person(900)))
    before = world.rows("buf_users")
    path = cp1251(tmp_path / "users.csv", HEADER, *(person(n) for n in range(30)),
                  'P999;"Иванов;Пётр;user999;user999@example.edu;active')
    with pytest.raises(FileRejected, match="в строке 32 открывается кавычкой, которая не закрыта"):
        import_file(world.loaded, "users", path)
    assert world.rows("buf_users") == before


def test_replace_into_an_attached_table_is_weighed_by_the_default_guards(world: World, tmp_path: Path) -> None:
    """user_fields has no sync of its own (its rows are attached to users): replace still deletes what the file
    left out within the default guards, and refuses more."""
    heading = "Код человека;Поле;Значение"
    import_file(world.loaded, "user_fields", cp1251(tmp_path / "all.csv", heading,
                                                    *(f"P{n:03d};snils;{n}" for n in range(30))))
    report = import_file(world.loaded, "user_fields", cp1251(tmp_path / "less.csv", heading,
                                                             *(f"P{n:03d};snils;{n}" for n in range(29))),
                         mode="replace")
    assert report.outcome == "ok" and report.counts["deleted"] == 1
    assert len(world.rows("buf_user_fields")) == 29
    with pytest.raises(GuardRefused, match="the file leaves out 19 of 29 rows"):
        import_file(world.loaded, "user_fields", cp1251(tmp_path / "few.csv", heading,
                                                        *(f"P{n:03d};snils;{n}" for n in range(10))), mode="replace")
    assert len(world.rows("buf_user_fields")) == 29


def test_two_replace_imports_within_one_second_each_leave_their_marker(world: World, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The marker's batch id must differ for two loads of one mapping in the same second (a folder job takes
    small files faster than that), and the later load's marker must be the one the guard reads as latest."""
    import bufsync.files.importing as importing

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime(2026, 12, 2, 10, 15, 0, 123, tzinfo=tz)
    monkeypatch.setattr(importing, "datetime", Frozen)
    import_file(world.loaded, "users", cp1251(tmp_path / "a.csv", HEADER, *(person(n) for n in range(30))),
                mode="replace")
    import_file(world.loaded, "users", cp1251(tmp_path / "b.csv", HEADER, *(person(n) for n in range(29))),
                mode="replace")
    markers = sorted((r for r in world.rows("buf_batches") if r["entity"] == "users"), key=lambda r: r["batch_id"])
    assert [m["rows_expected"] for m in markers] == [30, 29]  # the latest batch id is the later load's


def test_a_key_whose_first_line_was_bad_is_not_said_to_be_taken_from_it(world: World, tmp_path: Path) -> None:
    import_file(world.loaded, "users", cp1251(tmp_path / "first.csv", HEADER, person(1)))
    path = cp1251(tmp_path / "users.csv", HEADER, person(1, status="уволен"), person(1, last="Петров"))
    report = import_file(world.loaded, "users", path)
    reasons = {(p["line"], p["column"]): p["reason"] for p in report.problems}
    duplicate = reasons[("3", "Код (external_id)")]
    assert "(duplicatekey)" in duplicate and "взята" not in duplicate and "строке 2" in duplicate
    assert users(world)["P001"]["last_name"] == "Иванов"  # neither line loaded: the row is as it was


def test_kept_counts_only_the_buffer_rows_a_bad_line_kept(world: World, tmp_path: Path) -> None:
    """`kept` says how many rows of the table stayed as they were because their line was bad: a bad line of a
    person the table does not hold keeps nothing."""
    first = import_file(world.loaded, "users", cp1251(tmp_path / "all.csv", HEADER, person(1, status="уволен"),
                                                      *(person(n) for n in range(2, 30))), mode="replace")
    assert first.counts["kept"] == 0  # the table was empty: nothing to keep
    lines = [person(n, status="уволен" if n in (7, 99) else "active") for n in [*range(2, 30), 99]]
    report = import_file(world.loaded, "users", cp1251(tmp_path / "typo.csv", HEADER, *lines), mode="replace")
    assert report.counts["kept"] == 1 and report.counts["rejected"] == 2  # P007 kept; P099 is nobody's row yet
    assert users(world)["P007"]["status"] == "active" and "P099" not in users(world)


def test_an_import_stopped_by_ctrl_c_is_not_recorded_ok(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the rows stream in: nothing is written, and sync_runs must not say `ok` for it."""
    import bufsync.files.importing as importing

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(importing, "_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_file(world.loaded, "users", cp1251(tmp_path / "users.csv", HEADER, person(1)))
    (run,) = [r for r in world.rows("sync_runs") if r["kind"] == "import"]
    assert run["outcome"] == "interrupted" and world.rows("buf_users") == []


def test_an_errors_file_that_cannot_be_written_does_not_disown_a_committed_load(world: World,
                                                                                tmp_path: Path) -> None:
    """The rows are committed before the errors file is written: when it cannot be (here a folder holds its
    name; elsewhere a read-only share, or the old one open in Excel), the run is what the buffer shows: loaded,
    its bad rows in the report, and the reason the file is missing said."""
    (tmp_path / "users.errors.csv").mkdir()
    path = cp1251(tmp_path / "users.csv", HEADER, person(1), person(2, status="уволен"))
    report = import_file(world.loaded, "users", path)
    assert report.outcome == "rejected" and report.counts["inserted"] == 1 and set(users(world)) == {"P001"}
    assert report.errors_file is None and report.error is not None and "users.errors.csv" in report.error
    assert report.problems[0]["line"] == "3"
    (run,) = [r for r in world.rows("sync_runs") if r["kind"] == "import"]
    assert run["outcome"] == "rejected"


def test_an_empty_cell_of_a_column_with_a_default_keeps_a_held_rows_value(world: World, tmp_path: Path) -> None:
    """status defaults to active: a new person with an empty status is active, but a suspended person's empty
    status in a later file leaves them suspended (a blank never reactivates anyone)."""
    first = import_file(world.loaded, "users", cp1251(tmp_path / "a.csv", HEADER, person(1, status=""),
                                                      person(2, status="suspended")))
    assert first.outcome == "ok", first.render()
    assert {k: r["status"] for k, r in users(world).items()} == {"P001": "active", "P002": "suspended"}
    report = import_file(world.loaded, "users", cp1251(tmp_path / "b.csv", HEADER, person(2, status=""),
                                                       person(3, status="")))
    assert report.outcome == "ok", report.render()
    assert {k: r["status"] for k, r in users(world).items()} == {"P001": "active", "P002": "suspended",
                                                                 "P003": "active"}
    assert report.counts["unchanged"] == 1 and report.counts["inserted"] == 1
