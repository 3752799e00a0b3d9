"""core_reportbuilder: custom reports on the "Course participants" datasource and core_reportbuilder_retrieve_report,
as Moodle 4.5 answers it (reportbuilder/classes/external/reports/retrieve.php). bufsync reads course completion for
every student from such a report (engine/bufsync/adapters/moodle/php/completion_report.php makes it on a real site;
the admin action `create_report` here).

The datasource (course/classes/reportbuilder/datasource/participants.php) is every course but the site course; once a
column or condition is about people it is LEFT JOINed to every enrolment instance (disabled ones too), every user
enrolment (suspended ones too) and its user (deleted users are NULL), then to course_completions: one row per user
enrolment, a row of NULLs for an instance nobody is enrolled by. `uniquerows` groups rows by every column's fields.
Sorting is PostgreSQL's with the lab's C collation (code point order), NULLs first ascending and last descending
(sql_order_by_null); rows equal in every sorted column keep the sandbox's order (course, instance, enrolment).

Columns: course:idnumber, course:shortname, course:fullname, user:idnumber, user:username, completion:completed,
completion:timecompleted. Text is HTML-escaped as s() does (short and full names go through format_string with
escape off: tags stripped, "&" kept), completed is "Yes"/"No" ("" with no course_completions row), dates are
userdate() in the reading user's time zone ("" when empty). Conditions: the text filter on the text columns (all
operators, case-insensitive) and the date filter on completion:timecompleted (any, not empty, empty, range).
Who may read a report: site admins, the user who created it, users of its "manually added users" audience.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bufsync.sandbox.moodle.dates import userdate
from bufsync.sandbox.moodle.errors import WsError, missing_record
from bufsync.sandbox.moodle.functions import enrol
from bufsync.sandbox.moodle.functions.categories import format_string, s, strip_tags
from bufsync.sandbox.moodle.functions.webservice import theme_url
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, Multiple, Single, Value
from bufsync.sandbox.moodle.render import php_json
from bufsync.sandbox.moodle.site import Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS reportbuilder_report (
    id INTEGER PRIMARY KEY, name TEXT, source TEXT NOT NULL, type INTEGER NOT NULL DEFAULT 0,
    uniquerows INTEGER NOT NULL DEFAULT 0, conditiondata TEXT, settingsdata TEXT, contextid INTEGER NOT NULL,
    component TEXT NOT NULL DEFAULT '', area TEXT NOT NULL DEFAULT '', itemid INTEGER NOT NULL DEFAULT 0,
    usercreated INTEGER NOT NULL DEFAULT 0, usermodified INTEGER NOT NULL DEFAULT 0,
    timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reportbuilder_column (
    id INTEGER PRIMARY KEY, reportid INTEGER NOT NULL, uniqueidentifier TEXT NOT NULL, heading TEXT,
    columnorder INTEGER NOT NULL, sortenabled INTEGER NOT NULL DEFAULT 0, sortdirection INTEGER NOT NULL DEFAULT 4,
    sortorder INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reportbuilder_filter (
    id INTEGER PRIMARY KEY, reportid INTEGER NOT NULL, uniqueidentifier TEXT NOT NULL,
    iscondition INTEGER NOT NULL DEFAULT 1, filterorder INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reportbuilder_audience (
    id INTEGER PRIMARY KEY, reportid INTEGER NOT NULL, classname TEXT NOT NULL, configdata TEXT NOT NULL);
""")

PARTICIPANTS = "core_course\\reportbuilder\\datasource\\participants"
MANUAL_AUDIENCE = "core_reportbuilder\\reportbuilder\\audience\\manual"
TYPE_CUSTOM_REPORT = 0
SORT_ASC, SORT_DESC = 4, 3  # PHP's constants, as reportbuilder_column.sortdirection stores them
SITE_CONTEXT_ID = 1
ACCESS_DENIED = ("core_reportbuilder\\exception\\report_access_exception", "errorreportview",
                 "You cannot view this report")

