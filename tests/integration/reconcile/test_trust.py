"""Issue 11's defects, each as its own regression test: what Moodle holds (read through Web Services)
and what the buffer row says, never only the run's counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.reconcile.conftest import World, people


def counts(report: Any, mapping: str) -> dict[str, int]:
    return next(m.counts for m in report.mappings if m.mapping == mapping)


def row(world: World, table: str, key: str) -> dict[str, Any]:
    return next(r for r in world.rows(table) if r["external_id"] == key)


def person(key: str, login: str, last: str = "Хороший", first: str = "Пётр",
           email: str | None = None) -> dict[str, Any]:
    return {"external_id": key, "username": login, "email": email or f"{key}@example.edu", "last_name": last,
            "first_name": first, "status": "active"}


def test_a_namesake_login_never_takes_over_an_account(world: World) -> None:
    world.insert("buf_users", [person("u-good1", "good1")])
    assert world.run("users").outcome == "ok"
    good = world.ws_user(idnumber="u-good1")
    assert good is not None and good["username"] == "good1"
    world.insert("buf_users", [person("u-namesake", "GOOD1", "Другой", "Человек", "namesake@example.edu")])
    report = world.run("users")
    assert counts(report, "users")["adopted"] == 0 and counts(report, "users")["disputed"] == 1
    assert report.outcome == "rejected"
    after = world.ws_user(username="good1")
    assert after is not None and after["id"] == good["id"]
    assert (after["idnumber"], after["email"], after["lastname"]) == ("u-good1", "u-good1@example.edu", "Хороший")
    assert world.ws_user(idnumber="u-namesake") is None
    namesake = row(world, "buf_users", "u-namesake")
    assert namesake["sync_status"] == "error" and namesake["lms_id"] is None
    assert "u-good1" in namesake["sync_error"] and str(good["id"]) in namesake["sync_error"]
    assert "(disputed)" in namesake["sync_error"]
    assert row(world, "buf_users", "u-good1")["lms_id"] == good["id"]
    # --full retries the failed row: still no takeover, however often
    for _ in range(2):
        world.run("users", full=True)
        after = world.ws_user(username="good1")
        assert (after["idnumber"], after["lastname"]) == ("u-good1", "Хороший")
        assert row(world, "buf_users", "u-namesake")["lms_id"] is None


def test_two_new_logins_differing_in_case_never_share_an_account(world: World) -> None:
    world.insert("buf_users", [person("u-a", "twin"), person("u-b", "TWIN", "Второй", email="b@example.edu")])
    world.run("users")
    world.run("users", full=True)
    rows = {r["external_id"]: r for r in world.rows("buf_users")}
    linked = [r for r in rows.values() if r["lms_id"] is not None]
    assert len(linked) == 1  # one of them has the account, the other is refused with the reason
    refused = next(r for r in rows.values() if r["lms_id"] is None)
    assert refused["sync_status"] == "error" and refused["sync_error"]
    account = world.ws_user(username="twin")
    assert account["idnumber"] == linked[0]["external_id"] and account["id"] == linked[0]["lms_id"]


def test_an_account_whose_idnumber_belongs_to_someone_else_is_not_adopted(world: World) -> None:
    """An account made by hand with another person's idnumber: the login matches, the idnumber contradicts."""
    with world.ws() as client:
        made = client.create_users([{"username": "hand", "firstname": "Руками", "lastname": "Созданный",
                                     "email": "hand@example.edu", "idnumber": "someone-else",
                                     "password": "Aa-12345678"}])
    world.insert("buf_users", [person("u-hand", "hand")])
    report = world.run("users")
    assert counts(report, "users")["disputed"] == 1
    account = world.ws_user(username="hand")
    assert account["id"] == made[0].remote_id and account["idnumber"] == "someone-else"
    assert account["lastname"] == "Созданный"
    assert "someone-else" in row(world, "buf_users", "u-hand")["sync_error"]
    # an account made by hand with no idnumber is adopted: nothing contradicts it
    with world.ws() as client:
        client.create_users([{"username": "bare", "firstname": "Без", "lastname": "Номера",
                              "email": "bare@example.edu", "password": "Aa-12345678"}])
    world.insert("buf_users", [person("u-bare", "bare")])
    assert counts(world.run("users"), "users")["adopted"] == 1
    assert world.ws_user(username="bare")["idnumber"] == "u-bare"


