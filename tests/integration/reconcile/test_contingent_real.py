"""The contingent as cohorts against a real Moodle 4.5 (../shared/moodle-real/up), where Moodle's own
behaviour decides: cohorts created, renamed and left through its Web Services, its warnings on members,
a person deleted in Moodle (a removal of their membership aborts Moodle's whole call). What Moodle holds is
read back through Web Services. Skipped without BUFSYNC_TEST_MOODLE_URL / _TOKEN (CI has no Moodle)."""

from __future__ import annotations

from typing import Any

from tests.integration.reconcile import test_trust_real as real
from tests.integration.reconcile.test_trust_real import RealWorld, person

pytestmark = real.pytestmark
world = real.world  # the real Moodle's buffer fixture, with its prefix and clean-up


def cohorts(world: RealWorld, prefix: str) -> dict[str, dict[str, Any]]:
    with world.ws() as client:
        found = [c for c in client.call("core_cohort_get_cohorts", {}) if c["idnumber"].startswith(prefix)]
        ids = [int(c["id"]) for c in found]
        members = {int(m["cohortid"]): m["userids"]
                   for m in client.call("core_cohort_get_cohort_members", {"cohortids": ids})} if ids else {}
        users = {int(u["id"]): u["username"] for u in client.get_users_by_field(
            "id", sorted({u for ms in members.values() for u in ms}))} if members else {}
    return {c["idnumber"]: {"name": c["name"], "members": sorted(users.get(u, str(u)) for u in members[int(c["id"])])}
            for c in found}


def test_groups_become_cohorts_on_a_real_moodle(world: RealWorld) -> None:
    people = [person(world, f"s{i}") for i in range(5)]
    world.insert("buf_users", people)
    group_a, group_b = world.key("A"), world.key("B")

    def student(i: int, group: str, status: str = "studying", name: str | None = None) -> dict[str, Any]:
        return {"person_external_id": world.key(f"s{i}"), "record_book": f"RB{i}", "group_code": group,
                "group_name": name or f"Группа {group}", "status": status}

    world.insert("buf_students", [student(0, group_a), student(1, group_a), student(2, group_a),
                                  student(3, group_b), student(4, group_b, "academic_leave")])
    report = world.run("users", "students")
    assert report.outcome == "ok", report.render()
    login = world.login
    prefix = "1c-" + world.tag
    assert cohorts(world, prefix) == {
        f"1c-{group_a}": {"name": f"Группа {group_a}", "members": [login("s0"), login("s1"), login("s2")]},
        f"1c-{group_b}": {"name": f"Группа {group_b}", "members": [login("s3")]}}
    assert {r["sync_status"] for r in world.rows("buf_students")} == {"ok"}

    # Moodle deletes s2 by hand (it takes their memberships with it); 1C then expels s2, moves s1, brings
    # s4 back from leave and renames group A
    with world.ws() as client:
        s2 = next(int(r["lms_id"]) for r in world.rows("buf_users") if r["external_id"] == world.key("s2"))
        client.delete_users([s2])
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s2"), status="expelled")
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s1"), group_code=group_b,
                 group_name=f"Группа {group_b}")
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s4"), status="studying")
    world.update("buf_students", lambda t: t.c.group_code == group_a, group_name="Переименована")
    report = world.run("students")
    assert report.outcome == "ok", report.render()
    assert cohorts(world, prefix) == {
        f"1c-{group_a}": {"name": "Переименована", "members": [login("s0")]},
        f"1c-{group_b}": {"name": f"Группа {group_b}", "members": sorted([login("s1"), login("s3"), login("s4")])}}
    rows = {r["person_external_id"]: r for r in world.rows("buf_students")}
    assert rows[world.key("s2")]["sync_status"] == "ok"  # their membership is gone: leaving it is done
    assert counts_of(report) == {"updated": 2, "suspended": 1, "reactivated": 1, "unchanged": 1}


def counts_of(report: Any) -> dict[str, int]:
    return {k: v for k, v in next(m.counts for m in report.mappings if m.mapping == "students").items() if v}


