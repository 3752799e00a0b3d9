"""Grades back to 1C, end to end on SQLite and PostgreSQL against the sandbox Moodle over HTTP: what Moodle's
user report says lands in buf_grades, a row changes only when its value does (updated_at then, and only then),
a grade gone from Moodle leaves its row marked, never deleted, and a suspended student's grades stay."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bufsync.reconcile.guards import GuardRefused
from tests.integration.reconcile.conftest import TOKEN, World, people
from tests.integration.reconcile.test_contingent import counts

LONG_AGO = datetime(2025, 1, 1)


def grades(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    """(person, item) -> the row of buf_grades for course C-PY."""
    return {(r["user_external_id"], r["item"]): r for r in world.rows("buf_grades")
            if r["course_external_id"] == "C-PY"}


def course_id(world: World) -> int:
    """C-PY's id in Moodle, as the courses mapping linked it."""
    return next(int(r["lms_id"]) for r in world.rows("buf_courses") if r["external_id"] == "C-PY")


def track_completion(world: World) -> None:
    """C-PY tracks completion, self completion its one criterion (as the site's teacher sets it; it clears any
    completion recorded before)."""
    world.moodle.site.admin("set_completion_criteria", {"courseid": course_id(world), "criteria": [{"type": "self"}],
                                                        "enable": True})


def complete(world: World, username: str, at: int) -> None:
    """The student marks the course done at `at`; Moodle's aggregation completes it then."""
    world.moodle.site.admin("mark_completion", {"courseid": course_id(world), "username": username,
                                                "criteria": ["self"], "timecompleted": at, "aggregate": True})


def moodle_report(world: World) -> dict[tuple[str, str], Any]:
    """(person idnumber, item) -> graderaw, as Moodle's user report answers through Web Services."""
    courseid = course_id(world)
    with world.ws() as client:
        usergrades = client.grade_items(courseid)
    return {(u["useridnumber"], "course" if g["itemtype"] == "course" else g["idnumber"]): g["graderaw"]
            for u in usergrades for g in u["gradeitems"] if g["itemtype"] == "course" or g.get("idnumber")}


@pytest.fixture
def graded(world: World) -> World:
    """Four students in C-PY; an assignment ESSAY1 and a manual item EXAM1 (100 each); P0 has both graded,
    P1 the essay."""
    world.insert("buf_users", people(4))
    world.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python"}])
    world.insert("buf_subscriptions", [{"user_external_id": f"P{i:05d}", "course_external_id": "C-PY",
                                        "role": "student", "status": "active"} for i in range(4)])
    assert world.run("users", "courses", "subscriptions").outcome == "ok"
    courseid = course_id(world)
    site = world.moodle.site
    site.admin("create_assignment", {"courseid": courseid, "name": "Эссе", "idnumber": "ESSAY1"})
    site.admin("create_grade_item", {"courseid": courseid, "itemname": "Экзамен", "idnumber": "EXAM1",
                                     "gradepass": 60})
    for username, item, grade in (("user00000", "ESSAY1", 87.5), ("user00000", "EXAM1", 92),
                                  ("user00001", "ESSAY1", 64)):
        site.admin("set_grade", {"courseid": courseid, "idnumber": item, "username": username, "grade": grade})
    site.admin("regrade_course", {"courseid": courseid})
    return world


def test_grades_land_as_moodle_reports_them_and_change_only_with_a_value(graded: World) -> None:
    world = graded
    report = world.run("grades")
    assert report.outcome == "ok", report.render()
    assert counts(report, "grades") == {"created": 12}  # 4 students x (course total, ESSAY1, EXAM1)
    rows = grades(world)
    assert {key: row["grade"] for key, row in rows.items()} == {
        key: None if value is None else Decimal(str(value)).quantize(Decimal("0.00001"))
        for key, value in moodle_report(world).items()}
    total = rows[("P00000", "course")]
    assert (total["grade"], total["grade_max"], total["percent"]) == (Decimal("179.5"), Decimal("200"),
                                                                      Decimal("89.75"))
    assert rows[("P00000", "EXAM1")]["graded_at"] is not None and rows[("P00002", "EXAM1")]["grade"] is None
    # passed: against the item's pass grade (EXAM1: 60); no pass grade or no grade: unknown
    assert [rows[key]["passed"] for key in (("P00000", "EXAM1"), ("P00000", "ESSAY1"), ("P00002", "EXAM1"))] == [
        True, None, None]
    assert all(r["removed_at"] is None for r in rows.values())

    stamps = {key: row["updated_at"] for key, row in rows.items()}
    report = world.run("grades")
    assert counts(report, "grades") == {"unchanged": 12}
    assert {key: row["updated_at"] for key, row in grades(world).items()} == stamps  # not a single row written

    # P1 is examined: their EXAM1 row and course total change, and only they (the stamps are put back a
    # year first, so the test does not depend on the runs falling in different seconds)
    world.update("buf_grades", lambda t: t.c.item != "", updated_at=LONG_AGO)
    courseid = course_id(world)
    world.moodle.site.admin("set_grade", {"courseid": courseid, "idnumber": "EXAM1", "username": "user00001",
                                          "grade": 70})
    report = world.run("grades")
    assert counts(report, "grades") == {"updated": 2, "unchanged": 10}, report.render()
    rows = grades(world)
    assert rows[("P00001", "EXAM1")]["grade"] == Decimal("70") and rows[("P00001", "course")]["grade"] == Decimal("134")
    moved = {key for key, row in rows.items() if row["updated_at"] != LONG_AGO}
    assert moved == {("P00001", "EXAM1"), ("P00001", "course")}


