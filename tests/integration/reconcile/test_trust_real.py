"""Issue 11's trust regressions (tests/reconcile/test_trust.py) against a real Moodle 4.5 (../shared/moodle-real/up),
where Moodle's own behaviour decides the outcome: logins it lower-cases, idnumbers and shortnames it holds, suspended
accounts, enrolments and role assignments. Each test checks what Moodle holds, read back through Web Services (and,
for an enrolment's dates, which no Web Service returns, the site's database `moodle_real`), and what the buffer rows
say, never only the run's counts.

Skipped unless BUFSYNC_TEST_MOODLE_URL and BUFSYNC_TEST_MOODLE_TOKEN are set (CI has no Moodle). The real site keeps
its state between tests and runs: every test works under a prefix of its own (time + random), so keys, logins,
e-mails and shortnames never meet another test's or an earlier run's. Users created are deleted afterwards
(BUFSYNC_TEST_MOODLE_KEEP=1 keeps them to look at); courses stay (the service cannot delete courses).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.schema import build_metadata
from tests.integration.reconcile.conftest import Buffer

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
# the real site's own database: the only witness of an enrolment's timestart/timeend
MOODLE_DB_URL = os.environ.get("BUFSYNC_TEST_MOODLE_DB_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/moodle_real")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


@dataclass
class RealWorld(Buffer):
    """A fresh buffer (SQLite or PostgreSQL) pointed at the real Moodle, and a prefix no other test uses."""

    tag: str                                   # lower-case latin + digits: valid in logins, keys, shortnames
    made: list[int] = field(default_factory=list)  # accounts made by hand through Web Services

    def key(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def login(self, name: str) -> str:
        return f"{self.tag}{name}"

    def row(self, table: str, key: str) -> dict[str, Any]:
        return next(r for r in self.rows(table) if r["external_id"] == key)

    def ws(self) -> MoodleClient:
        return MoodleClient.connect(URL, TOKEN, timeout=120)


def counts(report: Any, mapping: str) -> dict[str, int]:
    return next(m.counts for m in report.mappings if m.mapping == mapping)


def run_tag() -> str:
    return f"t{int(time.time()) % 10**8:08d}{secrets.token_hex(3)}"


@pytest.fixture
def world(buffer_url: str) -> Iterator[RealWorld]:
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": URL,
                                  "BUFSYNC_MOODLE_TOKEN": TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "120"})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    world = RealWorld(loaded, engine, dict(build_metadata(mappings).tables), run_tag())
    try:
        yield world
    finally:
        try:
            if not os.environ.get("BUFSYNC_TEST_MOODLE_KEEP"):
                ids = sorted({int(r["lms_id"]) for r in world.rows("buf_users") if r["lms_id"]} | set(world.made))
                with world.ws() as client:
                    for start in range(0, len(ids), 200):
                        client.delete_users(ids[start:start + 200])
        finally:
            engine.dispose()


@pytest.fixture
def unassign(world: RealWorld) -> None:
    """bufsync unassigns a role through core_role_unassign_roles, which the lab's service got by hand."""
    with world.ws() as client:
        if client.missing_functions(["core_role_unassign_roles"]):
            pytest.skip("the real Moodle's service lacks core_role_unassign_roles, which bufsync needs to take a "
                        "role back: add core_role_unassign_roles to the bufsync service")


@pytest.fixture(scope="module")
def moodle_db() -> Iterator[sa.Engine]:
    engine = sa.create_engine(MOODLE_DB_URL)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.skip(f"the real Moodle's database is not readable at {sa.engine.make_url(MOODLE_DB_URL)!r} "
                    f"(BUFSYNC_TEST_MOODLE_DB_URL): no Web Service returns an enrolment's dates: {exc.orig}")
    yield engine
    engine.dispose()


def person(world: RealWorld, name: str, last: str = "Хороший", first: str = "Пётр",
           login: str | None = None) -> dict[str, Any]:
    return {"external_id": world.key(name), "username": login or world.login(name),
            "email": f"{world.login(name)}@college.example", "last_name": last, "first_name": first,
            "status": "active"}


def people(world: RealWorld, n: int) -> list[dict[str, Any]]:
    return [{"external_id": world.key(f"P{i:05d}"), "username": world.login(f"u{i:05d}"),
             "email": f"{world.login(f'u{i:05d}')}@college.example", "last_name": f"Иванов{i}",
             "first_name": "Иван", "middle_name": "Петрович", "status": "active"} for i in range(n)]