def test_a_course_with_another_idnumber_is_not_adopted_by_shortname(world: World) -> None:
    world.insert("buf_courses", [{"external_id": "C-1", "shortname": "math", "fullname": "Математика"}])
    world.run("courses")
    world.insert("buf_courses", [{"external_id": "C-2", "shortname": "math", "fullname": "Другая математика"}])
    report = world.run("courses")
    assert counts(report, "courses")["disputed"] == 1 and counts(report, "courses")["adopted"] == 0
    with world.ws() as client:
        courses = client.get_courses_by_field("shortname", "math")
    assert [(c["idnumber"], c["fullname"]) for c in courses] == [("C-1", "Математика")]
    refused = row(world, "buf_courses", "C-2")
    assert refused["sync_status"] == "error" and "C-1" in refused["sync_error"] and refused["lms_id"] is None


@pytest.mark.parametrize("how", ["one", "half_reload"])
def test_a_person_who_comes_back_is_active_in_moodle(world: World, how: str) -> None:
    world.insert("buf_users", people(20))
    world.run("users")
    if how == "one":
        gone = ["P00007"]
        world.delete("buf_users", lambda t: t.c.external_id == "P00007")
        world.run("users")
    else:  # a reload written in two halves: the first run sees half the table, the next the rest
        gone = [f"P{i:05d}" for i in range(10, 20)]
        world.delete("buf_users")
        world.insert("buf_users", people(10))
        world.run("users", allow_removals=10)
    for key in gone:
        assert world.ws_user(idnumber=key)["suspended"] is True
    world.insert("buf_users", [p for p in people(20) if p["external_id"] in gone])
    report = world.run("users")
    assert counts(report, "users")["reactivated"] == len(gone)
    for key in gone:
        assert world.ws_user(idnumber=key)["suspended"] is False, key
        assert row(world, "buf_users", key)["sync_status"] == "ok"
    # and a --full right after finds nothing to repair
    assert counts(world.run("users", full=True), "users")["repaired"] == 0


def enrol_rows(world: World, n: int = 12) -> None:
    world.insert("buf_users", people(n))
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"}])
    world.insert("buf_subscriptions", [{"user_external_id": f"P{i:05d}", "course_external_id": "C-PY",
                                        "role": "student", "status": "active"} for i in range(n)])
    assert world.run().outcome == "ok"


def ids(world: World, user: str) -> tuple[int, int]:
    return world.ws_user(idnumber=user)["id"], next(
        r["lms_id"] for r in world.rows("buf_courses") if r["external_id"] == "C-PY")


def sub(world: World, user: str, role: str) -> dict[str, Any]:
    return next(r for r in world.rows("buf_subscriptions")
                if r["user_external_id"] == user and r["role"] == role)


def test_a_role_changed_by_delete_and_insert_leaves_only_the_new_role(world: World) -> None:
    enrol_rows(world)
    world.delete("buf_subscriptions", lambda t: (t.c.user_external_id == "P00001") & (t.c.role == "student"))
    world.insert("buf_subscriptions", [{"user_external_id": "P00001", "course_external_id": "C-PY",
                                        "role": "teacher", "status": "active"}])
    report = world.run("subscriptions")
    assert report.outcome == "ok"
    userid, courseid = ids(world, "P00001")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["teacher"], "active": True}
    assert sub(world, "P00001", "teacher")["sync_status"] == "ok"
    # the others are untouched
    other, _ = ids(world, "P00002")
    assert world.ws_enrolled(courseid)[other] == {"roles": ["student"], "active": True}