enrol.CAPABILITIES.update({
    "moodle/reportbuilder:view": ("View custom reports", frozenset({"user"})),
    "moodle/reportbuilder:viewall": ("View all custom reports", frozenset()),
    "moodle/reportbuilder:edit": ("Edit your own custom reports", frozenset({"manager"})),
    "moodle/reportbuilder:editall": ("Edit all custom reports", frozenset()),
})


# --- the datasource --------------------------------------------------------------------------------

Joined = dict[str, Any]  # one row of the datasource's joins: c_*, e_id, ue_id, u_*, cc_* (None where a join missed)

_JOIN_SQL = """
SELECT c.id AS c_id, c.idnumber AS c_idnumber, c.shortname AS c_shortname, c.fullname AS c_fullname,
       e.id AS e_id, ue.id AS ue_id, u.id AS u_id, u.idnumber AS u_idnumber, u.username AS u_username,
       cc.id AS cc_id, cc.timecompleted AS cc_timecompleted
  FROM course c
  LEFT JOIN enrol e ON e.courseid = c.id
  LEFT JOIN user_enrolments ue ON ue.enrolid = e.id
  LEFT JOIN user u ON u.id = ue.userid AND u.deleted = 0
  LEFT JOIN course_completions cc ON cc.course = c.id AND cc.userid = u.id
 WHERE c.id <> ?
 ORDER BY c.id, e.id, ue.id"""


def participants(site: Site, people: bool) -> list[Joined]:
    """The datasource's rows: courses only while no column or condition needs people, else one per enrolment."""
    if not people:
        return [dict(r) for r in site.store.q(
            "SELECT id AS c_id, idnumber AS c_idnumber, shortname AS c_shortname, fullname AS c_fullname "
            "FROM course WHERE id <> ? ORDER BY id", (enrol.SITEID,))]
    for row in site.store.q("SELECT id FROM course WHERE id <> ? AND id NOT IN (SELECT courseid FROM enrol_seeded)",
                            (enrol.SITEID,)):
        enrol.ensure_course_instances(site, int(row["id"]))  # a real course has its instances from the start
    return [dict(r) for r in site.store.q(_JOIN_SQL, (enrol.SITEID,))]


@dataclass(frozen=True)
class Column:
    """A report column: its English title, whether it needs the people joins, the fields it selects (the first is
    what it sorts by; all are what uniquerows groups by) and how a value is shown to the reading user."""
    title: str
    people: bool
    fields: Callable[[Joined], tuple[Any, ...]]
    show: Callable[[Site, Joined], str]


def _text(key: str) -> Callable[[Site, Joined], str]:
    return lambda site, r: s(r[key]) if r.get(key) is not None else ""


def _course_name(key: str) -> Callable[[Site, Joined], str]:
    """The course entity's format(): format_string($value, true, ['escape' => false]), "" without a course."""
    return lambda site, r: strip_tags(str(r[key])) if r.get("c_id") else ""


def _completed(r: Joined) -> int | None:
    """CASE WHEN cc.id IS NULL THEN NULL WHEN cc.timecompleted > 0 THEN 1 ELSE 0 END."""
    if r.get("cc_id") is None:
        return None
    return 1 if (r.get("cc_timecompleted") or 0) > 0 else 0


def _yes_no(site: Site, r: Joined) -> str:
    value = _completed(r)
    return "" if value is None else ("Yes" if value else "No")


def _timecompleted(site: Site, r: Joined) -> str:
    value = r.get("cc_timecompleted")
    return userdate(site, int(value)) if value else ""


COLUMNS: dict[str, Column] = {
    "course:fullname": Column("Course full name", False, lambda r: (r["c_fullname"], r["c_id"]),
                              _course_name("c_fullname")),
    "course:shortname": Column("Course short name", False, lambda r: (r["c_shortname"], r["c_id"]),
                               _course_name("c_shortname")),
    "course:idnumber": Column("Course ID number", False, lambda r: (r["c_idnumber"],), _text("c_idnumber")),
    "user:idnumber": Column("ID number", True, lambda r: (r.get("u_idnumber"),), _text("u_idnumber")),
    "user:username": Column("Username", True, lambda r: (r.get("u_username"),), _text("u_username")),
    "completion:completed": Column("Completed", True, lambda r: (_completed(r),), _yes_no),
    "completion:timecompleted": Column("Time completed", True, lambda r: (r.get("cc_timecompleted"),),
                                       _timecompleted),
}