# -- people ----------------------------------------------------------------------------------------------------

def test_a_namesake_login_never_takes_over_an_account(world: RealWorld) -> None:
    good_key, login = world.key("good1"), world.login("good1")
    world.insert("buf_users", [person(world, "good1")])
    assert world.run("users").outcome == "ok"
    good = world.ws_user(idnumber=good_key)
    assert good is not None and good["username"] == login
    namesake_key = world.key("namesake")
    world.insert("buf_users", [person(world, "namesake", "Другой", "Человек", login=login.upper())])
    report = world.run("users")
    assert counts(report, "users")["adopted"] == 0 and counts(report, "users")["disputed"] == 1
    assert counts(report, "users")["created"] == 0 and report.outcome == "rejected"

    def unchanged() -> None:
        after = world.ws_user(username=login)
        assert after is not None and after["id"] == good["id"]
        assert (after["idnumber"], after["email"], after["lastname"], after["firstname"]) == (
            good_key, f"{login}@college.example", "Хороший", "Пётр")
        assert world.ws_user(idnumber=namesake_key) is None
        namesake = world.row("buf_users", namesake_key)
        assert namesake["sync_status"] == "error" and namesake["lms_id"] is None
        assert good_key in namesake["sync_error"] and str(good["id"]) in namesake["sync_error"]
        assert "(disputed)" in namesake["sync_error"]
        assert world.row("buf_users", good_key)["lms_id"] == good["id"]
        assert world.row("buf_users", good_key)["sync_status"] == "ok"

    unchanged()
    # --full retries the failed row: still no takeover, however often
    for _ in range(2):
        report = world.run("users", full=True)
        assert counts(report, "users")["adopted"] == 0 and counts(report, "users")["created"] == 0
        assert counts(report, "users")["repaired"] == 0 and counts(report, "users")["updated"] == 0
        unchanged()


def test_two_new_logins_differing_in_case_never_share_an_account(world: RealWorld) -> None:
    login = world.login("twin")
    world.insert("buf_users", [person(world, "a", login=login),
                               person(world, "b", "Второй", login=login.upper())])
    world.run("users")
    world.run("users", full=True)
    rows = {r["external_id"]: r for r in world.rows("buf_users")}
    linked = [r for r in rows.values() if r["lms_id"] is not None]
    assert len(linked) == 1, rows  # one of them has the account, the other is refused with the reason
    refused = next(r for r in rows.values() if r["lms_id"] is None)
    assert refused["sync_status"] == "error" and refused["sync_error"]
    account = world.ws_user(username=login)
    assert account["idnumber"] == linked[0]["external_id"] and account["id"] == linked[0]["lms_id"]
    assert world.ws_user(idnumber=refused["external_id"]) is None


def test_an_account_whose_idnumber_belongs_to_someone_else_is_not_adopted(world: RealWorld) -> None:
    """An account made by hand with another person's idnumber: the login matches, the idnumber contradicts."""
    hand, other = world.login("hand"), world.key("someone-else")
    with world.ws() as client:
        made = client.create_users([{"username": hand, "firstname": "Руками", "lastname": "Созданный",
                                     "email": f"{hand}@example.edu", "idnumber": other,
                                     "password": "Lab#Pass2026x"}])
    assert made[0].ok, made[0].error
    world.made.append(made[0].remote_id)
    world.insert("buf_users", [person(world, "hand")])
    report = world.run("users")
    assert counts(report, "users")["disputed"] == 1 and counts(report, "users")["adopted"] == 0
    account = world.ws_user(username=hand)
    assert account["id"] == made[0].remote_id and account["idnumber"] == other
    assert (account["lastname"], account["email"]) == ("Созданный", f"{hand}@example.edu")
    assert world.ws_user(idnumber=world.key("hand")) is None
    refused = world.row("buf_users", world.key("hand"))
    assert refused["sync_status"] == "error" and refused["lms_id"] is None
    assert other in refused["sync_error"] and str(made[0].remote_id) in refused["sync_error"]
    # an account made by hand with no idnumber is adopted: nothing contradicts it
    bare = world.login("bare")
    with world.ws() as client:
        made_bare = client.create_users([{"username": bare, "firstname": "Без", "lastname": "Номера",
                                          "email": f"{bare}@example.edu", "password": "Lab#Pass2026x"}])
    assert made_bare[0].ok, made_bare[0].error
    world.made.append(made_bare[0].remote_id)
    world.insert("buf_users", [person(world, "bare")])
    report = world.run("users")
    assert counts(report, "users")["adopted"] == 1 and counts(report, "users")["created"] == 0
    adopted = world.ws_user(username=bare)
    assert adopted["id"] == made_bare[0].remote_id and adopted["idnumber"] == world.key("bare")
    assert (adopted["lastname"], adopted["email"]) == ("Хороший", f"{bare}@college.example")  # the buffer wins
    row = world.row("buf_users", world.key("bare"))
    assert row["sync_status"] == "ok" and row["lms_id"] == made_bare[0].remote_id
    # the disputed account is still untouched
    assert world.ws_user(username=hand)["idnumber"] == other
    assert counts(world.run("users", full=True), "users")["repaired"] == 0


