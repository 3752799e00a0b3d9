"""Issue 12 §2: `--full` is honest (a second one right after a first load repairs nothing and writes nothing, for
every entity) and cheap (each course's enrolments are read once per run, not once per chunk)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from bufsync.reconcile import sync
from tests.reconcile.conftest import World, people

READS = ("core_user_get_users_by_field", "core_course_get_courses_by_field", "core_course_get_categories",
         "core_enrol_get_enrolled_users")


def counts(report: Any) -> dict[str, dict[str, int]]:
    return {m.mapping: m.counts for m in report.mappings}


def uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One insert of many rows needs the same columns in each."""
    names = {k for r in rows for k in r}
    return [{k: r.get(k) for k in names} for r in rows]


def site(world: World) -> None:
    """Every kind of row a site has: middle names, phones, a СНИЛС profile field, the default auth, a departments
    tree, courses with and without dates and categories, several roles, suspended rows and suspended people."""
    world.moodle.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
    users = people(12)
    for i, user in enumerate(users):
        user["phone"] = f"+7 900 000-00-{i:02d}" if i % 2 else None
        user["snils"] = f"123-456-789 {i:02d}" if i % 3 else None
        user["middle_name"] = None if i == 4 else user["middle_name"]
        user["auth"] = None if i % 4 else "manual"
        user["status"] = "suspended" if i in (5, 9) else "active"
    world.insert("buf_users", users)
    world.insert("buf_departments", [
        {"external_id": "D1", "parent_external_id": None, "name": "Университет", "status": "active"},
        {"external_id": "D2", "parent_external_id": "D1", "name": "Институт ИТ", "status": "active"},
        {"external_id": "D3", "parent_external_id": "D2", "name": "Кафедра ПО", "status": "active"},
        {"external_id": "D4", "parent_external_id": "D1", "name": "Закрытый отдел", "status": "closed"}])
    world.insert("buf_courses", uniform([
        {"external_id": "C-D", "shortname": "dated", "fullname": "С датами", "category_external_id": "D3",
         "start_date": date(2026, 9, 1), "end_date": date(2027, 1, 31)},
        {"external_id": "C-S", "shortname": "started", "fullname": "Только начало", "category_external_id": "D2",
         "start_date": date(2026, 9, 1), "end_date": None},
        {"external_id": "C-N", "shortname": "nodates", "fullname": "Без дат", "category_external_id": "D1"},
        {"external_id": "C-0", "shortname": "nocat", "fullname": "Без категории", "category_external_id": None},
        {"external_id": "C-H", "shortname": "hidden", "fullname": "Скрытый", "category_external_id": "D3",
         "visible": False}]))
    world.insert("buf_courses", [{"external_id": "C-V", "shortname": "visible", "fullname": "Видимый (по умолчанию)",
                                  "category_external_id": "D2"}])
    soon = datetime.now().replace(microsecond=0) + timedelta(days=90)
    rows = []
    for i, user in enumerate(users):
        for course in ("C-D", "C-S", "C-N", "C-0", "C-H")[: 1 + i % 5]:
            rows.append({"user_external_id": user["external_id"], "course_external_id": course, "role": "student",
                         "status": "suspended" if (i + len(course)) % 7 == 0 else "active"})
    rows += [
        # a teacher who is also a student, with dates
        {"user_external_id": "P00000", "course_external_id": "C-D", "role": "editingteacher", "status": "active",
         "time_start": datetime(2026, 9, 1, 8, 0), "time_end": datetime(2027, 2, 1, 0, 0)},
        {"user_external_id": "P00001", "course_external_id": "C-D", "role": "teacher", "status": "active"},
        # one active and one suspended role on the same enrolment
        {"user_external_id": "P00002", "course_external_id": "C-D", "role": "teacher", "status": "suspended"},
        # every row of an enrolment suspended
        {"user_external_id": "P00006", "course_external_id": "C-N", "role": "teacher", "status": "suspended"},
        # a suspended person's enrolment
        {"user_external_id": "P00005", "course_external_id": "C-H", "role": "teacher", "status": "active"},
        # not started yet, or over: Moodle does not count them active (onlyactive), and that is what was asked
        {"user_external_id": "P00010", "course_external_id": "C-N", "role": "student", "status": "active",
         "time_start": soon},
        {"user_external_id": "P00011", "course_external_id": "C-0", "role": "student", "status": "active",
         "time_start": soon - timedelta(days=400), "time_end": soon - timedelta(days=200)},
        # a role that starts later on an enrolment another row keeps active now
        {"user_external_id": "P00003", "course_external_id": "C-N", "role": "teacher", "status": "active",
         "time_start": soon}]
    world.insert("buf_subscriptions", uniform(rows))


