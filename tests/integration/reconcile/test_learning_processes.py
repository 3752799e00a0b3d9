"""Learning processes end to end on SQLite and PostgreSQL against the sandbox Moodle over HTTP: the group's
studying students and the teacher enrolled in the discipline's course for the process's dates and made
members of its course group; leaving suspends only what the process asked for (buf_subscriptions and other
processes keep an enrolment while they ask for it). What Moodle holds is read back through Web Services."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bufsync.reconcile.guards import GuardRefused
from tests.integration.reconcile.conftest import World, people
from tests.integration.reconcile.test_contingent import counts, process, student

ALL = ("users", "courses", "students", "learning_processes", "subscriptions", "process_enrolments")
ZONE = ZoneInfo("Europe/Moscow")


def moodle_view(world: World) -> dict[str, Any]:
    """Through Web Services: who is enrolled in C-PY (username -> roles, active, timeend) and each course
    group's members (group idnumber -> usernames)."""
    courseid = next(int(r["lms_id"]) for r in world.rows("buf_courses") if r["external_id"] == "C-PY")
    with world.ws() as client:
        everyone = client.get_enrolled_users(courseid, userfields="id,username,roles")
        active = {int(u["id"]) for u in client.get_enrolled_users(courseid, onlyactive=True, userfields="id")}
        groups = client.call("core_group_get_course_groups", {"courseid": courseid})
        members = {int(g["groupid"]): g["userids"] for g in
                   client.get_group_members([int(g["id"]) for g in groups])} if groups else {}
    names = {int(u["id"]): u["username"] for u in everyone}
    enrolled = {u["username"]: (sorted(r["shortname"] for r in u.get("roles", [])), int(u["id"]) in active)
                for u in everyone}
    return {"enrolled": enrolled,
            "groups": {g["idnumber"]: sorted(names.get(int(u), str(u)) for u in members[int(g["id"])])
                       for g in groups}}


def timeend(world: World, username: str) -> int:
    store = world.moodle.site.store  # the enrolment's dates: core_enrol_get_enrolled_users does not give them
    row = store.one("SELECT ue.timeend FROM user_enrolments ue JOIN user u ON u.id = ue.userid "
                    "WHERE u.username = ?", (username,))
    return int(row["timeend"])


def user(i: int) -> str:
    return f"user{i:05d}"


@pytest.fixture
def site(world: World) -> World:
    """P0 teaches; ИС-21 is P1..P25 (P25 expelled), ПР-22 is P26..P45; both study Python (C-PY);
    P1 also has a subscription of their own to C-PY."""
    world.insert("buf_users", people(46))
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"}])
    world.insert("buf_students", [student(i, "ИС-21") for i in range(1, 25)] + [student(25, "ИС-21", "expelled")]
                 + [student(i, "ПР-22") for i in range(26, 46)])
    world.insert("buf_learning_processes", [process("LP-1", "ИС-21"), process("LP-2", "ПР-22")])
    world.insert("buf_subscriptions", [{"user_external_id": "P00001", "course_external_id": "C-PY",
                                        "role": "student", "status": "active"}])
    return world


def test_a_process_enrols_its_group_and_teacher_into_its_course_group(site: World) -> None:
    world = site
    report = world.run(*ALL)
    assert report.outcome == "ok", report.render()
    assert counts(report, "process_enrolments") == {"created": 46}  # 24 + 20 students, the teacher twice
    found = moodle_view(world)
    assert found["enrolled"][user(0)] == (["editingteacher"], True)
    assert all(found["enrolled"][user(i)] == (["student"], True) for i in [*range(1, 25), *range(26, 46)])
    assert user(25) not in found["enrolled"]  # expelled before the process: never enrolled
    assert found["groups"] == {"LP-1": sorted([user(i) for i in range(0, 25) if i != 25]),
                               "LP-2": sorted([user(0)] + [user(i) for i in range(26, 46)])}
    # the process's dates, its last day included; a subscription without an end makes P1's enrolment open
    last_day = int(datetime(2026, 12, 31, tzinfo=ZONE).timestamp())
    assert timeend(world, user(2)) == last_day
    assert timeend(world, user(1)) == 0
    rows = world.rows("buf_process_enrolments")
    assert len(rows) == 46 and {r["sync_status"] for r in rows} == {"ok"}
    assert {(r["process_external_id"], r["role"]) for r in rows if r["user_external_id"] == "P00000"} == {
        ("LP-1", "editingteacher"), ("LP-2", "editingteacher")}
    assert next(r["time_end"] for r in rows if r["user_external_id"] == "P00002") == date(2026, 12, 30)

    writes = world.writes()
    report = world.run(*ALL)
    assert counts(report, "process_enrolments") == {"unchanged": 46}
    assert world.writes() == writes  # nothing to do: not a single write