# core_reportbuilder\local\filters\text and \date operators
TEXT_ANY, TEXT_CONTAINS, TEXT_NOT_CONTAINS, TEXT_EQUAL, TEXT_NOT_EQUAL = 0, 1, 2, 3, 4
TEXT_STARTS_WITH, TEXT_ENDS_WITH, TEXT_EMPTY, TEXT_NOT_EMPTY = 5, 6, 7, 8
DATE_ANY, DATE_NOT_EMPTY, DATE_EMPTY, DATE_RANGE = 0, 1, 2, 3
_TEXT_FIELDS = {"course:idnumber": "c_idnumber", "course:shortname": "c_shortname", "course:fullname": "c_fullname",
                "user:idnumber": "u_idnumber", "user:username": "u_username"}
_DATE_FIELDS = {"completion:timecompleted": "cc_timecompleted"}
CONDITIONS = {**{name: "text" for name in _TEXT_FIELDS}, **{name: "date" for name in _DATE_FIELDS}}


def _text_match(operator: int, value: str, field: str | None) -> bool | None:
    """text::get_sql_filter() on one value: True/False, or None when the condition is ignored (no filter)."""
    if operator in (TEXT_EMPTY, TEXT_NOT_EMPTY):
        return ((field or "") == "") == (operator == TEXT_EMPTY)  # COALESCE(field, '') = / != ''
    if operator not in (TEXT_CONTAINS, TEXT_NOT_CONTAINS, TEXT_EQUAL, TEXT_NOT_EQUAL, TEXT_STARTS_WITH,
                        TEXT_ENDS_WITH) or value == "":
        return None  # any value, an unknown operator or a missing value: Moodle ignores the filter
    if field is None:
        return False  # NULL LIKE / NOT LIKE / = ...: never true
    text, wanted = field.lower(), value.lower()  # sql_like / sql_equal case-insensitive
    return {TEXT_CONTAINS: wanted in text, TEXT_NOT_CONTAINS: wanted not in text, TEXT_EQUAL: text == wanted,
            TEXT_NOT_EQUAL: text != wanted, TEXT_STARTS_WITH: text.startswith(wanted),
            TEXT_ENDS_WITH: text.endswith(wanted)}[operator]


def _date_match(operator: int, values: dict[str, Any], name: str, field: int | None) -> bool | None:
    """date::get_sql_filter() on one value (the operators the sandbox emulates)."""
    if operator == DATE_NOT_EMPTY:
        return (field or 0) != 0
    if operator == DATE_EMPTY:
        return (field or 0) == 0
    if operator == DATE_RANGE:
        start, end = int(values.get(f"{name}_from") or 0), int(values.get(f"{name}_to") or 0)
        if start > 0 and end > 0:
            return field is not None and start <= field <= end
        if start > 0:
            return field is not None and field >= start
        if end > 0:
            return field is not None and field < end
    return None


def _condition(name: str, values: dict[str, Any]) -> Callable[[Joined], bool]:
    """One condition of the report with the report's stored values, as a row predicate."""
    if CONDITIONS[name] == "text":
        operator = int(values.get(f"{name}_operator") or TEXT_ANY)
        value = str(values.get(f"{name}_value") or "").strip()
        key = _TEXT_FIELDS[name]
        return lambda r: _text_match(operator, value, r.get(key)) is not False
    operator = int(values.get(f"{name}_operator") or DATE_ANY)
    key = _DATE_FIELDS[name]
    return lambda r: _date_match(operator, values, name, r.get(key)) is not False


# --- reports ----------------------------------------------------------------------------------------

def _report(site: Site, reportid: int) -> Any:
    """manager::get_report_from_id(): the persistent, or dml_missing_record_exception."""
    row = site.store.one("SELECT * FROM reportbuilder_report WHERE id = ?", (reportid,))
    if row is None:
        raise missing_record("invalidrecord", "Can't find data record in database table reportbuilder_report.",
                             "reportbuilder_report", "id = ?", [reportid])
    return row


