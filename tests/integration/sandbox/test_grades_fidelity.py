"""What a real Moodle 4.5 answered about grades and completion for issue 15's scenario (grades_scenario.py, recorded
in contract/fixtures/grades_scenario.json by contract/test_grades_real.py), held against the sandbox, and each
behaviour spelled out: who `userid = 0` lists, what a suspended or unenrolled student's answers are, scales, the
course's letters, the pass/fail icon of an item with a pass grade, an overridden course total, dates, completion.
What the scenario does not show is in test_grades_completion.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bufsync.sandbox.moodle.functions.grades import FAIL_ICON, PASS_ICON
from tests.integration.contract import grades_scenario as scenario
from tests.integration.contract.grades_scenario import sandbox_answers


@pytest.fixture
def answers() -> Iterator[dict[str, Any]]:
    yield sandbox_answers(scenario, "gf")


def users_of(answer: dict[str, Any]) -> list[str]:
    return [u["userid"] for u in answer["usergrades"]]


def grades_of(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The one user's items by the scenario's names (essay, num, scale, letter, total)."""
    (usergrade,) = answer["usergrades"]
    return {item["id"][len("<item:"):-1]: item for item in usergrade["gradeitems"]}


@pytest.mark.parametrize("answer", scenario.ANSWERS)
def test_the_sandbox_answers_as_the_real_moodle_did(answers: dict[str, Any], answer: str) -> None:
    assert not scenario.differences(scenario.recorded()[answer], answers[answer])


def test_all_users_leaves_out_suspended_and_unenrolled_students(answers: dict[str, Any]) -> None:
    """grade_report_showonlyactiveenrol is on by default: bob (suspended) is not listed, nor vera (unenrolled)."""
    assert users_of(answers["grades/all"]) == ["<ann>", "<gleb>"]


def test_a_teacher_who_shows_suspended_users_gets_them_with_their_grades(answers: dict[str, Any]) -> None:
    """The caller's preference grade_report_showonlyactiveenrol = 0, with moodle/course:viewsuspendedusers."""
    listed = answers["grades/all-as-teacher"]
    assert users_of(listed) == ["<ann>", "<bob>", "<gleb>"]
    bob = next(u for u in listed["usergrades"] if u["userid"] == "<bob>")
    assert [i["graderaw"] for i in bob["gradeitems"]] == [20, 45, 2, 55, 122]


def test_a_suspended_student_asked_for_by_id_has_every_grade(answers: dict[str, Any]) -> None:
    bob = grades_of(answers["grades/bob"])
    assert {k: i["graderaw"] for k, i in bob.items()} == {"essay": 20, "num": 45, "scale": 2, "letter": 55,
                                                          "total": 122}


def test_an_unenrolled_student_has_no_grades_left(answers: dict[str, Any]) -> None:
    """Unenrolling deletes the grades (grade_user_unenrol): items come back empty, as for someone never enrolled."""
    vera = grades_of(answers["grades/vera"])
    assert all((i["graderaw"], i["gradeformatted"], i["percentageformatted"], i["gradedategraded"]) ==
               (None, "-", "-", None) for i in vera.values())


def test_a_pass_grade_puts_a_pass_or_fail_icon_before_the_grade(answers: dict[str, Any]) -> None:
    """No Web Service gives an item's pass grade; the user report marks a grade that reaches it (or not)."""
    ann, gleb = grades_of(answers["grades/ann"]), grades_of(answers["grades/gleb"])
    assert ann["num"]["gradeformatted"] == PASS_ICON + "75.00" and ann["num"]["graderaw"] == 75
    assert gleb["num"]["gradeformatted"] == FAIL_ICON + "30.00"
    assert ann["essay"]["gradeformatted"] == "40.00"  # no pass grade: no icon


def test_a_scale_grade_is_its_word_on_a_range_from_one(answers: dict[str, Any]) -> None:
    ann, bob, gleb = (grades_of(answers[f"grades/{n}"])["scale"] for n in ("ann", "bob", "gleb"))
    assert (ann["graderaw"], ann["gradeformatted"], ann["percentageformatted"]) == (
        4, PASS_ICON + "отлично", "100.00 %")
    assert (bob["gradeformatted"], bob["percentageformatted"]) == (FAIL_ICON + "удовлетворительно", "33.33 %")
    assert (gleb["gradeformatted"], gleb["percentageformatted"]) == (FAIL_ICON + "неудовлетворительно", "0.00 %")
    assert (ann["grademin"], ann["grademax"], ann["rangeformatted"]) == (1, 4, "неудовлетворительно&ndash;отлично")
    assert ann["scaleid"] is None  # sic: the report fills scaleid with the item's outcomeid


def test_letters_are_the_courses_own(answers: dict[str, Any]) -> None:
    ann, bob = grades_of(answers["grades/ann"]), grades_of(answers["grades/bob"])
    assert (ann["letter"]["gradeformatted"], ann["letter"]["graderaw"], ann["letter"]["percentageformatted"]) == (
        "отлично", 88, "88.00 %")
    # the course total: 207 of 254 is 81.5 %, «хорошо», and reaches its pass grade (127)
    assert (ann["total"]["gradeformatted"], ann["total"]["graderaw"], ann["total"]["grademax"]) == (
        PASS_ICON + "хорошо", 207, 254)
    assert (bob["total"]["gradeformatted"], bob["total"]["percentageformatted"]) == (
        FAIL_ICON + "неудовлетворительно", "48.03 %")


def test_an_overridden_course_total(answers: dict[str, Any]) -> None:
    total = grades_of(answers["grades/gleb"])["total"]
    assert (total["graderaw"], total["gradeisoverridden"], total["gradeformatted"], total["percentageformatted"],
            total["gradedategraded"]) == (150, True, PASS_ICON + "удовлетворительно", "59.06 %", "<now>")


def test_dates_graded_and_submitted(answers: dict[str, Any]) -> None:
    """An activity's grade keeps the dates grade_update() was given; a grade typed in is graded "now"."""
    ann = grades_of(answers["grades/ann"])
    assert (ann["essay"]["gradedatesubmitted"], ann["essay"]["gradedategraded"]) == (scenario.SUBMITTED,
                                                                                      scenario.GRADED)
    assert (ann["num"]["gradedatesubmitted"], ann["num"]["gradedategraded"]) == (None, "<now>")


def test_completion_only_for_actively_enrolled_students(answers: dict[str, Any]) -> None:
    """bob and vera completed the course too, but a suspended or unenrolled student is not tracked; and the
    answer has no course completion time, only each criterion's."""
    ann = answers["completion/ann"]["completionstatus"]
    assert ann["completed"] is True and [c["timecompleted"] for c in ann["completions"]] == [scenario.SELF_DONE]
    for name in ("bob", "vera"):
        assert answers[f"completion/{name}"] == {"exception": "core\\exception\\moodle_exception",
                                                 "errorcode": "usernotenroled",
                                                 "message": "User is not enrolled in this course"}
    assert answers["completion/gleb"]["completionstatus"]["completed"] is False