def test_a_scale_and_letters_come_as_words(graded: World) -> None:
    """A scale item gives its word and the course total shown as letters gives the letter, with the pass grade's
    verdict; the number stays the grade (a scale's position)."""
    world = graded
    courseid = course_id(world)
    site = world.moodle.site
    scale = site.admin("create_scale", {"name": "Пятибалльная", "courseid": courseid,
                                        "scale": "неудовлетворительно,удовлетворительно,хорошо,отлично"})
    site.admin("create_grade_item", {"courseid": courseid, "itemname": "Экзамен по шкале", "idnumber": "FINAL",
                                     "gradetype": 2, "scaleid": scale["scaleid"], "gradepass": 2})
    site.admin("set_grade", {"courseid": courseid, "idnumber": "FINAL", "username": "user00000", "grade": 4})
    site.admin("set_grade", {"courseid": courseid, "idnumber": "FINAL", "username": "user00001", "grade": 1})
    site.admin("set_grade_letters", {"courseid": courseid, "letters": {"85": "отлично", "70": "хорошо",
                                                                       "50": "удовлетворительно",
                                                                       "0": "неудовлетворительно"}})
    site.admin("update_grade_item", {"courseid": courseid, "course_total": True, "display": 3})  # letter
    report = world.run("grades")
    assert report.outcome == "ok", report.render()
    rows = grades(world)
    final = rows[("P00000", "FINAL")], rows[("P00001", "FINAL")]
    assert [(r["grade"], r["grade_text"], r["passed"]) for r in final] == [
        (Decimal("4"), "отлично", True), (Decimal("1"), "неудовлетворительно", False)]
    assert rows[("P00000", "ESSAY1")]["grade_text"] is None  # a number is not a word
    total = rows[("P00000", "course")]
    assert total["grade_text"] in ("отлично", "хорошо", "удовлетворительно", "неудовлетворительно"), total


def test_an_overridden_total_is_what_1c_gets(graded: World) -> None:
    world = graded
    world.run("grades")
    courseid = course_id(world)
    world.moodle.site.admin("set_grade", {"courseid": courseid, "course_total": True, "username": "user00002",
                                          "grade": 150, "override": True})
    report = world.run("grades")
    assert counts(report, "grades") == {"updated": 1, "unchanged": 11}, report.render()
    assert grades(world)[("P00002", "course")]["grade"] == Decimal("150")


def test_a_grade_gone_from_moodle_is_marked_never_deleted_and_a_mass_removal_is_refused(graded: World) -> None:
    world = graded
    world.run("grades")
    before = grades(world)
    courseid = course_id(world)
    # the exam's idnumber changed in Moodle: for 1C, EXAM1 is gone (4 of 12 rows: more than the guard allows)
    world.moodle.site.admin("update_grade_item", {"courseid": courseid, "item_idnumber": "EXAM1",
                                                  "idnumber": "EXAM1-2026"})
    world.update("buf_grades", lambda t: t.c.item != "", updated_at=LONG_AGO)
    with pytest.raises(GuardRefused, match="grades: 4 of 12 linked records would be marked removed"):
        world.run("grades")
    # refused: nothing marked (the new item's rows are written: the guard holds removals back, not news)
    assert {key: row for key, row in grades(world).items() if key[1] != "EXAM1-2026"} == {
        key: row | {"updated_at": LONG_AGO} for key, row in before.items()}
    report = world.run("grades", allow_removals=4)
    assert report.outcome == "ok", report.render()
    rows = grades(world)
    gone = {key: row for key, row in rows.items() if key[1] == "EXAM1"}
    assert len(gone) == 4 and all(r["removed_at"] is not None and r["grade"] is None and r["percent"] is None
                                  for r in gone.values())
    assert all(r["updated_at"] > LONG_AGO for r in gone.values())
    assert {key[0] for key in rows if key[1] == "EXAM1-2026"} == {"P00000", "P00001", "P00002", "P00003"}


