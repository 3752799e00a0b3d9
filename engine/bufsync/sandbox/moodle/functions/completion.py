"""Course and activity completion (core_completion_get_course_completion_status,
core_completion_get_activities_completion_status), as Moodle 4.5's completion API reports it.

Criteria supported: self completion, manual completion by a role, date, enrolment duration and
course grade; overall aggregation all/any, role aggregation all/any. What Moodle's cron does
(marking the course complete once the criteria are met) is the `mark_completion` admin action
with aggregate=True. Dates in criteria texts are in the reading user's time zone (dates.py).
"""

from __future__ import annotations

from typing import Any

from bufsync.sandbox.moodle.dates import STRFTIMEDATEMONTHABBR, userdate
from bufsync.sandbox.moodle.errors import WsError, moodle_exception
from bufsync.sandbox.moodle.functions.cohorts import CONTEXT_COURSE
from bufsync.sandbox.moodle.functions.grades import (
    course_item,
    get_course,
    get_user_record,
    has_capability,
    number_format,
    regrade,
    require_capability,
)
from bufsync.sandbox.moodle.params import Multiple, Single, Value
from bufsync.sandbox.moodle.site import Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS course_completion_criteria (
    id INTEGER PRIMARY KEY, course INTEGER NOT NULL DEFAULT 0, criteriatype INTEGER NOT NULL DEFAULT 0, module TEXT,
    moduleinstance INTEGER, courseinstance INTEGER, enrolperiod INTEGER, timeend INTEGER, gradepass REAL, role INTEGER);
CREATE TABLE IF NOT EXISTS course_completion_crit_compl (
    id INTEGER PRIMARY KEY, userid INTEGER NOT NULL DEFAULT 0, course INTEGER NOT NULL DEFAULT 0,
    criteriaid INTEGER NOT NULL DEFAULT 0, gradefinal REAL, unenroled INTEGER, timecompleted INTEGER,
    UNIQUE (userid, course, criteriaid));
CREATE TABLE IF NOT EXISTS course_completion_aggr_methd (
    id INTEGER PRIMARY KEY, course INTEGER NOT NULL DEFAULT 0, criteriatype INTEGER, method INTEGER NOT NULL DEFAULT 0,
    value REAL);
CREATE TABLE IF NOT EXISTS course_completions (
    id INTEGER PRIMARY KEY, userid INTEGER NOT NULL DEFAULT 0, course INTEGER NOT NULL DEFAULT 0,
    timeenrolled INTEGER NOT NULL DEFAULT 0, timestarted INTEGER NOT NULL DEFAULT 0, timecompleted INTEGER,
    reaggregate INTEGER NOT NULL DEFAULT 0, UNIQUE (userid, course));
CREATE TABLE IF NOT EXISTS course_modules_completion (
    id INTEGER PRIMARY KEY, coursemoduleid INTEGER NOT NULL, userid INTEGER NOT NULL,
    completionstate INTEGER NOT NULL, overrideby INTEGER, timemodified INTEGER NOT NULL,
    viewed INTEGER NOT NULL DEFAULT 0, UNIQUE (userid, coursemoduleid));
