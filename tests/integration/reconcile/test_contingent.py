"""The contingent as Moodle cohorts, end to end on SQLite and PostgreSQL against the sandbox Moodle over
HTTP: academic groups (buf_students) and departments (buf_staff). What Moodle holds is read back through
Web Services (core_cohort_get_cohorts, core_cohort_get_cohort_members) after every run."""

from __future__ import annotations

from typing import Any

import pytest

from bufsync.reconcile.guards import GuardRefused
from tests.integration.reconcile.conftest import World, people


def counts(report: Any, mapping: str) -> dict[str, int]:
    return {k: v for k, v in next(m.counts for m in report.mappings if m.mapping == mapping).items() if v}


def cohorts(world: World) -> dict[str, dict[str, Any]]:
    """idnumber -> {name, members: usernames}, as Moodle answers."""
    with world.ws() as client:
        found = client.call("core_cohort_get_cohorts", {})
        ids = [int(c["id"]) for c in found]
        members = {int(m["cohortid"]): m["userids"] for m in
                   client.call("core_cohort_get_cohort_members", {"cohortids": ids})} if ids else {}
        users = {int(u["id"]): u["username"] for u in client.call("core_user_get_users", {"criteria": [
            {"key": "email", "value": "%"}]})["users"]}
    return {c["idnumber"]: {"name": c["name"], "members": sorted(users[u] for u in members[int(c["id"])])}
            for c in found}


def student(i: int, group: str, status: str = "studying", name: str | None = None) -> dict[str, Any]:
    return {"person_external_id": f"P{i:05d}", "record_book": f"RB{i}", "group_code": group,
            "group_name": name or f"Группа {group}", "status": status}


def test_groups_become_cohorts_and_follow_the_contingent(world: World) -> None:
    world.insert("buf_users", people(6))
    world.insert("buf_students", [student(0, "ИС-21"), student(1, "ИС-21"), student(2, "ИС-21"),
                                  student(3, "ПР-22"), student(4, "ПР-22", "academic_leave"),
                                  student(5, "ПР-22", "expelled")])
    report = world.run("users", "students")
    assert report.outcome == "ok", report.render()
    assert counts(report, "students") == {"created": 6}
    assert cohorts(world) == {
        "1c-ИС-21": {"name": "Группа ИС-21", "members": ["user00000", "user00001", "user00002"]},
        "1c-ПР-22": {"name": "Группа ПР-22", "members": ["user00003"]}}  # leave and expelled: not members
    rows = {r["person_external_id"]: r for r in world.rows("buf_students")}
    assert {r["sync_status"] for r in rows.values()} == {"ok"}

    writes = world.writes()
    assert counts(world.run("users", "students"), "students") == {"unchanged": 6}
    assert world.writes() == writes  # nothing to do: not a single write

    # a student moves to another group, one is expelled, one returns from leave, a group is renamed
    world.update("buf_students", lambda t: t.c.person_external_id == "P00001", group_code="ПР-22",
                 group_name="Группа ПР-22")
    world.update("buf_students", lambda t: t.c.person_external_id == "P00002", status="expelled")
    world.update("buf_students", lambda t: t.c.person_external_id == "P00004", status="studying")
    world.update("buf_students", lambda t: t.c.group_code == "ИС-21", group_name="Информационные системы-21")
    report = world.run("users", "students")
    assert report.outcome == "ok", report.render()
    assert counts(report, "students") == {"updated": 2, "suspended": 1, "reactivated": 1, "unchanged": 2}
    assert cohorts(world) == {
        "1c-ИС-21": {"name": "Информационные системы-21", "members": ["user00000"]},
        "1c-ПР-22": {"name": "Группа ПР-22", "members": ["user00001", "user00003", "user00004"]}}

    # a row that vanishes leaves its cohort; an emptied cohort is kept
    world.delete("buf_students", lambda t: t.c.person_external_id == "P00000")
    assert counts(world.run("users", "students"), "students") == {"deleted": 1, "unchanged": 5}
    assert cohorts(world)["1c-ИС-21"] == {"name": "Информационные системы-21", "members": []}