def _columns(site: Site, reportid: int) -> list[Any]:
    return list(site.store.q("SELECT * FROM reportbuilder_column WHERE reportid = ? ORDER BY columnorder, id",
                             (reportid,)))


def _conditions(site: Site, report: Any) -> tuple[list[str], list[Callable[[Joined], bool]]]:
    """The report's conditions (names) and, with its stored values (conditiondata), their row predicates."""
    values = json.loads(report["conditiondata"]) if report["conditiondata"] else {}
    names = [str(r["uniqueidentifier"]) for r in site.store.q(
        "SELECT uniqueidentifier FROM reportbuilder_filter WHERE reportid = ? AND iscondition = 1 "
        "ORDER BY filterorder, id", (report["id"],))]
    return names, [_condition(name, values) for name in names]


def _sort_key(value: Any) -> tuple[bool, Any]:
    """NULLs before any value: first ascending, last once reversed (descending), as sql_order_by_null orders."""
    return (value is not None, value if value is not None else 0)


def _sort_by(column: Column) -> Callable[[Joined], tuple[bool, Any]]:
    """What ORDER BY compares for a column: its first field."""
    return lambda r: _sort_key(column.fields(r)[0])


def report_rows(site: Site, report: Any) -> tuple[list[str], list[list[str]]]:
    """The report's headers and every row (sorted, grouped, conditions applied), shown to the calling user."""
    columns = _columns(site, report["id"])
    defs = [COLUMNS[str(c["uniqueidentifier"])] for c in columns]
    condition_names, conditions = _conditions(site, report)
    people = any(d.people for d in defs) or any(CONDITIONS[n] == "date" or n.startswith("user:")
                                                  for n in condition_names)
    rows = [r for r in participants(site, people) if all(check(r) for check in conditions)] if defs else []
    if report["uniquerows"]:
        groups: dict[tuple[Any, ...], Joined] = {}
        for r in rows:
            groups.setdefault(tuple(f for d in defs for f in d.fields(r)), r)
        rows = list(groups.values())
    sorted_columns = sorted((c for c in columns if c["sortenabled"]), key=lambda c: (c["sortorder"], c["id"]))
    for column in reversed(sorted_columns):  # stable sorts, least significant first
        rows.sort(key=_sort_by(COLUMNS[str(column["uniqueidentifier"])]), reverse=column["sortdirection"] == SORT_DESC)
    headers = [str(c["heading"]) if c["heading"] else d.title for c, d in zip(columns, defs, strict=True)]
    return headers, [[d.show(site, r) for d in defs] for r in rows]


def can_view_report(site: Site, report: Any, userid: int) -> bool:
    """permission::can_view_report(): a viewer of custom reports who may view all, edit this one, or is in its
    audience (only "manually added users" audiences are emulated)."""
    system = enrol.Context(enrol.CONTEXT_SYSTEM, 0, SITE_CONTEXT_ID)

    def has(capability: str) -> bool:
        return enrol.has_capability(site, capability, system, userid)
    if not any(has(f"moodle/reportbuilder:{c}") for c in ("edit", "editall", "view", "viewall")):
        return False
    if has("moodle/reportbuilder:viewall"):
        return True
    if report["type"] == TYPE_CUSTOM_REPORT and (has("moodle/reportbuilder:editall") or (
            report["usercreated"] == userid and has("moodle/reportbuilder:edit"))):
        return True
    for audience in site.store.q("SELECT configdata FROM reportbuilder_audience WHERE reportid = ? AND classname = ?",
                                 (report["id"], MANUAL_AUDIENCE)):
        if userid in [int(u) for u in json.loads(audience["configdata"]).get("users", [])]:
            return True
    return False