def test_a_course_with_another_idnumber_is_not_adopted_by_shortname(world: RealWorld) -> None:
    shortname = world.login("math")
    first, second = world.key("C-1"), world.key("C-2")
    world.insert("buf_courses", [{"external_id": first, "shortname": shortname, "fullname": "Математика"}])
    assert counts(world.run("courses"), "courses")["created"] == 1
    world.insert("buf_courses", [{"external_id": second, "shortname": shortname, "fullname": "Другая математика"}])
    report = world.run("courses")
    assert counts(report, "courses")["disputed"] == 1 and counts(report, "courses")["adopted"] == 0
    with world.ws() as client:
        courses = client.get_courses_by_field("shortname", shortname)
        assert client.get_courses_by_field("idnumber", second) == []
    assert [(c["idnumber"], c["fullname"]) for c in courses] == [(first, "Математика")]
    assert world.row("buf_courses", first)["lms_id"] == courses[0]["id"]
    refused = world.row("buf_courses", second)
    assert refused["sync_status"] == "error" and refused["lms_id"] is None
    assert first in refused["sync_error"] and str(courses[0]["id"]) in refused["sync_error"]
    # --full retries the disputed row: still not adopted, Moodle's course unchanged
    report = world.run("courses", full=True)
    assert counts(report, "courses")["adopted"] == 0 and counts(report, "courses")["disputed"] == 1
    with world.ws() as client:
        assert [(c["id"], c["idnumber"], c["fullname"]) for c in client.get_courses_by_field("shortname", shortname)
                ] == [(courses[0]["id"], first, "Математика")]
    refused = world.row("buf_courses", second)
    assert refused["sync_status"] == "error" and refused["lms_id"] is None and first in refused["sync_error"]


def test_a_full_run_right_after_finds_no_course_to_repair(world: RealWorld) -> None:
    world.insert("buf_courses", [{"external_id": world.key("C-ND"), "shortname": world.login("nodates"),
                                  "fullname": "Без дат"}])
    assert counts(world.run("courses"), "courses")["created"] == 1
    with world.ws() as client:
        [course] = client.get_courses_by_field("idnumber", world.key("C-ND"))
    assert (course["startdate"], course["enddate"], course["fullname"]) == (0, 0, "Без дат")  # what Moodle holds
    assert counts(world.run("courses", full=True), "courses")["repaired"] == 0


