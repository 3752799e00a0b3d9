"""Assignments (mod_assign): mod_assign_get_assignments, mod_assign_get_submissions and the submission files that
webservice/pluginfile.php serves, as Moodle 4.5's mod/assign/externallib.php and assignsubmission_file_pluginfile
answer them (checked against a real 4.5: tests/integration/sandbox/test_assign.py).

What the real code does, and the sandbox with it:
- get_assignments: without courseids, the caller's enrolled courses; with courseids and
  includenotenrolledcourses off, a course the caller is not enrolled in is a warning (code 2) — a site admin's
  token must send includenotenrolledcourses=1; a course it cannot enter is a warning (code 1). Each
  assignment carries its settings, its plugins' configs and, as show_intro() allows (always here), its intro.
- get_submissions: the latest attempt of each user, with timemodified >= since (and <= before when given);
  an unknown assignment id is silently left out (no warning); an assignment with no submission in the window
  gets the warning {item: module, itemid: the assignment id, warningcode: 3, message: No submissions found}.
  Each submission lists the enabled submission plugins in their order (online text, file, comments) with
  their file areas (files as external_util::get_area_files, with webservice/pluginfile.php URLs) and editor
  fields. A submission of a user no longer enrolled is left out (can_view_submission).
- files: a file's bytes are stored (given) or generated from (seed, size) when it is read (file_content),
  so a world of thousands of files costs a few rows.
Not emulated: team submissions, extensions and overrides, blind marking, attempts reopening, the marking
workflow's states (a workflow assignment reports notmarked), intro/activity attachments.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from bufsync.sandbox.moodle import pluginfile
from bufsync.sandbox.moodle.errors import WsError, missing_record
from bufsync.sandbox.moodle.filetypes import mimetype_and_icon
from bufsync.sandbox.moodle.functions import cohorts, enrol
from bufsync.sandbox.moodle.functions.categories import format_string, format_text
from bufsync.sandbox.moodle.functions.grades import _user_by_ref, admin_create_assignment, get_course
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value, validate_parameters
from bufsync.sandbox.moodle.site import FUNCTIONS, Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS assign_submission (
    id INTEGER PRIMARY KEY, assignment INTEGER NOT NULL, userid INTEGER NOT NULL, timecreated INTEGER NOT NULL,
    timemodified INTEGER NOT NULL, timestarted INTEGER, status TEXT NOT NULL, groupid INTEGER NOT NULL DEFAULT 0,
    attemptnumber INTEGER NOT NULL DEFAULT 0, latest INTEGER NOT NULL DEFAULT 1, onlinetext TEXT,
    onlineformat INTEGER);
CREATE INDEX IF NOT EXISTS assign_submission_assignment ON assign_submission (assignment, userid);
CREATE TABLE IF NOT EXISTS assign_grades (
    id INTEGER PRIMARY KEY, assignment INTEGER NOT NULL, userid INTEGER NOT NULL, grade REAL,
    attemptnumber INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, contextid INTEGER NOT NULL, component TEXT NOT NULL, filearea TEXT NOT NULL,
    itemid INTEGER NOT NULL, filepath TEXT NOT NULL, filename TEXT NOT NULL, userid INTEGER,
    filesize INTEGER NOT NULL, mimetype TEXT NOT NULL, icon TEXT NOT NULL, timecreated INTEGER NOT NULL,
    timemodified INTEGER NOT NULL, content BLOB, seed TEXT,
    UNIQUE (contextid, component, filearea, itemid, filepath, filename));
""")

SUBMISSION_STATUSES = ("new", "draft", "submitted", "reopened")
COMPLETION_COMPLETE = 1
COMPONENT, FILEAREA = "assignsubmission_file", "submission_files"
MAX_SUBMISSION_SIZE = 67108864  # assignsubmission_file's maxsubmissionsizebytes: the site's limit (64 MB) by default

cohorts.CAPABILITIES.update({
    "mod/assign:view": ("View assignment", frozenset({"guest", "student", "teacher", "editingteacher", "manager"})),
    "mod/assign:submit": ("Submit assignment", frozenset({"student"})),
    "mod/assign:grade": ("Grade assignment", frozenset({"teacher", "editingteacher", "manager"})),
    "mod/assign:viewgrades": ("View grades", frozenset({"teacher", "editingteacher", "manager"})),
})