def user_summary(site: Site, userid: int) -> dict[str, Any]:
    """user_summary_exporter: the identity fields ($CFG->showuseridentity = email) and picture URLs."""
    user = site.store.row("SELECT * FROM user WHERE id = ?", (userid,))
    return {"id": user["id"], "email": user["email"], "idnumber": user["idnumber"], "phone1": user["phone1"],
            "phone2": user["phone2"], "department": format_string(user["department"]),
            "institution": format_string(user["institution"]),
            "fullname": f"{user['firstname']} {user['lastname']}", "identity": user["email"] or "",
            "profileurl": f"{site.config.site_url}/user/profile.php?id={user['id']}",
            "profileimageurl": theme_url(site, "u/f1"), "profileimageurlsmall": theme_url(site, "u/f2")}


def _details(site: Site, report: Any) -> dict[str, Any]:
    """custom_report_details_exporter: the persistent's fields, its source's name, tags, who changed it last."""
    return {"name": format_string(report["name"]), "source": report["source"], "type": report["type"],
            "uniquerows": bool(report["uniquerows"]), "conditiondata": report["conditiondata"],
            "settingsdata": report["settingsdata"], "contextid": report["contextid"], "component": report["component"],
            "area": report["area"], "itemid": report["itemid"], "usercreated": report["usercreated"],
            "id": report["id"], "timecreated": report["timecreated"], "timemodified": report["timemodified"],
            "usermodified": report["usermodified"],
            "sourcename": "Course participants" if report["source"] == PARTICIPANTS else None, "tags": [],
            "modifiedby": user_summary(site, int(report["usermodified"]))}


def _limits(page: int, perpage: int) -> tuple[int, int]:
    """moodle_database::normalise_limit_from_num(page * perpage, perpage): -1 and negatives are 0, 0 rows is all."""
    start, count = page * perpage, perpage
    start, count = (0 if start == -1 else start), (0 if count == -1 else count)
    return max(0, start), max(0, count)


_USER_SUMMARY = Single({k: Value("raw") for k in (
    "id", "email", "idnumber", "phone1", "phone2", "department", "institution", "fullname", "identity", "profileurl",
    "profileimageurl", "profileimageurlsmall")})
_TAG = Single({k: Value("raw") for k in ("id", "tagid", "isstandard", "displayname", "flag", "viewurl")})
_DETAILS = Single({**{k: Value("raw") for k in (
    "name", "source", "type", "uniquerows", "conditiondata", "settingsdata", "contextid", "component", "area",
    "itemid", "usercreated", "id", "timecreated", "timemodified", "usermodified", "sourcename")},
    "tags": Multiple(_TAG), "modifiedby": _USER_SUMMARY})
_DATA = Single({"headers": Multiple(Value("raw")), "rows": Multiple(Single({"columns": Multiple(Value("raw"))})),
                "totalrowcount": Value("int")})
_WARNINGS = Multiple(Single({k: Value("raw") for k in ("item", "itemid", "warningcode", "message")}))


@ws_function("core_reportbuilder_retrieve_report",
             {"reportid": Value("int"), "page": Value("int", VALUE_DEFAULT, 0),
              "perpage": Value("int", VALUE_DEFAULT, 10)},
             returns=Single({"details": _DETAILS, "data": _DATA, "warnings": _WARNINGS}))