def test_suspending_one_role_keeps_the_other_roles_enrolment_active(world: World) -> None:
    enrol_rows(world)
    world.insert("buf_subscriptions", [{"user_external_id": "P00003", "course_external_id": "C-PY",
                                        "role": "editingteacher", "status": "active"}])
    world.run("subscriptions")
    userid, courseid = ids(world, "P00003")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["editingteacher", "student"], "active": True}
    world.update("buf_subscriptions", lambda t: (t.c.user_external_id == "P00003") & (t.c.role == "student"),
                 status="suspended")
    assert world.run("subscriptions").outcome == "ok"
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["editingteacher"], "active": True}
    assert sub(world, "P00003", "student")["sync_status"] == "ok"
    # the teacher row goes too: the enrolment is suspended, keeping the role it had
    world.update("buf_subscriptions", lambda t: (t.c.user_external_id == "P00003") & (t.c.role == "editingteacher"),
                 status="suspended")
    world.run("subscriptions")
    assert world.ws_enrolled(courseid)[userid]["active"] is False
    # the student comes back: active again, as a student only
    world.update("buf_subscriptions", lambda t: (t.c.user_external_id == "P00003") & (t.c.role == "student"),
                 status="active")
    world.run("subscriptions")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["student"], "active": True}
    assert counts(world.run("subscriptions", full=True), "subscriptions")["repaired"] == 0


def test_the_enrolment_spans_the_widest_dates_of_its_rows(world: World) -> None:
    from datetime import datetime
    enrol_rows(world)
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00004",
                 time_start=datetime(2026, 9, 1), time_end=datetime(2027, 1, 31))
    world.insert("buf_subscriptions", [{"user_external_id": "P00004", "course_external_id": "C-PY",
                                        "role": "teacher", "status": "active",
                                        "time_start": datetime(2026, 10, 1), "time_end": datetime(2027, 6, 30)}])
    world.run("subscriptions")
    userid, courseid = ids(world, "P00004")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["student", "teacher"], "active": True}
    # no Web Service reads an enrolment's dates: the sandbox's table is the only witness
    enrolment = next(e for e in world.enrolments() if e["userid"] == userid)
    zone = world.loaded.settings.timezone
    from zoneinfo import ZoneInfo
    assert enrolment["timestart"] == int(datetime(2026, 9, 1, tzinfo=ZoneInfo(zone)).timestamp())
    assert enrolment["timeend"] == int(datetime(2027, 6, 30, tzinfo=ZoneInfo(zone)).timestamp())
    # one row changes its start: the other's wider window still holds
    world.update("buf_subscriptions", lambda t: (t.c.user_external_id == "P00004") & (t.c.role == "teacher"),
                 time_start=datetime(2026, 8, 1))
    world.run("subscriptions")
    enrolment = next(e for e in world.enrolments() if e["userid"] == userid)
    assert enrolment["timestart"] == int(datetime(2026, 8, 1, tzinfo=ZoneInfo(zone)).timestamp())
    assert enrolment["timeend"] == int(datetime(2027, 6, 30, tzinfo=ZoneInfo(zone)).timestamp())


def test_an_enrolment_whose_rows_all_vanish_is_suspended_and_returns_active(world: World) -> None:
    enrol_rows(world)
    world.delete("buf_subscriptions", lambda t: t.c.user_external_id == "P00005")
    world.run("subscriptions")
    userid, courseid = ids(world, "P00005")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["student"], "active": False}
    world.insert("buf_subscriptions", [{"user_external_id": "P00005", "course_external_id": "C-PY",
                                        "role": "student", "status": "active"}])
    world.run("subscriptions")
    assert world.ws_enrolled(courseid)[userid] == {"roles": ["student"], "active": True}
    assert sub(world, "P00005", "student")["sync_status"] == "ok"


