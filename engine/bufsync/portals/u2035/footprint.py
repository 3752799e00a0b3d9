"""The footprint read from Moodle: what each learner with a UNTI id did, as facts that become xAPI statements.

Per course in scope (a few in flight): the enrolled learners (one call; their profile fields come with them), every
grade (the shared grade reader's one call; its items also name the activities), the assignments and their
submissions with their files, each learner's activity completion and course completion (one call per learner each:
Moodle 4.5 has no bulk function; or the custom completion report, as the grade settings say).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bufsync.adapters.moodle import completion
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities.grades import Grade, course_grades
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.portals.u2035.settings import U2035Settings

# Moodle's completion state -> success (None: no pass/fail); 4 (a fail of a hidden grade item) never completes
COMPLETE_STATES = {1: None, 2: True, 3: False}
UNTI_ID_MAX = 64  # sync_u2035_statements.unti_id (as buf_users.unti_id): a longer value is no UNTI id


@dataclass(slots=True)  # one per fact of the site: kept small
class Fact:
    """One thing a learner did, before it has a statement id."""

    key: str                     # fact_key: unique, stable across runs
    kind: str                    # enrolment, activity, grade, completion, submission
    unti_id: str
    user_id: int
    course: dict[str, Any]       # the Moodle course: id, idnumber, shortname, fullname
    verb: str
    object: dict[str, Any]
    result: dict[str, Any] | None = None
    occurred_at: datetime | None = None   # None: Moodle keeps no time for it (an enrolment): first seen
    files: list[dict[str, Any]] = field(default_factory=list)  # submitted files: fileurl, filename, filesize, ...
    cmid: int | None = None
    parent: dict[str, Any] | None = None  # the course, for an activity's statement (a course's own names none)

    @property
    def fingerprint(self) -> str:
        """What makes a new statement: a changed grade, a resubmission, another UNTI id."""
        content = [self.unti_id, self.verb, self.object.get("id"), self.result,
                   self.occurred_at.isoformat() if self.occurred_at else None,
                   [(f.get("filename"), f.get("filesize"), f.get("timemodified")) for f in self.files]]
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _moment(seconds: Any) -> datetime | None:
    return datetime.fromtimestamp(int(seconds), UTC).replace(tzinfo=None) if seconds else None


class Footprint:
    """Reads the facts of the courses in scope, course by course."""

    def __init__(self, client: MoodleClient, settings: U2035Settings, site: str, grade_settings: Any,
                 unti_of: dict[str, str]) -> None:
        self.client = client
        self.settings = settings
        self.base = (settings.profile.object_base or site).rstrip("/")
        self.grades = grade_settings
        self.unti_of = unti_of          # Moodle idnumber -> UNTI id (source: buffer)
        self.facts = set(settings.facts)
        self.without_unti: set[int] = set()
        self.too_long: dict[int, str] = {}   # Moodle user id -> a UNTI id longer than UNTI_ID_MAX (left out)
        self.reported: dict[str, dict[str, datetime]] = {}

    # -- objects -------------------------------------------------------------------------------------------------
    def course_object(self, course: dict[str, Any]) -> dict[str, Any]:
        return {"objectType": "Activity", "id": f"{self.base}/course/view.php?id={course['id']}",
                "definition": {"type": "http://adlnet.gov/expapi/activities/course",
                               "name": {self.settings.profile.language: course.get("fullname") or course.get(
                                   "shortname") or str(course["id"])}}}

    def module_object(self, cmid: int, modname: str, name: str | None) -> dict[str, Any]:
        kind = ("http://adlnet.gov/expapi/activities/assessment" if modname in ("quiz", "assign", "workshop")
                else "http://adlnet.gov/expapi/activities/module")
        definition: dict[str, Any] = {"type": kind}
        if name:
            definition["name"] = {self.settings.profile.language: name}
        return {"objectType": "Activity", "id": f"{self.base}/mod/{modname}/view.php?id={cmid}",
                "definition": definition}

    # -- the read -----------------------------------------------------------------------------------------------
    def read(self, courses: list[dict[str, Any]]) -> Iterator[Fact]:
        if "completion" in self.facts and getattr(self.grades, "completion", "per_user") == "report" and courses:
            for (idnumber, user), moment in completion.report_completions(
                    self.client, self.grades.completion_report).items():
                self.reported.setdefault(idnumber, {})[user] = moment
        step = max(1, self.client.concurrency)
        for start in range(0, len(courses), step):
            for facts in self.client.parallel(courses[start:start + step], self.course):
                yield from facts

    def learners(self, course: dict[str, Any]) -> dict[int, tuple[dict[str, Any], str]]:
        """Moodle user id -> (the user, the UNTI id) of the course's learners who have one."""
        wanted = set(self.settings.student_roles)
        out = {}
        for user in self.client.get_enrolled_users(course["id"], onlyactive=True):
            if not wanted & {r.get("shortname") for r in user.get("roles") or []}:
                continue
            unti = self.unti(user)
            if unti and len(unti) > UNTI_ID_MAX:  # no UNTI id is this long: a wrong value, left out alone
                self.too_long[int(user["id"])] = unti
                unti = None
            if unti:
                out[int(user["id"])] = (user, unti)
            else:
                self.without_unti.add(int(user["id"]))
        return out

    def unti(self, user: dict[str, Any]) -> str | None:
        if self.settings.actor.source == "buffer":
            return self.unti_of.get(str(user.get("idnumber") or "")) or None
        for custom in user.get("customfields") or []:
            if custom.get("shortname") == self.settings.actor.field:
                value = str(custom.get("value") or "").strip()
                return value or None
        return None

    def course(self, course: dict[str, Any]) -> list[Fact]:
        """Every fact of one course; a Moodle error about this course alone skips it (the next run reads it)."""
        learners = self.learners(course)
        if not learners:
            return []
        out: list[Fact] = []
        # activity names as Moodle's gradebook and assignments give them (cmid -> (module, name)); an activity
        # neither names is sent without a name (xAPI's definition.name is optional)
        grades = course_grades(self.client, course["id"]) if self.facts & {"grade", "activity"} else []
        assignments = self.client.assignments([course["id"]]) if "submission" in self.facts else []
        names: dict[int, tuple[str, str]] = {g.cmid: (g.module or "mod", g.name or "") for g in grades if g.cmid}
        names.update({int(a["cmid"]): ("assign", str(a.get("name") or "")) for a in assignments})
        if "enrolment" in self.facts:
            for userid, (_, unti) in learners.items():
                out.append(Fact(f"enrolment:{course['id']}:{userid}", "enrolment", unti, userid, course,
                                self.settings.profile.verbs.enrolment, self.course_object(course)))
        if "activity" in self.facts:
            out += self._activities(course, learners, names)
        if "grade" in self.facts:
            out += self._grades(course, learners, names, grades)
        if "completion" in self.facts:
            out += self._completions(course, learners)
        if "submission" in self.facts:
            out += self._submissions(course, learners, names, assignments)
        return out

    def _activities(self, course: dict[str, Any], learners: dict[int, tuple[dict[str, Any], str]],
                    names: dict[int, tuple[str, str]]) -> list[Fact]:
        def one(userid: int) -> list[Fact]:
            try:
                statuses = self.client.activities_completion(course["id"], userid)
            except MoodleError as exc:
                if exc.errorcode in completion.UNTRACKED_COURSE or exc.errorcode == "usernotenroled":
                    return []
                raise
            facts = []
            for status in statuses:
                state = int(status.get("state") or 0)
                # a fail (3) completes an activity that asks for any grade, not one that asks for the pass grade
                # (completionpassgrade): Moodle 4.x says which in isoverallcomplete (absent before 4.0)
                if state not in COMPLETE_STATES or status.get("isoverallcomplete") is False:
                    continue
                cmid = int(status["cmid"])
                modname, name = names.get(cmid, (str(status.get("modname")), ""))
                success = COMPLETE_STATES[state]
                result: dict[str, Any] = {"completion": True}
                if success is not None:
                    result["success"] = success
                facts.append(Fact(f"activity:{cmid}:{userid}", "activity", learners[userid][1], userid, course,
                                  self.settings.profile.verbs.activity, self.module_object(cmid, modname, name),
                                  result, _moment(status.get("timecompleted")), cmid=cmid,
                                  parent=self.course_object(course)))
            return facts
        return [f for facts in self.client.parallel(sorted(learners), one) for f in facts]

    def _grades(self, course: dict[str, Any], learners: dict[int, tuple[dict[str, Any], str]],
                names: dict[int, tuple[str, str]], grades: list[Grade]) -> list[Fact]:
        verbs = self.settings.profile.verbs
        out = []
        for grade in grades:
            if grade.userid not in learners or grade.raw is None or grade.kind not in ("course", "mod", "manual"):
                continue
            obj = self._graded_object(course, grade, names)
            if obj is None:
                continue
            result: dict[str, Any] = {"score": _score(grade)}
            if grade.passed is not None:
                result["success"] = grade.passed
            verb = verbs.scored if grade.passed is None else verbs.passed if grade.passed else verbs.failed
            out.append(Fact(f"grade:{grade.itemid}:{grade.userid}", "grade", learners[grade.userid][1], grade.userid,
                            course, verb, obj, result, _moment(grade.graded), cmid=grade.cmid,
                            parent=None if grade.total else self.course_object(course)))
        return out

    def _graded_object(self, course: dict[str, Any], grade: Grade, names: dict[int, tuple[str, str]]
                       ) -> dict[str, Any] | None:
        if grade.total:
            return self.course_object(course)
        if grade.cmid:
            modname, name = names.get(grade.cmid, (grade.module or "mod", grade.name or ""))
            return self.module_object(grade.cmid, modname, name or grade.name)
        return {"objectType": "Activity", "id": f"{self.base}/grade/report/user/index.php?id={course['id']}"
                                                f"&itemid={grade.itemid}",
                "definition": {"type": "http://adlnet.gov/expapi/activities/assessment",
                               "name": {self.settings.profile.language: grade.name or str(grade.itemid)}}}

    def _completions(self, course: dict[str, Any], learners: dict[int, tuple[dict[str, Any], str]]) -> list[Fact]:
        how = getattr(self.grades, "completion", "per_user")
        if how == "off":
            return []
        if how == "report":
            done = self.reported.get(str(course.get("idnumber") or ""), {})
            found: dict[int, datetime | None] = {uid: done[str(u.get("idnumber"))] for uid, (u, _) in
                                                 learners.items() if str(u.get("idnumber") or "") in done}
        else:
            found = completion.completed_students(self.client, course["id"], sorted(learners))
        return [Fact(f"completion:{course['id']}:{uid}", "completion", learners[uid][1], uid, course,
                     self.settings.profile.verbs.completion, self.course_object(course), {"completion": True},
                     moment.replace(tzinfo=None) if moment is not None and moment.tzinfo else moment)
                for uid, moment in sorted(found.items())]

    def _submissions(self, course: dict[str, Any], learners: dict[int, tuple[dict[str, Any], str]],
                     names: dict[int, tuple[str, str]], assignments: list[dict[str, Any]]) -> list[Fact]:
        if not assignments:
            return []
        cmids = {int(a["id"]): int(a["cmid"]) for a in assignments}
        out = []
        for group in self.client.submissions(sorted(cmids)):
            cmid = cmids.get(int(group["assignmentid"]))
            if cmid is None:
                continue
            for submission in group.get("submissions") or []:
                userid = int(submission.get("userid") or 0)
                if userid not in learners or submission.get("status") != "submitted":
                    continue
                files = [f for plugin in submission.get("plugins") or [] if plugin.get("type") == "file"
                         for area in plugin.get("fileareas") or [] for f in area.get("files") or []]
                modname, name = names.get(cmid, ("assign", ""))
                out.append(Fact(f"submission:{submission['id']}", "submission", learners[userid][1], userid, course,
                                self.settings.profile.verbs.submission, self.module_object(cmid, "assign", name),
                                {"completion": True}, _moment(submission.get("timemodified")),
                                [{"fileurl": f["fileurl"], "filename": f.get("filename"),
                                  "filesize": int(f.get("filesize") or 0), "mimetype": f.get("mimetype"),
                                  "timemodified": f.get("timemodified")} for f in files], cmid=cmid,
                                parent=self.course_object(course)))
        return out


def _score(grade: Grade) -> dict[str, Any]:
    score: dict[str, Any] = {"raw": float(grade.raw) if grade.raw is not None else None,
                             "min": float(grade.grademin)}
    if grade.grademax is not None:
        score["max"] = float(grade.grademax)
    if grade.percent is not None:
        score["scaled"] = round(grade.percent / 100, 4)
    # xAPI: raw within [min, max]; Moodle may hold an overridden grade outside it
    if score.get("max") is not None and score["raw"] is not None:
        score["raw"] = min(max(score["raw"], score["min"]), score["max"])
    return score


def courses_in_scope(client: MoodleClient, settings: U2035Settings, managed: set[int]) -> list[dict[str, Any]]:
    """The Moodle courses whose footprint is sent: managed by bufsync, or every course with an idnumber."""
    found = [c for c in client.get_courses_by_field() if c.get("format") != "site" and int(c["id"]) != 1]
    if settings.courses == "managed":
        return [c for c in found if int(c["id"]) in managed]
    return [c for c in found if c.get("idnumber")]
