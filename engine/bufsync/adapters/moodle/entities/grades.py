"""Grades read back for 1C: per course, the course total and each grade item that has an idnumber, for every
student Moodle's user report lists.

One call per course (gradereport_user_get_grade_items with userid 0: every active graded user; no Moodle 4.5
function returns only what changed since a time), several in flight. Each student's records are one page that
covers that student in that course, so an item deleted in Moodle marks its rows removed. A student the report
leaves out is not concluded gone by that alone: Moodle's user report omits suspended enrolments
(grade_report_showonlyactiveenrol), whose grades stay, as it omits people unenrolled, whose grades Moodle
deleted; an enrolment read of that course tells them apart.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bufsync.adapters.moodle import completion
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import register
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.mapping.model import Mapping
from bufsync.reconcile.adapter import Page, Scope

_TAG = re.compile(r"<[^>]*>")
# pix_icon('i/valid') / ('i/invalid') as Font Awesome renders them (boost and classic themes), whatever the language
_PASS_ICON = re.compile(r'<i\b[^>]*\bclass="[^"]*\b(?:(fa-check\b[^"]*\btext-success)|fa-xmark\b[^"]*\btext-danger'
                        r'|fa-times\b[^"]*\btext-danger)[^"]*"[^>]*>')
COURSE_TOTAL = "course"  # the row's `item` for the course total; an item's own idnumber otherwise
GRADED_TYPES = ("mod", "manual")  # category totals are not read: 1C asks for the course and its items


def number(text: Any) -> Decimal | None:
    """A number Moodle formatted ("87.50 %", "87,50", "-"), or None when it is not one."""
    if text is None:
        return None
    cleaned = html.unescape(str(text)).replace("%", "").replace("\xa0", "").replace(" ", "").replace(",", ".")
    if cleaned in ("", "-"):
        return None
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Grade:
    """One grade of Moodle's user report, as every reader of bufsync takes it (buf_grades for 1C, the СЦОС
    results and progress): one place that knows the report's fields."""

    userid: int
    user_idnumber: str | None
    course_idnumber: str | None
    itemid: int
    kind: str                 # the item's type: course (the total), mod, manual, category
    idnumber: str | None      # the item's idnumber
    name: str | None
    raw: float | None         # the grade (the final one: an override included); None: not graded
    grademin: float
    grademax: float | None
    formatted: Any            # as the course shows it: a number, a scale's word, a letter
    graded: int | None        # when graded (Unix time)
    cmid: int | None = None   # the activity a module's item grades
    module: str | None = None  # its module: assign, quiz, ...

    @property
    def total(self) -> bool:
        return self.kind == "course"

    @property
    def percent(self) -> float | None:
        """The grade's share of its range, 0..100, to 2 decimals (what Moodle's percentage display shows)."""
        if self.raw is None or self.grademax is None or float(self.grademax) <= float(self.grademin):
            return None
        share = (float(self.raw) - float(self.grademin)) / (float(self.grademax) - float(self.grademin)) * 100
        return round(max(0.0, min(100.0, share)), 2)

    @property
    def shown(self) -> str:
        """The grade as the report shows it, without the markup around it (the pass/fail icon)."""
        return html.unescape(_TAG.sub("", str(self.formatted or ""))).strip()

    @property
    def text(self) -> str | None:
        """The grade in words when the course shows it so (a scale, letters): «отлично», «зачтено», «A»; a plain
        number is not text."""
        shown = self.shown
        if shown in ("", "-") or number(shown) is not None:
            return None
        return shown

    @property
    def passed(self) -> bool | None:
        """Whether the grade reached its item's pass grade: the user report puts a pass or fail icon before a
        grade whose item has one (grade_grade::is_passed); None: no pass grade, or not graded."""
        icon = _PASS_ICON.search(str(self.formatted or ""))
        if icon is None:
            return None
        return icon.group(1) is not None


def course_grades(client: MoodleClient, courseid: int) -> list[Grade]:
    """Every grade of a course's active students, in one call (the user report with userid 0)."""
    out = []
    for usergrade in client.grade_items(courseid):
        for item in usergrade.get("gradeitems") or []:
            out.append(Grade(int(usergrade["userid"]), usergrade.get("useridnumber") or None,
                             usergrade.get("courseidnumber") or None, int(item["id"]), str(item.get("itemtype")),
                             item.get("idnumber") or None, item.get("itemname"), item.get("graderaw"),
                             item.get("grademin") or 0, item.get("grademax"), item.get("gradeformatted"),
                             item.get("gradedategraded") or None, int(item["cmid"]) if item.get("cmid") else None,
                             item.get("itemmodule") or None))
    return out


def record(grade: Grade, item: str, completed: datetime | None = None) -> dict[str, Any]:
    """One grade as the grades mapping's `source` fields name it; `completed`: when the student completed the
    course (every row of theirs in that course carries it)."""
    percent = grade.percent
    return {"user_idnumber": grade.user_idnumber, "course_idnumber": grade.course_idnumber, "item_idnumber": item,
            "graderaw": grade.raw, "grademax": grade.grademax, "percentage": percent,
            "gradeformatted": grade.text, "passed": grade.passed, "timecompleted": completed,
            "gradedategraded": grade.graded}


@dataclass
class _CourseRead:
    courseid: int
    grades: list[Grade]
    completed: dict[str, datetime]  # user idnumber -> when they completed the course