def test_a_department_cycle_is_rejected_counted_and_printed_on_the_run_that_finds_it(world: World) -> None:
    world.insert("buf_departments", [
        {"external_id": "ROOT", "parent_external_id": None, "name": "Колледж", "status": "active"},
        {"external_id": "d-a", "parent_external_id": "d-b", "name": "А", "status": "active"},
        {"external_id": "d-b", "parent_external_id": "d-a", "name": "Б", "status": "active"},
        {"external_id": "d-self", "parent_external_id": "d-self", "name": "Сам себе", "status": "active"}])
    report = world.run("departments")
    assert report.outcome == "rejected"
    assert counts(report, "departments")["rejected"] == 3 and counts(report, "departments")["created"] == 1
    printed = report.render()
    assert "d-a → d-b → d-a" in printed or "d-b → d-a → d-b" in printed
    assert "d-self → d-self" in printed
    rows = {r["external_id"]: r for r in world.rows("buf_departments")}
    assert rows["d-self"]["sync_status"] == "error" and "(parentcycle)" in rows["d-self"]["sync_error"]
    with world.ws() as client:
        names = {c["name"] for c in client.get_categories()}
    assert "Колледж" in names and not names & {"А", "Б", "Сам себе"}


def test_values_outside_a_closed_set_are_rejected_alone_with_the_allowed_values(world: World) -> None:
    rows = people(6)
    rows[1]["status"], rows[2]["status"], rows[3]["status"] = "blocked", "Active", ""
    world.insert("buf_users", rows)
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"}])
    world.insert("buf_subscriptions", [
        {"user_external_id": "P00000", "course_external_id": "C-PY", "role": "student", "status": "deleted"},
        {"user_external_id": "P00004", "course_external_id": "C-PY", "role": "student", "status": "active"}])
    world.insert("buf_departments", [
        {"external_id": "D-OK", "parent_external_id": None, "name": "Открытое", "status": "active"},
        {"external_id": "D-DEL", "parent_external_id": None, "name": "Удалённое", "status": "deleted"}])
    report = world.run()
    assert report.outcome == "rejected"
    assert counts(report, "users")["rejected"] == 3 and counts(report, "users")["created"] == 3
    for key, value in (("P00001", "«blocked»"), ("P00002", "«Active»"), ("P00003", "пустое значение")):
        assert world.ws_user(idnumber=key) is None
        reason = row(world, "buf_users", key)["sync_error"]
        assert value in reason and "допустимо: active, suspended" in reason and "(badvalue)" in reason
    _, courseid = ids(world, "P00004")
    enrolled = world.ws_enrolled(courseid)
    assert list(enrolled.values()) == [{"roles": ["student"], "active": True}]
    assert world.ws_user(idnumber="P00000")["id"] not in enrolled
    assert "«deleted»" in sub(world, "P00000", "student")["sync_error"]
    with world.ws() as client:
        names = {c["name"] for c in client.get_categories()}
    assert "Открытое" in names and "Удалённое" not in names
    assert "допустимо: active, closed" in row(world, "buf_departments", "D-DEL")["sync_error"]


def test_an_enrolment_ending_before_it_starts_is_rejected(world: World) -> None:
    from datetime import datetime
    enrol_rows(world)
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00006",
                 time_start=datetime(2026, 9, 1), time_end=datetime(2026, 8, 1))
    world.run("subscriptions")
    userid, courseid = ids(world, "P00006")
    assert "(timeendbeforestart)" in sub(world, "P00006", "student")["sync_error"]
    assert next(e for e in world.enrolments() if e["userid"] == userid)["timeend"] == 0  # Moodle untouched


def test_a_refused_run_has_changed_nothing(world: World) -> None:
    from bufsync.runner import GuardRefused
    enrol_rows(world, 20)
    world.update("buf_users", lambda t: t.c.external_id == "P00001", last_name="Переименованный")
    world.delete("buf_subscriptions", lambda t: t.c.user_external_id.in_([f"P{i:05d}" for i in range(3)]))
    with pytest.raises(GuardRefused) as refused:
        world.run()
    assert "3 of 20 linked records" in str(refused.value)
    assert world.ws_user(idnumber="P00001")["lastname"] == "Иванов1"
    assert row(world, "buf_users", "P00001")["sync_status"] == "ok"
    assert world.rows("sync_runs")[-1]["outcome"] == "refused"
    _, courseid = ids(world, "P00001")
    assert all(e["active"] for e in world.ws_enrolled(courseid).values())


