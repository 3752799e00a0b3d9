"""The sandbox's gradebook and completion (functions/grades.py, functions/completion.py).

The recorded exchanges are covered by the contract replay; these tests cover what the recording
does not show, following Moodle 4.5 (grade/report/user, lib/grade, completion/classes/external.php).
"""

from __future__ import annotations

from typing import Any

import pytest

from bufsync.sandbox.moodle.functions.completion import completion_summary
from bufsync.sandbox.moodle.functions.grades import FAIL_ICON, number_format, user_grades
from bufsync.sandbox.moodle.site import Site
from tests.integration.sandbox.test_cohorts_groups import call, enrol, error, make_user


def make_course(site: Site, shortname: str, enablecompletion: int = 1) -> int:
    result = call(site, "core_course_create_courses", courses__0__fullname=f"Course {shortname}",
                  courses__0__shortname=shortname, courses__0__categoryid=1, courses__0__idnumber=f"ID-{shortname}",
                  courses__0__enablecompletion=enablecompletion)
    return result[0]["id"]


def admin(site: Site, action: str, **args: Any) -> Any:
    return site.admin(action, args)


def items_of(site: Site, courseid: int, userid: int) -> list[dict[str, Any]]:
    result = call(site, "gradereport_user_get_grade_items", courseid=courseid, userid=userid)
    return result["usergrades"][0]["gradeitems"]


@pytest.fixture
def gradebook(site: Site) -> dict[str, int]:
    """A course with an assignment (max 50) and a manual item (max 150); two students, one teacher."""
    courseid = make_course(site, "GB")
    ann, ben, tom = make_user(site, "ann", "Able"), make_user(site, "ben", "Baker"), make_user(site, "tom", "Teach")
    enrol(site, ann, courseid)
    enrol(site, ben, courseid)
    enrol(site, tom, courseid, roleid=3)
    essay = admin(site, "create_assignment", courseid=courseid, name="Essay", grademax=50)["itemid"]
    exam = admin(site, "create_grade_item", courseid=courseid, itemname="Exam", grademax=150, idnumber="EX")["itemid"]
    return {"course": courseid, "ann": ann, "ben": ben, "tom": tom, "essay": essay, "exam": exam}


def test_number_format_rounds_half_up_like_php() -> None:
    assert number_format(87.5, 2) == "87.50"
    assert number_format(0.125, 2) == "0.13"
    assert number_format(2.675, 2) == "2.68"  # PHP pre-rounds; Python's round() would say 2.67
    assert number_format(100, 0) == "100"


def test_core_grades_get_gradeitems_type_error_on_a_fresh_course(site: Site) -> None:
    courseid = make_course(site, "FRESH")
    result = call(site, "core_grades_get_gradeitems", courseid=courseid)
    assert result == {"exception": "TypeError",
                      "message": "array_filter(): Argument #1 ($array) must be of type array, bool given"}
    # Any gradebook use creates the course total, after which the list is simply empty.
    call(site, "gradereport_user_get_grade_items", courseid=courseid, userid=0)
    assert call(site, "core_grades_get_gradeitems", courseid=courseid) == {"gradeItems": [], "warnings": []}
    code, debuginfo = error(call(site, "core_grades_get_gradeitems", courseid=99999))
    assert code == "invalidrecord" and debuginfo.startswith("SELECT id,category FROM {course} WHERE id = ?")


