"""The sandbox's custom reports (functions/reportbuilder.py), site settings (functions/mobile.py) and time zones
(dates.py): what a real Moodle 4.5 answered for the completion-report scenario (completion_report_scenario.py,
recorded in contract/fixtures/completion_report_scenario.json by contract/test_completion_report_real.py) held against
the sandbox, then what the scenario does not show: each source of the time zone, conditions, a course-only report,
who may read a report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bufsync.sandbox.moodle import dates
from bufsync.sandbox.moodle.site import Site
from tests.integration.contract import completion_report_scenario as scenario
from tests.integration.contract.grades_scenario import differences, sandbox_answers
from tests.integration.sandbox.test_cohorts_groups import TOKEN, call, enrol, error, make_course, make_user

ANN_A = scenario.ANN_A  # 2025-09-06 00:00 UTC


@pytest.fixture(scope="module")
def answers() -> Iterator[dict[str, Any]]:
    yield sandbox_answers(scenario, "rb")


@pytest.mark.parametrize("answer", scenario.ANSWERS)
def test_the_sandbox_answers_as_the_real_moodle_did(answers: dict[str, Any], answer: str) -> None:
    assert not differences(scenario.recorded()[answer], answers[answer])


def rows(answer: dict[str, Any]) -> list[list[str]]:
    return [r["columns"] for r in answer["data"]["rows"]]


def test_bufsync_s_report_lists_completed_students_once_with_suspended_ones(answers: dict[str, Any]) -> None:
    """uniquerows makes eve's two enrolments one row; dan's suspended enrolment keeps his; cat (started, not
    completed) and the NULL rows of instances without enrolments are left out by "time completed is not empty"."""
    assert [r[:2] for r in rows(answers["report/all-rows"])] == [
        ["<prefix>-A", "<prefix>-ANN"], ["<prefix>-A", "<prefix>-BOB"], ["<prefix>-A", "<prefix>-DAN"],
        ["<prefix>-A", "<prefix>-EVE&lt;&amp;&gt;"], ["<prefix>-B", "<prefix>-ANN"]]
    assert [len(rows(answers[f"report/page{page}-of-2"])) for page in range(4)] == [2, 2, 1, 0]
    assert {answers[f"report/page{page}-of-2"]["data"]["totalrowcount"] for page in range(4)} == {5}


def test_dates_are_in_the_reading_user_s_time_zone(answers: dict[str, Any]) -> None:
    """The admin (zone 99) reads in the site's Europe/London, the reader in their own America/New_York."""
    assert rows(answers["report/all-rows"])[0][2] == "Saturday, 6 September 2025, 1:00 AM"
    assert rows(answers["report/as-reader"])[0][2] == "Friday, 5 September 2025, 8:00 PM"


def test_one_row_per_enrolment_without_uniquerows(answers: dict[str, Any]) -> None:
    """Disabled instances and suspended enrolments count; an instance nobody is enrolled by gives a row of NULLs,
    shown as "" and sorted last by login descending; completed is "" with no course_completions row."""
    all_rows = rows(answers["all/all-rows"])
    assert [(r[0][-1], r[1].removeprefix("<prefix>"), r[5]) for r in all_rows] == [
        ("A", "eve", "Yes"), ("A", "eve", "Yes"), ("A", "dan", "Yes"), ("A", "cat", "No"), ("A", "bob", "Yes"),
        ("A", "ann", "Yes"), ("A", "", ""), ("B", "cat", ""), ("B", "bob", ""), ("B", "ann", "Yes"), ("B", "", ""),
        ("B", "", "")]


# --- time zones ---------------------------------------------------------------------------------------

def completed_report(site: Site, reader: int | None = None) -> int:
    """A course with one completed student; bufsync's report on it, readable by `reader`."""
    courseid = make_course(site, "TZ")
    ann = make_user(site, "ann", "Able")
    enrol(site, ann, courseid)
    site.admin("mark_completion", {"courseid": courseid, "userid": ann, "complete_course": True,
                                   "timecompleted": ANN_A})
    return int(site.admin("create_report", {
        "name": "completion", "columns": scenario.BUFSYNC_COLUMNS, "sorting": scenario.BUFSYNC_SORTING,
        "uniquerows": True, "conditions": {"completion:timecompleted": {"operator": 1}},
        "audience_users": [reader] if reader else []})["id"])


def time_completed(site: Site, reportid: int, token: str = TOKEN) -> str:
    result = call(site, "core_reportbuilder_retrieve_report", token, reportid=reportid)
    (row,) = result["data"]["rows"]
    return str(row["columns"][2])


