"""The main job end to end: buffer (SQLite and PostgreSQL) -> bufsync run -> sandbox Moodle over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from bufsync.dialects import dialect_named
from bufsync.errors import BufsyncError
from bufsync.runner import LOCK_NAME, GuardRefused, RunBusy
from bufsync.sandbox.faults import FaultRule
from tests.integration.reconcile.conftest import TOKEN, World, people


def counts(report, mapping: str) -> dict[str, int]:
    return next(m.counts for m in report.mappings if m.mapping == mapping)


def seed(world: World, n: int = 20) -> None:
    world.insert("buf_users", people(n))
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"},
                                 {"external_id": "C-DB", "shortname": "db-201", "fullname": "Базы данных",
                                  "start_date": datetime(2026, 9, 1).date()}])
    world.insert("buf_subscriptions", [{"user_external_id": f"P{i:05d}", "course_external_id": "C-PY",
                                        "role": "student", "status": "active",
                                        "time_start": datetime(2026, 9, 1, 8, 0)} for i in range(n)])


def test_first_load_then_a_rerun_with_nothing_to_do_writes_nothing(world: World) -> None:
    seed(world)
    report = world.run()
    assert report.outcome == "ok"
    assert counts(report, "users")["created"] == 20
    assert counts(report, "courses")["created"] == 2
    assert counts(report, "subscriptions")["created"] == 20
    assert len(world.moodle_users()) == 20
    assert len(world.enrolments()) == 20
    users = {r["external_id"]: r for r in world.rows("buf_users")}
    assert all(u["sync_status"] == "ok" and u["lms_id"] and u["synced_at"] for u in users.values())
    writes = world.writes()
    report = world.run()
    assert world.writes() == writes  # zero write calls
    assert counts(report, "users")["unchanged"] == 20 and counts(report, "subscriptions")["unchanged"] == 20


def test_changes_removals_and_reactivation(world: World) -> None:
    seed(world)
    world.run()
    before = world.writes()
    world.update("buf_users", lambda t: t.c.external_id == "P00003", last_name="Смирнова")
    report = world.run()
    assert counts(report, "users")["updated"] == 1
    assert world.writes() == before + 1
    row = world.moodle.site.store.one("SELECT lastname FROM user WHERE idnumber = 'P00003'")
    assert row["lastname"] == "Смирнова"
    # one user leaves (5% of the linked ones: under the 10% guard) -> suspended, never deleted
    world.delete("buf_users", lambda t: t.c.external_id == "P00007")
    report = world.run("users")
    assert counts(report, "users")["suspended"] == 1
    assert world.moodle.site.store.one("SELECT suspended FROM user WHERE idnumber = 'P00007'")["suspended"] == 1
    # status suspended in the buffer suspends; back to active reactivates
    world.update("buf_users", lambda t: t.c.external_id == "P00002", status="suspended")
    assert counts(world.run("users"), "users")["suspended"] == 1
    world.update("buf_users", lambda t: t.c.external_id == "P00002", status="active")
    assert counts(world.run("users"), "users")["reactivated"] == 1
    assert world.moodle.site.store.one("SELECT suspended FROM user WHERE idnumber = 'P00002'")["suspended"] == 0
    # the leaver comes back
    world.insert("buf_users", people(1, 7))
    assert counts(world.run("users"), "users")["reactivated"] == 1
    # a subscription suspended by 1C keeps its dates (full state sent)
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00001", status="suspended")
    world.run("subscriptions")
    enrolment = [e for e in world.enrolments() if e["userid"] == world.moodle.site.store.one(
        "SELECT id FROM user WHERE idnumber = 'P00001'")["id"]][0]
    assert enrolment["status"] == 1 and enrolment["timestart"] > 0
    # a subscription that disappears is suspended (grades and history stay), not unenrolled
    world.delete("buf_subscriptions", lambda t: t.c.user_external_id == "P00004")
    assert counts(world.run("subscriptions"), "subscriptions")["suspended"] == 1
    userid = world.moodle.site.store.one("SELECT id FROM user WHERE idnumber = 'P00004'")["id"]
    assert [e["status"] for e in world.enrolments() if e["userid"] == userid] == [1]


def test_a_full_reload_with_the_same_content_writes_nothing(world: World) -> None:
    seed(world)
    world.run()
    writes = world.writes()
    rows = world.rows("buf_users")
    world.delete("buf_users")
    world.insert("buf_users", [{k: v for k, v in r.items()
                                if not k.startswith("sync_") and k not in ("lms_id", "synced_at")}
                               for r in rows])
    report = world.run()
    assert world.writes() == writes
    assert counts(report, "users")["unchanged"] == 20
    assert all(r["sync_status"] == "ok" and r["lms_id"] for r in world.rows("buf_users"))  # write-back restored


def test_a_half_written_reload_is_refused_and_suspends_nobody(world: World) -> None:
    seed(world)
    world.run()
    world.delete("buf_users")
    world.insert("buf_users", people(5))
    with pytest.raises(GuardRefused) as refused:
        world.run()
    assert "15 of 20 linked records would be suspended" in str(refused.value)
    assert "--allow-removals 15" in str(refused.value)
    assert all(u["suspended"] == 0 for u in world.moodle_users())
    runs = world.rows("sync_runs")
    assert runs[-1]["outcome"] == "refused"
    # an empty table is refused too
    world.delete("buf_users")
    with pytest.raises(GuardRefused, match="is empty"):
        world.run("users")
    # an emptied enrolment table too: enrolments have no remote id of their own, the ledger says they were synced
    world.delete("buf_subscriptions")
    with pytest.raises(GuardRefused, match="buf_subscriptions is empty but 20 records were synced before"):
        world.run("subscriptions")
    # deliberately
    world.insert("buf_users", people(5))
    report = world.run("users", allow_removals=15)
    assert counts(report, "users")["suspended"] == 15


def test_require_batch_marker(world: World, tmp_path: Path) -> None:
    import shutil

    import yaml

    from bufsync.config import load_settings
    maps = tmp_path / "maps"
    shutil.copytree(world.loaded.mappings_dir, maps)
    data = yaml.safe_load((maps / "users.yaml").read_text(encoding="utf-8"))
    data["sync"]["guards"]["require_batch"] = "users"
    (maps / "users.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": str(world.engine.url.render_as_string(False)),
                                        "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN,
                                        "BUFSYNC_MAPPINGS_DIR": str(maps)})
    world.insert("buf_users", people(10))
    world.insert("buf_batches", [{"entity": "users", "batch_id": "2026-11-24-01", "status": "loading"}])
    with pytest.raises(GuardRefused, match="is 'loading', not 'ready'"):
        world.run("users")
    world.update("buf_batches", lambda t: t.c.batch_id == "2026-11-24-01", status="ready", rows_expected=12)
    with pytest.raises(GuardRefused, match="promises 12 rows, the table has 10"):
        world.run("users")
    world.update("buf_batches", lambda t: t.c.batch_id == "2026-11-24-01", rows_expected=10)
    assert counts(world.run("users"), "users")["created"] == 10


def test_drift_is_repaired_by_a_full_run(world: World) -> None:
    seed(world, 5)
    world.run()
    site = world.moodle.site
    victim = site.store.one("SELECT id FROM user WHERE idnumber = 'P00001'")["id"]
    with site.store.transaction():
        site.store.x("UPDATE user SET lastname = 'Hacked', suspended = 1 WHERE id = ?", (victim,))
    assert counts(world.run(), "users")["unchanged"] == 5  # incremental: does not read Moodle
    report = world.run(full=True)
    assert counts(report, "users")["repaired"] == 1
    row = site.store.one("SELECT lastname, suspended FROM user WHERE id = ?", (victim,))
    assert (row["lastname"], row["suspended"]) == ("Иванов1", 0)


def test_existing_moodle_users_are_adopted_not_duplicated(world: World) -> None:
    from bufsync.adapters.moodle.client import MoodleClient
    with MoodleClient.connect(world.moodle.url, TOKEN) as client:
        client.create_users([{"username": "user00000", "firstname": "Old", "lastname": "Name",
                              "email": "old@college.example", "createpassword": True},
                             {"username": "someone", "firstname": "A", "lastname": "B", "idnumber": "P00001",
                              "email": "someone@college.example", "createpassword": True}])
    world.insert("buf_users", people(3))
    report = world.run("users")
    assert counts(report, "users")["adopted"] == 2 and counts(report, "users")["created"] == 1
    assert len(world.moodle_users()) == 3
    adopted = world.moodle.site.store.one("SELECT * FROM user WHERE username = 'user00000'")
    assert (adopted["lastname"], adopted["idnumber"]) == ("Иванов0", "P00000")


def test_dry_run_changes_nothing_anywhere(world: World) -> None:
    seed(world, 5)
    report = world.run(dry_run=True)
    assert counts(report, "users")["created"] == 5 and counts(report, "subscriptions")["created"] == 5
    assert world.writes() == 0
    assert world.rows("sync_ledger") == []
    assert all(r["sync_status"] is None for r in world.rows("buf_users"))


def test_moodle_faults_do_not_duplicate_or_lose(world: World) -> None:
    seed(world, 30)
    world.moodle.faults.add(FaultRule(kind="http_503", function="core_user_create_users", count=1))
    world.moodle.faults.add(FaultRule(kind="timeout_after_write", function="enrol_manual_enrol_users", count=1,
                                      seconds=0.2))
    world.moodle.faults.add(FaultRule(kind="latency", rate=0.2, seconds=0.01))
    report = world.run()
    assert report.outcome == "ok"
    fired = world.moodle.faults.fired
    assert fired["http_503"] == 1 and fired["timeout_after_write"] == 1 and fired["latency"] > 0  # they happened
    assert len(world.moodle_users()) == 30 and len(world.enrolments()) == 30


def test_moodle_unreachable_is_exit_4_and_nothing_marked_ok(world: World) -> None:
    seed(world, 5)
    world.moodle.faults.add(FaultRule(kind="http_503", function="core_user_create_users", count=100))
    with pytest.raises(RunBusy, match="Moodle is unavailable") as err:
        world.run()
    assert err.value.exit_code == 4
    assert all(r["sync_status"] != "ok" for r in world.rows("buf_users"))


def test_a_second_run_waits_for_nobody(world: World) -> None:
    seed(world, 2)
    dialect = dialect_named(world.engine.dialect.name)
    with dialect.lock(world.engine, LOCK_NAME):
        with pytest.raises(RunBusy, match="another bufsync run holds this buffer's lock"):
            world.run()
    assert world.run().outcome == "ok"


def test_kill_between_the_moodle_write_and_the_ledger(world: World, tmp_path: Path) -> None:
    """SIGKILL while Moodle has committed the users but the engine has not recorded them."""
    seed(world, 10)
    world.moodle.faults.add(FaultRule(kind="timeout_after_write", function="core_user_create_users", count=1,
                                      seconds=30))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")}
    env.update({"BUFSYNC_BUFFER_URL": world.engine.url.render_as_string(hide_password=False),
                "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "60"})
    exe = Path(sys.executable).with_name("bufsync")
    proc = subprocess.Popen([str(exe), "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while len(world.moodle_users()) < 10 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(world.moodle_users()) == 10 and world.rows("sync_ledger") == []
    world.moodle.faults.clear()
    report = world.run()
    assert counts(report, "users")["adopted"] == 10 and counts(report, "users")["created"] == 0
    assert len(world.moodle_users()) == 10
    assert len(world.enrolments()) == 10
    killed = world.rows("sync_runs")[0]
    assert killed["outcome"] == "died" and killed["finished_at"] is not None  # marked by the run after it


def test_rejected_rows_get_reasons_and_exit_1(world: World) -> None:
    rows = people(3)
    rows[1]["username"] = "Сидоров"
    rows[2]["email"] = rows[0]["email"].upper()
    world.insert("buf_users", rows)
    world.insert("buf_courses", [{"external_id": "C1", "shortname": "c1", "fullname": "C1"}])
    world.insert("buf_subscriptions", [{"user_external_id": r["external_id"], "course_external_id": c,
                                        "role": "student", "status": "active"}
                                       for r in rows for c in ("C1", "NO-SUCH")][:4])
    report = world.run()
    assert report.exit_code == 1
    users = {r["external_id"]: r for r in world.rows("buf_users")}
    assert users["P00001"]["sync_status"] == "error"
    assert users["P00001"]["sync_error"].startswith("Логин «сидоров» недопустим")
    assert "уже используется другой учётной записью Moodle" in users["P00002"]["sync_error"]
    subs = {(r["user_external_id"], r["course_external_id"]): r for r in world.rows("buf_subscriptions")}
    assert subs[("P00000", "C1")]["sync_status"] == "ok"
    assert subs[("P00000", "NO-SUCH")]["sync_status"] == "error"
    assert "не найден" in subs[("P00000", "NO-SUCH")]["sync_error"]
    assert subs[("P00001", "C1")]["sync_status"] == "skipped"
    assert "Пользователь «P00001» не применён" in subs[("P00001", "C1")]["sync_error"]
    # nothing changed: the failing rows are not redone, only counted, and the run still says so (exit 1)
    writes = world.writes()
    again = world.run()
    assert world.writes() == writes
    assert counts(again, "users")["failing"] == 2 and counts(again, "users")["rejected"] == 0
    assert counts(again, "subscriptions")["failing"] == 3 and counts(again, "subscriptions")["skipped"] == 0
    assert again.exit_code == 1
    _ = BufsyncError


def test_departments_tree_parents_first_and_courses_in_them(world: World) -> None:
    world.insert("buf_departments", [
        {"external_id": "D3", "parent_external_id": "D2", "name": "Кафедра ПО", "status": "active"},
        {"external_id": "D1", "parent_external_id": None, "name": "Университет", "status": "active"},
        {"external_id": "D2", "parent_external_id": "D1", "name": "Институт ИТ", "status": "active"},
        {"external_id": "D9", "parent_external_id": "NOPE", "name": "Сирота", "status": "active"},
    ])
    world.insert("buf_courses", [{"external_id": "C1", "shortname": "c1", "fullname": "C1",
                                  "category_external_id": "D3"}])
    report = world.run("departments", "courses")
    assert counts(report, "departments")["created"] == 3 and counts(report, "departments")["rejected"] == 1
    store = world.moodle.site.store
    cats = {r["idnumber"]: r for r in store.q("SELECT id, idnumber, parent FROM course_categories")}
    assert cats["D2"]["parent"] == cats["D1"]["id"] and cats["D3"]["parent"] == cats["D2"]["id"]
    assert store.one("SELECT category FROM course WHERE idnumber = 'C1'")["category"] == cats["D3"]["id"]
    orphan = {r["external_id"]: r for r in world.rows("buf_departments")}["D9"]
    assert orphan["sync_status"] == "error" and "NOPE" in orphan["sync_error"]
    writes = world.writes()
    world.run("departments", "courses")
    assert world.writes() == writes


def test_custom_profile_fields_from_user_fields(world: World) -> None:
    world.moodle.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
    world.moodle.site.admin("create_profile_field", {"shortname": "group", "name": "Группа"})
    rows = people(2)
    rows[0]["snils"] = "123-456-789 00"
    rows[1]["snils"] = None
    world.insert("buf_users", rows)
    world.insert("buf_user_fields", [{"user_external_id": "P00001", "field": "group", "value": "ИВТ-21"}])
    world.run("users")
    store = world.moodle.site.store
    data = {(r["idnumber"], r["shortname"]): r["data"] for r in store.q(
        "SELECT u.idnumber, f.shortname, d.data FROM user_info_data d JOIN user u ON u.id = d.userid "
        "JOIN user_info_field f ON f.id = d.fieldid")}
    assert data == {("P00000", "snils"): "123-456-789 00", ("P00001", "group"): "ИВТ-21"}
    world.update("buf_user_fields", lambda t: t.c.user_external_id == "P00001", value="ИВТ-22")
    assert counts(world.run("users"), "users")["updated"] == 1
    assert store.one("SELECT data FROM user_info_data d JOIN user_info_field f ON f.id = d.fieldid "
                     "WHERE f.shortname = 'group'")["data"] == "ИВТ-22"


def test_no_create_no_update_no_delete_hold_changes_back(world: World) -> None:
    seed(world, 5)
    report = world.run("users", no_create=True)
    assert counts(report, "users")["created"] == 0 and world.writes() == 0
    assert counts(world.run("users"), "users")["created"] == 5
    world.update("buf_users", lambda t: t.c.external_id == "P00001", last_name="Новая")
    assert counts(world.run("users", no_update=True), "users")["updated"] == 0
    assert counts(world.run("users"), "users")["updated"] == 1