def test_a_dry_run_on_a_first_load_plans_exactly_what_the_run_then_does(world: World) -> None:
    rows = people(8)
    rows[1]["username"], rows[2]["username"] = "Петрова", ""
    world.insert("buf_users", rows)
    world.insert("buf_departments", [
        {"external_id": "ROOT", "parent_external_id": None, "name": "Колледж", "status": "active"},
        {"external_id": "F-IT", "parent_external_id": "ROOT", "name": "ИТ", "status": "active"},
        {"external_id": "K-PO", "parent_external_id": "F-IT", "name": "Кафедра ПО", "status": "active"},
        {"external_id": "LOOP", "parent_external_id": "LOOP", "name": "Петля", "status": "active"}])
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python",
                                  "category_external_id": "K-PO"}])
    world.insert("buf_subscriptions", [{"user_external_id": f"P{i:05d}", "course_external_id": "C-PY",
                                        "role": "student", "status": "active"} for i in range(8)])
    dry = world.run(dry_run=True)
    assert world.writes() == 0 and world.ws_user(idnumber="P00000") is None
    real = world.run()
    for name in ("departments", "users", "courses", "subscriptions"):
        planned, done = counts(dry, name), counts(real, name)
        assert planned == done, (name, planned, done)
    assert counts(real, "courses")["created"] == 1 and counts(real, "users")["rejected"] == 2
    assert counts(real, "departments")["rejected"] == 1
    dry_reasons = {(m.mapping, e["key"]): e["reason"] for m in dry.mappings for e in m.errors}
    real_reasons = {(m.mapping, e["key"]): e["reason"] for m in real.mappings for e in m.errors}
    assert dry_reasons == real_reasons


def test_a_course_template_that_is_not_applied_is_said_on_the_row(world: World) -> None:
    world.insert("buf_courses", [
        {"external_id": "C-T", "shortname": "tmpl", "fullname": "С образцом", "template_shortname": "base-101"},
        {"external_id": "C-P", "shortname": "plain", "fullname": "Без образца", "template_shortname": None}])
    report = world.run("courses")
    assert counts(report, "courses")["created"] == 2 and counts(report, "courses")["warnings"] == 1
    assert "base-101" in report.render()
    with world.ws() as client:
        assert client.get_courses_by_field("idnumber", "C-T")[0]["fullname"] == "С образцом"
    templated = row(world, "buf_courses", "C-T")
    assert templated["sync_status"] == "warning" and "(templatenotapplied)" in templated["sync_error"]
    assert templated["lms_id"] is not None
    assert row(world, "buf_courses", "C-P")["sync_status"] == "ok"
    writes = world.writes()
    world.run("courses")
    assert world.writes() == writes and row(world, "buf_courses", "C-T")["sync_status"] == "warning"


def test_a_full_run_right_after_a_first_load_repairs_and_writes_nothing(world: World) -> None:
    enrol_rows(world)
    world.insert("buf_departments", [{"external_id": "D1", "parent_external_id": None, "name": "Отдел",
                                      "status": "active"}])
    world.insert("buf_courses", [{"external_id": "C-ND", "shortname": "nodates", "fullname": "Без дат",
                                  "category_external_id": "D1"}])
    world.run()
    writes = world.writes()
    report = world.run(full=True)
    assert all(m.counts["repaired"] == 0 for m in report.mappings), report.render()
    assert world.writes() == writes


def test_each_mapping_s_moodle_calls_and_seconds_are_kept_in_sync_runs(world: World) -> None:
    import json
    enrol_rows(world, 5)
    before = sum(world.moodle.stats()["calls"].values())
    world.update("buf_users", lambda t: t.c.external_id == "P00001", last_name="Новая")
    report = world.run()
    seen = sum(world.moodle.stats()["calls"].values()) - before  # what the sandbox answered in this run
    stored = json.loads(world.rows("sync_runs")[-1]["counts"])
    assert stored["users"]["moodle_calls"] >= 1 and stored["users"]["seconds"] > 0
    # the site's info, asked before the run's first call, is counted in the mapping that made it
    assert sum(m["moodle_calls"] for m in stored.values()) == seen == report.moodle_calls
    assert "calls" in report.render().splitlines()[1]