def test_site_user_and_forced_time_zones_each_change_the_text(site: Site) -> None:
    """core_date::get_user_timezone(): forcetimezone, else the user's zone, else the site's."""
    reader = make_user(site, "reader", "Reader")
    site.admin("add_token", {"token": "r" * 32, "userid": reader})
    reportid = completed_report(site, reader)
    assert time_completed(site, reportid) == "Saturday, 6 September 2025, 1:00 AM"  # Europe/London, summer time
    assert time_completed(site, reportid, "r" * 32) == "Saturday, 6 September 2025, 1:00 AM"

    site.admin("set_config", {"name": "timezone", "value": "Asia/Yekaterinburg"})  # users with 99 follow the site
    assert time_completed(site, reportid) == "Saturday, 6 September 2025, 5:00 AM"
    assert time_completed(site, reportid, "r" * 32) == "Saturday, 6 September 2025, 5:00 AM"

    assert call(site, "core_user_update_users", users__0__id=reader, users__0__timezone="America/New_York") == {
        "warnings": []}
    assert time_completed(site, reportid) == "Saturday, 6 September 2025, 5:00 AM"
    assert time_completed(site, reportid, "r" * 32) == "Friday, 5 September 2025, 8:00 PM"  # the reader's own

    site.admin("set_config", {"name": "forcetimezone", "value": "Asia/Tokyo"})  # overrides everyone's
    assert time_completed(site, reportid) == "Saturday, 6 September 2025, 9:00 AM"
    assert time_completed(site, reportid, "r" * 32) == "Saturday, 6 September 2025, 9:00 AM"
    settings = call(site, "tool_mobile_get_config", section="locationsettings")
    assert settings == {"settings": [{"name": "timezone", "value": "Asia/Yekaterinburg"},
                                     {"name": "forcetimezone", "value": "Asia/Tokyo"}], "warnings": []}


def test_legacy_and_unknown_zones_normalise_as_moodle_does(site: Site) -> None:
    site.userid = 2
    for zone, text in [("5.5", "Saturday, 6 September 2025, 5:30 AM"), ("-5", "Friday, 5 September 2025, 7:00 PM"),
                       ("UTC+3", "Saturday, 6 September 2025, 3:00 AM"),
                       ("UTC", "Saturday, 6 September 2025, 12:00 AM"),
                       ("Nowhere/Atlantis", "Saturday, 6 September 2025, 1:00 AM")]:  # unknown: the site's zone
        assert dates.userdate(site, ANN_A, {"timezone": zone}) == text, zone
    site.admin("set_config", {"name": "timezone", "value": "99"})  # no site zone: PHP's default, UTC
    assert dates.userdate(site, ANN_A, {"timezone": "99"}) == "Saturday, 6 September 2025, 12:00 AM"
    # %d and %I unpadded (fixday, fixhour), the rest as PHP's strftime in English
    assert dates.userdate(site, 1767603900, {"timezone": "UTC"}, "%d/%m/%y %H:%M %a %b, %I%p %P") == \
        "5/01/26 09:05 Mon Jan, 9AM am"


def test_a_completion_criterion_date_is_in_the_reader_s_zone(site: Site) -> None:
    """completion_criteria_date's texts go through userdate() too: 23:30 UTC is the next day in London."""
    courseid = make_course(site, "DT")
    call(site, "core_course_update_courses", courses__0__id=courseid, courses__0__enablecompletion=1)
    ann = make_user(site, "ann", "Able")
    enrol(site, ann, courseid)
    site.admin("set_completion_criteria", {"courseid": courseid, "criteria": [{"type": "date",
                                                                               "timeend": 1756769400}]})
    result = call(site, "core_completion_get_course_completion_status", courseid=courseid, userid=ann)
    assert result["completionstatus"]["completions"][0]["details"]["requirement"] == "2 Sep 2025"
    site.admin("set_config", {"name": "timezone", "value": "UTC"})
    result = call(site, "core_completion_get_course_completion_status", courseid=courseid, userid=ann)
    assert result["completionstatus"]["completions"][0]["details"]["requirement"] == "1 Sep 2025"


# --- reports --------------------------------------------------------------------------------------------

def retrieve(site: Site, reportid: int, token: str = TOKEN, **paging: int) -> Any:
    return call(site, "core_reportbuilder_retrieve_report", token, reportid=reportid, **paging)


def test_a_report_of_course_columns_only_has_one_row_per_course(site: Site) -> None:
    """No column or condition about people: the datasource is the course table alone (the site course left out)."""
    first, second = make_course(site, "B-one"), make_course(site, "A-two")
    enrol(site, make_user(site, "ann", "Able"), first)
    reportid = site.admin("create_report", {"name": "courses", "columns": ["course:shortname", "course:idnumber"],
                                            "sorting": ["course:shortname"]})["id"]
    assert [r["columns"] for r in retrieve(site, reportid)["data"]["rows"]] == [["A-two", ""], ["B-one", ""]]
    assert second > first