def test_an_emptied_cohort_is_deleted_when_the_setting_says_so(world: RealWorld) -> None:
    from bufsync.config import load_settings
    from tests.integration.reconcile.test_trust_real import TOKEN, URL
    with world.ws() as client:
        if client.missing_functions(["core_cohort_delete_cohorts"]):
            import pytest
            pytest.skip("the real Moodle's service lacks core_cohort_delete_cohorts (moodle.cohorts.delete_empty)")
    world.insert("buf_users", [person(world, "e0"), person(world, "e1")])
    group = world.key("E")
    world.insert("buf_students", [{"person_external_id": world.key(f"e{i}"), "record_book": f"RB{i}",
                                   "group_code": group, "group_name": "Группа", "status": "studying"}
                                  for i in range(2)])
    world.run("users", "students")
    assert cohorts(world, f"1c-{group}")[f"1c-{group}"]["members"] == sorted([world.login("e0"), world.login("e1")])
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url, "BUFSYNC_MOODLE_URL": URL,
                                        "BUFSYNC_MOODLE_TOKEN": TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "120",
                                        "BUFSYNC_MOODLE_COHORTS_DELETE_EMPTY": "true"})
    world.update("buf_students", lambda t: t.c.group_code == group, status="graduated")
    report = world.run("students")
    assert report.outcome == "ok", report.render()
    assert cohorts(world, f"1c-{group}") == {}


def test_learning_processes_become_course_groups_on_a_real_moodle(world: RealWorld) -> None:
    from datetime import date
    with world.ws() as client:
        missing = client.missing_functions(["core_group_create_groupings", "core_group_get_course_groupings",
                                            "core_group_assign_grouping", "core_group_update_groups"])
    if missing:
        import pytest
        pytest.skip(f"the real Moodle's service lacks {', '.join(missing)}: add them to the bufsync service")
    course = world.key("C")
    world.insert("buf_users", [person(world, "t0")])
    world.insert("buf_courses", [{"external_id": course, "shortname": world.login("c"), "fullname": "Дисциплина"}])

    def process(ident: str, group: str) -> dict[str, Any]:
        return {"external_id": world.key(ident), "group_code": group, "course_external_id": course,
                "teacher_external_id": world.key("t0"), "semester": 1, "start_date": date(2026, 9, 1),
                "end_date": date(2026, 12, 30)}

    world.insert("buf_learning_processes", [process("LP1", "ИС-21"), process("LP2", "ПР-22"),
                                            process("LP3", "ИС-21")])  # the same name twice: Moodle refuses
    report = world.run("users", "courses", "learning_processes")
    rows = {r["external_id"]: r for r in world.rows("buf_learning_processes")}
    assert [rows[world.key(k)]["sync_status"] for k in ("LP1", "LP2", "LP3")] == ["ok", "ok", "error"], report.render()
    assert "уже есть группа с таким именем" in rows[world.key("LP3")]["sync_error"]
    courseid = next(int(r["lms_id"]) for r in world.rows("buf_courses") if r["external_id"] == course)
    with world.ws() as client:
        groups = {g["idnumber"]: g["name"] for g in client.call("core_group_get_course_groups", {"courseid": courseid})}
        groupings = client.call("core_group_get_course_groupings", {"courseid": courseid})
    assert groups == {world.key("LP1"): "ИС-21", world.key("LP2"): "ПР-22"}
    assert [(g["idnumber"], g["name"]) for g in groupings] == [("1c-processes", "Учебные процессы (1С)")]
    world.update("buf_learning_processes", lambda t: t.c.external_id == world.key("LP2"), group_code="ПР-22а")
    report = world.run("users", "courses", "learning_processes")
    assert report.outcome == "rejected", report.render()  # LP3 still refused, as it should be
    with world.ws() as client:
        groups = {g["idnumber"]: g["name"] for g in client.call("core_group_get_course_groups", {"courseid": courseid})}
    assert groups[world.key("LP2")] == "ПР-22а"


