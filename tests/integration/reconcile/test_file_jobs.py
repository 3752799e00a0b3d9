"""`bufsync export` and the folder jobs, end to end on SQLite and PostgreSQL: exports read back with the csv module
and openpyxl to the table's values; an import job takes a folder's files in name order through processing/ to
done/ or failed/, leaves a half-copied file and an open workbook for the next tick, never loads the same file
twice, then runs its mappings (Moodle read back through its Web Services); an export job continues from its last
export under `bufsync jobs run`."""

from __future__ import annotations

import csv
import os
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from bufsync.config import load_settings
from bufsync.files.exporting import export_table
from bufsync.scheduler.jobs import run_job
from tests.integration.reconcile.conftest import TOKEN, World
from tests.integration.reconcile.test_import_files import HEADER, cp1251, person

LONG_AGO = datetime(2025, 1, 1)


def grade_rows(world: World) -> None:
    world.insert("buf_grades", [
        {"user_external_id": "P1", "course_external_id": "C-1", "item": "course", "grade": Decimal("87.5"),
         "grade_max": Decimal("100"), "percent": Decimal("87.5"), "grade_text": "хорошо; «4»", "passed": True,
         "completed_at": datetime(2026, 6, 30, 14, 5), "graded_at": datetime(2026, 6, 29, 10, 0),
         "updated_at": LONG_AGO, "removed_at": None},
        {"user_external_id": "P2", "course_external_id": "C-1", "item": "course", "grade": None,
         "grade_max": Decimal("100"), "percent": None, "grade_text": None, "passed": None, "completed_at": None,
         "graded_at": None, "updated_at": datetime(2026, 7, 1), "removed_at": None}])