def test_natural_weights_and_totals(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_grade", itemid=g["essay"], userid=g["ann"], grade=40)
    admin(site, "set_grade", itemid=g["exam"], userid=g["ann"], grade=120, feedback="ok", feedbackformat=1)
    admin(site, "set_grade", itemid=g["essay"], userid=g["ben"], grade=25)
    essay, exam, total = items_of(site, g["course"], g["ann"])
    assert (essay["weightraw"], essay["weightformatted"], exam["weightformatted"]) == (0.25, "25.00 %", "75.00 %")
    assert (total["graderaw"], total["gradeformatted"], total["rangeformatted"]) == (160.0, "160.00", "0&ndash;200")
    assert total["percentageformatted"] == "80.00 %" and exam["feedback"] == "ok" and exam["feedbackformat"] == 1
    essay, exam, total = items_of(site, g["course"], g["ben"])
    assert (essay["weightraw"], exam["weightraw"], exam["status"]) == (1.0, 0.0, "novalue")
    assert (total["graderaw"], total["grademax"], total["percentageformatted"]) == (25.0, 50.0, "50.00 %")
    # A later grade for an up-to-date item regrades that user at once.
    admin(site, "set_grade", itemid=g["exam"], userid=g["ben"], grade=75)
    assert user_grades(site, g["course"], g["ben"])[-1]["finalgrade"] == 100.0


def test_all_users_lists_active_students_by_name(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    result = call(site, "gradereport_user_get_grade_items", courseid=g["course"])
    assert [u["userid"] for u in result["usergrades"]] == [g["ann"], g["ben"]]  # the teacher is not graded
    enrol(site, g["ben"], g["course"], suspend=1)
    result = call(site, "gradereport_user_get_grade_items", courseid=g["course"], userid=0)
    assert [u["userid"] for u in result["usergrades"]] == [g["ann"]]
    result = call(site, "gradereport_user_get_grade_items", courseid=g["course"], userid=999)
    assert error(result)[0] == "invaliduser"


def test_override_lock_and_hidden_flags(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_grade", itemid=g["essay"], userid=g["ann"], grade=10)
    total_id = call(site, "gradereport_user_get_grade_items", courseid=g["course"], userid=g["ann"])[
        "usergrades"][0]["gradeitems"][-1]["id"]
    admin(site, "set_grade", itemid=total_id, userid=g["ann"], grade=190)
    admin(site, "update_grade_item", itemid=g["exam"], hidden=1, locked=1)
    essay, exam, total = items_of(site, g["course"], g["ann"])
    assert (total["graderaw"], total["gradeisoverridden"]) == (190.0, True)
    assert (exam["locked"], exam["gradeislocked"], exam["gradeishidden"]) == (True, True, True)
    admin(site, "set_grade", itemid=g["essay"], userid=g["ann"], grade=20)
    assert items_of(site, g["course"], g["ann"])[-1]["graderaw"] == 190.0  # overridden totals stay


def test_unenrolment_removes_grades(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_grade", itemid=g["essay"], userid=g["ben"], grade=30)
    call(site, "enrol_manual_unenrol_users", enrolments__0__userid=g["ben"], enrolments__0__courseid=g["course"])
    assert all(row["finalgrade"] is None for row in user_grades(site, g["course"], g["ben"]))


def test_gradeitems_lists_definitions_as_strings(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    result = call(site, "core_grades_get_gradeitems", courseid=g["course"])
    assert sorted((i["id"], i["itemname"], i["category"]) for i in result["gradeItems"]) == [
        (str(g["essay"]), "Essay", "Course GB"), (str(g["exam"]), "Exam", "Course GB")]


# --- gradebook settings, letters, pass grades, scales (test_grades_fidelity.py has what a real Moodle answered) ---

def test_the_site_setting_off_lists_suspended_students_to_the_admin(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    enrol(site, g["ben"], g["course"], suspend=1)
    assert [u["userid"] for u in call(site, "gradereport_user_get_grade_items", courseid=g["course"])[
        "usergrades"]] == [g["ann"]]
    admin(site, "set_config", name="grade_report_showonlyactiveenrol", value="0")
    assert [u["userid"] for u in call(site, "gradereport_user_get_grade_items", courseid=g["course"])[
        "usergrades"]] == [g["ann"], g["ben"]]


def test_a_non_editing_teacher_never_sees_suspended_students(site: Site, gradebook: dict[str, int]) -> None:
    """Without moodle/course:viewsuspendedusers (editingteacher and manager have it) the preference is ignored."""
    g = gradebook
    enrol(site, g["ben"], g["course"], suspend=1)
    ted = make_user(site, "ted", "Nonediting")
    enrol(site, ted, g["course"], roleid=4)
    admin(site, "set_config", name="grade_report_showonlyactiveenrol", value="0")
    admin(site, "add_token", token="4" * 32, userid=ted)
    listed = call(site, "gradereport_user_get_grade_items", _token="4" * 32, courseid=g["course"], userid=0)
    assert [u["userid"] for u in listed["usergrades"]] == [g["ann"]]


def test_letters_come_from_the_nearest_context_that_has_them(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "update_grade_item", itemid=g["exam"], display=3)
    admin(site, "set_grade", itemid=g["exam"], userid=g["ann"], grade=135)  # 90 %
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "A-"  # Moodle's default letters
    admin(site, "set_grade_letters", letters={"60": "зачтено", "0": "не зачтено"})  # the site's
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "зачтено"
    admin(site, "set_grade_letters", courseid=g["course"], letters=[[95, "5"], [0, "4 и ниже"]])
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "4 и ниже"
    admin(site, "set_grade_letters", courseid=g["course"], letters=None)
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "зачтено"


def test_no_icon_without_a_real_pass_grade_or_for_a_hidden_grade(site: Site, gradebook: dict[str, int]) -> None:
    """grade_grade::is_passed(): a pass grade equal to the minimum is none; a hidden grade is shown bare."""
    g = gradebook
    admin(site, "update_grade_item", itemid=g["exam"], grademin=10, gradepass=10)
    admin(site, "set_grade", itemid=g["exam"], userid=g["ann"], grade=100)
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "100.00"
    admin(site, "update_grade_item", itemid=g["exam"], gradepass=120)
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == FAIL_ICON + "100.00"
    admin(site, "update_grade_item", itemid=g["exam"], hidden=1)
    assert items_of(site, g["course"], g["ann"])[1]["gradeformatted"] == "100.00"


def test_a_scale_item_needs_its_scale(site: Site, gradebook: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="needs the id of a scale"):
        admin(site, "create_grade_item", courseid=gradebook["course"], itemname="S", gradetype=2)
    scaleid = admin(site, "create_scale", name="Зачёт", scale=[" не зачтено", "зачтено "])["scaleid"]
    itemid = admin(site, "create_grade_item", courseid=gradebook["course"], itemname="S", gradetype=2,
                   scaleid=scaleid)["itemid"]
    admin(site, "set_grade", itemid=itemid, userid=gradebook["ann"], grade=1.6)  # a scale grade is whole
    item = items_of(site, gradebook["course"], gradebook["ann"])[2]
    assert (item["graderaw"], item["gradeformatted"], item["rangeformatted"]) == (
        2.0, "зачтено", "не зачтено&ndash;зачтено")


# --- completion -----------------------------------------------------------------------------------------

def status(site: Site, courseid: int, userid: int) -> Any:
    return call(site, "core_completion_get_course_completion_status", courseid=courseid, userid=userid)


def test_teachers_are_not_tracked_and_completion_can_be_disabled(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_completion_criteria", courseid=g["course"], criteria=[{"type": "self"}])
    assert error(status(site, g["course"], g["tom"])) == ("usernotenroled", "User is not enrolled in this course")
    off = make_course(site, "OFF", enablecompletion=0)
    assert error(status(site, off, g["ann"]))[0] == "cannotviewreport"
    assert error(status(site, g["course"], 999))[0] == "invaliduser"


def test_date_grade_and_any_aggregation(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_completion_criteria", courseid=g["course"], aggregation="any",
          criteria=[{"type": "date", "timeend": 1756684800}, {"type": "grade", "gradepass": 60}])
    admin(site, "set_grade", itemid=g["essay"], userid=g["ann"], grade=40)
    result = status(site, g["course"], g["ann"])["completionstatus"]
    assert result["aggregation"] == 2
    date, grade = result["completions"]
    assert (date["title"], date["status"], date["details"]["requirement"]) == ("Date", "1 Sep 2025", "1 Sep 2025")
    assert (grade["title"], grade["status"]) == ("Course grade", "40.00 (60.00 required)")
    admin(site, "mark_completion", courseid=g["course"], userid=g["ann"], criteria=["date"], aggregate=True)
    assert status(site, g["course"], g["ann"])["completionstatus"]["completed"] is True
    assert completion_summary(site, g["course"], g["ann"])["completed"] is True


def test_role_aggregation_needs_every_role(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "set_completion_criteria", courseid=g["course"], role_aggregation="all",
          criteria=[{"type": "role", "role": "editingteacher"}, {"type": "role", "role": 4}])
    titles = [c["title"] for c in status(site, g["course"], g["ann"])["completionstatus"]["completions"]]
    assert titles == ["Teacher", "Non-editing teacher"]
    admin(site, "mark_completion", courseid=g["course"], userid=g["ann"], criteria=["role:editingteacher"],
          aggregate=True)
    assert status(site, g["course"], g["ann"])["completionstatus"]["completed"] is False
    admin(site, "mark_completion", courseid=g["course"], userid=g["ann"], criteria=["role:teacher"], aggregate=True)
    assert status(site, g["course"], g["ann"])["completionstatus"]["completed"] is True


def test_activity_completion_and_course_progress(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    assert call(site, "core_completion_get_activities_completion_status", courseid=g["course"], userid=g["ann"]) == \
        {"statuses": [], "warnings": []}
    cmid = site.store.one("SELECT id FROM course_modules WHERE course = ?", (g["course"],))["id"]
    admin(site, "set_activity_tracking", cmid=cmid, completion=1)
    admin(site, "set_activity_completion", cmid=cmid, userid=g["ann"], state=1)
    statuses = call(site, "core_completion_get_activities_completion_status", courseid=g["course"],
                    userid=g["ann"])["statuses"]
    assert [(s["cmid"], s["modname"], s["state"], s["tracking"], s["isoverallcomplete"]) for s in statuses] == [
        (cmid, "assign", 1, 1, True)]
    admin(site, "set_completion_criteria", courseid=g["course"], criteria=[{"type": "self"}])
    course = call(site, "core_enrol_get_users_courses", userid=g["ann"])[0]
    assert (course["enablecompletion"], course["completionhascriteria"], course["progress"]) == (True, True, 100.0)


# --- callers other than the admin ---------------------------------------------------------------------

def test_students_and_teachers_see_what_their_roles_allow(site: Site, gradebook: dict[str, int]) -> None:
    g = gradebook
    admin(site, "add_token", token="5" * 32, userid=g["ann"])
    admin(site, "add_token", token="7" * 32, userid=g["tom"])
    admin(site, "set_grade", itemid=g["essay"], userid=g["ann"], grade=40)

    def as_user(token: str, function: str, **fields: Any) -> Any:
        return call(site, function, _token=token, **fields)

    own = as_user("5" * 32, "gradereport_user_get_grade_items", courseid=g["course"], userid=g["ann"])
    assert own["usergrades"][0]["gradeitems"][0]["graderaw"] == 40.0
    assert own["usergrades"][0]["gradeitems"][0]["locked"] is None  # only those who view all see lock states
    other = as_user("5" * 32, "gradereport_user_get_grade_items", courseid=g["course"], userid=g["ben"])
    assert (other["errorcode"], other["message"]) == ("nopermissiontoviewgrades", "Cannot view grades.")
    everyone = as_user("5" * 32, "gradereport_user_get_grade_items", courseid=g["course"], userid=0)
    assert everyone["message"].endswith("(View grades of other users).")
    teacher = as_user("7" * 32, "gradereport_user_get_grade_items", courseid=g["course"], userid=0)
    assert [u["userid"] for u in teacher["usergrades"]] == [g["ann"], g["ben"]]
    denied = as_user("5" * 32, "core_group_create_groups", groups__0__courseid=g["course"], groups__0__name="S",
                     groups__0__description="")
    assert denied["errorcode"] == "nopermissions" and denied["message"].endswith("(Manage groups).")
    made = as_user("7" * 32, "core_group_create_groups", groups__0__courseid=g["course"], groups__0__name="T",
                   groups__0__description="")
    assert made[0]["name"] == "T"
    cohorts = as_user("7" * 32, "core_cohort_get_cohorts")
    assert cohorts == []
    denied = as_user("7" * 32, "core_cohort_create_cohorts", cohorts__0__categorytype__type="system",
                     cohorts__0__categorytype__value="", cohorts__0__name="C", cohorts__0__idnumber="C")
    assert denied["message"].endswith("(Manage cohorts).")