@pytest.mark.parametrize("how", ["one", "half_reload"])
def test_a_person_who_comes_back_is_active_in_moodle(world: RealWorld, how: str) -> None:
    everyone = people(world, 20)
    world.insert("buf_users", everyone)
    assert counts(world.run("users"), "users")["created"] == 20
    if how == "one":
        gone = [world.key("P00007")]
        world.delete("buf_users", lambda t: t.c.external_id == gone[0])
        report = world.run("users")
    else:  # a reload written in two halves: the first run sees half the table, the next the rest
        gone = [world.key(f"P{i:05d}") for i in range(10, 20)]
        world.delete("buf_users")
        world.insert("buf_users", everyone[:10])
        report = world.run("users", allow_removals=10)
    assert counts(report, "users")["suspended"] == len(gone)
    for key in gone:
        assert world.ws_user(idnumber=key)["suspended"] is True, key
    assert world.ws_user(idnumber=world.key("P00000"))["suspended"] is False
    world.insert("buf_users", [p for p in everyone if p["external_id"] in gone])
    report = world.run("users")
    assert counts(report, "users")["reactivated"] == len(gone)
    for key in gone:
        assert world.ws_user(idnumber=key)["suspended"] is False, key
        assert world.row("buf_users", key)["sync_status"] == "ok"
    # and a --full right after finds nothing to repair, and Moodle still has everyone active
    assert counts(world.run("users", full=True), "users")["repaired"] == 0
    with world.ws() as client:
        accounts = client.get_users_by_field("idnumber", [p["external_id"] for p in everyone])
    assert len(accounts) == 20 and not [a["idnumber"] for a in accounts if a["suspended"]]
    assert {r["external_id"]: r["lms_id"] for r in world.rows("buf_users")} == {
        a["idnumber"]: a["id"] for a in accounts}


# -- enrolments ------------------------------------------------------------------------------------------------

@dataclass
class Course:
    world: RealWorld
    key: str
    n: int

    def user(self, i: int) -> str:
        return self.world.key(f"P{i:05d}")

    @property
    def id(self) -> int:
        return next(r["lms_id"] for r in self.world.rows("buf_courses") if r["external_id"] == self.key)

    def userid(self, i: int) -> int:
        return self.world.ws_user(idnumber=self.user(i))["id"]

    def sub(self, i: int, role: str) -> dict[str, Any]:
        return next(r for r in self.world.rows("buf_subscriptions")
                    if r["user_external_id"] == self.user(i) and r["role"] == role)

    def where(self, i: int, role: str | None = None) -> Callable[[sa.Table], Any]:
        def match(t: sa.Table) -> Any:
            clause = t.c.user_external_id == self.user(i)
            return clause if role is None else clause & (t.c.role == role)
        return match

    def row(self, i: int, role: str, status: str = "active", **dates: Any) -> dict[str, Any]:
        return {"user_external_id": self.user(i), "course_external_id": self.key, "role": role, "status": status,
                **dates}

    def enrolled(self) -> dict[int, dict[str, Any]]:
        return self.world.ws_enrolled(self.id)

    def settled(self, check: Callable[[], None]) -> None:
        """The state after a step, then a --full right after: nothing to repair, and Moodle still matches."""
        check()
        report = self.world.run("subscriptions", full=True)
        assert counts(report, "subscriptions")["repaired"] == 0, report.render()
        assert report.outcome == "ok", report.render()
        check()


def enrol_rows(world: RealWorld, n: int = 12) -> Course:
    world.insert("buf_users", people(world, n))
    course = Course(world, world.key("C-PY"), n)
    world.insert("buf_courses", [{"external_id": course.key, "shortname": world.login("py101"),
                                  "fullname": f"Python {world.tag}"}])
    world.insert("buf_subscriptions", [course.row(i, "student") for i in range(n)])
    report = world.run("users", "courses", "subscriptions")
    assert report.outcome == "ok", report.render()
    enrolled = course.enrolled()
    assert len(enrolled) == n and all(e == {"roles": ["student"], "active": True} for e in enrolled.values())
    return course


def test_a_role_changed_by_delete_and_insert_leaves_only_the_new_role(world: RealWorld, unassign: None) -> None:
    course = enrol_rows(world)
    world.delete("buf_subscriptions", course.where(1, "student"))
    world.insert("buf_subscriptions", [course.row(1, "teacher")])
    report = world.run("subscriptions")
    assert report.outcome == "ok", report.render()
    userid, other = course.userid(1), course.userid(2)

    def check() -> None:
        enrolled = course.enrolled()
        assert enrolled[userid] == {"roles": ["teacher"], "active": True}
        assert enrolled[other] == {"roles": ["student"], "active": True}  # the others are untouched
        assert course.sub(1, "teacher")["sync_status"] == "ok"
        assert len(enrolled) == course.n

    course.settled(check)


