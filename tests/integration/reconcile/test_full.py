"""Issue 12 §2: `--full` is honest (a second one right after a first load repairs nothing and writes nothing, for
every entity) and cheap (each course's enrolments are read once per run, not once per chunk)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.reconcile import context as sync
from bufsync.schema import build_metadata
from tests.integration.reconcile.conftest import Buffer, World, people

READS = ("core_user_get_users_by_field", "core_course_get_courses_by_field", "core_course_get_categories",
         "core_enrol_get_enrolled_users")


def counts(report: Any) -> dict[str, dict[str, int]]:
    return {m.mapping: m.counts for m in report.mappings}


def uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One insert of many rows needs the same columns in each."""
    names = {k for r in rows for k in r}
    return [{k: r.get(k) for k in names} for r in rows]


PREFIXED = ("external_id", "parent_external_id", "category_external_id", "user_external_id", "course_external_id",
            "username", "email", "shortname")


def site(world: Buffer, tag: str = "") -> None:
    """Every kind of row a site has: middle names, phones, a СНИЛС profile field, the default auth, a departments
    tree, courses with and without dates and categories, several roles, suspended rows and suspended people.
    `tag` prefixes every key, login, e-mail and shortname (a real Moodle keeps earlier runs' records)."""
    def insert(table: str, rows: list[dict[str, Any]]) -> None:
        world.insert(table, [{k: f"{tag}{v}" if tag and k in PREFIXED and v is not None else v for k, v in r.items()}
                             for r in uniform(rows)])

    users = people(12)
    users[7]["last_name"] = "О'Нил & Ко"
    for i, user in enumerate(users):
        user["phone"] = f"+7 900 000-00-{i:02d}" if i % 2 else None
        user["snils"] = f"123-456-789 {i:02d}" if i % 3 else None
        user["middle_name"] = None if i == 4 else user["middle_name"]
        user["auth"] = None if i % 4 else "manual"
        user["status"] = "suspended" if i in (5, 9) else "active"
    insert("buf_users", users)
    insert("buf_departments", [
        {"external_id": "D1", "parent_external_id": None, "name": "Университет", "status": "active"},
        {"external_id": "D2", "parent_external_id": "D1", "name": "Институт «ИТ» & связи", "status": "active"},
        {"external_id": "D3", "parent_external_id": "D2", "name": "Кафедра ПО", "status": "active"},
        {"external_id": "D4", "parent_external_id": "D1", "name": "Закрытый отдел", "status": "closed"}])
    insert("buf_courses", [
        {"external_id": "C-D", "shortname": "dated", "fullname": "С датами", "category_external_id": "D3",
         "start_date": date(2026, 9, 1), "end_date": date(2027, 1, 31)},
        {"external_id": "C-S", "shortname": "started", "fullname": "Только начало", "category_external_id": "D2",
         "start_date": date(2026, 9, 1), "end_date": None},
        {"external_id": "C-N", "shortname": "nodates&co", "fullname": 'Право & экономика "Основы" (1 < 2)',
         "category_external_id": "D1"},
        {"external_id": "C-0", "shortname": "nocat", "fullname": "Без категории", "category_external_id": None},
        {"external_id": "C-H", "shortname": "hidden", "fullname": "Скрытый", "category_external_id": "D3",
         "visible": False}])
    insert("buf_courses", [{"external_id": "C-V", "shortname": "visible", "fullname": "Видимый (по умолчанию)",
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
         "time_start": soon - timedelta(days=180), "time_end": soon + timedelta(days=60)},
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
    insert("buf_subscriptions", rows)


def assert_full_is_quiet(world: World) -> None:
    for _ in range(2):
        writes = world.writes()
        report = world.run(full=True)
        got = counts(report)
        assert all(c["repaired"] == 0 for c in got.values()), report.render()
        assert all(c.get("rejected", 0) == 0 and c.get("errors", 0) == 0 for c in got.values()), report.render()
        assert world.writes() == writes, report.render()


def test_a_second_full_right_after_a_first_load_repairs_and_writes_nothing(world: World) -> None:
    world.moodle.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
    site(world)
    report = world.run()
    got = counts(report)
    assert got["users"]["created"] == 12 and got["courses"]["created"] == 6, report.render()
    assert all(r["sync_status"] == "ok" for t in ("buf_users", "buf_courses", "buf_departments",
                                                   "buf_subscriptions") for r in world.rows(t)), report.render()
    assert_full_is_quiet(world)


def test_full_finds_drift_after_a_quiet_full(world: World) -> None:
    """The drift checks still see hand edits of every entity (the caches do not hide them)."""
    world.moodle.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
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


def test_the_first_full_after_a_load_checks_departments_under_a_parent(world: World) -> None:
    """Departments under a parent get a new fingerprint on the run after the load (rehash): --full checks them."""
    world.moodle.site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
    site(world)
    world.run()
    world.moodle.site.store.x("UPDATE course_categories SET name = 'Руками' WHERE idnumber = 'D3'")
    writes = world.writes()
    got = counts(world.run(full=True))
    assert got["departments"]["repaired"] == 1, got
    assert world.writes() == writes + 1  # one core_course_update_categories
    with world.ws() as client:
        assert client.get_categories([{"key": "idnumber", "value": "D3"}])[0]["name"] == "Кафедра ПО"
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


WRITING = ("created", "adopted", "updated", "suspended", "reactivated", "deleted", "repaired")


@pytest.fixture
def real(buffer_url: str) -> Iterator[Any]:
    """A fresh buffer pointed at the real Moodle 4.5 (skipped without BUFSYNC_TEST_MOODLE_URL / _TOKEN)."""
    from tests.integration.reconcile import test_trust_real as t
    if not (t.URL and t.TOKEN):
        pytest.skip("no real Moodle: export BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": t.URL,
                                  "BUFSYNC_MOODLE_TOKEN": t.TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "120"})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    world = t.RealWorld(loaded, engine, dict(build_metadata(mappings).tables), t.run_tag())
    try:
        yield world
    finally:
        try:
            ids = sorted({int(r["lms_id"]) for r in world.rows("buf_users") if r["lms_id"]})
            with world.ws() as client:
                client.delete_users(ids)
        finally:
            engine.dispose()


@pytest.mark.moodle
def test_a_second_full_on_the_real_moodle_repairs_and_writes_nothing(real: Any) -> None:
    """The same site on a real Moodle 4.5 (its `snils` profile field exists): the real Moodle decides."""
    site(real, real.tag)
    report = real.run()
    assert all(r["sync_status"] == "ok" for t in ("buf_users", "buf_courses", "buf_departments", "buf_subscriptions")
               for r in real.rows(t)), report.render()
    for _ in range(2):
        report = real.run(full=True)
        assert all(c[name] == 0 for c in counts(report).values() for name in WRITING), report.render()


class _Moodle:
    """Just enough of MoodleClient for the enrolment adapter: course 7 holds user 3 as a student, and counts reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.roles = {3: {"student"}}

    def get_enrolled_users(self, courseid: int, onlyactive: bool = False, userfields: str = "") -> list[dict]:
        self.reads += 1
        return [{"id": u, "roles": [{"shortname": r} for r in sorted(roles)]} for u, roles in self.roles.items()]

    def enrol(self, items: list[dict]) -> list[Any]:
        from bufsync.reconcile.adapter import Outcome
        for item in items:
            self.roles.setdefault(item["userid"], set()).add({3: "editingteacher", 5: "student"}[item["roleid"]])
        return [Outcome(True) for _ in items]

    unassign_roles = unenrol = enrol  # never called here: no role and no row goes

    @staticmethod
    def parallel(items: list[Any], work: Any) -> list[Any]:
        return [work(item) for item in items]


def test_the_enrolment_cache_is_read_once_and_dropped_when_the_adapter_writes_to_that_course() -> None:
    from bufsync.adapters.moodle.entities.enrolments import EnrolmentAdapter
    from bufsync.reconcile.adapter import Existing, Member
    from bufsync.reconcile.records import Desired
    moodle = _Moodle()
    adapter = EnrolmentAdapter(moodle, None)  # type: ignore[arg-type]

    def row(user: int, role: str) -> tuple[Desired, Existing]:
        key = f'["U{user}", "C7", "{role}"]'
        desired = Desired(key, (f"U{user}", "C7", role), {"role": role}, {"userid": ("users", f"U{user}"),
                          "courseid": ("courses", "C7")}, resolved={"userid": user, "courseid": 7})
        return desired, Existing(key, None, None)

    assert adapter.drifted([row(3, "student")]) == set() and moodle.reads == 2
    assert adapter.drifted([row(4, "student")]) == {row(4, "student")[0].key} and moodle.reads == 2  # cached
    view = {"userid": 4, "courseid": 7, "role": "student", "@active": True}
    assert adapter.apply_groups([[Member(row(4, "student")[0].key, None, view)]])[0].ok
    assert adapter.drifted([row(4, "student")]) == set() and moodle.reads == 4  # read again after the write
