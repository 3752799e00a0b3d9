"""Courses: core_course_create/update/delete/get_courses, get_courses_by_field, search_courses.

Follows course/externallib.php and course/lib.php of Moodle 4.5: create_courses is all or
nothing; update_courses turns each course's failure into a warning and saves the others;
create_course() checks shortname/idnumber uniqueness (exact, case-sensitive) and the dates,
puts the course first in its category (fix_course_sortorder), creates its context, section 0,
its format options, the default enrolment instances (manual enabled, guest and self disabled)
and its custom field values.

Tables other modules read: `course` (Moodle's columns), `course_sections`,
`course_format_options`; contexts are in `context` (see categories.py). The `enrol` table is
declared here with all of Moodle's columns (this module is imported first), but its rows belong
to the enrolments module: a new course gets its instances through enrol.ensure_course_instances.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable
from typing import Any

from bufsync.adapters.moodle.rules import COURSE_COLUMNS
from bufsync.sandbox.moodle.errors import WsError, invalid_parameter, moodle_exception
from bufsync.sandbox.moodle.functions.categories import (
    CONTEXT_COURSE,
    FORMAT_HTML,
    FORMAT_MOODLE,
    MAX_COURSES_IN_CATEGORY,
    SITEID,
    category_context_path,
    context_id,
    delete_context,
    fix_course_sortorder,
    format_string,
    format_text,
    get_category,
    id_list,
    missing_category_record,
    move_context,
    new_context,
    php_empty,
    validate_format,
)
from bufsync.sandbox.moodle.params import (
    LANGS,
    VALUE_DEFAULT,
    VALUE_OPTIONAL,
    Multiple,
    Single,
    Value,
    clean_param,
    is_numeric,
    loose_equal,
    php_int,
    php_str,
)
from bufsync.sandbox.moodle.site import Site, installer, per_item, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

schema("""
CREATE TABLE IF NOT EXISTS course (
    id INTEGER PRIMARY KEY, category INTEGER NOT NULL DEFAULT 0, sortorder INTEGER NOT NULL DEFAULT 0,
    fullname TEXT NOT NULL DEFAULT '', shortname TEXT NOT NULL DEFAULT '', idnumber TEXT NOT NULL DEFAULT '',
    summary TEXT, summaryformat INTEGER NOT NULL DEFAULT 0, format TEXT NOT NULL DEFAULT 'topics',
    showgrades INTEGER NOT NULL DEFAULT 1, newsitems INTEGER NOT NULL DEFAULT 1,
    startdate INTEGER NOT NULL DEFAULT 0, enddate INTEGER NOT NULL DEFAULT 0,
    relativedatesmode INTEGER NOT NULL DEFAULT 0, marker INTEGER NOT NULL DEFAULT 0,
    maxbytes INTEGER NOT NULL DEFAULT 0, legacyfiles INTEGER NOT NULL DEFAULT 0,
    showreports INTEGER NOT NULL DEFAULT 0, visible INTEGER NOT NULL DEFAULT 1,
    visibleold INTEGER NOT NULL DEFAULT 1, downloadcontent INTEGER, groupmode INTEGER NOT NULL DEFAULT 0,
    groupmodeforce INTEGER NOT NULL DEFAULT 0, defaultgroupingid INTEGER NOT NULL DEFAULT 0,
    lang TEXT NOT NULL DEFAULT '', calendartype TEXT NOT NULL DEFAULT '', theme TEXT NOT NULL DEFAULT '',
    timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0,
    requested INTEGER NOT NULL DEFAULT 0, enablecompletion INTEGER NOT NULL DEFAULT 1,
    completionnotify INTEGER NOT NULL DEFAULT 0, cacherev INTEGER NOT NULL DEFAULT 0,
    originalcourseid INTEGER, showactivitydates INTEGER NOT NULL DEFAULT 0,
    showcompletionconditions INTEGER, pdfexportfont TEXT);