def test_a_suspended_students_grades_stay(graded: World) -> None:
    """Moodle's user report leaves suspended enrolments out of its all-users answer: that is not removal."""
    world = graded
    world.run("grades")
    before = grades(world)
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00000", status="suspended")
    assert world.run("subscriptions").outcome == "ok"
    assert ("P00000", "course") not in moodle_report(world)
    report = world.run("grades")
    assert report.outcome == "ok", report.render()
    assert counts(report, "grades") == {"unchanged": 9}
    assert grades(world) == before


def test_a_grades_job_runs_under_the_scheduler(graded: World, tmp_path: Path) -> None:
    """The job kind 1C sites schedule nightly (`mappings: [grades]`): it used to fail with exit 2."""
    from bufsync.config import load_settings
    from bufsync.scheduler.jobs import run_job
    config = tmp_path / "bufsync.yaml"
    config.write_text("jobs:\n  grades-nightly:\n    schedule: daily at 02:00\n    mappings: [grades]\n",
                      encoding="utf-8")
    loaded = load_settings(config, {"BUFSYNC_BUFFER_URL": graded.loaded.buffer_url,
                                    "BUFSYNC_MOODLE_URL": graded.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN})
    result = run_job(loaded, "grades-nightly")
    assert (result.status, result.outcome) == ("done", "ok"), result
    assert grades(graded)[("P00000", "course")]["grade"] == Decimal("179.5")


def grades_settings(world: World, **env: str) -> None:
    """The settings a site gives (BUFSYNC_MOODLE_GRADES_* and any other BUFSYNC_*)."""
    from bufsync.config import load_settings
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url,
                                        "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN, **env})


def _unenrol(world: World, *people: str) -> None:
    """People unenrolled in Moodle itself (by hand, or a course reset's "unenrol users"): bufsync only ever
    suspends, so the buffer does not do it."""
    courseid = course_id(world)
    ids = {r["external_id"]: int(r["lms_id"]) for r in world.rows("buf_users")}
    with world.ws() as client:
        assert all(o.ok for o in client.unenrol([{"userid": ids[p], "courseid": courseid} for p in people]))


def test_an_unenrolled_students_grades_are_marked_a_suspended_ones_stay(graded: World) -> None:
    """The report leaves both out; Moodle deleted the unenrolled one's grades, so for 1C they are removed."""
    world = graded
    world.run("grades")
    world.update("buf_subscriptions", lambda t: t.c.user_external_id == "P00001", status="suspended")
    assert world.run("subscriptions").outcome == "ok"
    _unenrol(world, "P00000")
    world.update("buf_grades", lambda t: t.c.item != "", updated_at=LONG_AGO)
    with pytest.raises(GuardRefused, match="grades: 3 of 12 linked records would be marked removed"):
        world.run("grades")
    report = world.run("grades", allow_removals=3)
    assert counts(report, "grades") == {"deleted": 3, "unchanged": 6}, report.render()  # marked
    rows = grades(world)
    assert {key[1] for key, row in rows.items() if row["removed_at"] is not None} == {"course", "ESSAY1", "EXAM1"}
    assert {key[0] for key, row in rows.items() if row["removed_at"] is not None} == {"P00000"}
    assert rows[("P00000", "EXAM1")]["grade"] is None and rows[("P00000", "EXAM1")]["updated_at"] > LONG_AGO
    assert rows[("P00001", "ESSAY1")]["grade"] == Decimal("64") and rows[("P00001", "ESSAY1")]["removed_at"] is None
    assert counts(world.run("grades"), "grades") == {"unchanged": 6}  # marked once: the next run writes nothing


def test_a_course_whose_students_all_left_is_refused_by_the_guard(graded: World) -> None:
    """A course reset that unenrols everybody: the report lists nobody, so every row would be marked; the guard
    refuses and nothing changes."""
    world = graded
    world.run("grades")
    before = grades(world)
    _unenrol(world, "P00000", "P00001", "P00002", "P00003")
    with pytest.raises(GuardRefused, match="grades: 12 of 12 linked records would be marked removed"):
        world.run("grades")
    assert grades(world) == before