def test_bad_rows_fail_alone_and_a_cohort_made_by_hand_is_never_touched(world: World) -> None:
    world.insert("buf_users", people(4))
    with world.ws() as client:  # a site's own cohort, with a code that happens to match a group
        client.create_cohorts([{"idnumber": "ИС-21", "name": "Ручная", "categorytype": {"type": "system",
                                                                                        "value": ""}}])
        client.call("core_cohort_add_cohort_members", {"members": [
            {"cohorttype": {"type": "idnumber", "value": "ИС-21"}, "usertype": {"type": "username",
                                                                              "value": "admin"}}]})
    world.insert("buf_students", [student(0, "ИС-21"), student(1, ""), student(2, "ИС-21", "unknown"),
                                  {**student(9, "ИС-21")}, student(3, "ИС-22", name="Я" * 255)])
    report = world.run("users", "students")
    assert counts(report, "students") == {"created": 1, "rejected": 4}
    errors = {r["person_external_id"]: r["sync_error"] for r in world.rows("buf_students")}
    assert "(missingcohort)" in errors["P00001"]
    assert "(badvalue)" in errors["P00002"] and "studying" in errors["P00002"]
    assert "Пользователь «P00009» не найден(а)" in errors["P00009"]
    assert "(cohortnametoolong)" in errors["P00003"]
    found = cohorts(world)
    assert found["ИС-21"] == {"name": "Ручная", "members": ["admin"]}  # untouched
    assert found["1c-ИС-21"]["members"] == ["user00000"]


def test_a_half_written_reload_never_empties_a_cohort(world: World) -> None:
    world.insert("buf_users", people(30))
    world.insert("buf_students", [student(i, "ИС-21") for i in range(30)])
    world.run("users", "students")
    world.delete("buf_students", lambda t: t.c.person_external_id >= "P00010")  # 1C half way through a reload
    with pytest.raises(GuardRefused, match="students: 20 of 30 linked records would be deleted"):
        world.run("users", "students")
    assert len(cohorts(world)["1c-ИС-21"]["members"]) == 30
    world.delete("buf_students")
    with pytest.raises(GuardRefused, match="buf_students is empty"):
        world.run("users", "students")
    assert len(cohorts(world)["1c-ИС-21"]["members"]) == 30


def test_staff_in_several_departments_and_two_positions_in_one(world: World) -> None:
    world.insert("buf_users", people(3))
    world.insert("buf_departments", [
        {"external_id": "D-IT", "parent_external_id": None, "name": "Кафедра ИТ", "status": "active"},
        {"external_id": "D-MATH", "parent_external_id": None, "name": "Кафедра математики", "status": "active"}])
    world.insert("buf_staff", [
        {"person_external_id": "P00000", "department_external_id": "D-IT", "position": "преподаватель"},
        {"person_external_id": "P00000", "department_external_id": "D-IT", "position": "методист"},
        {"person_external_id": "P00000", "department_external_id": "D-MATH", "position": "преподаватель"},
        {"person_external_id": "P00001", "department_external_id": "D-IT", "position": "лаборант"}])
    report = world.run("departments", "users", "staff")
    assert report.outcome == "ok", report.render()
    assert cohorts(world) == {  # named after the department's category
        "1c-D-IT": {"name": "Кафедра ИТ", "members": ["user00000", "user00001"]},
        "1c-D-MATH": {"name": "Кафедра математики", "members": ["user00000"]}}
    # dismissed from one of two positions in D-IT: still in D-IT; from the only one: out
    world.update("buf_staff", lambda t: (t.c.person_external_id == "P00000") & (t.c.position == "методист"),
                 status="dismissed")
    world.update("buf_staff", lambda t: t.c.person_external_id == "P00001", status="dismissed")
    report = world.run("departments", "users", "staff")
    assert report.outcome == "ok", report.render()
    assert {k: v["members"] for k, v in cohorts(world).items()} == {
        "1c-D-IT": ["user00000"], "1c-D-MATH": ["user00000"]}


def test_leaving_for_someone_deleted_in_moodle_is_done(world: World) -> None:
    """Moodle deletes a person with their memberships; removing one then aborts Moodle's whole call
    (invaliduser): the row is isolated, and its leaving counts as done, not as an error."""
    world.insert("buf_users", people(3))
    world.insert("buf_students", [student(i, "ИС-21") for i in range(3)])
    world.run("users", "students")
    gone = next(int(r["lms_id"]) for r in world.rows("buf_users") if r["external_id"] == "P00001")
    with world.ws() as client:
        client.delete_users([gone])
    world.update("buf_students", lambda t: t.c.person_external_id.in_(["P00001", "P00002"]), status="expelled")
    report = world.run("students")
    assert report.outcome == "ok", report.render()
    assert counts(report, "students") == {"suspended": 2, "unchanged": 1}
    assert cohorts(world)["1c-ИС-21"]["members"] == ["user00000"]
    assert {r["sync_status"] for r in world.rows("buf_students")} == {"ok"}