def test_leaving_suspends_only_what_the_process_asked_for(site: World) -> None:
    world = site
    world.run(*ALL)
    # P2 moves to ПР-22; P3 is expelled; P1 is expelled but keeps their own subscription; LP-2 loses its
    # teacher, who still teaches LP-1
    world.update("buf_students", lambda t: t.c.person_external_id == "P00002", group_code="ПР-22")
    world.update("buf_students", lambda t: t.c.person_external_id.in_(["P00001", "P00003"]), status="expelled")
    world.update("buf_learning_processes", lambda t: t.c.external_id == "LP-2", teacher_external_id=None)
    report = world.run(*ALL)
    assert report.outcome == "ok", report.render()
    assert counts(report, "process_enrolments") == {"created": 1, "suspended": 4, "unchanged": 42}
    found = moodle_view(world)
    assert found["enrolled"][user(2)] == (["student"], True)    # asked for by LP-2 now
    assert found["enrolled"][user(3)] == (["student"], False)   # suspended, never unenrolled: grades stay
    assert found["enrolled"][user(1)] == (["student"], True)    # the subscription still asks for it
    assert found["enrolled"][user(0)] == (["editingteacher"], True)  # LP-1 still asks for it
    assert user(2) in found["groups"]["LP-2"] and user(2) not in found["groups"]["LP-1"]
    assert user(1) not in found["groups"]["LP-1"] and user(3) not in found["groups"]["LP-1"]
    assert user(0) in found["groups"]["LP-1"] and user(0) not in found["groups"]["LP-2"]

    # the subscription goes too: now nothing asks for P1's enrolment
    world.delete("buf_subscriptions")
    report = world.run(*ALL, allow_removals=1)
    assert report.outcome == "ok", report.render()
    assert moodle_view(world)["enrolled"][user(1)] == (["student"], False)
    # P3 comes back to the group: the same enrolment reactivated, back in the course group
    world.update("buf_students", lambda t: t.c.person_external_id == "P00003", status="studying")
    report = world.run(*ALL)
    assert report.outcome == "ok", report.render()
    found = moodle_view(world)
    assert found["enrolled"][user(3)] == (["student"], True) and user(3) in found["groups"]["LP-1"]
    assert {r["sync_status"] for r in world.rows("buf_process_enrolments")} == {"ok"}


def test_a_subscription_suspended_by_1c_keeps_the_enrolment_a_process_asks_for(site: World) -> None:
    world = site
    world.run(*ALL)
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00001", status="suspended")
    report = world.run(*ALL)
    assert report.outcome == "ok", report.render()
    assert moodle_view(world)["enrolled"][user(1)] == (["student"], True)
    # --full finds nothing to repair: the student role the suspended row had is the process's too
    writes = world.writes()
    report = world.run(*ALL, full=True)
    assert report.outcome == "ok", report.render()
    assert world.writes() == writes, report.render()


def test_full_puts_back_a_member_taken_out_of_the_group_by_hand(site: World) -> None:
    world = site
    world.run(*ALL)
    groupid = next(int(r["lms_id"]) for r in world.rows("buf_learning_processes") if r["external_id"] == "LP-1")
    p5 = next(int(r["lms_id"]) for r in world.rows("buf_users") if r["external_id"] == "P00005")
    with world.ws() as client:
        client.delete_group_members([{"groupid": groupid, "userid": p5}])
    report = world.run(*ALL, full=True)
    assert counts(report, "process_enrolments").get("repaired") == 1, report.render()
    assert user(5) in moodle_view(world)["groups"]["LP-1"]


def test_a_half_written_students_reload_suspends_nobody(site: World) -> None:
    world = site
    world.run(*ALL)
    world.delete("buf_students", lambda t: t.c.person_external_id >= "P00010")  # 1C half way through a reload
    with pytest.raises(GuardRefused, match="process_enrolments: .* would be"):
        world.run("process_enrolments")
    found = moodle_view(world)
    assert all(active for _, active in found["enrolled"].values())
    assert len(found["groups"]["LP-2"]) == 21


def test_the_rows_of_a_process_for_a_course_that_does_not_exist_fail_alone(site: World) -> None:
    world = site
    world.insert("buf_learning_processes", [process("LP-X", "ИС-21", course="NO-SUCH")])
    report = world.run(*ALL)
    assert counts(report, "process_enrolments") == {"created": 46, "rejected": 25}
    rows = [r for r in world.rows("buf_process_enrolments") if r["process_external_id"] == "LP-X"]
    assert len(rows) == 25 and {r["sync_status"] for r in rows} == {"error"}
    assert all("Курс «NO-SUCH» не найден(а)" in r["sync_error"] for r in rows)
    assert {r["sync_status"] for r in world.rows("buf_process_enrolments")
            if r["process_external_id"] != "LP-X"} == {"ok"}


def test_full_makes_again_a_course_group_deleted_by_hand_and_its_members_follow(site: World) -> None:
    world = site
    world.run(*ALL)
    groupid = next(int(r["lms_id"]) for r in world.rows("buf_learning_processes") if r["external_id"] == "LP-2")
    with world.ws() as client:
        client.call("core_group_delete_groups", {"groupids": [groupid]}, write=True)
    assert "LP-2" not in moodle_view(world)["groups"]
    report = world.run(*ALL, full=True)
    assert report.outcome == "ok", report.render()
    found = moodle_view(world)["groups"]
    assert found["LP-2"] == sorted([user(0)] + [user(i) for i in range(26, 46)])  # made again, members back
    row = next(r for r in world.rows("buf_learning_processes") if r["external_id"] == "LP-2")
    assert int(row["lms_id"]) != groupid and row["sync_status"] == "ok"