CREATE INDEX IF NOT EXISTS course_category ON course (category);
CREATE INDEX IF NOT EXISTS course_shortname ON course (shortname);
CREATE INDEX IF NOT EXISTS course_idnumber ON course (idnumber);
CREATE TABLE IF NOT EXISTS course_format_options (
    id INTEGER PRIMARY KEY, courseid INTEGER NOT NULL, format TEXT NOT NULL, sectionid INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL, value TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS course_format_options_key
    ON course_format_options (courseid, format, sectionid, name);
CREATE TABLE IF NOT EXISTS course_sections (
    id INTEGER PRIMARY KEY, course INTEGER NOT NULL, section INTEGER NOT NULL, name TEXT, summary TEXT,
    summaryformat INTEGER NOT NULL DEFAULT 0, sequence TEXT, visible INTEGER NOT NULL DEFAULT 1,
    availability TEXT, component TEXT, itemid INTEGER, timemodified INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS course_sections_key ON course_sections (course, section);
CREATE TABLE IF NOT EXISTS enrol (
    id INTEGER PRIMARY KEY, enrol TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, courseid INTEGER NOT NULL,
    sortorder INTEGER NOT NULL DEFAULT 0, name TEXT, enrolperiod INTEGER DEFAULT 0,
    enrolstartdate INTEGER DEFAULT 0, enrolenddate INTEGER DEFAULT 0, expirynotify INTEGER DEFAULT 0,
    expirythreshold INTEGER DEFAULT 0, notifyall INTEGER DEFAULT 0, password TEXT, cost TEXT, currency TEXT,
    roleid INTEGER DEFAULT 0, customint1 INTEGER, customint2 INTEGER, customint3 INTEGER, customint4 INTEGER,
    customint5 INTEGER, customint6 INTEGER, customint7 INTEGER, customint8 INTEGER, customchar1 TEXT,
    customchar2 TEXT, customchar3 TEXT, customdec1 REAL, customdec2 REAL, customtext1 TEXT, customtext2 TEXT,
    customtext3 TEXT, customtext4 TEXT, timecreated INTEGER NOT NULL DEFAULT 0,
    timemodified INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS enrol_courseid ON enrol (courseid);
""")
column_limits("course", COURSE_COLUMNS)  # the real database refuses longer values (dmlwriteexception)

STUDENT_ROLE_ID = 5
COMPLETION_DISABLED = 0
MAX_SECTIONS_CREATED = 1000  # sandbox guard: Moodle would try to create any number asked for

# Hooks for the modules that keep per-course data (enrolments, groups, grades, completion).
# (site, courseid) after a course and its default enrolment instances are created:
COURSE_CREATED_HOOKS: list[Callable[[Site, int], None]] = []
# (site, courseid) after update_courses saved a course:
COURSE_UPDATED_HOOKS: list[Callable[[Site, int], None]] = []
# (site, courseid) before a course's own rows are deleted (delete its enrolments, groups...):
COURSE_DELETE_HOOKS: list[Callable[[Site, int], None]] = []
# (site, courseid) -> course contacts [{"id": userid, "fullname": ...}] (users with the
# editingteacher role, Moodle's $CFG->coursecontact), in Moodle's order; without providers
# the enrolments module's role assignments are used:
COURSE_CONTACT_PROVIDERS: list[Callable[[Site, int], list[dict[str, Any]]]] = []
# (site, userid) -> ids of the courses the user is enrolled in (search_courses limittoenrolled);
# without providers the enrolments module answers:
ENROLLED_COURSES_PROVIDERS: list[Callable[[Site, int], set[int]]] = []

_COURSE_COLUMNS = (
    "category", "sortorder", "fullname", "shortname", "idnumber", "summary", "summaryformat", "format",
    "showgrades", "newsitems", "startdate", "enddate", "relativedatesmode", "marker", "maxbytes", "legacyfiles",
    "showreports", "visible", "visibleold", "downloadcontent", "groupmode", "groupmodeforce", "defaultgroupingid",
    "lang", "calendartype", "theme", "timecreated", "timemodified", "requested", "enablecompletion",
    "completionnotify", "cacherev", "originalcourseid", "showactivitydates", "showcompletionconditions",
    "pdfexportfont")
_TEXT_COLUMNS = {"fullname", "shortname", "idnumber", "summary", "format", "lang", "calendartype", "theme",
                 "pdfexportfont"}

# Course formats: option name, PARAM type, default (moodlecourse settings of a fresh site).
FORMAT_OPTIONS: dict[str, list[tuple[str, str, Any]]] = {
    "topics": [("hiddensections", "int", 1), ("coursedisplay", "int", 0)],
    "weeks": [("hiddensections", "int", 1), ("coursedisplay", "int", 0), ("automaticenddate", "bool", 1)],
    "social": [("numdiscussions", "int", 10)],
    "singleactivity": [("activitytype", "text", "forum")],
    "site": [],
}
# get_config_for_external() adds the plugin's 'indentation' setting (a config string).
_EXTERNAL_EXTRA = {"topics": [("indentation", "1")], "weeks": [("indentation", "1")]}
DEFAULT_FORMAT = "topics"
# filter_get_available_in_context() on the recorded site (all inherit the site setting).
FILTERS = [{"filter": name, "localstate": 0, "inheritedstate": 1} for name in (
    "displayh5p", "activitynames", "mathjaxloader", "emoticon", "urltolink", "mediaplugin")]
# enrol_course_updated(): enabled plugins with defaultenrol, in $CFG->enrol_plugins_enabled order.
_DEFAULT_ENROL_INSTANCES: list[tuple[str, dict[str, Any]]] = [
    ("manual", {"status": 0, "roleid": STUDENT_ROLE_ID, "enrolperiod": 0, "expirynotify": 0, "notifyall": 0,
                "expirythreshold": 86400}),
    ("guest", {"status": 1, "roleid": 0}),
    ("self", {"status": 1, "roleid": STUDENT_ROLE_ID, "enrolperiod": 0, "expirynotify": 0, "notifyall": 0,
              "expirythreshold": 86400, "customint1": 0, "customint2": 0, "customint3": 0, "customint4": 1,
              "customint5": 0, "customint6": 1}),
]

_WARNINGS = Multiple(Single({"item": Value("text"), "itemid": Value("int"), "warningcode": Value("alphanum"),
                             "message": Value("raw")}))
_FILES = Multiple(Single({k: Value("raw") for k in (
    "filename", "filepath", "filesize", "fileurl", "timemodified", "mimetype", "isexternalfile", "repositorytype",
    "icon")}))
_CUSTOMFIELDS_OUT = Multiple(Single({k: Value("raw") for k in ("name", "shortname", "type", "valueraw", "value")}))
_OPTIONS_OUT = Multiple(Single({"name": Value("raw"), "value": Value("raw")}))
COURSE_PUBLIC = Single({
    "id": Value("int"), "fullname": Value("raw"), "displayname": Value("raw"), "shortname": Value("raw"),
    "courseimage": Value("url"), "categoryid": Value("int"), "categoryname": Value("raw"), "sortorder": Value("int"),
    "summary": Value("raw"), "summaryformat": Value("int"), "summaryfiles": _FILES, "overviewfiles": _FILES,
    "showactivitydates": Value("bool"), "showcompletionconditions": Value("bool"),
    "contacts": Multiple(Single({"id": Value("int"), "fullname": Value("notags")})),
    "enrollmentmethods": Multiple(Value("plugin")), "customfields": _CUSTOMFIELDS_OUT,
})
COURSE_FULL = Single({**COURSE_PUBLIC.keys, **{k: Value("raw") for k in (
    "idnumber", "format", "showgrades", "newsitems", "startdate", "enddate", "maxbytes", "showreports", "visible",
    "groupmode", "groupmodeforce", "defaultgroupingid", "enablecompletion", "completionnotify", "lang", "theme",
    "marker", "legacyfiles", "calendartype", "timecreated", "timemodified", "requested", "cacherev")},
    "filters": Multiple(Single({"filter": Value("plugin"), "localstate": Value("int"),
                                "inheritedstate": Value("int")})),
    "courseformatoptions": _OPTIONS_OUT, "communicationroomname": Value("text"),
    "communicationroomurl": Value("raw")})
GET_COURSES_RECORD = Single({**{k: Value("raw") for k in (
    "id", "shortname", "categoryid", "categorysortorder", "fullname", "displayname", "idnumber", "summary",
    "summaryformat", "format", "showgrades", "newsitems", "startdate", "enddate", "numsections", "maxbytes",
    "showreports", "visible", "hiddensections", "groupmode", "groupmodeforce", "defaultgroupingid", "timecreated",
    "timemodified", "enablecompletion", "completionnotify", "lang", "forcetheme")},
    "courseformatoptions": _OPTIONS_OUT, "showactivitydates": Value("bool"),
    "showcompletionconditions": Value("bool"), "customfields": _CUSTOMFIELDS_OUT})


# --- helpers other modules use ----------------------------------------------------------------------

def get_course(site: Site, courseid: Any) -> Any:
    """The course row, or None."""
    return site.store.one("SELECT * FROM course WHERE id = ?", (courseid,))


def course_exists(site: Site, courseid: Any) -> bool:
    return get_course(site, courseid) is not None


def course_context_id(site: Site, courseid: int) -> int | None:
    """Id of the course's context (role assignments, files, module contexts hang below it)."""
    return context_id(site, CONTEXT_COURSE, courseid)


def course_context_path(site: Site, courseid: int) -> str | None:
    row = site.store.one("SELECT path FROM context WHERE contextlevel = ? AND instanceid = ?",
                         (CONTEXT_COURSE, courseid))
    return row["path"] if row is not None else None


def _enrol_module() -> Any:
    """The enrolments module (owner of enrol instances, enrolments and roles), if installed."""
    try:
        from bufsync.sandbox.moodle.functions import enrol
    except ImportError:
        return None
    return enrol


def enrollment_methods(site: Site, courseid: int) -> list[str]:
    """Plugin names of the course's enabled enrolment instances, in their sortorder."""
    enrol = _enrol_module()
    if enrol is not None:
        return list(enrol.enabled_enrol_methods(site, courseid))
    rows = site.store.q("SELECT enrol FROM enrol WHERE courseid = ? AND status = 0 ORDER BY sortorder, id",
                        (courseid,))
    return [r["enrol"] for r in rows]


def last_section_number(site: Site, courseid: int) -> int:
    row = site.store.one("SELECT MAX(section) AS n FROM course_sections WHERE course = ? AND component IS NULL",
                         (courseid,))
    return int(row["n"] or 0) if row is not None else 0


def effective_format(name: str) -> str:
    """course_get_format(): an unknown (or uninstalled) format behaves as the default one."""
    return name if name in FORMAT_OPTIONS else DEFAULT_FORMAT


def _clean_option(kind: str, value: Any) -> Any:
    if kind == "int":
        return php_int(value)
    if kind == "bool":
        return clean_param(value, "bool")
    return clean_param(value, kind)


def format_options(site: Site, course: Any) -> dict[str, Any]:
    """get_format_options(): stored values, else the defaults, typed as the format declares."""
    fmt = effective_format(course["format"])
    stored = {r["name"]: r["value"] for r in site.store.q(
        "SELECT name, value FROM course_format_options WHERE courseid = ? AND format = ? AND sectionid = 0",
        (course["id"], fmt))}
    return {name: _clean_option(kind, stored[name]) if name in stored else default
            for name, kind, default in FORMAT_OPTIONS[fmt]}


def _save_format_options(site: Site, courseid: int, fmt: str, data: dict[str, Any]) -> None:
    """update_format_options(): missing records get the value sent or the default."""
    store = site.store
    existing = {r["name"]: r for r in store.q(
        "SELECT id, name, value FROM course_format_options WHERE courseid = ? AND format = ? AND sectionid = 0",
        (courseid, fmt))}
    for name, kind, default in FORMAT_OPTIONS[fmt]:
        if name in data and data[name] is not None:
            value: Any = _clean_option(kind, data[name])
        else:
            value = None
        if name in existing:
            if value is not None and php_str(existing[name]["value"]) != php_str(value):
                store.x("UPDATE course_format_options SET value = ? WHERE id = ?", (php_str(value),
                                                                                   existing[name]["id"]))
        else:
            store.insert("course_format_options", {
                "id": store.next_id("course_format_options"), "courseid": courseid, "format": fmt, "sectionid": 0,
                "name": name, "value": php_str(default if value is None else value)})


def update_weeks_end_date(site: Site, courseid: int) -> None:
    """format_weeks::update_end_date() (its observers run on course and section events): with
    automaticenddate on, the end date is the end of the last week, 2 hours after midnight
    (Moodle adds 7200 s against DST shifts)."""
    row = site.store.one(
        "SELECT c.id, c.startdate, c.enddate, MAX(s.section) AS lastsection FROM course c "
        "JOIN course_sections s ON s.course = c.id WHERE c.format = 'weeks' AND c.id = ? "
        "GROUP BY c.id, c.startdate, c.enddate", (courseid,))
    if row is None or row["lastsection"] is None:
        return
    option = site.store.one("SELECT value FROM course_format_options WHERE courseid = ? AND format = 'weeks' "
                            "AND sectionid = 0 AND name = 'automaticenddate'", (courseid,))
    automatic = option["value"] if option is not None else 1
    if php_empty(automatic):
        return
    enddate = row["startdate"] + 7200 + 604800 * int(row["lastsection"])
    if row["enddate"] != enddate:
        site.store.update("course", courseid, {"enddate": enddate})


def _supports_news(fmt: str) -> bool:
    return effective_format(fmt) != "singleactivity"


# --- custom fields (core_course\customfield\course_handler) -----------------------------------------

def _customfield_export(kind: str, stored: Any) -> tuple[Any, Any]:
    """(valueraw, value) of one field as export_instance_data() gives them."""
    if kind == "checkbox":
        raw = php_int(stored) if stored is not None else 0
        return raw, "Yes" if raw else "No"
    if kind in ("date", "select"):
        raw = php_int(stored) if stored is not None else 0
        if not raw:
            return raw, None
        if kind == "date":
            day = _time.gmtime(raw)
            return raw, f"{day.tm_mday} {_time.strftime('%B %Y', day)}"
        return raw, str(raw)
    text = php_str(stored) if stored is not None else ""
    if text == "":
        return text, None
    if kind == "textarea":
        return text, format_text(text, FORMAT_HTML)[0]
    return text, format_string(text)


def course_customfields(site: Site, courseid: int) -> list[dict[str, Any]]:
    """Every course custom field with this course's value (or the field's default)."""
    rows = site.store.q(
        "SELECT f.id, f.shortname, f.name, f.type, d.value AS stored FROM customfield_field f "
        "LEFT JOIN customfield_data d ON d.fieldid = f.id AND d.instanceid = ? ORDER BY f.id", (courseid,))
    out = []
    for row in rows:
        raw, value = _customfield_export(row["type"], row["stored"])
        out.append({"name": format_string(row["name"]), "shortname": row["shortname"], "type": row["type"],
                    "valueraw": raw, "value": value})
    return out


def _save_customfields(site: Site, courseid: int, data: dict[str, Any]) -> None:
    """instance_form_save(): only the fields present as customfield_<shortname>; others untouched."""
    for field in site.store.q("SELECT id, shortname, type FROM customfield_field ORDER BY id"):
        key = "customfield_" + field["shortname"]
        if key not in data:
            continue
        value = data[key]
        stored = php_str(php_int(value)) if field["type"] in ("checkbox", "date", "select") else php_str(value)
        site.store.x("INSERT INTO customfield_data (fieldid, instanceid, value) VALUES (?, ?, ?) "
                     "ON CONFLICT(fieldid, instanceid) DO UPDATE SET value = excluded.value",
                     (field["id"], courseid, stored))


# --- records as the web services return them -----------------------------------------------------

def _contacts(site: Site, courseid: int) -> list[dict[str, Any]]:
    """Course contacts {id, fullname}: from the registered providers, else the enrolments module's
    role assignments (editingteacher), named as fullname() does ("First Last")."""
    contacts: list[dict[str, Any]] = []
    for provider in COURSE_CONTACT_PROVIDERS:
        contacts.extend({"id": c["id"], "fullname": c["fullname"]} for c in provider(site, courseid))
    enrol = _enrol_module()
    if not COURSE_CONTACT_PROVIDERS and enrol is not None:
        for userid in enrol.course_contacts(site, courseid):
            user = site.store.one("SELECT firstname, lastname FROM user WHERE id = ?", (userid,))
            if user is not None:
                fullname = clean_param(f"{user['firstname']} {user['lastname']}", "notags")
                contacts.append({"id": userid, "fullname": fullname})
    return contacts


def _bool_or_null(value: Any) -> bool | None:
    return None if value is None else bool(value)


def course_public_information(site: Site, row: Any) -> dict[str, Any]:
    """get_course_public_information(), keys in the order of get_course_structure()."""
    category = get_category(site, row["category"]) if row["category"] else None
    summary, summaryformat = format_text(row["summary"], row["summaryformat"])
    ctxid = course_context_id(site, row["id"])
    if ctxid is None:  # context_course::instance() creates a missing context
        ctxid = new_context(site, CONTEXT_COURSE, row["id"], category_context_path(site, row["category"]))
    out: dict[str, Any] = {
        "id": row["id"], "fullname": format_string(row["fullname"]),
        "displayname": format_string(row["fullname"]), "shortname": format_string(row["shortname"]),
        "courseimage": f"{site.config.site_url}/pluginfile.php/{ctxid}/course/generated/course.svg",
        "categoryid": row["category"], "categoryname": format_string(category["name"]) if category else "",
        "sortorder": row["sortorder"], "summary": summary, "summaryformat": summaryformat,
        "summaryfiles": [], "overviewfiles": [],
        "showactivitydates": _bool_or_null(row["showactivitydates"]),
        "showcompletionconditions": _bool_or_null(row["showcompletionconditions"]),
        "contacts": _contacts(site, row["id"]),
        "enrollmentmethods": enrollment_methods(site, row["id"]),
    }
    customfields = course_customfields(site, row["id"])
    if customfields:
        out["customfields"] = customfields
    return out


def course_full_record(site: Site, row: Any) -> dict[str, Any]:
    """One course of get_courses_by_field as an admin (course:update) sees it."""
    out = course_public_information(site, row)
    for key in ("idnumber", "format", "showgrades", "newsitems", "startdate", "enddate", "maxbytes", "showreports",
                "visible", "groupmode", "groupmodeforce", "defaultgroupingid", "enablecompletion",
                "completionnotify"):
        out[key] = row[key]
    out["lang"] = clean_param(row["lang"], "lang")
    out["theme"] = clean_param(row["theme"], "theme")
    for key in ("marker", "legacyfiles", "calendartype", "timecreated", "timemodified", "requested", "cacherev"):
        out[key] = row[key]
    out["filters"] = [dict(f) for f in FILTERS]
    fmt = effective_format(row["format"])
    options = list(format_options(site, row).items()) + _EXTERNAL_EXTRA.get(fmt, [])
    if options:
        out["courseformatoptions"] = [{"name": name, "value": value} for name, value in options]
    return out


def get_courses_record(site: Site, row: Any) -> dict[str, Any]:
    """One course of core_course_get_courses (the older reader), admin view."""
    summary, summaryformat = format_text(row["summary"], row["summaryformat"])
    options = format_options(site, row)
    out: dict[str, Any] = {
        "id": row["id"], "shortname": format_string(row["shortname"]), "categoryid": row["category"],
        "categorysortorder": row["sortorder"], "fullname": format_string(row["fullname"]),
        "displayname": format_string(row["fullname"]), "idnumber": row["idnumber"], "summary": summary,
        "summaryformat": summaryformat, "format": row["format"], "showgrades": row["showgrades"],
        "newsitems": row["newsitems"], "startdate": row["startdate"], "enddate": row["enddate"],
        "numsections": last_section_number(site, row["id"]), "maxbytes": row["maxbytes"],
        "showreports": row["showreports"], "visible": row["visible"],
    }
    if "hiddensections" in options:
        out["hiddensections"] = options["hiddensections"]
    out.update({
        "groupmode": row["groupmode"], "groupmodeforce": row["groupmodeforce"],
        "defaultgroupingid": row["defaultgroupingid"], "timecreated": row["timecreated"],
        "timemodified": row["timemodified"], "enablecompletion": row["enablecompletion"],
        "completionnotify": row["completionnotify"], "lang": clean_param(row["lang"], "lang"),
        "forcetheme": clean_param(row["theme"], "theme"),
        "courseformatoptions": [{"name": name, "value": value} for name, value in options.items()],
        "showactivitydates": _bool_or_null(row["showactivitydates"]),
        "showcompletionconditions": _bool_or_null(row["showcompletionconditions"]),
    })
    customfields = course_customfields(site, row["id"])
    if customfields:
        out["customfields"] = customfields
    return out


# --- install ------------------------------------------------------------------------------------

@installer
def install_site_course(site: Site) -> None:
    """The front page course (id 1, format 'site', no category), as a fresh Moodle has it."""
    now = site.now()
    store = site.store
    store.insert("course", {
        "id": SITEID, "category": 0, "sortorder": 1, "fullname": site.config.sitename,
        "shortname": site.config.sitename.lower().replace(" ", ""), "idnumber": "", "summary": "",
        "summaryformat": FORMAT_MOODLE, "format": "site", "showgrades": 1, "newsitems": 3, "visible": 1,
        "visibleold": 1, "enablecompletion": 0, "showcompletionconditions": None, "timecreated": now,
        "timemodified": now, "cacherev": now})
    for section in (0, 1):
        _create_section(site, SITEID, section)
    store.set_sequence("course", 2)


# --- course operations (course/lib.php) --------------------------------------------------------

def _php_trim(value: Any) -> str:
    return php_str(value).strip(" \t\n\r\0\x0b")


def _errorinvalidparam(name: str) -> WsError:
    return moodle_exception("errorinvalidparam", f'The param "{name}" is invalid.')


def course_validate_dates(data: dict[str, Any]) -> str | None:
    """course_validate_dates() on the data sent (not merged with the stored course)."""
    start, end = data.get("startdate"), data.get("enddate")
    if not php_empty(start) and not php_empty(end) and php_int(end) < php_int(start):
        return "enddatebeforestartdate"
    if php_empty(start) and not php_empty(end):
        return "nostartdatenoenddate"
    return None


_DATE_MESSAGES = {"enddatebeforestartdate": "The course end date must be after the start date.",
                  "nostartdatenoenddate": "A course end date can only be set if a start date is also set."}


def _course_columns(data: dict[str, Any]) -> dict[str, Any]:
    """The course table's columns from the data (other keys are ignored, as insert_record does);
    a value PostgreSQL would not take for an integer column fails the write."""
    row: dict[str, Any] = {}
    for key in _COURSE_COLUMNS:
        if key not in data:
            continue
        value = data[key]
        if key not in _TEXT_COLUMNS and value is not None and not isinstance(value, (int, float)):
            if not is_numeric(value):
                raise WsError("dml_write_exception", "dmlwriteexception", "Error writing to database",
                              f'ERROR:  invalid input syntax for type bigint: "{php_str(value)}"')
            value = php_int(value)
        elif key in _TEXT_COLUMNS and value is not None:
            value = php_str(value)
        row[key] = value
    return row


def _create_section(site: Site, courseid: int, section: int) -> None:
    """course_create_section(): an empty section, summary in HTML."""
    site.store.insert("course_sections", {
        "id": site.store.next_id("course_sections"), "course": courseid, "section": section, "name": None,
        "summary": "", "summaryformat": FORMAT_HTML, "sequence": "", "visible": 1, "timemodified": site.now()})


def _add_default_enrol_instances(site: Site, courseid: int) -> None:
    """enrol_course_updated(true): manual, guest and self add their default instance, right at
    creation (so enrol ids follow course creation order, rolled-back courses included)."""
    enrol = _enrol_module()
    if enrol is not None:
        enrol.ensure_course_instances(site, courseid)
        return
    now = site.now()
    for sortorder, (name, fields) in enumerate(_DEFAULT_ENROL_INSTANCES):
        site.store.insert("enrol", {"id": site.store.next_id("enrol"), "enrol": name, "courseid": courseid,
                                    "sortorder": sortorder, "enrolstartdate": 0, "enrolenddate": 0,
                                    "timecreated": now, "timemodified": now, **fields})


def create_course(site: Site, data: dict[str, Any]) -> Any:
    """course/lib.php create_course(); returns the new course row."""
    store = site.store
    category = get_category(site, data.get("category"))
    if category is None:
        raise missing_category_record(data.get("category"), "*")
    if not php_empty(data.get("shortname")) and store.one("SELECT id FROM course WHERE shortname = ?",
                                                          (php_str(data["shortname"]),)):
        raise moodle_exception("shortnametaken",
                               f"Short name is already used for another course ({php_str(data['shortname'])})")
    if not php_empty(data.get("idnumber")) and store.one("SELECT id FROM course WHERE idnumber = ?",
                                                         (php_str(data["idnumber"]),)):
        raise moodle_exception("courseidnumbertaken",
                               f"ID number is already used for another course ({php_str(data['idnumber'])})")
    data.pop("relativedatesmode", None)  # enablecourserelativedates is off
    error = course_validate_dates(data)
    if error:
        raise moodle_exception(error, _DATE_MESSAGES[error])
    now = site.now()
    data["timecreated"] = data["timecreated"] if not php_empty(data.get("timecreated")) else now
    data["timemodified"] = data["timecreated"]
    data["sortorder"] = 0
    enablecompletion = data["enablecompletion"] if data.get("enablecompletion") is not None else 1
    if loose_equal(php_str(enablecompletion), COMPLETION_DISABLED):
        data.pop("showcompletionconditions", None)
    elif data.get("showcompletionconditions") is None:
        data["showcompletionconditions"] = 1  # moodlecourse | showcompletionconditions
    if data.get("visible") is None:
        data["visible"] = category["visible"]
    data["visibleold"] = data["visible"]
    data["cacherev"] = now
    row = _course_columns(data)
    row["id"] = store.next_id("course", 2)
    store.insert("course", row)
    courseid = row["id"]
    new_context(site, CONTEXT_COURSE, courseid, category_context_path(site, category["id"]))
    _save_format_options(site, courseid, effective_format(php_str(row.get("format", DEFAULT_FORMAT))), data)
    fix_course_sortorder(site)
    numsections = php_int(data.get("numsections", 0)) if data.get("numsections") is not None else 0
    numsections = max(-MAX_SECTIONS_CREATED, min(numsections, MAX_SECTIONS_CREATED))
    sections = range(0, numsections + 1) if numsections >= 0 else range(0, numsections - 1, -1)
    for section in sections:
        _create_section(site, courseid, section)
    update_weeks_end_date(site, courseid)
    _add_default_enrol_instances(site, courseid)
    _save_customfields(site, courseid, data)
    for hook in COURSE_CREATED_HOOKS:
        hook(site, courseid)
    return get_course(site, courseid)


def update_course(site: Site, data: dict[str, Any]) -> None:
    """course/lib.php update_course() (the data as update_courses prepared it)."""
    store = site.store
    if loose_equal(php_str(data["id"]), SITEID):
        raise moodle_exception("invalidcourse", "Invalid course")
    old = get_course(site, data["id"])
    data.pop("relativedatesmode", None)
    data["timemodified"] = site.now()
    if not php_empty(data.get("shortname")) and not loose_equal(php_str(data["shortname"]), old["shortname"]):
        if store.one("SELECT id FROM course WHERE shortname = ? AND id <> ?", (php_str(data["shortname"]),
                                                                                 old["id"])):
            raise moodle_exception("shortnametaken",
                                   f"Short name is already used for another course ({php_str(data['shortname'])})")
    if not php_empty(data.get("idnumber")) and not loose_equal(php_str(data["idnumber"]), old["idnumber"]):
        if store.one("SELECT id FROM course WHERE idnumber = ? AND id <> ?", (php_str(data["idnumber"]),
                                                                                old["id"])):
            raise moodle_exception("courseidnumbertaken",
                                   f"ID number is already used for another course ({php_str(data['idnumber'])})")
    error = course_validate_dates(data)
    if error:
        raise moodle_exception(error, _DATE_MESSAGES[error])
    if "category" in data and php_empty(data["category"]):
        del data["category"]
    movecat = "category" in data and not loose_equal(php_str(data["category"]), old["category"])
    newcategory = get_category(site, data["category"]) if movecat else None
    if movecat and newcategory is None:
        # Moodle fails on the new category's context after saving; nothing is saved here.
        raise missing_category_record(php_int(data["category"]))
    if data.get("visible") is None:
        data["visible"] = old["visible"]
    if not loose_equal(php_str(data["visible"]), old["visible"]):
        data["visibleold"] = data["visible"]
    elif movecat and newcategory is not None and not newcategory["visible"]:
        data["visible"] = 0
    if data.get("format") is not None and not _supports_news(php_str(data["format"])):
        data["newsitems"] = 0
    if "enablecompletion" in data and data["enablecompletion"] is not None \
            and loose_equal(php_str(data["enablecompletion"]), COMPLETION_DISABLED):
        data["showcompletionconditions"] = None
    _save_customfields(site, old["id"], data)
    oldoptions = format_options(site, old)
    data["cacherev"] = max(old["cacherev"] + 1, site.now()) if old["cacherev"] <= site.now() + 3600 else site.now()
    store.update("course", old["id"], _course_columns(data))
    course = get_course(site, old["id"])
    fmt = effective_format(course["format"])
    merged = dict(data)
    for name, _kind, _default in FORMAT_OPTIONS[fmt]:
        if name not in merged and name in oldoptions:
            merged[name] = oldoptions[name]
    _save_format_options(site, course["id"], fmt, merged)
    if movecat:
        move_context(site, CONTEXT_COURSE, course["id"], category_context_path(site, course["category"]))
    if movecat or ("sortorder" in data and not loose_equal(php_str(data["sortorder"]), old["sortorder"])):
        fix_course_sortorder(site)
    update_weeks_end_date(site, course["id"])
    for hook in COURSE_UPDATED_HOOKS:
        hook(site, course["id"])


def delete_course(site: Site, courseid: int) -> None:
    """delete_course(): the course, its contexts (and all below), sections, options, enrolments."""
    store = site.store
    for hook in COURSE_DELETE_HOOKS:
        hook(site, courseid)
    enrol = _enrol_module()
    if enrol is not None:
        enrol.delete_course_enrolments(site, courseid)
    store.x("DELETE FROM enrol WHERE courseid = ?", (courseid,))
    store.x("DELETE FROM customfield_data WHERE instanceid = ?", (courseid,))
    store.x("DELETE FROM course_format_options WHERE courseid = ?", (courseid,))
    store.x("DELETE FROM course_sections WHERE course = ?", (courseid,))
    delete_context(site, CONTEXT_COURSE, courseid)
    store.x("DELETE FROM course WHERE id = ?", (courseid,))


def move_courses(site: Site, courseids: list[int], categoryid: int) -> bool:
    """move_courses(): into another category (hidden there if the category is hidden)."""
    store = site.store
    category = get_category(site, categoryid)
    if not courseids or category is None:
        return False
    marks = ",".join("?" for _ in courseids)
    rows = store.q(f"SELECT id FROM course WHERE id IN ({marks}) ORDER BY id", list(courseids))
    for i, course in enumerate(rows, start=1):
        changes: dict[str, Any] = {"timemodified": site.now(), "category": category["id"],
                                   "sortorder": category["sortorder"] + MAX_COURSES_IN_CATEGORY - i}
        if category["visible"] == 0:
            changes["visible"] = 0
        store.update("course", course["id"], changes)
        move_context(site, CONTEXT_COURSE, course["id"], category_context_path(site, category["id"]))
    fix_course_sortorder(site)
    return True


# --- web service functions ------------------------------------------------------------------------

_FORMAT_OPTIONS_IN = Multiple(Single({"name": Value("alphanumext"), "value": Value("raw")}), VALUE_OPTIONAL)
_CUSTOMFIELDS_IN = Multiple(Single({"shortname": Value("alphanumext"), "value": Value("raw")}), VALUE_OPTIONAL)

_CREATE_COURSE = Single({
    "fullname": Value("text"), "shortname": Value("text"), "categoryid": Value("int"),
    "idnumber": Value("raw", VALUE_OPTIONAL), "summary": Value("raw", VALUE_OPTIONAL),
    "summaryformat": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "format": Value("plugin", VALUE_DEFAULT, DEFAULT_FORMAT),
    "showgrades": Value("int", VALUE_DEFAULT, 1), "newsitems": Value("int", VALUE_DEFAULT, 5),
    "startdate": Value("int", VALUE_OPTIONAL), "enddate": Value("int", VALUE_OPTIONAL),
    "numsections": Value("int", VALUE_OPTIONAL), "maxbytes": Value("int", VALUE_DEFAULT, 0),
    "showreports": Value("int", VALUE_DEFAULT, 0), "visible": Value("int", VALUE_OPTIONAL),
    "hiddensections": Value("int", VALUE_OPTIONAL), "groupmode": Value("int", VALUE_DEFAULT, 0),
    "groupmodeforce": Value("int", VALUE_DEFAULT, 0), "defaultgroupingid": Value("int", VALUE_DEFAULT, 0),
    "enablecompletion": Value("int", VALUE_OPTIONAL), "completionnotify": Value("int", VALUE_OPTIONAL),
    "lang": Value("safedir", VALUE_OPTIONAL), "forcetheme": Value("plugin", VALUE_OPTIONAL),
    "courseformatoptions": _FORMAT_OPTIONS_IN, "customfields": _CUSTOMFIELDS_IN,
})


def _apply_options_and_fields(course: dict[str, Any], update: bool) -> None:
    """courseformatoptions become course fields; customfields become customfield_<shortname>."""
    for option in course.get("courseformatoptions") or []:
        if not update or (option.get("name") is not None and option.get("value") is not None):
            course[option["name"]] = option["value"]
    for field in course.get("customfields") or []:
        course["customfield_" + field["shortname"]] = field["value"]


@ws_function("core_course_create_courses", {"courses": Multiple(_CREATE_COURSE)},
             returns=Multiple(Single({"id": Value("int"), "shortname": Value("raw")})))
def create_courses(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All or nothing: one bad course rolls back those created before it in the call."""
    created = []
    for course in params["courses"]:
        course = dict(course)
        catid = course["categoryid"]
        if not course_category_exists(site, catid):
            raise moodle_exception(
                "errorcatcontextnotvalid", f"You cannot execute functions in the category context (category id:"
                f"{php_str(catid)}). The context error message was: Invalid parameter value detected")
        if _php_trim(course["fullname"]) == "":
            raise _errorinvalidparam("fullname")
        if _php_trim(course["shortname"]) == "":
            raise _errorinvalidparam("shortname")
        if "lang" in course and course["lang"] not in LANGS:
            raise _errorinvalidparam("lang")
        course.pop("forcetheme", None)  # allowcoursethemes is off: the theme is ignored
        if "enablecompletion" not in course:
            course["enablecompletion"] = 1  # completion on for the site; moodlecourse default 1
        course["category"] = catid
        course["summaryformat"] = validate_format(course["summaryformat"])
        _apply_options_and_fields(course, update=False)
        row = create_course(site, course)
        created.append({"id": row["id"], "shortname": course["shortname"]})
    return created


def course_category_exists(site: Site, categoryid: Any) -> bool:
    return categoryid is not None and get_category(site, categoryid) is not None


_UPDATE_COURSE = Single({
    "id": Value("int"), "fullname": Value("text", VALUE_OPTIONAL), "shortname": Value("text", VALUE_OPTIONAL),
    "categoryid": Value("int", VALUE_OPTIONAL), "idnumber": Value("raw", VALUE_OPTIONAL),
    "summary": Value("raw", VALUE_OPTIONAL), "summaryformat": Value("int", VALUE_OPTIONAL),
    "format": Value("plugin", VALUE_OPTIONAL), "showgrades": Value("int", VALUE_OPTIONAL),
    "newsitems": Value("int", VALUE_OPTIONAL), "startdate": Value("int", VALUE_OPTIONAL),
    "enddate": Value("int", VALUE_OPTIONAL), "numsections": Value("int", VALUE_OPTIONAL),
    "maxbytes": Value("int", VALUE_OPTIONAL), "showreports": Value("int", VALUE_OPTIONAL),
    "visible": Value("int", VALUE_OPTIONAL), "hiddensections": Value("int", VALUE_OPTIONAL),
    "groupmode": Value("int", VALUE_OPTIONAL), "groupmodeforce": Value("int", VALUE_OPTIONAL),
    "defaultgroupingid": Value("int", VALUE_OPTIONAL), "enablecompletion": Value("int", VALUE_OPTIONAL),
    "completionnotify": Value("int", VALUE_OPTIONAL), "lang": Value("safedir", VALUE_OPTIONAL),
    "forcetheme": Value("plugin", VALUE_OPTIONAL), "courseformatoptions": _FORMAT_OPTIONS_IN,
    "customfields": _CUSTOMFIELDS_IN,
})


def _update_one(site: Site, course: dict[str, Any]) -> None:
    """The body of update_courses' try block for one course."""
    old = get_course(site, course["id"])
    if old is None:  # context_course::instance($id, MUST_EXIST)
        raise WsError("dml_missing_record_exception", "invalidrecord",
                      "Can't find data record in database table course.",
                      f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => {course['id']},\n)]")
    data = dict(course)
    if "categoryid" in data and not loose_equal(php_str(data["categoryid"]), old["category"]):
        data["category"] = data["categoryid"]
    if "fullname" in data and not loose_equal(php_str(data["fullname"]), old["fullname"]):
        if _php_trim(data["fullname"]) == "":
            raise _errorinvalidparam("fullname")
    if "shortname" in data and not loose_equal(php_str(data["shortname"]), old["shortname"]):
        if _php_trim(data["shortname"]) == "":
            raise _errorinvalidparam("shortname")
    if "summaryformat" in data and not loose_equal(php_str(data["summaryformat"]), old["summaryformat"]):
        data["summaryformat"] = validate_format(data["summaryformat"])
    if "lang" in data and not loose_equal(php_str(data["lang"]), old["lang"]):
        if data["lang"] not in LANGS:
            raise _errorinvalidparam("lang")
    data.pop("forcetheme", None)  # allowcoursethemes is off
    _apply_options_and_fields(data, update=True)
    update_course(site, data)


@ws_function("core_course_update_courses", {"courses": Multiple(_UPDATE_COURSE)},
             returns=Single({"warnings": _WARNINGS}), transactional=False)
def update_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Per course: a failure is a warning {item, itemid, warningcode, message}; the rest is saved."""
    return {"warnings": per_item(site, params["courses"], "course", _update_one)}


@ws_function("core_course_delete_courses", {"courseids": Multiple(Value("int"))},
             returns=Single({"warnings": _WARNINGS}))
def delete_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Unknown ids and the site course are warnings; the others are deleted."""
    warnings = []
    for courseid in params["courseids"]:
        if get_course(site, courseid) is None:
            warnings.append({"item": "course", "itemid": courseid, "warningcode": "unknowncourseidnumber",
                             "message": f"Unknown course ID {courseid}"})
            continue
        if courseid == SITEID:  # can_delete_course() is false for the front page
            warnings.append({"item": "course", "itemid": courseid, "warningcode": "cannotdeletecourse",
                             "message": f"You do not have the permission to delete this course{courseid}"})
            continue
        delete_course(site, courseid)
    fix_course_sortorder(site)
    return {"warnings": warnings}


@ws_function("core_course_get_courses", {
    "options": Single({"ids": Multiple(Value("int"), VALUE_OPTIONAL)}, VALUE_DEFAULT, {})},
    returns=Multiple(GET_COURSES_RECORD))
def get_courses(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All courses (the site course too) or the listed ids; unknown ids are skipped."""
    ids = params["options"].get("ids")
    if not ids:
        rows = site.store.q("SELECT * FROM course ORDER BY id")
    else:
        rows = site.store.q(f"SELECT * FROM course WHERE id IN ({','.join('?' for _ in ids)}) ORDER BY id", ids)
    return [get_courses_record(site, row) for row in rows]


@ws_function("core_course_get_courses_by_field", {
    "field": Value("alpha", VALUE_DEFAULT, ""), "value": Value("raw", VALUE_DEFAULT, ""),
}, returns=Single({"courses": Multiple(COURSE_FULL), "warnings": _WARNINGS}))
def get_courses_by_field(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """No field: every course, the site course included; ids takes a comma separated list."""
    field, value = params["field"], params["value"]
    warnings: list[dict[str, Any]] = []
    store = site.store
    if php_empty(field):
        rows = list(store.q("SELECT * FROM course ORDER BY id"))
    elif field == "ids":
        sequence = clean_param(value, "sequence")
        id_list(sequence, "course")
        seen: list[str] = []
        for item in sequence.split(","):
            if item not in seen:
                seen.append(item)
        rows = []
        for item in seen:
            row = get_course(site, int(item))
            if row is not None:
                rows.append(row)
            else:
                warnings.append({"item": "course", "itemid": int(item), "warningcode": "1",
                                 "message": "No access rights in course context"})
    else:
        kinds = {"id": "int", "category": "int", "shortname": "text", "idnumber": "raw"}
        if field not in kinds:
            raise invalid_parameter("Invalid field name")
        rows = list(store.q(f"SELECT * FROM course WHERE {field} = ? ORDER BY id",
                            (clean_param(value, kinds[field]),)))
    return {"courses": [course_full_record(site, row) for row in rows], "warnings": warnings}


_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*/[a-z0-9_]+:[a-z0-9_]+$")


def _like_regex(pattern: str) -> re.Pattern[str]:
    """sql_like($field, $pattern, casesensitive false) with '\\' as escape: % and _ are wildcards."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def _search_matches(row: Any, terms: list[str]) -> bool:
    """get_courses_search(): every term matches summary + fullname + idnumber + shortname."""
    text = " ".join([row["summary"] or "", row["fullname"], row["idnumber"], row["shortname"]])
    for term in terms:
        if term.startswith("+") or (term.startswith("-") and len(term) > 1):
            word = re.escape(term.strip("+-"))
            found = re.search(f"(^|[^a-zA-Z0-9]){word}([^a-zA-Z0-9]|$)", text, re.IGNORECASE) is not None
            if found != term.startswith("+"):
                return False
        elif not _like_regex(f"%{term}%").match(text):
            return False
    return True


@ws_function("core_course_search_courses", {
    "criterianame": Value("alpha"), "criteriavalue": Value("raw"),
    "page": Value("int", VALUE_DEFAULT, 0), "perpage": Value("int", VALUE_DEFAULT, 0),
    "requiredcapabilities": Multiple(Value("raw"), VALUE_DEFAULT, []),
    "limittoenrolled": Value("bool", VALUE_DEFAULT, 0), "onlywithcompletion": Value("bool", VALUE_DEFAULT, 0),
}, returns=Single({"total": Value("int"), "courses": Multiple(COURSE_PUBLIC), "warnings": _WARNINGS}))
def search_courses(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Words in name/shortname/idnumber/summary (all must match), in course sortorder."""
    for capability in params["requiredcapabilities"]:
        if not _CAPABILITY.match(capability):
            raise invalid_parameter(
                "requiredcapabilities => Invalid parameter value detected: Invalid external api parameter: "
                f'the value is "{capability}", the server was expecting "capability" type')
    name = params["criterianame"]
    allowed = ["search", "modulelist", "blocklist", "tagid"]
    if name not in allowed:
        raise invalid_parameter(f"Invalid value for criterianame parameter (value: {name}),"
                                f"allowed values are: {','.join(allowed)}")
    kinds = {"search": "raw", "modulelist": "plugin", "blocklist": "int", "tagid": "int"}
    value = clean_param(params["criteriavalue"], kinds[name])
    rows: list[Any]
    if name == "search" or php_empty(value):
        terms = re.split(r"\s+", php_str(value if name == "search" else "").strip())
        terms = [t for t in terms if t]
        rows = [r for r in site.store.q("SELECT * FROM course WHERE id <> ? ORDER BY sortorder", (SITEID,))
                if _search_matches(r, terms)]
        if params["onlywithcompletion"]:
            rows = [r for r in rows if r["enablecompletion"] == 1]
    else:
        rows = []  # blocks, activity modules and tags are not emulated: nothing carries them
    total = len(rows)
    if params["perpage"] != 0:
        offset = params["page"] * params["perpage"]
        rows = rows[offset: offset + params["perpage"]] if offset >= 0 else []
    if params["limittoenrolled"]:
        enrolled: set[int] = set()
        for provider in ENROLLED_COURSES_PROVIDERS:
            enrolled |= provider(site, site.userid)
        enrol = _enrol_module()
        if not ENROLLED_COURSES_PROVIDERS and enrol is not None:
            enrolled = set(enrol.user_course_ids(site, site.userid, True))
        kept = [r for r in rows if r["id"] in enrolled]
        total -= len(rows) - len(kept)
        rows = kept
    return {"total": total, "courses": [course_public_information(site, r) for r in rows], "warnings": []}