def retrieve_report(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """One page of a custom report: details, headers, rows (each {"columns": [text...]}), the count of all rows."""
    report = _report(site, params["reportid"])
    if not can_view_report(site, report, site.userid):
        raise WsError(*ACCESS_DENIED)
    headers, rows = report_rows(site, report)
    start, count = _limits(params["page"], params["perpage"])
    page = rows[start:start + count] if count else rows[start:]
    return {"details": _details(site, report),
            "data": {"headers": headers, "rows": [{"columns": r} for r in page], "totalrowcount": len(rows)},
            "warnings": []}


# --- administration ---------------------------------------------------------------------------------

def _sort_spec(item: Any) -> tuple[str, int]:
    if isinstance(item, str):
        return item, SORT_ASC
    direction = str(item.get("direction", "asc")).lower()
    if direction not in ("asc", "desc"):
        raise ValueError(f"sorting direction {direction!r}: asc or desc")
    return str(item["column"]), SORT_DESC if direction == "desc" else SORT_ASC


@admin_action("create_report")
def admin_create_report(site: Site, name: str, columns: list[str], source: str = "participants",
                        sorting: list[Any] | None = None, conditions: dict[str, dict[str, Any]] | None = None,
                        uniquerows: bool = False, audience_users: list[int] | None = None,
                        userid: int = 2) -> dict[str, Any]:
    """A custom report as report_helper's create_report, add_report_column, toggle_report_column_sorting,
    add_report_condition and set_condition_values (then manual::create for the audience) make it.

    columns: "entity:name" in order (COLUMNS). sorting: the sorted columns in priority order, each "entity:name"
    (ascending) or {"column": ..., "direction": "desc"}. conditions: {"course:idnumber": {"operator": 5, "value":
    "LAB-"}, "completion:timecompleted": {"operator": 1}} (stored as conditiondata {"<name>_operator": ...}).
    audience_users: ids of users who may read it. userid: who made it (default the admin).
    """
    if source not in ("participants", PARTICIPANTS):
        raise ValueError(f"source {source!r}: the sandbox has the participants datasource only")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise ValueError(f"columns {unknown or columns!r}: the sandbox has {', '.join(COLUMNS)}")
    sorts = [_sort_spec(item) for item in sorting or []]
    if any(column not in columns for column, _ in sorts):
        raise ValueError(f"sorting {sorting!r}: only the report's columns sort")
    values: dict[str, Any] = {}
    for condition, given in (conditions or {}).items():
        if condition not in CONDITIONS:
            raise ValueError(f"condition {condition!r}: the sandbox has {', '.join(CONDITIONS)}")
        operator = int(given.get("operator", 0))
        allowed = range(9) if CONDITIONS[condition] == "text" else range(4)
        if operator not in allowed:
            raise ValueError(f"condition {condition!r} operator {operator} is not emulated")
        values.update({f"{condition}_{key}": value for key, value in given.items()})
    now = site.now()
    reportid = site.store.next_id("reportbuilder_report")
    site.store.insert("reportbuilder_report", {
        "id": reportid, "name": name, "source": PARTICIPANTS, "type": TYPE_CUSTOM_REPORT, "uniquerows": int(uniquerows),
        "conditiondata": php_json(values).decode("ascii") if values else None, "settingsdata": None,
        "contextid": SITE_CONTEXT_ID, "usercreated": userid, "usermodified": userid, "timecreated": now,
        "timemodified": now})
    order = {column: i for i, (column, _) in enumerate(sorts, 1)}
    directions = dict(sorts)
    for position, column in enumerate(columns, 1):
        site.store.insert("reportbuilder_column", {
            "id": site.store.next_id("reportbuilder_column"), "reportid": reportid, "uniqueidentifier": column,
            "columnorder": position, "sortenabled": int(column in directions),
            "sortdirection": directions.get(column, SORT_ASC), "sortorder": order.get(column, len(sorts) + position)})
    for position, condition in enumerate(conditions or {}, 1):
        site.store.insert("reportbuilder_filter", {
            "id": site.store.next_id("reportbuilder_filter"), "reportid": reportid, "uniqueidentifier": condition,
            "iscondition": 1, "filterorder": position})
    if audience_users:
        site.store.insert("reportbuilder_audience", {
            "id": site.store.next_id("reportbuilder_audience"), "reportid": reportid, "classname": MANUAL_AUDIENCE,
            "configdata": php_json({"users": [int(u) for u in audience_users]}).decode("ascii")})
    return {"id": reportid}


@admin_action("delete_report")
def admin_delete_report(site: Site, reportid: int) -> dict[str, Any]:
    """report_helper::delete_report(): the report with its columns, conditions and audiences."""
    for table in ("reportbuilder_column", "reportbuilder_filter", "reportbuilder_audience"):
        site.store.x(f"DELETE FROM {table} WHERE reportid = ?", (reportid,))
    deleted = site.store.x("DELETE FROM reportbuilder_report WHERE id = ?", (reportid,)).rowcount
    return {"deleted": deleted}