""")

COMPLETION_CRITERIA_TYPE_SELF, COMPLETION_CRITERIA_TYPE_DATE, COMPLETION_CRITERIA_TYPE_UNENROL = 1, 2, 3
COMPLETION_CRITERIA_TYPE_ACTIVITY, COMPLETION_CRITERIA_TYPE_DURATION, COMPLETION_CRITERIA_TYPE_GRADE = 4, 5, 6
COMPLETION_CRITERIA_TYPE_ROLE, COMPLETION_CRITERIA_TYPE_COURSE = 7, 8
COMPLETION_AGGREGATION_ALL, COMPLETION_AGGREGATION_ANY = 1, 2
COMPLETION_TRACKING_NONE, COMPLETION_TRACKING_MANUAL, COMPLETION_TRACKING_AUTOMATIC = 0, 1, 2
COMPLETION_INCOMPLETE, COMPLETION_COMPLETE, COMPLETION_COMPLETE_PASS, COMPLETION_COMPLETE_FAIL = 0, 1, 2, 3
CRITERIA_TYPES = {"self": COMPLETION_CRITERIA_TYPE_SELF, "date": COMPLETION_CRITERIA_TYPE_DATE,
                  "duration": COMPLETION_CRITERIA_TYPE_DURATION, "grade": COMPLETION_CRITERIA_TYPE_GRADE,
                  "role": COMPLETION_CRITERIA_TYPE_ROLE}
AGGREGATIONS = {"all": COMPLETION_AGGREGATION_ALL, "any": COMPLETION_AGGREGATION_ANY,
                COMPLETION_AGGREGATION_ALL: COMPLETION_AGGREGATION_ALL,
                COMPLETION_AGGREGATION_ANY: COMPLETION_AGGREGATION_ANY}
SITE_COMPLETION_ENABLED = True  # $CFG->enablecompletion on the recorded site


# --- helpers ------------------------------------------------------------------------------------

def date_monthabbr(site: Site, timestamp: int) -> str:
    """userdate($t, get_string('strftimedatemonthabbr', 'langconfig')): '6 Sep 2025', the day unpadded, in the
    caller's time zone (a criterion's date; the report builder's dates are dates.userdate's default format)."""
    return userdate(site, timestamp, fmt=STRFTIMEDATEMONTHABBR)


def course_enabled(course: Any) -> bool:
    """completion_info::is_enabled(): site-wide setting and the course's enablecompletion."""
    return SITE_COMPLETION_ENABLED and bool(course["enablecompletion"])


def criteria(site: Site, courseid: int) -> list[Any]:
    """completion_info::get_criteria(): the course's criteria (in id order, as the recorded site stored them)."""
    return list(site.store.q("SELECT * FROM course_completion_criteria WHERE course = ? ORDER BY id", (courseid,)))


def aggregation_method(site: Site, courseid: int, criteriatype: int | None = None) -> int:
    """completion_info::get_aggregation_method(): ALL unless a row says otherwise."""
    if criteriatype is None:
        row = site.store.one("SELECT method FROM course_completion_aggr_methd "
                             "WHERE course = ? AND criteriatype IS NULL", (courseid,))
    else:
        row = site.store.one("SELECT method FROM course_completion_aggr_methd WHERE course = ? AND criteriatype = ?",
                             (courseid, criteriatype))
    return int(row["method"]) if row is not None else COMPLETION_AGGREGATION_ALL


def is_tracked_user(site: Site, courseid: int, userid: int) -> bool:
    """completion_info::is_tracked_user(): an active enrolment and a role 'shown on completion reports' (student)."""
    from bufsync.sandbox.moodle.functions import enrol
    if not enrol.is_enrolled(site, userid, courseid, active_only=True):
        return False
    context = enrol.course_context(site, courseid) or enrol.Context(CONTEXT_COURSE, courseid)
    return enrol.has_capability(site, "moodle/course:isincompletionreports", context, userid)


def _crit_completion(site: Site, courseid: int, userid: int, criteriaid: int) -> Any:
    return site.store.one("SELECT * FROM course_completion_crit_compl WHERE course = ? AND userid = ? "
                          "AND criteriaid = ?", (courseid, userid, criteriaid))


def course_completion(site: Site, courseid: int, userid: int) -> Any:
    return site.store.one("SELECT * FROM course_completions WHERE course = ? AND userid = ?", (courseid, userid))


def is_course_complete(site: Site, courseid: int, userid: int) -> bool:
    row = course_completion(site, courseid, userid)
    return bool(row and row["timecompleted"])


def _role_title(site: Site, roleid: int) -> str:
    from bufsync.sandbox.moodle.functions import enrol
    role = site.store.one("SELECT * FROM role WHERE id = ?", (roleid,))
    if role is None:
        return f"[Role ID {roleid} not found]"
    return enrol.role_display_name(role)