def assert_full_is_quiet(world: World) -> None:
    for _ in range(2):
        writes = world.writes()
        report = world.run(full=True)
        got = counts(report)
        assert all(c["repaired"] == 0 for c in got.values()), report.render()
        assert all(c.get("rejected", 0) == 0 and c.get("errors", 0) == 0 for c in got.values()), report.render()
        assert world.writes() == writes, report.render()


def test_a_second_full_right_after_a_first_load_repairs_and_writes_nothing(world: World) -> None:
    site(world)
    report = world.run()
    got = counts(report)
    assert got["users"]["created"] == 12 and got["courses"]["created"] == 6, report.render()
    assert all(r["sync_status"] == "ok" for t in ("buf_users", "buf_courses", "buf_departments",
                                                   "buf_subscriptions") for r in world.rows(t)), report.render()
    assert_full_is_quiet(world)


def test_full_finds_drift_after_a_quiet_full(world: World) -> None:
    """The drift checks still see hand edits of every entity (the caches do not hide them)."""
    site(world)
    world.run()
    world.run(full=True)
    store = world.moodle.site.store
    store.x("UPDATE user SET lastname = 'Руками' WHERE idnumber = 'P00003'")
    store.x("UPDATE course SET fullname = 'Руками' WHERE idnumber = 'C-N'")
    store.x("UPDATE course_categories SET name = 'Руками' WHERE idnumber = 'D2'")
    with world.ws() as client:
        userid = client.get_users_by_field("idnumber", ["P00007"])[0]["id"]
        courseid = client.get_courses_by_field("idnumber", "C-D")[0]["id"]
        client.unenrol([{"userid": userid, "courseid": courseid}])
    got = counts(world.run(full=True))
    assert got["users"]["repaired"] == 1 and got["courses"]["repaired"] == 1
    assert got["departments"]["repaired"] == 1 and got["subscriptions"]["repaired"] == 1, got
    assert world.ws_enrolled(courseid)[int(userid)]["active"]
    assert_full_is_quiet(world)


def test_full_reads_each_course_once_not_once_per_chunk(world: World) -> None:
    """3 courses, 2,500 enrolments: 3 chunks of unchanged rows, at most 2 enrolment reads per course."""
    world.insert("buf_users", people(850))
    world.insert("buf_courses", [{"external_id": f"C{c}", "shortname": f"c{c}", "fullname": f"Курс {c}"}
                                 for c in range(3)])
    world.insert("buf_subscriptions", [
        {"user_external_id": f"P{i:05d}", "course_external_id": f"C{c}", "role": "student", "status": "active"}
        for c in range(3) for i in range(850) if len(range(3)) * i + c < 2500])
    world.run()
    assert len(world.rows("buf_subscriptions")) > 2 * sync.CHUNK
    writes = world.writes()
    before = dict(world.moodle.stats()["calls"])
    report = world.run(full=True)
    assert all(c["repaired"] == 0 for c in counts(report).values()), report.render()
    assert world.writes() == writes
    after = world.moodle.stats()["calls"]
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in READS}
    assert calls["core_enrol_get_enrolled_users"] <= 2 * 3, calls
    assert calls["core_course_get_categories"] <= 1, calls
    assert calls["core_user_get_users_by_field"] <= 1, calls  # 850 users: one chunk