def test_export_reads_back_to_the_same_values_in_csv_and_xlsx(world: World, tmp_path: Path) -> None:
    grade_rows(world)
    path = tmp_path / "grades.csv"
    report = export_table(world.loaded, "grades", path, titles=True, encoding="cp1251")
    assert report.outcome == "ok" and report.counts["rows"] == 2
    raw = path.read_bytes()
    assert b"\r\n" in raw and not raw.startswith(b"\xef\xbb\xbf")  # cp1251 for an older Excel, CRLF
    with path.open(encoding="cp1251", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0][:5] == ["Код человека", "Код курса", "Элемент", "Оценка", "Максимум"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert Decimal(first["Оценка"].replace(",", ".")) == Decimal("87.5") and "." not in first["Оценка"]
    assert first["Оценка словами"] == "хорошо; «4»"
    assert first["Курс завершён"] == "30.06.2026 14:05:00" and rows[2][3] == ""

    book = tmp_path / "grades.xlsx"
    export_table(world.loaded, "grades", book)
    sheet = openpyxl.load_workbook(book, read_only=True).active
    assert sheet is not None
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = values[0]
    got = dict(zip(header, values[1] + [None] * (len(header) - len(values[1])), strict=True))  # empty tail cells
    assert float(got["grade"]) == 87.5 and got["completed_at"] == datetime(2026, 6, 30, 14, 5)
    assert got["grade_text"] == "хорошо; «4»" and got["user_external_id"] == "P1"

    since = export_table(world.loaded, "grades", tmp_path / "since.csv", since=datetime(2026, 1, 1))
    assert since.counts["rows"] == 1  # only P2 changed since


def jobs_config(world: World, tmp_path: Path, body: str) -> None:
    config = tmp_path / "bufsync.yaml"
    config.write_text(body, encoding="utf-8")
    world.loaded = load_settings(config, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url,
                                          "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN})


def aged(path: Path, seconds: float = 60) -> Path:
    """As if the copy had finished a while ago (the job leaves files changed within settle_seconds)."""
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_an_import_job_takes_the_folder_in_order_once_and_runs_its_mappings(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "exchange"
    jobs_config(world, tmp_path, f"jobs:\n  files-in:\n    kind: import\n    schedule: every 5 minutes\n"
                                 f"    folder: {folder}\n    files: {{'users*.csv': users, 'bad*': subscriptions}}\n"
                                 f"    mappings: [users]\n    settle_seconds: 30\n")
    incoming = folder / "incoming"
    incoming.mkdir(parents=True)
    aged(cp1251(incoming / "users-1.csv", HEADER, person(1), person(2)))
    aged(cp1251(incoming / "users-2.csv", HEADER, person(1, last="Петров"), person(3)))
    cp1251(incoming / "users-3.csv", HEADER, person(4))  # still being copied: just written
    aged(cp1251(incoming / "book.csv", "x", "y"))       # matches no pattern
    aged(cp1251(incoming / "bad-1.csv", "Код;Фамилия", "P1;Иванов"))  # headings subscriptions lacks
    (incoming / "users-4.csv").write_bytes(b"")
    aged(incoming / "users-4.csv")
    (incoming / "~$users-4.csv").write_bytes(b"lock")  # open in Excel
    result = run_job(world.loaded, "files-in")
    assert result.status == "done" and result.outcome == "rejected", result  # two files failed
    users = {r["external_id"]: r for r in world.rows("buf_users")}
    assert set(users) == {"P001", "P002", "P003"} and users["P001"]["last_name"] == "Петров"  # in name order
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["users-1.csv", "users-2.csv"]
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [
        "bad-1.csv", "bad-1.csv.txt", "book.csv", "book.csv.txt"]
    why = (folder / "failed" / "bad-1.csv.txt").read_text(encoding="utf-8-sig")
    assert "buf_subscriptions" in why and "user_external_id (Код человека)" in why, why
    assert sorted(p.name for p in incoming.iterdir()) == ["users-3.csv", "users-4.csv", "~$users-4.csv"]
    assert not list((folder / "processing").iterdir())
    assert world.ws_user(username="user003")["lastname"] == "Иванов"  # the job's mappings ran: Moodle has them
    assert {r["mapping_name"] for r in world.rows("sync_files")} == {"users"} and len(world.rows("sync_files")) == 2

    # the same bytes again under another name: never loaded twice
    (folder / "done" / "users-1.csv").rename(incoming / "users-9.csv")
    aged(incoming / "users-3.csv")
    world.update("buf_users", lambda t: t.c.external_id == "P001", last_name="Руками")
    result = run_job(world.loaded, "files-in")
    assert {r["external_id"]: r["last_name"] for r in world.rows("buf_users")}["P001"] == "Руками"
    assert "P004" in {r["external_id"] for r in world.rows("buf_users")}
    assert (folder / "done" / "users-9.csv").exists() and len(world.rows("sync_files")) == 3


def test_a_file_left_in_processing_by_a_killed_job_is_resumed(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    jobs_config(world, tmp_path, f"jobs:\n  files-in:\n    kind: import\n    schedule: every 5 minutes\n"
                                 f"    folder: {folder}\n    files: {{'*.csv': users}}\n    mappings: [users]\n")
    (folder / "processing").mkdir(parents=True)
    aged(cp1251(folder / "processing" / "users.csv", HEADER, person(1)))  # the job died before loading it
    run_job(world.loaded, "files-in")
    assert {r["external_id"] for r in world.rows("buf_users")} == {"P001"}
    assert [p.name for p in (folder / "done").iterdir()] == ["users.csv"]


def test_an_export_job_continues_from_its_last_export(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    jobs_config(world, tmp_path, f"jobs:\n  grades-out:\n    kind: export\n    schedule: daily at 02:00\n"
                                 f"    folder: {folder}\n    mappings: [grades]\n    titles: true\n")
    grade_rows(world)
    world.insert("buf_grades", [{"user_external_id": "P3", "course_external_id": "C-1", "item": "course",
                                 "grade_max": Decimal("100"), "updated_at": LONG_AGO}])
    first = run_job(world.loaded, "grades-out")
    assert first.outcome == "ok", first
    written = sorted(folder.iterdir())
    assert len(written) == 1 and written[0].name.startswith("grades-") and written[0].suffix == ".csv"
    with written[0].open(encoding="utf-8-sig", newline="") as f:
        assert len(list(csv.reader(f, delimiter=";"))) == 4  # the header and the three rows
    # one row changes afterwards; the next export has it and P2 (changed within OVERLAP of the last export's
    # newest row: repeated, so a row committed late is never missed), not the rows of long before
    world.update("buf_grades", lambda t: t.c.user_external_id == "P1", grade=Decimal("90"),
                 updated_at=datetime(2026, 7, 1) + timedelta(days=1))
    for path in written:
        path.unlink()
    run_job(world.loaded, "grades-out", due=datetime(2026, 12, 3, 2, 0))
    (second,) = sorted(folder.iterdir())
    with second.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert [r[0] for r in rows[1:]] == ["P1", "P2"] and Decimal(rows[1][3].replace(",", ".")) == 90


def test_a_table_that_cannot_be_written_in_cp1251_fails_that_export_alone(world: World, tmp_path: Path) -> None:
    """A character cp1251 lacks is the file's problem, said in Russian with its row and column: `bufsync export`
    exits 2 with it (no traceback), and an export job still writes its other mappings."""
    from bufsync.errors import BufsyncError
    world.insert("buf_users", [{"external_id": "P1", "username": "u1", "last_name": "Ғабдуллин", "first_name": "Ә",
                                "status": "active"}])
    grade_rows(world)
    with pytest.raises(BufsyncError, match="символ «Ғ» .* которого нет в кодировке cp1251") as caught:
        export_table(world.loaded, "users", tmp_path / "users.csv", encoding="cp1251")
    assert caught.value.exit_code == 2 and not (tmp_path / "users.csv").exists()
    folder = tmp_path / "out"
    jobs_config(world, tmp_path, f"jobs:\n  out:\n    kind: export\n    schedule: daily at 02:00\n"
                                 f"    folder: {folder}\n    mappings: [users, grades]\n    encoding: cp1251\n")
    result = run_job(world.loaded, "out")
    assert result.status == "done" and result.outcome == "failed", result
    assert [p.name.split("-")[0] for p in folder.iterdir()] == ["grades"]  # written despite the users' failure


def test_two_exports_in_one_second_keep_both_files(world: World, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are named by the second: a second export in the same second (a manual run after the scheduled one)
    must not replace the first file, whose rows 1C has not taken yet and the cursor has already passed."""
    import bufsync.files.folder as folder_module
    from bufsync.files.folder import export_folder

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime(2026, 12, 3, 2, 0, 0, tzinfo=tz)
    monkeypatch.setattr(folder_module, "datetime", Frozen)
    folder = tmp_path / "out"
    jobs_config(world, tmp_path, f"jobs:\n  grades-out:\n    kind: export\n    schedule: daily at 02:00\n"
                                 f"    folder: {folder}\n    mappings: [grades]\n")
    grade_rows(world)  # P1 long ago, P2 on 2026-07-01
    job = world.loaded.settings.jobs["grades-out"]
    export_folder(world.loaded, job, "grades-out")
    export_folder(world.loaded, job, "grades-out")  # only P2 now: within OVERLAP of the newest row
    files = sorted(folder.iterdir())
    assert len(files) == 2, files
    counts = []
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as f:
            counts.append(len(list(csv.reader(f, delimiter=";"))) - 1)
    assert sorted(counts) == [1, 2]  # the first file, with both rows, is still there