COMPLETED = 1757116800  # 2025-09-06 00:00 UTC


def test_completed_at_per_student(graded: World) -> None:
    """moodle.grades.completion: per_user (the default): every row of a student who completed the course carries
    when, in the site's time zone; a student who has not, none; the time comes once the student completes."""
    world = graded
    courseid = course_id(world)
    track_completion(world)
    complete(world, "user00001", COMPLETED)
    report = world.run("grades")
    assert report.outcome == "ok", report.render()
    rows = grades(world)
    moodle_time = datetime.fromtimestamp(COMPLETED, ZoneInfo(world.loaded.settings.timezone)).replace(tzinfo=None)
    assert {key: row["completed_at"] for key, row in rows.items() if row["completed_at"] is not None} == {
        ("P00001", item): moodle_time for item in ("course", "ESSAY1", "EXAM1")}
    with world.ws() as client:  # what Moodle says, read through its API
        ids = {r["external_id"]: int(r["lms_id"]) for r in world.rows("buf_users")}
        status = client.course_completion(courseid, ids["P00001"])["completionstatus"]
        assert status["completed"] and max(c["timecompleted"] for c in status["completions"]) == COMPLETED
        assert not client.course_completion(courseid, ids["P00000"])["completionstatus"]["completed"]

    world.update("buf_grades", lambda t: t.c.item != "", updated_at=LONG_AGO)
    complete(world, "user00000", COMPLETED + 3600)
    report = world.run("grades")
    assert counts(report, "grades") == {"updated": 3, "unchanged": 9}, report.render()
    assert {key[1] for key, row in grades(world).items() if row["updated_at"] != LONG_AGO and key[0] == "P00000"} == {
        "course", "ESSAY1", "EXAM1"}
    later = datetime.fromtimestamp(COMPLETED + 3600, ZoneInfo(world.loaded.settings.timezone)).replace(tzinfo=None)
    assert {row["completed_at"] for key, row in grades(world).items() if key[0] == "P00000"} == {later}


def test_completion_off_leaves_completed_at_empty_and_calls_nothing_more(graded: World) -> None:
    world = graded
    track_completion(world)
    complete(world, "user00001", COMPLETED)
    per_user = world.run("grades")
    grades_settings(world, BUFSYNC_MOODLE_GRADES_COMPLETION="off")
    world.update("buf_grades", lambda t: t.c.item != "", completed_at=None)
    off = world.run("grades", full=True)
    assert all(row["completed_at"] is None for row in grades(world).values())
    assert per_user.mappings[0].moodle_calls - off.mappings[0].moodle_calls == 4  # a call per student, per_user


def test_a_time_budget_spreads_the_courses_over_runs(world: World) -> None:
    """moodle.grades.time_budget: a run stops reading at the budget (always after the first courses in flight:
    here, one call at a time, two courses a round); the next run starts with the courses not reached, round the
    circle; a course not read this run is not concluded gone. The budget is so small that any read spends it,
    so the test does not depend on the machine's speed."""
    world.insert("buf_users", people(2))
    world.insert("buf_courses", [{"external_id": f"C-{n}", "shortname": f"c-{n}", "fullname": f"Курс {n}"}
                                 for n in range(5)])
    world.insert("buf_subscriptions", [{"user_external_id": f"P{i:05d}", "course_external_id": f"C-{n}",
                                        "role": "student", "status": "active"} for i in range(2) for n in range(5)])
    assert world.run("users", "courses", "subscriptions").outcome == "ok"
    ids = sorted(int(r["lms_id"]) for r in world.rows("buf_courses"))
    for courseid in ids:
        world.moodle.site.admin("fill_gradebook", {"courseid": courseid, "items": 1})
    grades_settings(world, BUFSYNC_MOODLE_GRADES_TIME_BUDGET="0.000001", BUFSYNC_MOODLE_CONCURRENCY="1")
    by_id = {int(r["lms_id"]): r["external_id"] for r in world.rows("buf_courses")}
    seen: list[set[str]] = []
    for _ in range(3):
        report = world.run("grades")
        assert report.outcome == "ok", report.render()
        seen.append({r["course_external_id"] for r in world.rows("buf_grades")})
    assert [len(s) for s in seen] == [2, 4, 5]
    assert seen[0] == {by_id[ids[0]], by_id[ids[1]]} and seen[1] - seen[0] == {by_id[ids[2]], by_id[ids[3]]}
    note = report.mappings[0].note or ""
    assert f"read 2 of 5 courses; the next run starts with course id {ids[1]}" in note, note
    assert all(r["removed_at"] is None for r in world.rows("buf_grades"))  # courses not read: nothing marked
    assert {r["mapping_name"]: r["position"] for r in world.rows("sync_cursors")} == {"grades": str(ids[1])}
    assert len(world.rows("buf_grades")) == 5 * 2 * 2  # course total + I1, for 2 students in 5 courses