def test_suspending_one_role_keeps_the_other_roles_enrolment_active(world: RealWorld, unassign: None) -> None:
    course = enrol_rows(world)
    world.insert("buf_subscriptions", [course.row(3, "editingteacher")])
    assert world.run("subscriptions").outcome == "ok"
    userid = course.userid(3)

    def both_active() -> None:
        assert course.enrolled()[userid] == {"roles": ["editingteacher", "student"], "active": True}

    course.settled(both_active)
    world.update("buf_subscriptions", course.where(3, "student"), status="suspended")
    assert world.run("subscriptions").outcome == "ok"

    def teacher_only() -> None:
        assert course.enrolled()[userid] == {"roles": ["editingteacher"], "active": True}
        assert course.sub(3, "student")["sync_status"] == "ok"
        assert course.sub(3, "editingteacher")["sync_status"] == "ok"

    course.settled(teacher_only)
    # the teacher row goes too: no active row is left, the enrolment is suspended
    world.update("buf_subscriptions", course.where(3, "editingteacher"), status="suspended")
    assert world.run("subscriptions").outcome == "ok"

    def suspended() -> None:
        enrolled = course.enrolled()[userid]
        assert enrolled["active"] is False
        # suspended with the roles of its (all suspended) rows: both, as the engine sends them
        assert enrolled["roles"] == ["editingteacher", "student"]

    course.settled(suspended)
    # the student comes back: active again, as a student only
    world.update("buf_subscriptions", course.where(3, "student"), status="active")
    assert world.run("subscriptions").outcome == "ok"

    def student_only() -> None:
        assert course.enrolled()[userid] == {"roles": ["student"], "active": True}
        assert course.sub(3, "student")["sync_status"] == "ok"

    course.settled(student_only)


def test_the_enrolment_spans_the_widest_dates_of_its_rows(world: RealWorld, moodle_db: sa.Engine) -> None:
    course = enrol_rows(world)
    zone = ZoneInfo(world.loaded.settings.timezone)
    today = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    # started already (onlyactive counts only begun enrolments), ending in the future
    student = (today - timedelta(days=90), today + timedelta(days=60))
    teacher = (today - timedelta(days=60), today + timedelta(days=210))
    world.update("buf_subscriptions", course.where(4), time_start=student[0], time_end=student[1])
    world.insert("buf_subscriptions", [course.row(4, "teacher", time_start=teacher[0], time_end=teacher[1])])
    assert world.run("subscriptions").outcome == "ok"
    userid = course.userid(4)

    def stamp(moment: datetime) -> int:
        return int(moment.replace(tzinfo=zone).timestamp())

    def dates() -> list[tuple[int, int, int]]:
        """(status, timestart, timeend) of the user's enrolment by the course's manual instance."""
        with moodle_db.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT ue.status, ue.timestart, ue.timeend FROM mdl_user_enrolments ue "
                "JOIN mdl_enrol e ON e.id = ue.enrolid "
                "WHERE e.enrol = 'manual' AND e.courseid = :course AND ue.userid = :user"),
                {"course": course.id, "user": userid})]

    def widest(start: datetime, end: datetime) -> Callable[[], None]:
        def check() -> None:
            assert course.enrolled()[userid] == {"roles": ["student", "teacher"], "active": True}
            assert dates() == [(0, stamp(start), stamp(end))]
            assert course.sub(4, "teacher")["sync_status"] == "ok"
            assert course.sub(4, "student")["sync_status"] == "ok"
        return check

    course.settled(widest(student[0], teacher[1]))
    # one row changes its start: the other's wider end still holds
    earlier = today - timedelta(days=120)
    world.update("buf_subscriptions", course.where(4, "teacher"), time_start=earlier)
    assert world.run("subscriptions").outcome == "ok"
    course.settled(widest(earlier, teacher[1]))


def test_an_enrolment_whose_rows_all_vanish_is_suspended_and_returns_active(world: RealWorld) -> None:
    course = enrol_rows(world)
    userid = course.userid(5)
    world.delete("buf_subscriptions", course.where(5))
    report = world.run("subscriptions")
    assert counts(report, "subscriptions")["suspended"] == 1

    def suspended() -> None:
        assert course.enrolled()[userid] == {"roles": ["student"], "active": False}

    course.settled(suspended)
    world.insert("buf_subscriptions", [course.row(5, "student")])
    assert world.run("subscriptions").outcome == "ok"

    def back() -> None:
        assert course.enrolled()[userid] == {"roles": ["student"], "active": True}
        assert course.sub(5, "student")["sync_status"] == "ok"

    course.settled(back)