def _timeenrolled(site: Site, courseid: int, userid: int) -> int:
    """completion_criteria_duration::get_timeenrolled(): timestart of the user's (first) enrolment, maybe 0."""
    row = site.store.one("SELECT ue.timestart FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid "
                         "WHERE e.courseid = ? AND ue.userid = ? ORDER BY ue.id", (courseid, userid))
    return int(row["timestart"] or 0) if row is not None else 0


def _course_grade(site: Site, courseid: int, userid: int) -> float | None:
    """grade_get_course_grade(): regrades first when the course total needs it."""
    regrade(site, courseid)
    total = course_item(site, courseid)
    row = site.store.one("SELECT finalgrade FROM grade_grades WHERE itemid = ? AND userid = ?", (total["id"], userid))
    return row["finalgrade"] if row is not None else None


def criteria_row(site: Site, crit: Any, userid: int) -> dict[str, Any]:
    """One entry of completionstatus.completions: type, title, status, complete, timecompleted, details."""
    courseid = crit["course"]
    done = _crit_completion(site, courseid, userid, crit["id"])
    timecompleted = done["timecompleted"] if done is not None else None
    complete = bool(timecompleted)
    kind = crit["criteriatype"]
    status = "Yes" if complete else "No"
    if kind == COMPLETION_CRITERIA_TYPE_SELF:
        title = "Self completion"
        details = {"type": title, "criteria": title, "requirement": "Marking yourself complete", "status": ""}
    elif kind == COMPLETION_CRITERIA_TYPE_ROLE:
        title = _role_title(site, crit["role"])
        details = {"type": "Manual completion by others", "criteria": title,
                   "requirement": f"Marked complete by {title}", "status": ""}
    elif kind == COMPLETION_CRITERIA_TYPE_DATE:
        title = "Date"
        if not complete:
            status = date_monthabbr(site, crit["timeend"])
        details = {"type": "Date passed", "criteria": "Remaining enrolled until a specified date",
                   "requirement": date_monthabbr(site, crit["timeend"]), "status": ""}
    elif kind == COMPLETION_CRITERIA_TYPE_DURATION:
        title = "Enrolment duration"
        period = -(-int(crit["enrolperiod"] or 0) // 86400)
        enrolled = _timeenrolled(site, courseid, userid)
        timeleft = enrolled + int(crit["enrolperiod"] or 0) - site.now()
        daysleft = -(-timeleft // 86400)
        status = f"{daysleft if daysleft > 0 else 0} of {period}"
        details = {"type": "Period post enrolment", "criteria": "Remaining enrolled for a specified period of time",
                   "requirement": f"{period} days", "status": f"{(site.now() - enrolled) // 86400} days"}
    elif kind == COMPLETION_CRITERIA_TYPE_GRADE:
        title = "Course grade"
        gradepass = number_format(float(crit["gradepass"] or 0), 2)
        grade = _course_grade(site, courseid, userid)
        status = f"{number_format(grade, 2) if grade else 'No grade'} ({gradepass} required)"
        details = {"type": "Course grade", "criteria": "Required course grade", "requirement": gradepass,
                   "status": number_format(grade, 2) if grade is not None else ""}
    else:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      f"Coding error detected, it must be fixed by a programmer: criteria type {kind} is not "
                      "emulated by the sandbox")
    return {"type": kind, "title": title, "status": status, "complete": complete, "timecompleted": timecompleted,
            "details": details}


# --- web-service functions -------------------------------------------------------------------------------

_COMPLETION_ROW = Single({
    "type": Value("int"), "title": Value("text"), "status": Value("notags"), "complete": Value("bool"),
    "timecompleted": Value("int"),
    "details": Single({"type": Value("text"), "criteria": Value("raw"), "requirement": Value("text"),
                       "status": Value("raw")}),
})
_WARNINGS = Multiple(Single({k: Value("raw") for k in ("item", "itemid", "warningcode", "message")}))


def _load_course_and_user(site: Site, courseid: int, userid: int) -> tuple[Any, Any]:
    """get_course(), core_user::get_user(MUST_EXIST), require_active_user(), validate_context()."""
    from bufsync.sandbox.moodle.functions import enrol
    course = get_course(site, courseid)
    user = get_user_record(site, userid)
    enrol.validate_context(site, enrol.course_context(site, courseid))
    return course, user


def _groups_visible(site: Site, course: Any, userid: int) -> bool:
    """groups_user_groups_visible(): in separate-groups mode, only users sharing a group (or all groups access)."""
    from bufsync.sandbox.moodle.functions import enrol
    groupmode = int(course["groupmode"] or 0) if "groupmode" in course.keys() else 0
    if groupmode != 1:  # SEPARATEGROUPS
        return True
    context = enrol.course_context(site, course["id"]) or enrol.Context(CONTEXT_COURSE, course["id"])
    if enrol.has_capability(site, "moodle/site:accessallgroups", context):
        return True
    shared = site.store.one("SELECT 1 FROM groups_members a JOIN groups_members b ON a.groupid = b.groupid "
                            "JOIN groups g ON g.id = a.groupid WHERE g.courseid = ? AND a.userid = ? AND b.userid = ?",
                            (course["id"], site.userid, userid))
    return shared is not None


@ws_function("core_completion_get_course_completion_status", {"courseid": Value("int"), "userid": Value("int")},
             returns=Single({"completionstatus": Single({"completed": Value("bool"), "aggregation": Value("int"),
                                                         "completions": Multiple(_COMPLETION_ROW)}),
                             "warnings": _WARNINGS}))
def get_course_completion_status(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Errors in Moodle's order: course, user, completion disabled (cannotviewreport), not tracked, no criteria."""
    course, user = _load_course_and_user(site, params["courseid"], params["userid"])
    if not course_enabled(course) or (user["id"] != site.userid and not has_capability(
            site, "report/completion:view", course["id"])):
        raise moodle_exception("cannotviewreport", "You cannot view this report")
    if user["id"] != site.userid and not _groups_visible(site, course, user["id"]):
        raise WsError("core\\exception\\moodle_exception", "accessdenied", "Access denied")
    if not is_tracked_user(site, course["id"], user["id"]):
        if user["id"] == site.userid:
            raise moodle_exception("notenroled", "You are not enrolled in this course")
        raise moodle_exception("usernotenroled", "User is not enrolled in this course")
    crits = criteria(site, course["id"])
    if not crits:
        raise moodle_exception("nocriteriaset", "No completion criteria set for this course")
    return {"completionstatus": {"completed": is_course_complete(site, course["id"], user["id"]),
                                 "aggregation": aggregation_method(site, course["id"]),
                                 "completions": [criteria_row(site, c, user["id"]) for c in crits]},
            "warnings": []}


_ACTIVITY_STATUS = Single({
    "cmid": Value("int"), "modname": Value("plugin"), "instance": Value("int"), "state": Value("int"),
    "timecompleted": Value("int"), "tracking": Value("int"), "overrideby": Value("int"),
    "valueused": Value("bool"), "hascompletion": Value("bool"), "isautomatic": Value("bool"),
    "istrackeduser": Value("bool"), "uservisible": Value("bool"),
    "details": Multiple(Single({"rulename": Value("text"),
                                "rulevalue": Single({"status": Value("int"), "description": Value("text")})})),
    "isoverallcomplete": Value("bool"),
})


def activities(site: Site, courseid: int) -> list[Any]:
    """completion_info::get_activities(): course modules with completion tracking, in course order."""
    return list(site.store.q(
        "SELECT cm.*, m.name AS modname FROM course_modules cm JOIN modules m ON m.id = cm.module "
        "WHERE cm.course = ? AND cm.completion <> 0 AND cm.deletioninprogress = 0 ORDER BY cm.section, cm.id",
        (courseid,)))


def _custom_rules(site: Site, cm: Any, userid: int, overridden: int | None) -> list[dict[str, Any]]:
    """The activity's own completion rules (cm_completion_details, after the core ones), each checked live as
    its custom_completion class does: assign's completionsubmit is met while the latest submission is submitted,
    whatever the stored state says (an override reports the overridden state)."""
    if cm["modname"] != "assign":
        return []
    assign = site.store.one("SELECT id, completionsubmit FROM assign WHERE id = ?", (cm["instance"],))
    if assign is None or not assign["completionsubmit"]:
        return []
    from bufsync.sandbox.moodle.functions.assign import submission_status
    live = COMPLETION_COMPLETE if submission_status(site, assign["id"], userid) == "submitted" else \
        COMPLETION_INCOMPLETE
    return [{"rulename": "completionsubmit", "rulevalue": {
        "status": overridden if overridden is not None else live, "description": "Make a submission"}}]


def activity_status(site: Site, cm: Any, userid: int, tracked: bool) -> dict[str, Any]:
    """completion_info_exporter for one activity and user."""
    data = site.store.one("SELECT * FROM course_modules_completion WHERE coursemoduleid = ? AND userid = ?",
                          (cm["id"], userid))
    state = int(data["completionstate"]) if data is not None else COMPLETION_INCOMPLETE
    overrideby = data["overrideby"] if data is not None else None
    details = []
    if cm["completion"] == COMPLETION_TRACKING_AUTOMATIC:
        if cm["completionview"]:
            viewed = bool(data and data["viewed"])
            details.append({"rulename": "completionview", "rulevalue": {
                "status": state if overrideby else (COMPLETION_COMPLETE if viewed else COMPLETION_INCOMPLETE),
                "description": "View"}})
        if cm["completiongradeitemnumber"] is not None:
            details.append({"rulename": "completionusegrade", "rulevalue": {
                "status": state, "description": "Receive a grade"}})
            if cm["completionpassgrade"]:
                details.append({"rulename": "completionpassgrade", "rulevalue": {
                    "status": COMPLETION_COMPLETE if state == COMPLETION_COMPLETE_PASS else COMPLETION_INCOMPLETE,
                    "description": "Receive a passing grade"}})
        details += _custom_rules(site, cm, userid, state if overrideby else None)
    if cm["completion"] == COMPLETION_TRACKING_MANUAL:
        overall = state == COMPLETION_COMPLETE
    elif cm["completion"] == COMPLETION_TRACKING_AUTOMATIC:
        allowed = (COMPLETION_COMPLETE, COMPLETION_COMPLETE_PASS) if cm["completionpassgrade"] else \
            (COMPLETION_COMPLETE, COMPLETION_COMPLETE_PASS, COMPLETION_COMPLETE_FAIL)
        overall = state in allowed
    else:
        overall = False
    return {"cmid": cm["id"], "modname": cm["modname"], "instance": cm["instance"], "state": state,
            "timecompleted": int(data["timemodified"]) if data is not None else 0, "tracking": cm["completion"],
            "overrideby": overrideby, "valueused": False, "hascompletion": cm["completion"] != 0,
            "isautomatic": cm["completion"] == COMPLETION_TRACKING_AUTOMATIC, "istrackeduser": tracked,
            "uservisible": True, "details": details, "isoverallcomplete": overall}


@ws_function("core_completion_get_activities_completion_status", {"courseid": Value("int"), "userid": Value("int")},
             returns=Single({"statuses": Multiple(_ACTIVITY_STATUS), "warnings": _WARNINGS}))
def get_activities_completion_status(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Activities with completion tracking only; an activity without tracking is not listed at all."""
    course, user = _load_course_and_user(site, params["courseid"], params["userid"])
    if user["id"] != site.userid:
        require_capability(site, "report/progress:view", course["id"])
        if not _groups_visible(site, course, user["id"]):
            raise WsError("core\\exception\\moodle_exception", "accessdenied", "Access denied")
    tracked = course_enabled(course) and is_tracked_user(site, course["id"], user["id"])
    statuses = []
    if course_enabled(course):
        for cm in activities(site, course["id"]):
            if not cm["visible"] and not has_capability(site, "moodle/grade:viewhidden", course["id"]):
                continue
            statuses.append(activity_status(site, cm, user["id"], tracked))
    return {"statuses": statuses, "warnings": []}


# --- marking completion (what the UI, the self-completion block and the cron do) -------------------------------

def _mark_inprogress(site: Site, courseid: int, userid: int, when: int) -> None:
    """completion_completion::mark_inprogress(): the course_completions row, started at the first criterion."""
    row = course_completion(site, courseid, userid)
    if row is None:
        site.store.insert("course_completions", {"id": site.store.next_id("course_completions"), "userid": userid,
                                                 "course": courseid, "timeenrolled": 0, "timestarted": when,
                                                 "timecompleted": None, "reaggregate": 0})
    elif not row["timestarted"]:
        site.store.update("course_completions", row["id"], {"timestarted": when})


def mark_criteria_complete(site: Site, crit: Any, userid: int, timecompleted: int | None = None) -> None:
    """completion_criteria_completion::mark_complete()."""
    when = timecompleted or site.now()
    row = _crit_completion(site, crit["course"], userid, crit["id"])
    if row is None:
        site.store.insert("course_completion_crit_compl", {
            "id": site.store.next_id("course_completion_crit_compl"), "userid": userid, "course": crit["course"],
            "criteriaid": crit["id"], "timecompleted": when})
    else:
        site.store.update("course_completion_crit_compl", row["id"], {"timecompleted": when})
    _mark_inprogress(site, crit["course"], userid, when)


def mark_course_complete(site: Site, courseid: int, userid: int, timecompleted: int | None = None) -> None:
    """completion_completion::mark_complete(): never changes an existing completion time."""
    when = timecompleted or site.now()
    _mark_inprogress(site, courseid, userid, when)
    row = course_completion(site, courseid, userid)
    if not row["timecompleted"]:
        site.store.update("course_completions", row["id"], {"timecompleted": when, "reaggregate": 0})


def aggregate_course(site: Site, courseid: int, userid: int) -> bool:
    """aggregate_completions() (lib/completionlib.php): is every (or any) criterion met? Then the course is complete,
    at the latest time among its criteria's completions."""
    crits = criteria(site, courseid)
    if not crits:
        return False
    overall = aggregation_method(site, courseid)
    groups: dict[int, list[bool]] = {}
    latest = 0
    for crit in crits:
        row = _crit_completion(site, courseid, userid, crit["id"])
        groups.setdefault(crit["criteriatype"], []).append(bool(row and row["timecompleted"]))
        latest = max(latest, int(row["timecompleted"] or 0) if row else 0)
    results = []
    for kind, states in groups.items():
        if kind in (COMPLETION_CRITERIA_TYPE_ROLE, COMPLETION_CRITERIA_TYPE_ACTIVITY, COMPLETION_CRITERIA_TYPE_COURSE):
            method = aggregation_method(site, courseid, kind)
            results.append(all(states) if method == COMPLETION_AGGREGATION_ALL else any(states))
        else:
            results.extend(states)
    done = all(results) if overall == COMPLETION_AGGREGATION_ALL else any(results)
    if done:  # aggregate_completions(): completed at the latest of the criteria's times, not when the task ran
        mark_course_complete(site, courseid, userid, latest or None)
    return done


def _criterion_for(site: Site, courseid: int, ref: Any) -> Any:
    """A criterion by id, by type name ('self', 'date', ...) or 'role:<shortname>' / 'role' (the first)."""
    crits = criteria(site, courseid)
    if isinstance(ref, int):
        found = [c for c in crits if c["id"] == ref]
    else:
        kind, _, role = str(ref).partition(":")
        if kind not in CRITERIA_TYPES:
            raise ValueError(f"unknown criteria {ref!r}; use a criteria id or one of {', '.join(CRITERIA_TYPES)}")
        found = [c for c in crits if c["criteriatype"] == CRITERIA_TYPES[kind]]
        if role:
            roles = {r["id"] for r in site.store.q("SELECT id FROM role WHERE shortname = ?", (role,))}
            found = [c for c in found if c["role"] in roles]
    if not found:
        raise ValueError(f"course {courseid} has no completion criterion {ref!r}")
    return found[0]


@admin_action("set_completion_criteria")
def admin_set_completion_criteria(site: Site, courseid: int, criteria: list[dict[str, Any]],
                                  aggregation: str | int = "all", role_aggregation: str | int = "all",
                                  enable: bool = False) -> dict[str, Any]:
    """What the course completion settings form saves: clear, then the criteria and aggregation methods.

    criteria items: {"type": "self"}, {"type": "role", "role": "editingteacher" or a role id},
    {"type": "date", "timeend": ts}, {"type": "duration", "days": n}, {"type": "grade", "gradepass": x}.
    enable=True also turns completion tracking on for the course.
    """
    course = get_course(site, courseid)
    if enable and not course["enablecompletion"]:
        site.store.update("course", courseid, {"enablecompletion": 1})
    for table in ("course_completion_criteria", "course_completion_aggr_methd", "course_completion_crit_compl",
                  "course_completions"):
        site.store.x(f"DELETE FROM {table} WHERE course = ?", (courseid,))
    ids = []
    for item in criteria:
        kind = item.get("type")
        if kind not in CRITERIA_TYPES:
            raise ValueError(f"unsupported criteria type {kind!r}; supported: {', '.join(CRITERIA_TYPES)}")
        row: dict[str, Any] = {"id": site.store.next_id("course_completion_criteria"), "course": courseid,
                               "criteriatype": CRITERIA_TYPES[kind]}
        if kind == "role":
            role = item.get("role")
            found = site.store.one("SELECT id FROM role WHERE id = ? OR shortname = ?", (role, str(role)))
            if found is None:
                raise ValueError(f"no such role {role!r}")
            row["role"] = found["id"]
        elif kind == "date":
            row["timeend"] = int(item["timeend"])
        elif kind == "duration":
            row["enrolperiod"] = int(item.get("enrolperiod") or int(item["days"]) * 86400)
        elif kind == "grade":
            row["gradepass"] = float(item["gradepass"])
        site.store.insert("course_completion_criteria", row)
        ids.append(row["id"])
    site.store.insert("course_completion_aggr_methd", {
        "id": site.store.next_id("course_completion_aggr_methd"), "course": courseid, "criteriatype": None,
        "method": AGGREGATIONS[aggregation]})
    if any(item.get("type") == "role" for item in criteria):
        site.store.insert("course_completion_aggr_methd", {
            "id": site.store.next_id("course_completion_aggr_methd"), "course": courseid,
            "criteriatype": COMPLETION_CRITERIA_TYPE_ROLE, "method": AGGREGATIONS[role_aggregation]})
    return {"criteria": ids}


@admin_action("mark_completion")
def admin_mark_completion(site: Site, courseid: int, userid: int | None = None, username: str | None = None,
                          criteria: list[Any] | None = None, complete_course: bool = False, aggregate: bool = False,
                          timecompleted: int | None = None) -> dict[str, Any]:
    """Mark criteria done for a user (self completion, a teacher's approval, ...) and, with complete_course,
    the course itself; aggregate=True instead lets the criteria decide (Moodle's completion cron)."""
    get_course(site, courseid)
    uid = userid
    if uid is None:
        row = site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0", (username,))
        if row is None:
            raise ValueError(f"no such user {username!r}")
        uid = int(row["id"])
    for ref in criteria or []:
        mark_criteria_complete(site, _criterion_for(site, courseid, ref), uid, timecompleted)
    if complete_course:
        mark_course_complete(site, courseid, uid, timecompleted)
    elif aggregate:
        aggregate_course(site, courseid, uid)
    return {"userid": uid, "completed": is_course_complete(site, courseid, uid)}


@admin_action("set_activity_completion")
def admin_set_activity_completion(site: Site, cmid: int, userid: int, state: int = COMPLETION_COMPLETE,
                                  viewed: bool = False, overrideby: int | None = None) -> dict[str, Any]:
    """An activity completion state for a user (course_modules_completion), as the activity would record it."""
    row = site.store.one("SELECT id FROM course_modules_completion WHERE coursemoduleid = ? AND userid = ?",
                         (cmid, userid))
    values = {"completionstate": state, "viewed": int(viewed), "overrideby": overrideby, "timemodified": site.now()}
    if row is None:
        site.store.insert("course_modules_completion", {"id": site.store.next_id("course_modules_completion"),
                                                        "coursemoduleid": cmid, "userid": userid, **values})
    else:
        site.store.update("course_modules_completion", row["id"], values)
    return {"cmid": cmid, "userid": userid, "state": state}


@admin_action("set_activity_tracking")
def admin_set_activity_tracking(site: Site, cmid: int, completion: int = COMPLETION_TRACKING_MANUAL,
                                completionview: int = 0, completiongradeitemnumber: int | None = None,
                                completionpassgrade: int = 0) -> dict[str, Any]:
    """Turn completion tracking of an activity on (1 manual, 2 automatic) or off (0)."""
    site.store.update("course_modules", cmid, {"completion": completion, "completionview": completionview,
                                                "completiongradeitemnumber": completiongradeitemnumber,
                                                "completionpassgrade": completionpassgrade})
    return {"cmid": cmid, "completion": completion}


# --- read helpers and hooks ------------------------------------------------------------------------------------

def completion_summary(site: Site, courseid: int, userid: int) -> dict[str, Any]:
    """For tests and sync checks: completed?, when, and each criterion's completion time."""
    row = course_completion(site, courseid, userid)
    states = []
    for crit in criteria(site, courseid):
        done = _crit_completion(site, courseid, userid, crit["id"])
        states.append({"id": crit["id"], "type": crit["criteriatype"],
                       "timecompleted": done["timecompleted"] if done is not None else None})
    return {"completed": bool(row and row["timecompleted"]), "timecompleted": row["timecompleted"] if row else None,
            "criteria": states}


@admin_action("completion_summary")
def admin_completion_summary(site: Site, courseid: int, userid: int) -> dict[str, Any]:
    """Read helper: a user's course completion state."""
    return completion_summary(site, courseid, userid)


def _completion_info(site: Site, course: Any, userid: int) -> dict[str, Any] | None:
    """For core_enrol_get_users_courses: completed, hascriteria and the activity progress percentage."""
    if not course_enabled(course):
        return None
    courseid = int(course["id"])
    progress = None
    if is_tracked_user(site, courseid, userid):
        cms = activities(site, courseid)
        if is_course_complete(site, courseid, userid):
            progress = 100.0
        elif cms:
            marks = ",".join("?" for _ in cms)
            done = site.store.row(
                f"SELECT COUNT(*) AS n FROM course_modules_completion WHERE userid = ? AND coursemoduleid IN ({marks}) "
                "AND completionstate IN (1, 2)", [userid, *[c["id"] for c in cms]])["n"]
            progress = done / len(cms) * 100
    return {"completed": is_course_complete(site, courseid, userid), "hascriteria": bool(criteria(site, courseid)),
            "progress": progress}


def _course_deleted(site: Site, courseid: int) -> None:
    """completion_info::delete_all_completion_data() and clear_criteria() for a deleted course."""
    for table in ("course_completion_criteria", "course_completion_aggr_methd", "course_completion_crit_compl",
                  "course_completions"):
        site.store.x(f"DELETE FROM {table} WHERE course = ?", (courseid,))
    site.store.x("DELETE FROM course_completion_criteria WHERE criteriatype = ? AND courseinstance = ?",
                 (COMPLETION_CRITERIA_TYPE_COURSE, courseid))


def _register() -> None:
    from bufsync.sandbox.moodle.functions import courses, enrol
    if _course_deleted not in courses.COURSE_DELETE_HOOKS:
        courses.COURSE_DELETE_HOOKS.append(_course_deleted)
    if _completion_info not in enrol.COMPLETION_INFO:
        enrol.COMPLETION_INFO.append(_completion_info)


_register()