def test_completed_at_from_the_custom_report_in_any_time_zone(graded: World) -> None:
    """moodle.grades.completion: report: the report (made as completion_report.php makes it) gives the time as
    text in the token user's time zone; bufsync asks Moodle which zone that is, so the forced zone, the user's or
    the site's moving leaves completed_at where it is (the right moment), and the per-student calls are gone."""
    from bufsync.adapters.moodle.completion import REPORT_DEFINITION
    world = graded
    site = world.moodle.site
    track_completion(world)
    for username, at in (("user00001", COMPLETED), ("user00002", COMPLETED + 86400 + 17 * 60)):
        complete(world, username, at)
    reportid = site.admin("create_report", REPORT_DEFINITION)["id"]
    grades_settings(world, BUFSYNC_MOODLE_GRADES_COMPLETION="report",
                    BUFSYNC_MOODLE_GRADES_COMPLETION_REPORT=str(reportid))
    zone = ZoneInfo(world.loaded.settings.timezone)
    expected = {"P00001": datetime.fromtimestamp(COMPLETED, zone).replace(tzinfo=None),
                "P00002": datetime.fromtimestamp(COMPLETED + 86400 + 17 * 60, zone).replace(tzinfo=None)}
    report = world.run("grades")
    assert report.outcome == "ok", report.render()
    # the token's check, the site's language, the zone (2 calls), the report, the gradebook: no call a student
    assert report.mappings[0].moodle_calls == 6
    assert {key[0]: row["completed_at"] for key, row in grades(world).items() if row["completed_at"]} == expected
    for setting, value in (("timezone", "Asia/Vladivostok"), ("forcetimezone", "America/New_York")):
        site.admin("set_config", {"name": setting, "value": value})
        report = world.run("grades")
        assert counts(report, "grades") == {"unchanged": 12}, (setting, report.render())
    assert {key[0]: row["completed_at"] for key, row in grades(world).items() if row["completed_at"]} == expected


def test_a_report_that_is_not_bufsyncs_is_a_configuration_error(graded: World) -> None:
    from bufsync.errors import ConfigError
    world = graded
    reportid = graded.moodle.site.admin("create_report", {"columns": ["course:idnumber", "user:username"],
                                                          "name": "someone else's"})["id"]
    for wrong, expected in ((reportid, "has the columns"), (reportid + 100, "Moodle refused report")):
        grades_settings(world, BUFSYNC_MOODLE_GRADES_COMPLETION="report",
                        BUFSYNC_MOODLE_GRADES_COMPLETION_REPORT=str(wrong))
        with pytest.raises(ConfigError, match=expected):
            world.run("grades")
    assert world.rows("buf_grades") == []


def test_a_service_users_own_time_zone_that_moodle_hides_is_a_configuration_error(world: World) -> None:
    """The report's dates are in the token user's own zone unless one is forced. A site may hide the time zone
    among its hidden user fields, and then Moodle leaves it out even of the user's own record: bufsync must not
    take the site's zone for it (every completed_at would be off by the difference), but say so."""
    from bufsync.adapters.moodle import completion
    from bufsync.adapters.moodle.client import MoodleClient
    from bufsync.errors import ConfigError
    world.insert("buf_users", people(1))
    assert world.run("users").outcome == "ok"
    userid = int(world.rows("buf_users")[0]["lms_id"])
    with world.ws() as admin:
        admin.call("core_user_update_users", {"users": [{"id": userid, "timezone": "Asia/Vladivostok"}]},
                   write=True)
    site = world.moodle.site
    site.admin("add_token", {"token": "7" * 32, "userid": userid})

    def zone() -> str:
        with MoodleClient.connect(world.moodle.url, "7" * 32) as client:
            return completion.reader_zone(client, client.site_info()).key
    assert zone() == "Asia/Vladivostok"
    site.admin("set_config", {"name": "hiddenuserfields", "value": "timezone,city"})
    with pytest.raises(ConfigError, match="hides the time zone"):
        zone()
    site.admin("set_config", {"name": "forcetimezone", "value": "Europe/Moscow"})
    assert zone() == "Europe/Moscow"  # forced: the user's own zone does not count