@register("grade")
class GradeReader:
    """The `grade` entity read back (an outbound mapping's SourceAdapter)."""

    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        grades = getattr(settings, "grades", None)
        self.managed_only: bool = getattr(grades, "courses", "managed") == "managed"
        self.items: bool = bool(getattr(grades, "items", True))
        self.completion: str = getattr(grades, "completion", "per_user")
        self.report_id: int | None = getattr(grades, "completion_report", None)
        self.budget: float | None = getattr(grades, "time_budget", None)
        self._reported: dict[str, dict[str, datetime]] = {}  # course idnumber -> user idnumber -> completed

    def _courses(self, scope: Scope) -> list[int]:
        if self.managed_only:
            return [int(c) for c in scope.linked("course")]
        return sorted(int(c["id"]) for c in self.client.get_courses_by_field()
                      if c.get("idnumber") and int(c["id"]) != 1)

    def _course(self, courseid: int) -> _CourseRead:
        try:
            grades = course_grades(self.client, courseid)
        except MoodleError as exc:
            if exc.errorcode == "invalidrecord":  # deleted in Moodle since it was linked: nothing to read
                return _CourseRead(courseid, [], {})
            raise
        return _CourseRead(courseid, grades, self._completed(courseid, grades))

    def _completed(self, courseid: int, grades: list[Grade]) -> dict[str, datetime]:
        if self.completion == "off" or not grades:
            return {}
        if self.completion == "report":
            return self._reported.get(grades[0].course_idnumber or "", {})
        students = {g.userid: g.user_idnumber for g in grades if g.user_idnumber}
        found = completion.course_completions(self.client, courseid, sorted(students))
        return {students[userid]: moment for userid, moment in found.items()}

    def read(self, scope: Scope) -> Iterator[Page]:
        started = time.monotonic()
        courses = self._resumed(self._courses(scope), scope.resume_at())
        if self.completion == "report" and courses:
            assert self.report_id is not None  # the settings refuse `report` without it
            self._reported = {}  # by course once: each course's lookup is not a pass over the whole site's
            for (idnumber, user), moment in completion.report_completions(self.client, self.report_id).items():
                self._reported.setdefault(idnumber, {})[user] = moment
        held: dict[str, set[str]] | None = None  # course idnumber -> students with rows: asked once, if needed
        step = max(1, self.client.concurrency) * 2  # a few courses in flight; memory holds only theirs
        for start in range(0, len(courses), step):
            if start and self.budget is not None and time.monotonic() - started >= self.budget:
                scope.stopped_at(str(courses[start]))
                scope.note(f"time budget {self.budget:g} s spent: read {start} of {len(courses)} courses; the next "
                           f"run starts with course id {courses[start]}")
                return
            for course in self.client.parallel(courses[start:start + step], self._course):
                yield from self._pages(course)
                if held is None:
                    held = {}
                    for values in scope.held():
                        held.setdefault(values["course_external_id"], set()).add(values["user_external_id"])
                yield from self._unenrolled(course.courseid, course.grades, held)
        scope.stopped_at(None)

    @staticmethod
    def _resumed(courses: list[int], position: str | None) -> list[int]:
        """The courses in id order from where the last read under a time budget stopped, round the circle."""
        if not position or not position.isdigit():
            return courses
        ordered = sorted(courses)
        first = next((i for i, c in enumerate(ordered) if c >= int(position)), 0)
        return ordered[first:] + ordered[:first]

    def _unenrolled(self, courseid: int, grades: list[Grade], held: dict[str, set[str]]) -> Iterator[Page]:
        """An empty page for each student with rows whom the report left out and who is no longer enrolled.

        The report omits suspended enrolments and unenrolled people alike; Moodle deletes an unenrolled
        person's grades, a suspended one's stay. One enrolment read tells them apart, only for a course where
        someone with rows is missing (never on a run where nobody left)."""
        course = grades[0].course_idnumber if grades else self._idnumber(courseid)
        if not course or not held.get(course):
            return
        absent = held[course] - {g.user_idnumber for g in grades if g.user_idnumber}
        if not absent:
            return
        try:
            enrolled = {str(u.get("idnumber") or "") for u in self.client.get_enrolled_users(
                courseid, userfields="id,idnumber")}  # any enrolment, suspended ones included
        except MoodleError as exc:
            if exc.errorcode == "invalidrecord":
                return
            raise
        for user in sorted(absent - enrolled):
            yield Page([], covers={"course_external_id": course, "user_external_id": user})

    def _idnumber(self, courseid: int) -> str | None:
        """A course's idnumber when its report listed nobody (every student left): one call, that course only."""
        found = self.client.get_courses_by_field("id", courseid)
        return (found[0].get("idnumber") or None) if found else None

    def _pages(self, course: _CourseRead) -> Iterator[Page]:
        """One page a student: it covers that student in that course (a student the report left out is not
        concluded gone)."""
        by_user: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for grade in course.grades:
            if not grade.user_idnumber or not grade.course_idnumber:
                continue  # a person or course without an idnumber has no row 1C could match
            rows = by_user.setdefault((grade.course_idnumber, grade.user_idnumber), [])
            completed = course.completed.get(grade.user_idnumber)
            if grade.total:
                rows.append(record(grade, COURSE_TOTAL, completed))
            elif self.items and grade.kind in GRADED_TYPES and grade.idnumber:
                rows.append(record(grade, grade.idnumber, completed))
        for (course_idnumber, user), rows in by_user.items():
            yield Page(rows, covers={"course_external_id": course_idnumber, "user_external_id": user})