def test_learning_processes_enrol_their_group_into_its_course_group_on_a_real_moodle(world: RealWorld) -> None:
    """Moodle's own rules decide here: only enrolled users may be group members (the enrolment goes first),
    a suspended enrolment keeps its role, removing a member who is not one is fine."""
    from datetime import date
    with world.ws() as client:
        missing = client.missing_functions(["core_group_create_groupings", "core_group_get_course_groupings",
                                            "core_group_assign_grouping", "core_group_delete_group_members",
                                            "core_group_get_group_members", "core_role_unassign_roles"])
    if missing:
        import pytest
        pytest.skip(f"the real Moodle's service lacks {', '.join(missing)}: add them to the bufsync service")
    course, group_a, group_b = world.key("C"), world.key("A"), world.key("B")
    names = ["t0", "s0", "s1", "s2", "s3"]
    world.insert("buf_users", [person(world, n) for n in names])
    world.insert("buf_courses", [{"external_id": course, "shortname": world.login("c"), "fullname": "Дисциплина"}])
    world.insert("buf_students", [{"person_external_id": world.key(n), "record_book": f"RB-{n}", "group_name": "Г",
                                   "group_code": group_a if n != "s3" else group_b, "status": "studying"}
                                  for n in names[1:]])
    world.insert("buf_learning_processes", [
        {"external_id": world.key(ident), "group_code": group, "course_external_id": course,
         "teacher_external_id": world.key("t0"), "semester": 1, "start_date": date(2026, 9, 1),
         "end_date": date(2026, 12, 30)} for ident, group in (("LP1", group_a), ("LP2", group_b))])
    world.insert("buf_subscriptions", [{"user_external_id": world.key("s0"), "course_external_id": course,
                                        "role": "student", "status": "active"}])
    every = ("users", "courses", "students", "learning_processes", "subscriptions", "process_enrolments")
    report = world.run(*every)
    assert report.outcome == "ok", report.render()
    courseid = next(int(r["lms_id"]) for r in world.rows("buf_courses") if r["external_id"] == course)
    login = world.login

    def moodle() -> tuple[dict[str, tuple[list[str], bool]], dict[str, list[str]]]:
        with world.ws() as client:
            everyone = client.get_enrolled_users(courseid, userfields="id,username,roles")
            active = {int(u["id"]) for u in client.get_enrolled_users(courseid, onlyactive=True, userfields="id")}
            groups = client.call("core_group_get_course_groups", {"courseid": courseid})
            read = client.get_group_members([int(g["id"]) for g in groups])
            members = {int(g["groupid"]): g["userids"] for g in read}
        by_id = {int(u["id"]): u["username"] for u in everyone}
        return ({u["username"]: (sorted(r["shortname"] for r in u["roles"]), int(u["id"]) in active) for u in everyone},
                {g["idnumber"]: sorted(by_id[int(u)] for u in members[int(g["id"])]) for g in groups})

    enrolled, groups = moodle()
    assert enrolled == {login("t0"): (["editingteacher"], True), login("s0"): (["student"], True),
                        login("s1"): (["student"], True), login("s2"): (["student"], True),
                        login("s3"): (["student"], True)}
    assert groups == {world.key("LP1"): sorted([login("t0"), login("s0"), login("s1"), login("s2")]),
                      world.key("LP2"): sorted([login("t0"), login("s3")])}
    assert {r["sync_status"] for r in world.rows("buf_process_enrolments")
            if r["process_external_id"].startswith(world.tag)} == {"ok"}

    # s1 moves to group B; s0 is expelled but keeps their own subscription
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s1"), group_code=group_b)
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s0"), status="expelled")
    report = world.run(*every)
    assert report.outcome == "ok", report.render()
    enrolled, groups = moodle()
    assert enrolled[login("s0")] == (["student"], True) and enrolled[login("s1")] == (["student"], True)
    assert groups == {world.key("LP1"): sorted([login("t0"), login("s2")]),
                      world.key("LP2"): sorted([login("t0"), login("s1"), login("s3")])}
    # s2 is expelled too: nothing else asks for their enrolment, so it is suspended (never unenrolled)
    world.update("buf_students", lambda t: t.c.person_external_id == world.key("s2"), status="expelled")
    report = world.run(*every)
    assert report.outcome == "ok", report.render()
    enrolled, groups = moodle()
    assert enrolled[login("s2")] == (["student"], False)
    assert groups[world.key("LP1")] == [login("t0")]