def achievement(person: int, kind: str, ident: str, status: str = "active") -> dict[str, Any]:
    names = {"OLYMP": "Победители олимпиад", "SPORT": "Спортивные достижения"}
    return {"person_external_id": f"P{person:05d}", "type_code": kind, "achievement_id": ident,
            "type_name": names[kind], "title": f"Достижение {ident}", "level": "региональный", "status": status}


def test_achievements_make_a_cohort_per_kind_for_badges(world: World) -> None:
    """Core Moodle has no service to award a badge: a person with an achievement of a kind is a member of that
    kind's cohort (1c-ach-<kind>), which a badge can take as its criterion; the membership is kept while any
    achievement of the kind is active."""
    world.insert("buf_users", people(3))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1"), achievement(0, "OLYMP", "A2"),
                                      achievement(1, "OLYMP", "A3"), achievement(1, "SPORT", "A4"),
                                      achievement(2, "SPORT", "A5", "cancelled")])
    report = world.run("users", "achievements")
    assert report.outcome == "ok", report.render()
    assert cohorts(world) == {
        "1c-ach-OLYMP": {"name": "Победители олимпиад", "members": ["user00000", "user00001"]},
        "1c-ach-SPORT": {"name": "Спортивные достижения", "members": ["user00001"]}}
    world.update("buf_achievements", lambda t: t.c.achievement_id.in_(["A1", "A4"]), status="cancelled")
    report = world.run("users", "achievements")
    assert report.outcome == "ok", report.render()
    assert cohorts(world) == {  # P0 keeps A2; P1 lost their only sports achievement
        "1c-ach-OLYMP": {"name": "Победители олимпиад", "members": ["user00000", "user00001"]},
        "1c-ach-SPORT": {"name": "Спортивные достижения", "members": []}}


def test_an_emptied_cohort_is_deleted_only_when_the_setting_says_so(world: World) -> None:
    from bufsync.config import load_settings
    from tests.integration.reconcile.conftest import TOKEN
    world.insert("buf_users", people(4))
    world.insert("buf_students", [student(0, "ИС-21"), student(1, "ИС-21"), student(2, "ПР-22"),
                                  student(3, "ПР-22")])
    world.run("users", "students")
    world.update("buf_students", lambda t: t.c.group_code == "ИС-21", status="graduated")
    world.run("users", "students")
    assert cohorts(world)["1c-ИС-21"]["members"] == []  # kept by default
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url, "BUFSYNC_MOODLE_URL":
                                        world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN,
                                        "BUFSYNC_MOODLE_COHORTS_DELETE_EMPTY": "true"})
    world.update("buf_students", lambda t: t.c.person_external_id == "P00002", status="expelled")
    world.update("buf_students", lambda t: t.c.person_external_id == "P00003", group_code="ИС-21",
                 group_name="Группа ИС-21")
    report = world.run("users", "students")
    assert report.outcome == "ok", report.render()
    assert cohorts(world) == {"1c-ИС-21": {"name": "Группа ИС-21", "members": ["user00003"]}}  # ПР-22 emptied: gone
    world.update("buf_students", lambda t: t.c.person_external_id == "P00002", status="studying")
    world.run("users", "students")
    assert cohorts(world)["1c-ПР-22"]["members"] == ["user00002"]  # made again when someone joins


def groups_of(world: World, courseid: int) -> dict[str, dict[str, Any]]:
    """idnumber -> {name, in_bufsync_grouping}, read through Web Services."""
    with world.ws() as client:
        groups = client.call("core_group_get_course_groups", {"courseid": courseid})
        groupings = [g for g in client.call("core_group_get_course_groupings", {"courseid": courseid})
                     if g["idnumber"] == "1c-processes"]
    store = world.moodle.site.store  # which groups a grouping holds: no Moodle 4.5 service returns it by id here
    held = {r["groupid"] for g in groupings for r in store.q(
        "SELECT groupid FROM groupings_groups WHERE groupingid = ?", (g["id"],))}
    return {g["idnumber"]: {"name": g["name"], "grouped": g["id"] in held} for g in groups}