def test_text_conditions_are_case_insensitive_and_empty_takes_nulls(site: Site) -> None:
    courseid = make_course(site, "LAB-1")
    other = make_course(site, "OTHER")
    for name in ("ann", "bob"):
        uid = make_user(site, name, name.title())
        enrol(site, uid, courseid)
        enrol(site, uid, other)

    def logins(conditions: dict[str, Any]) -> list[list[str]]:
        reportid = site.admin("create_report", {
            "name": "r", "columns": ["course:shortname", "user:username"], "conditions": conditions,
            "sorting": ["course:shortname", "user:username"]})["id"]
        return [r["columns"] for r in retrieve(site, reportid, perpage=0)["data"]["rows"]]

    assert logins({"course:shortname": {"operator": 5, "value": "lab-"}}) == [
        ["LAB-1", ""], ["LAB-1", ""], ["LAB-1", "ann"], ["LAB-1", "bob"]]  # NULLs first ascending (guest, self)
    assert logins({"course:shortname": {"operator": 3, "value": "other"}, "user:username": {"operator": 1,
                                                                                            "value": "B"}}) == [
        ["OTHER", "bob"]]
    assert logins({"user:username": {"operator": 7}}) == [["LAB-1", ""], ["LAB-1", ""], ["OTHER", ""],
                                                          ["OTHER", ""]]  # COALESCE(NULL, '') = ''
    assert len(logins({"user:username": {"operator": 5, "value": ""}})) == 8  # no value: the condition is ignored


def test_who_may_read_a_report(site: Site) -> None:
    """Admins; the creator with moodle/reportbuilder:edit (a manager); users of its audience; nobody else."""
    manager, student, creator = (make_user(site, n, n.title()) for n in ("manager", "student", "creator"))
    for uid, token in ((manager, "m" * 32), (student, "s" * 32), (creator, "c" * 32)):
        site.admin("add_token", {"token": token, "userid": uid})
    call(site, "core_role_assign_roles", assignments__0__roleid=1, assignments__0__userid=manager,
         assignments__0__contextlevel="system", assignments__0__instanceid=0)
    call(site, "core_role_assign_roles", assignments__0__roleid=1, assignments__0__userid=creator,
         assignments__0__contextlevel="system", assignments__0__instanceid=0)
    reportid = site.admin("create_report", {"name": "r", "columns": ["course:idnumber"], "userid": creator,
                                            "audience_users": [student]})["id"]
    assert "data" in retrieve(site, reportid)
    assert "data" in retrieve(site, reportid, "c" * 32)
    assert "data" in retrieve(site, reportid, "s" * 32)
    assert error(retrieve(site, reportid, "m" * 32)) == ("errorreportview", "You cannot view this report")
    assert error(retrieve(site, reportid + 1)) == (
        "invalidrecord", f"SELECT * FROM {{reportbuilder_report}} WHERE id = ?\n[array (\n  0 => {reportid + 1},\n)]")
    site.admin("delete_report", {"reportid": reportid})
    assert error(retrieve(site, reportid))[0] == "invalidrecord"


def test_create_report_refuses_what_the_sandbox_does_not_emulate(site: Site) -> None:
    for args in ({"columns": ["completion:grade"]}, {"columns": ["course:idnumber"], "source": "users"},
                 {"columns": ["course:idnumber"], "sorting": ["user:idnumber"]},
                 {"columns": ["course:idnumber"], "conditions": {"completion:timecompleted": {"operator": 4}}},
                 {"columns": ["course:idnumber"], "conditions": {"role:name": {"operator": 1}}}):
        with pytest.raises(ValueError):
            site.admin("create_report", {"name": "r", **args})


def test_site_settings_without_a_section(site: Site) -> None:
    """Every section; the default front page role only for a site admin; an unknown section gives nothing."""
    everything = {s["name"]: s["value"] for s in call(site, "tool_mobile_get_config")["settings"]}
    assert (everything["timezone"], everything["numsections"], everything["defaultfrontpageroleid"]) == (
        "Europe/London", 1, "8")
    student = make_user(site, "student", "Student")
    site.admin("add_token", {"token": "s" * 32, "userid": student})
    names = [s["name"] for s in call(site, "tool_mobile_get_config", "s" * 32)["settings"]]
    assert "defaultfrontpageroleid" not in names and len(names) == len(everything) - 1
    assert call(site, "tool_mobile_get_config", section="nosuchsection") == {"settings": [], "warnings": []}