# --- file contents ----------------------------------------------------------------------------------------------

def file_content(seed: str, size: int) -> bytes:
    """A generated file's bytes: SHA-256 blocks of "<seed>:<n>" (the real Moodle fixture makes the same)."""
    blocks = []
    for n in range(-(-size // 32)):
        blocks.append(hashlib.sha256(f"{seed}:{n}".encode()).digest())
    return b"".join(blocks)[:size]


def stored_content(row: Any) -> bytes:
    """The bytes of a `files` row: stored, or generated from its seed."""
    if row["content"] is not None:
        return bytes(row["content"])
    return file_content(str(row["seed"]), int(row["filesize"]))


def _spec_content(spec: dict[str, Any]) -> tuple[bytes | None, str | None, int, bool]:
    """(content, seed, size, looks like text) of a file spec: {text}, {content_b64} or {size, seed}."""
    if "text" in spec:
        data = str(spec["text"]).encode("utf-8")
        return data, None, len(data), True
    if "content_b64" in spec:
        data = base64.b64decode(spec["content_b64"])
        try:
            data.decode("utf-8")
            text = b"\0" not in data
        except UnicodeDecodeError:
            text = False
        return data, None, len(data), text
    if "size" in spec:
        return None, str(spec.get("seed", spec.get("filename", ""))), int(spec["size"]), False
    raise ValueError(f"a file needs text, content_b64 or size (+ seed): {spec!r}")


def add_file(site: Site, contextid: int, itemid: int, spec: dict[str, Any], userid: int | None) -> dict[str, Any]:
    """file_storage::create_file_from_string() into a submission's file area; returns the file's summary."""
    content, seed, size, text = _spec_content(spec)
    filename = str(spec["filename"])
    filepath = str(spec.get("filepath") or "/")
    mimetype, icon = mimetype_and_icon(filename, text)
    when = int(spec.get("timemodified") or site.now())
    site.store.insert("files", {"id": site.store.next_id("files"), "contextid": contextid, "component": COMPONENT,
                                "filearea": FILEAREA, "itemid": itemid, "filepath": filepath, "filename": filename,
                                "userid": userid, "filesize": size, "mimetype": mimetype, "icon": icon,
                                "timecreated": when, "timemodified": when, "content": content, "seed": seed})
    return {"filename": filename, "filepath": filepath, "filesize": size,
            "fileurl": file_url(site, contextid, itemid, filepath, filename)}


def file_url(site: Site, contextid: int, itemid: int, filepath: str, filename: str) -> str:
    """moodle_url::make_webservice_pluginfile_url(...)->out(false): each path segment rawurlencoded."""
    path = f"/{contextid}/{COMPONENT}/{FILEAREA}/{itemid}{filepath}{filename}"
    return f"{site.config.site_url}/webservice/pluginfile.php" + quote(path, safe="/-_.~")


# --- lookups ----------------------------------------------------------------------------------------------------

def _assign_cm(site: Site, instance: int) -> Any:
    """The assign row with its course module's id (cmid), or None."""
    return site.store.one("SELECT a.*, cm.id AS cmid FROM course_modules cm "
                          "JOIN modules m ON m.id = cm.module AND m.name = 'assign' "
                          "JOIN assign a ON a.id = cm.instance WHERE cm.instance = ?", (instance,))


def module_contextid(site: Site, cmid: int) -> int:
    row = site.store.one("SELECT id FROM context WHERE contextlevel = 70 AND instanceid = ?", (cmid,))
    if row is None:
        raise LookupError(f"course module {cmid} has no context")
    return int(row["id"])


def _course_context(site: Site, courseid: int) -> enrol.Context:
    return enrol.course_context(site, courseid) or enrol.Context(enrol.CONTEXT_COURSE, courseid)


def _can(site: Site, capability: str, courseid: int) -> bool:
    """has_capability() in the assignment's context: role assignments are modelled at course level and above."""
    return cohorts.context_has_capability(site, capability, _course_context(site, courseid))


def can_view_submission(site: Site, courseid: int, userid: int) -> bool:
    """assign::can_view_submission(): the submitter is enrolled (active, unless the caller sees suspended users),
    and the caller grades or it is the caller's own."""
    if not enrol.is_enrolled(site, userid, courseid):
        return False
    if not enrol.is_enrolled(site, userid, courseid, active_only=True) and not _can(
            site, "moodle/course:viewsuspendedusers", courseid):
        return False
    if _can(site, "mod/assign:viewgrades", courseid) or _can(site, "mod/assign:grade", courseid):
        return True
    return userid == site.userid


# --- mod_assign_get_assignments ---------------------------------------------------------------------------------

_FILES = Multiple(Single({k: Value("raw", VALUE_OPTIONAL) for k in (
    "filename", "filepath", "filesize", "fileurl", "timemodified", "mimetype", "isexternalfile", "repositorytype",
    "icon")}), VALUE_OPTIONAL)
_WARNINGS = Multiple(Single({"item": Value("text", VALUE_OPTIONAL), "itemid": Value("int", VALUE_OPTIONAL),
                             "warningcode": Value("alphanum"), "message": Value("text")}))
_ASSIGNMENT_KEYS = (
    "id", "cmid", "course", "name", "nosubmissions", "submissiondrafts", "sendnotifications", "sendlatenotifications",
    "sendstudentnotifications", "duedate", "allowsubmissionsfromdate", "grade", "timemodified", "completionsubmit",
    "cutoffdate", "gradingduedate", "teamsubmission", "requireallteammemberssubmit", "teamsubmissiongroupingid",
    "blindmarking", "hidegrader", "revealidentities", "attemptreopenmethod", "maxattempts", "markingworkflow",
    "markingallocation", "markinganonymous", "requiresubmissionstatement", "preventsubmissionnotingroup",
    "submissionstatement", "submissionstatementformat", "configs", "intro", "introformat", "introfiles",
    "introattachments", "activity", "activityformat", "activityattachments", "timelimit", "submissionattachments")
_ASSIGNMENT = Single({k: Multiple(Single({c: Value("raw") for c in ("plugin", "subtype", "name", "value")}))
                      if k == "configs" else _FILES if k.endswith(("files", "attachments"))
                      else Value("raw", VALUE_OPTIONAL) for k in _ASSIGNMENT_KEYS})
_COURSE = Single({"id": Value("int"), "fullname": Value("raw"), "shortname": Value("raw"),
                  "timemodified": Value("int"), "assignments": Multiple(_ASSIGNMENT)})


def _configs(assign: Any) -> list[dict[str, str]]:
    """The enabled, visible plugins' settings (get_config_for_external), submission plugins then feedback ones."""
    out: list[tuple[str, str, str, str]] = []
    if assign["onlinetext"]:
        out += [("onlinetext", "assignsubmission", "enabled", "1"),
                ("onlinetext", "assignsubmission", "wordlimit", "0"),
                ("onlinetext", "assignsubmission", "wordlimitenabled", "0")]
    out += [("file", "assignsubmission", "enabled", "1"),
            ("file", "assignsubmission", "maxfilesubmissions", str(assign["maxfiles"])),
            ("file", "assignsubmission", "maxsubmissionsizebytes", str(MAX_SUBMISSION_SIZE)),
            ("file", "assignsubmission", "filetypeslist", ""),
            ("comments", "assignsubmission", "enabled", "0"),
            ("comments", "assignfeedback", "enabled", "1"), ("comments", "assignfeedback", "commentinline", "0")]
    return [{"plugin": p, "subtype": s, "name": n, "value": v} for p, s, n, v in out]


def assignment_record(site: Site, a: Any) -> dict[str, Any]:
    """One entry of a course's assignments, as get_assignments builds it (generator defaults for the rest)."""
    intro, introformat = format_text(a["intro"], a["introformat"])
    return {"id": a["id"], "cmid": a["cmid"], "course": a["course"], "name": format_string(a["name"]),
            "nosubmissions": 0, "submissiondrafts": a["submissiondrafts"], "sendnotifications": 0,
            "sendlatenotifications": 0, "sendstudentnotifications": 1, "duedate": a["duedate"],
            "allowsubmissionsfromdate": a["allowsubmissionsfromdate"], "grade": a["grade"],
            "timemodified": a["timemodified"], "completionsubmit": a["completionsubmit"],
            "cutoffdate": a["cutoffdate"], "gradingduedate": a["gradingduedate"],
            "teamsubmission": a["teamsubmission"], "requireallteammemberssubmit": 0, "teamsubmissiongroupingid": 0,
            "blindmarking": 0, "hidegrader": 0, "revealidentities": 0, "attemptreopenmethod": "untilpass",
            "maxattempts": 1, "markingworkflow": a["markingworkflow"], "markingallocation": 0,
            "markinganonymous": 0, "requiresubmissionstatement": 0, "preventsubmissionnotingroup": 0,
            "configs": _configs(a), "intro": intro, "introformat": introformat, "introfiles": [],
            "introattachments": [], "timelimit": 0, "submissionattachments": 0}


@ws_function("mod_assign_get_assignments", {
    "courseids": Multiple(Value("int"), VALUE_DEFAULT, []),
    "capabilities": Multiple(Value("capability"), VALUE_DEFAULT, []),
    "includenotenrolledcourses": Value("bool", VALUE_DEFAULT, False),
}, returns=Single({"courses": Multiple(_COURSE), "warnings": _WARNINGS}))
def get_assignments(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """The caller's (or the given) courses, each with the assignments the caller may view."""
    warnings: list[dict[str, Any]] = []
    mine = enrol.user_course_ids(site, site.userid, active_only=True)
    if not params["courseids"]:
        courseids = list(mine)
    elif params["includenotenrolledcourses"]:
        courseids = list(params["courseids"])
    else:
        courseids = []
        for courseid in params["courseids"]:
            if courseid in mine:
                courseids.append(courseid)
            else:
                warnings.append({"item": "course", "itemid": courseid, "warningcode": "2",
                                 "message": "User is not enrolled or does not have requested capability"})
    courses = []
    for courseid in dict.fromkeys(courseids):
        try:
            context = enrol.course_context(site, courseid)
            if context is None:
                raise WsError("dml_missing_record_exception", "invalidrecord",
                              "Can't find data record in database table course.")
            enrol.validate_context(site, context)
            course = get_course(site, courseid)
        except WsError as exc:
            warnings.append({"item": "course", "itemid": courseid, "warningcode": "1",
                             "message": f"No access rights in course context {exc.message}"})
            continue
        if params["capabilities"] and not all(_can(site, cap, courseid) for cap in params["capabilities"]):
            continue
        courses.append(course)
    out = []
    for course in courses:
        assignments = []
        for a in site.store.q("SELECT a.*, cm.id AS cmid FROM course_modules cm JOIN modules m ON m.id = cm.module "
                              "AND m.name = 'assign' JOIN assign a ON a.id = cm.instance WHERE cm.course = ? "
                              "AND cm.deletioninprogress = 0 ORDER BY cm.id", (course["id"],)):
            if not _can(site, "mod/assign:view", course["id"]):
                warnings.append({"item": "module", "itemid": a["cmid"], "warningcode": "1",
                                 "message": "No access rights in module context"})
                continue
            assignments.append(assignment_record(site, a))
        out.append({"id": course["id"], "fullname": format_string(course["fullname"]),
                    "shortname": format_string(course["shortname"]), "timemodified": course["timemodified"],
                    "assignments": assignments})
    return {"courses": out, "warnings": warnings}


# --- mod_assign_get_submissions ---------------------------------------------------------------------------------

_PLUGIN = Single({
    "type": Value("text"), "name": Value("text"),
    "fileareas": Multiple(Single({"area": Value("text"), "files": _FILES}), VALUE_OPTIONAL),
    "editorfields": Multiple(Single({"name": Value("text"), "description": Value("raw"), "text": Value("raw"),
                                     "format": Value("int")}), VALUE_OPTIONAL)})
_SUBMISSION = Single({
    "id": Value("int"), "userid": Value("int"), "attemptnumber": Value("int"), "timecreated": Value("int"),
    "timemodified": Value("int"), "timestarted": Value("int", VALUE_OPTIONAL), "status": Value("text"),
    "groupid": Value("int"), "assignment": Value("int", VALUE_OPTIONAL), "latest": Value("int", VALUE_OPTIONAL),
    "plugins": Multiple(_PLUGIN, VALUE_OPTIONAL), "gradingstatus": Value("alphanumext", VALUE_OPTIONAL)})


def area_files(site: Site, contextid: int, itemid: int) -> list[dict[str, Any]]:
    """external_util::get_area_files(): the area's files sorted by itemid, filepath, filename."""
    rows = site.store.q("SELECT * FROM files WHERE contextid = ? AND component = ? AND filearea = ? AND itemid = ? "
                        "AND filename <> '.' ORDER BY filepath, filename", (contextid, COMPONENT, FILEAREA, itemid))
    return [{"filename": r["filename"], "filepath": r["filepath"], "filesize": r["filesize"],
             "fileurl": file_url(site, contextid, itemid, r["filepath"], r["filename"]),
             "timemodified": r["timemodified"], "mimetype": r["mimetype"], "isexternalfile": False,
             "icon": f"f/{r['icon']}"} for r in rows]


def submission_plugins(site: Site, a: Any, contextid: int, submission: Any) -> list[dict[str, Any]]:
    """get_plugins_data(): online text (when on), file, comments, in the plugins' sort order."""
    plugins: list[dict[str, Any]] = []
    if a["onlinetext"]:
        text, fmt = (submission["onlinetext"], submission["onlineformat"]) if submission["onlinetext"] is not None \
            else ("", 0)
        text, fmt = format_text(text, fmt)
        plugins.append({"type": "onlinetext", "name": "Online text",
                        "fileareas": [{"area": "submissions_onlinetext", "files": []}],
                        "editorfields": [{"name": "onlinetext", "description": "Online text submissions",
                                          "text": text, "format": fmt}]})
    plugins.append({"type": "file", "name": "File submissions",
                    "fileareas": [{"area": FILEAREA, "files": area_files(site, contextid, submission["id"])}]})
    plugins.append({"type": "comments", "name": "Submission comments"})
    return plugins


def grading_status(site: Site, a: Any, userid: int) -> str:
    """assign::get_grading_status(): graded when the latest attempt has a grade >= 0."""
    if a["markingworkflow"]:
        return "notmarked"
    row = site.store.one("SELECT grade FROM assign_grades WHERE assignment = ? AND userid = ? "
                         "ORDER BY attemptnumber DESC LIMIT 1", (a["id"], userid))
    return "graded" if row is not None and row["grade"] is not None and row["grade"] >= 0 else "notgraded"


@ws_function("mod_assign_get_submissions", {
    "assignmentids": Multiple(Value("int")),
    "status": Value("alpha", VALUE_DEFAULT, ""),
    "since": Value("int", VALUE_DEFAULT, 0),
    "before": Value("int", VALUE_DEFAULT, 0),
}, returns=Single({"assignments": Multiple(Single({"assignmentid": Value("int"),
                                                   "submissions": Multiple(_SUBMISSION)})),
                   "warnings": _WARNINGS}))
def get_submissions(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Each user's latest attempt in the window; unknown ids are left out without a word."""
    warnings: list[dict[str, Any]] = []
    ids = list(dict.fromkeys(params["assignmentids"]))
    if not ids:  # $DB->get_in_or_equal([]) throws
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: moodle_database::get_in_or_equal() "
                      "does not accept empty arrays")
    marks = ",".join("?" for _ in ids)
    assigns = []
    for a in site.store.q("SELECT a.*, cm.id AS cmid FROM course_modules cm JOIN modules m ON m.id = cm.module "
                          f"AND m.name = 'assign' JOIN assign a ON a.id = cm.instance WHERE cm.instance IN ({marks}) "
                          "ORDER BY cm.id", ids):
        try:
            enrol.validate_context(site, _course_context(site, a["course"]))
            if not (_can(site, "mod/assign:viewgrades", a["course"]) or _can(site, "mod/assign:grade", a["course"])):
                raise WsError("core\\exception\\required_capability_exception", "nopermissions", "")
        except WsError:
            warnings.append({"item": "assignment", "itemid": a["id"], "warningcode": "1",
                             "message": "No access rights in module context"})
            continue
        assigns.append(a)
    out = []
    for a in assigns:
        sql = ("SELECT s.* FROM assign_submission s WHERE s.assignment = ? AND s.attemptnumber = "
               "(SELECT MAX(x.attemptnumber) FROM assign_submission x WHERE x.assignment = s.assignment "
               "AND x.userid = s.userid AND x.groupid = s.groupid)")
        args: list[Any] = [a["id"]]
        if params["status"]:
            sql += " AND s.status = ?"
            args.append(params["status"])
        if params["before"]:
            sql += " AND s.timemodified BETWEEN ? AND ?"
            args += [params["since"], params["before"]]
        else:
            sql += " AND s.timemodified >= ?"
            args.append(params["since"])
        rows = site.store.q(sql + " ORDER BY s.id", args)
        submissions = []
        if rows:
            contextid = module_contextid(site, a["cmid"])
            for s in rows:
                if not can_view_submission(site, a["course"], s["userid"]):
                    continue
                submissions.append({
                    "id": s["id"], "userid": s["userid"], "attemptnumber": s["attemptnumber"],
                    "timecreated": s["timecreated"], "timemodified": s["timemodified"],
                    "timestarted": s["timestarted"], "status": s["status"], "groupid": s["groupid"],
                    "plugins": submission_plugins(site, a, contextid, s),
                    "gradingstatus": grading_status(site, a, s["userid"])})
        else:
            warnings.append({"item": "module", "itemid": a["id"], "warningcode": "3",
                             "message": "No submissions found"})
        out.append({"assignmentid": a["id"], "submissions": submissions})
    return {"assignments": out, "warnings": warnings}


# --- webservice/pluginfile.php for assignsubmission_file -------------------------------------------------------

@pluginfile.component(COMPONENT)
def serve_submission_file(site: Site, context: Any, filearea: str, args: list[str]) -> Any:
    """assignsubmission_file_pluginfile(): None (file not found) unless the caller may view the submission."""
    if context["contextlevel"] != 70:
        return None
    cm = site.store.one("SELECT cm.* FROM course_modules cm WHERE cm.id = ?", (context["instanceid"],))
    if cm is None:
        return None
    pluginfile.require_login(site, cm["course"])
    itemid = int(args[0]) if args and args[0].lstrip("-").isdigit() else 0
    submission = site.store.one("SELECT userid, assignment, groupid FROM assign_submission WHERE id = ?", (itemid,))
    if submission is None:
        raise missing_record("invalidrecord", "Can't find data record in database table assign_submission.",
                             "assign_submission", "id = ?", [itemid])
    if submission["assignment"] != cm["instance"] or not can_view_submission(site, cm["course"],
                                                                              submission["userid"]):
        return None
    rest = args[1:]
    filepath = "/" + "".join(part + "/" for part in rest[:-1]) if rest else "/"
    filename = rest[-1] if rest else "."
    return site.store.one("SELECT * FROM files WHERE contextid = ? AND component = ? AND filearea = ? AND itemid = ? "
                          "AND filepath = ? AND filename = ?",
                          (context["id"], COMPONENT, filearea, itemid, filepath, filename))


pluginfile.CONTENT[COMPONENT] = stored_content


# --- seeding (what teachers and students leave in a course) -----------------------------------------------------

@admin_action("add_submission")
def admin_add_submission(site: Site, assignmentid: int, userid: int | None = None, username: str | None = None,
                         status: str = "submitted", timecreated: int | None = None, timemodified: int | None = None,
                         files: list[dict[str, Any]] | None = None, onlinetext: str | None = None,
                         grade: float | None = None, attemptnumber: int = 0) -> dict[str, Any]:
    """A student's submission as the assignment stores it: its row, its files (each {filename, filepath: "/",
    timemodified} with {text}, {content_b64} or {size, seed}), its online text, a grade (gradingstatus graded).
    A `new` submission (opened, nothing saved) has neither files nor text. Submitting, with completionsubmit on,
    completes the activity at timemodified, as submit_for_grading() does."""
    if status not in SUBMISSION_STATUSES:
        raise ValueError(f"status must be one of {', '.join(SUBMISSION_STATUSES)}")
    a = _assign_cm(site, assignmentid)
    if a is None:
        raise ValueError(f"no assignment {assignmentid}")
    uid = _user_by_ref(site, userid, username)
    created = int(timecreated if timecreated is not None else site.now())
    modified = int(timemodified if timemodified is not None else created)
    site.store.x("UPDATE assign_submission SET latest = 0 WHERE assignment = ? AND userid = ?", (assignmentid, uid))
    submissionid = site.store.next_id("assign_submission")
    text = None if status == "new" or not a["onlinetext"] else (onlinetext or "")
    site.store.insert("assign_submission", {
        "id": submissionid, "assignment": assignmentid, "userid": uid, "timecreated": created,
        "timemodified": modified, "status": status, "attemptnumber": attemptnumber, "latest": 1,
        "onlinetext": text, "onlineformat": 1 if text is not None else None})
    contextid = module_contextid(site, a["cmid"])
    made = [] if status == "new" else [add_file(site, contextid, submissionid, spec, uid) for spec in files or []]
    if grade is not None:
        site.store.insert("assign_grades", {"id": site.store.next_id("assign_grades"), "assignment": assignmentid,
                                            "userid": uid, "grade": float(grade), "attemptnumber": attemptnumber,
                                            "timemodified": modified})
    if status == "submitted" and a["completionsubmit"]:
        from bufsync.sandbox.moodle.functions.completion import admin_set_activity_completion
        clock, site.clock = site.clock, modified
        try:
            admin_set_activity_completion(site, a["cmid"], uid, COMPLETION_COMPLETE)
        finally:
            site.clock = clock
    return {"submissionid": submissionid, "userid": uid, "files": made}


def _ws(site: Site, function: str, params: dict[str, Any]) -> Any:
    """A web-service function run as the admin inside an admin action (its transaction is the action's)."""
    userid = getattr(site, "userid", 2)
    site.userid = 2
    try:
        wsf = FUNCTIONS[function]
        return wsf.handler(site, validate_parameters(wsf.params, params))
    finally:
        site.userid = userid


@admin_action("seed_assignments")
def admin_seed_assignments(site: Site, world: dict[str, Any]) -> dict[str, Any]:
    """A whole world at once, from the spec tests/integration/contract/fixtures/assign_setup.php builds on a real
    Moodle: {users: [{username, firstname, lastname}], courses: [{shortname, fullname, students: [username],
    assignments: [{name, intro, duedate, allowsubmissionsfromdate, grade, submissiondrafts, completionsubmit,
    onlinetext, maxfiles, timemodified, submissions: [{user, status, timecreated, timemodified, files,
    onlinetext, grade, attemptnumber}]}]}]}. Users that exist are reused; courses are new.

    Returns what the PHP script prints: {courses: {shortname: id}, users: {username: id},
    assignments: {name: {id, cmid, contextid}}, submissions: {"<assignment>/<username>": id}}."""
    out: dict[str, dict[str, Any]] = {"courses": {}, "users": {}, "assignments": {}, "submissions": {}}
    for u in world.get("users", []):
        found = site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0", (u["username"],))
        out["users"][u["username"]] = int(found["id"]) if found else int(_ws(site, "core_user_create_users", {
            "users": {0: {"username": u["username"], "password": "Lab#Pass2026", "firstname": u["firstname"],
                          "lastname": u["lastname"], "email": f"{u['username']}@example.com"}}})[0]["id"])
    for c in world.get("courses", []):
        courseid = int(_ws(site, "core_course_create_courses", {"courses": {0: {
            "fullname": c["fullname"], "shortname": c["shortname"], "categoryid": 1, "enablecompletion": 1}}})[0]["id"])
        out["courses"][c["shortname"]] = courseid
        if c.get("students"):
            _ws(site, "enrol_manual_enrol_users", {"enrolments": dict(enumerate(
                {"roleid": enrol.STUDENT_ROLE, "userid": out["users"][name], "courseid": courseid}
                for name in c["students"]))})
        for a in c.get("assignments", []):
            settings = {k: a[k] for k in ("intro", "duedate", "allowsubmissionsfromdate", "submissiondrafts",
                                          "maxfiles", "timemodified") if k in a}
            made = admin_create_assignment(site, courseid, a["name"], grademax=a.get("grade", 100),
                                           completionsubmit=int(bool(a.get("completionsubmit"))),
                                           onlinetext=int(bool(a.get("onlinetext"))), **settings)
            instance = int(made["assign_instance"])
            out["assignments"][a["name"]] = {"id": instance, "cmid": made["cmid"],
                                             "contextid": module_contextid(site, made["cmid"])}
            for s in a.get("submissions", []):
                done = admin_add_submission(
                    site, instance, username=s["user"], status=s["status"], timecreated=s["timecreated"],
                    timemodified=s["timemodified"], files=s.get("files"), onlinetext=s.get("onlinetext"),
                    grade=s.get("grade"), attemptnumber=s.get("attemptnumber", 0))
                out["submissions"][f"{a['name']}/{s['user']}"] = done["submissionid"]
    return out


@admin_action("fill_submissions")
def admin_fill_submissions(site: Site, assignmentid: int, files: int = 2, size: int = 50_000,
                           status: str = "submitted", timemodified: int | None = None,
                           seed: str = "") -> dict[str, Any]:
    """Benchmarks: a submission with `files` generated files of `size` bytes for every active student of the
    assignment's course (file n of user u is "u<u>-<n>.pdf", its bytes file_content("<seed>:<u>:<n>", size));
    nothing but a few rows is stored, so 1,000 files cost milliseconds and no memory."""
    a = _assign_cm(site, assignmentid)
    if a is None:
        raise ValueError(f"no assignment {assignmentid}")
    when = int(timemodified if timemodified is not None else site.now())
    made = 0
    for uid in enrol.enrolled_user_ids(site, a["course"], active_only=True):
        if not enrol.has_capability(site, "moodle/course:isincompletionreports", _course_context(site, a["course"]),
                                    uid):
            continue  # students only
        specs = [{"filename": f"u{uid}-{n}.pdf", "size": size, "seed": f"{seed}:{uid}:{n}", "timemodified": when}
                 for n in range(1, files + 1)]
        admin_add_submission(site, assignmentid, userid=uid, status=status, timecreated=when, timemodified=when,
                             files=specs)
        made += 1
    return {"submissions": made, "files": made * files}


@admin_action("submission_files")
def admin_submission_files(site: Site, assignmentid: int) -> list[dict[str, Any]]:
    """Read helper: every file of an assignment's submissions with its URL, size and SHA-256 (what a download
    must give)."""
    a = _assign_cm(site, assignmentid)
    if a is None:
        raise ValueError(f"no assignment {assignmentid}")
    contextid = module_contextid(site, a["cmid"])
    out = []
    for row in site.store.q("SELECT f.* FROM files f JOIN assign_submission s ON s.id = f.itemid "
                            "WHERE f.contextid = ? AND f.component = ? AND s.assignment = ? ORDER BY f.id",
                            (contextid, COMPONENT, assignmentid)):
        out.append({"submissionid": row["itemid"], "userid": row["userid"], "filename": row["filename"],
                    "filepath": row["filepath"], "filesize": row["filesize"],
                    "fileurl": file_url(site, contextid, row["itemid"], row["filepath"], row["filename"]),
                    "sha256": hashlib.sha256(stored_content(row)).hexdigest()})
    return out


def submission_status(site: Site, assignmentid: int, userid: int) -> str | None:
    """The status of a user's latest submission (completionsubmit's custom rule), None without one."""
    row = site.store.one("SELECT status FROM assign_submission WHERE assignment = ? AND userid = ? "
                         "ORDER BY attemptnumber DESC, id DESC LIMIT 1", (assignmentid, userid))
    return str(row["status"]) if row is not None else None


def _course_deleted(site: Site, courseid: int) -> None:
    """Course deletion takes the assignments' submissions, grades and files with it (before grades drops assign)."""
    for a in site.store.q("SELECT id FROM assign WHERE course = ?", (courseid,)):
        site.store.x("DELETE FROM files WHERE component = ? AND itemid IN (SELECT id FROM assign_submission "
                     "WHERE assignment = ?)", (COMPONENT, a["id"]))
        site.store.x("DELETE FROM assign_submission WHERE assignment = ?", (a["id"],))
        site.store.x("DELETE FROM assign_grades WHERE assignment = ?", (a["id"],))


def _register() -> None:
    from bufsync.sandbox.moodle.functions import courses
    if _course_deleted not in courses.COURSE_DELETE_HOOKS:
        courses.COURSE_DELETE_HOOKS.insert(0, _course_deleted)


_register()