def process(ident: str, group: str, course: str = "C-PY", teacher: str | None = "P00000",
            start: str = "2026-09-01", end: str = "2026-12-30") -> dict[str, Any]:
    from datetime import date
    return {"external_id": ident, "group_code": group, "course_external_id": course, "teacher_external_id": teacher,
            "semester": 1, "start_date": date.fromisoformat(start), "end_date": date.fromisoformat(end)}


def test_learning_processes_become_course_groups_in_bufsyncs_grouping(world: World) -> None:
    world.insert("buf_users", people(2))
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"},
                                 {"external_id": "C-DB", "shortname": "db-201", "fullname": "Базы данных"}])
    world.insert("buf_learning_processes", [
        process("LP-1", "ИС-21"), process("LP-2", "ПР-22"), process("LP-3", "ИС-21", course="C-DB"),
        process("LP-4", "ИС-22", teacher="NOBODY"),                  # a teacher not in buf_users
        process("LP-5", "ИС-23", course="NO-SUCH"),                   # a course that does not exist
        process("LP-6", "ИС-24", start="2026-12-31", end="2026-09-01"),  # dates out of order
        process("LP-7", "ИС-21")])                                    # the same group twice in one course
    report = world.run("users", "courses", "learning_processes")
    rows = {r["external_id"]: r for r in world.rows("buf_learning_processes")}
    assert counts(report, "learning_processes") == {"created": 3, "rejected": 4}, report.render()
    assert "Пользователь «NOBODY» не найден(а)" in rows["LP-4"]["sync_error"]
    assert "Курс «NO-SUCH» не найден(а)" in rows["LP-5"]["sync_error"]
    assert "(datesorder)" in rows["LP-6"]["sync_error"]
    assert "уже есть группа с таким именем" in rows["LP-7"]["sync_error"]
    courses = {r["external_id"]: r["lms_id"] for r in world.rows("buf_courses")}
    assert groups_of(world, courses["C-PY"]) == {"LP-1": {"name": "ИС-21", "grouped": True},
                                                 "LP-2": {"name": "ПР-22", "grouped": True}}
    assert groups_of(world, courses["C-DB"]) == {"LP-3": {"name": "ИС-21", "grouped": True}}
    assert rows["LP-1"]["lms_id"] is not None and rows["LP-1"]["sync_status"] == "ok"

    writes = world.writes()
    assert counts(world.run("users", "courses", "learning_processes"), "learning_processes")["unchanged"] == 3
    assert world.writes() == writes
    world.update("buf_learning_processes", lambda t: t.c.external_id == "LP-2", group_code="ПР-22а")
    world.delete("buf_learning_processes", lambda t: t.c.external_id == "LP-7")
    report = world.run("users", "courses", "learning_processes")
    assert counts(report, "learning_processes")["updated"] == 1, report.render()
    assert groups_of(world, courses["C-PY"])["LP-2"] == {"name": "ПР-22а", "grouped": True}


def test_programs_become_categories_under_their_departments(world: World) -> None:
    world.insert("buf_departments", [
        {"external_id": "D-IT", "parent_external_id": None, "name": "Кафедра ИТ", "status": "active"}])
    world.insert("buf_programs", [
        {"external_id": "P-0907", "name": "Информационные системы и программирование", "speciality_code": "09.02.07",
         "department_external_id": "D-IT"},
        {"external_id": "P-TOP", "name": "Программа без подразделения", "speciality_code": None,
         "department_external_id": None},
        {"external_id": "P-BAD", "name": "Программа чужого подразделения", "speciality_code": None,
         "department_external_id": "D-NONE"}])
    report = world.run("departments", "programs")
    assert counts(report, "programs") == {"created": 2, "rejected": 1}, report.render()
    errors = {r["external_id"]: r["sync_error"] for r in world.rows("buf_programs")}
    assert "Подразделение «D-NONE» не найден(а)" in errors["P-BAD"]
    with world.ws() as client:
        categories = {c["idnumber"]: c for c in client.get_categories()}
    assert categories["P-0907"]["name"] == "Информационные системы и программирование"
    assert categories["P-0907"]["parent"] == categories["D-IT"]["id"]
    assert categories["P-TOP"]["parent"] == 0
    world.update("buf_programs", lambda t: t.c.external_id == "P-0907", name="ИСиП")
    assert counts(world.run("departments", "programs"), "programs")["updated"] == 1
    with world.ws() as client:
        assert {c["idnumber"]: c["name"] for c in client.get_categories()}["P-0907"] == "ИСиП"
