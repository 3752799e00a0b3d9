"""core_cohort_*: site-wide groups of users, as Moodle 4.5's cohort/externallib.php behaves.

Also home of a few helpers the groups, grades and completion modules share: contexts as the
web-service functions look them up, PostgreSQL's integer casts (a bad id in a text field is a
database error, not a validation error) and the members' order (lastname, firstname in the
site's en_US collation). Text formatting and the context tree come from the categories module.
"""

from __future__ import annotations

import re
from typing import Any

from bufsync.adapters.moodle.rules import COHORT_COLUMNS
from bufsync.sandbox.moodle.errors import WsError, coding_error, invalid_parameter, missing_record, moodle_exception
from bufsync.sandbox.moodle.functions.categories import (
    CATEGORY_DELETE_HOOKS,
    FORMAT_HTML,
    format_string,
    format_text,
    php_empty,
    validate_format,
)
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value, php_str
from bufsync.sandbox.moodle.site import Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

schema("""
CREATE TABLE IF NOT EXISTS cohort (
    id INTEGER PRIMARY KEY, contextid INTEGER NOT NULL, name TEXT NOT NULL, idnumber TEXT,
    description TEXT, descriptionformat INTEGER NOT NULL, visible INTEGER NOT NULL DEFAULT 1,
    component TEXT NOT NULL DEFAULT '', timecreated INTEGER NOT NULL, timemodified INTEGER NOT NULL,
    theme TEXT, heap INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS cohort_idnumber ON cohort (idnumber);
CREATE TABLE IF NOT EXISTS cohort_members (
    id INTEGER PRIMARY KEY, cohortid INTEGER NOT NULL, userid INTEGER NOT NULL, timeadded INTEGER NOT NULL,
    UNIQUE (cohortid, userid)
);
CREATE TABLE IF NOT EXISTS sandbox_context_fallback (
    id INTEGER PRIMARY KEY, contextlevel INTEGER NOT NULL, instanceid INTEGER NOT NULL,
    UNIQUE (contextlevel, instanceid)
);
""")
column_limits("cohort", COHORT_COLUMNS)  # the real database refuses longer values (dmlwriteexception)

CONTEXT_SYSTEM, CONTEXT_USER, CONTEXT_COURSECAT, CONTEXT_COURSE, CONTEXT_MODULE, CONTEXT_BLOCK = 10, 30, 40, 50, 70, 80
SYSCONTEXTID = 1
MNET_LOCALHOST_ID = "1"  # $CFG->mnet_localhost_id is a string, and debuginfo shows it quoted
CONTEXT_LEVEL_NAMES = {"system": CONTEXT_SYSTEM, "user": CONTEXT_USER, "coursecat": CONTEXT_COURSECAT,
                       "course": CONTEXT_COURSE, "module": CONTEXT_MODULE, "block": CONTEXT_BLOCK}


# --- PHP / PostgreSQL semantics ------------------------------------------------------------------

_PG_BIGINT = re.compile(r"^[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*$")
_BIGINT_MAX = 2 ** 63 - 1


def pg_bigint(value: Any, sql: str, params: list[Any]) -> int:
    """A value compared with a bigint column: PostgreSQL rejects anything but an in-range integer literal."""
    text = php_str(value)
    if not (isinstance(value, int) or _PG_BIGINT.match(text)):
        raise dml_read_error(f'ERROR:  invalid input syntax for type bigint: "{text}"', sql, params)
    number = int(text)
    if not -_BIGINT_MAX - 1 <= number <= _BIGINT_MAX:
        raise dml_read_error(f'ERROR:  value "{text.strip()}" is out of range for type bigint', sql, params)
    return number


def php_trim(text: str) -> str:
    """PHP trim(): only space, tab, newlines, NUL and vertical tab (not every Unicode space)."""
    return text.strip(" \t\n\r\0\x0b")


def dml_read_error(error: str, sql: str, params: list[Any]) -> WsError:
    """dml_read_exception, as Moodle reports a failed query (the SQL is shown with its mdl_ prefix)."""
    from bufsync.sandbox.moodle.errors import _php_export
    listing = "".join(f"  {i} => {_php_export(v)},\n" for i, v in enumerate(params))
    sql = re.sub(r"\{(\w+)\}", r"mdl_\1", sql)
    return WsError("dml_read_exception", "dmlreadexception", "Error reading from database",
                   f"{error}\n{sql}\n[array (\n{listing})]")


def sort_key(text: Any) -> tuple:
    """ORDER BY a text column in the recorded site's collation (en_US.UTF-8)."""
    from bufsync.sandbox.moodle.functions.enrol import collation_key
    return collation_key(None if text is None else str(text))


def null_sort_key(text: Any) -> tuple:
    """ORDER BY on a nullable column: PostgreSQL puts NULL last in ascending order."""
    return (text is None, sort_key(text))


def user_name_order(row: Any) -> tuple:
    """ORDER BY lastname ASC, firstname ASC (ties in id order, as the recorded site returned them)."""
    return (sort_key(row["lastname"]), sort_key(row["firstname"]), row["id"])


# --- contexts (the enrol module reads the context tree the courses module keeps) ---------------------

def context_id(site: Site, level: int, instanceid: int) -> int | None:
    """context_xxx::instance($id, IGNORE_MISSING)->id; None when the instance does not exist.

    A context row the courses module has not created (id 0) gets a sandbox-private id, so two
    categories never share one.
    """
    from bufsync.sandbox.moodle.functions.enrol import context_instance
    context = context_instance(site, level, instanceid)
    if context is None:
        return None
    if context.id:
        return context.id
    row = site.store.one("SELECT id FROM sandbox_context_fallback WHERE contextlevel = ? AND instanceid = ?",
                         (level, instanceid))
    if row is not None:
        return int(row["id"])
    new_id = site.store.next_id("sandbox_context_fallback", 1_000_000)
    site.store.insert("sandbox_context_fallback", {"id": new_id, "contextlevel": level, "instanceid": instanceid})
    return new_id


def context_by_id(site: Site, contextid: int) -> tuple[int, int] | None:
    """context::instance_by_id($id, IGNORE_MISSING): (contextlevel, instanceid)."""
    from bufsync.sandbox.moodle.functions import enrol
    context = enrol.context_by_id(site, contextid)
    if context is not None:
        return context.level, context.instanceid
    row = site.store.one("SELECT contextlevel, instanceid FROM sandbox_context_fallback WHERE id = ?", (contextid,))
    if row is not None and enrol.context_instance(site, int(row["contextlevel"]), int(row["instanceid"])):
        return int(row["contextlevel"]), int(row["instanceid"])
    return None


def parent_context_ids(site: Site, level: int, instanceid: int) -> list[int]:
    """context::get_parent_context_ids(): nearest parent first, system last."""
    from bufsync.sandbox.moodle.functions.enrol import Context, parent_contexts
    ids = []
    for context in parent_contexts(site, Context(level, instanceid))[1:]:
        cid = context_id(site, context.level, context.instanceid)
        if cid is not None:
            ids.append(cid)
    return ids


def require_context(contextid: int | None) -> int:
    """external_api::validate_context(): a context that does not exist is invalid_parameter_exception."""
    if contextid is None:
        raise invalid_parameter("Context does not exist")
    return contextid


def context_from_params(site: Site, param: dict[str, Any]) -> tuple[int | None, int, int]:
    """external_api::get_context_from_params: (contextid or None, level, instanceid)."""
    if not php_empty(param.get("contextid")):
        found = context_by_id(site, param["contextid"])
        if found is None:
            return None, 0, 0
        return param["contextid"], found[0], found[1]
    level_text = param.get("contextlevel") or ""
    if not php_empty(level_text) and param.get("instanceid") is not None:
        level = CONTEXT_LEVEL_NAMES.get(level_text)
        if level_text.isdigit():
            level = int(level_text) if int(level_text) in CONTEXT_LEVEL_NAMES.values() else None
        if level is None:
            raise invalid_parameter(f"Invalid context level = {level_text}")
        return context_id(site, level, param["instanceid"]), level, param["instanceid"]
    raise invalid_parameter("Missing parameters, please provide either context level with instance id or contextid")


# Capabilities the cohort, group, grade and completion functions check: the name a
# required_capability_exception shows and the archetypes that have it by default (db/access.php).
CAPABILITIES: dict[str, tuple[str, frozenset[str]]] = {
    "moodle/cohort:manage": ("Manage cohorts", frozenset({"manager"})),
    "moodle/cohort:view": ("View site cohorts", frozenset({"manager", "editingteacher"})),
    "moodle/cohort:assign": ("Add and remove cohort members", frozenset({"manager"})),
    "moodle/course:managegroups": ("Manage groups", frozenset({"manager", "editingteacher"})),
    "gradereport/user:view": ("View your own grade report",
                              frozenset({"student", "teacher", "editingteacher", "manager"})),
    "moodle/grade:viewall": ("View grades of other users", frozenset({"teacher", "editingteacher", "manager"})),
    "moodle/grade:view": ("View own grades", frozenset({"student"})),
    "moodle/grade:viewhidden": ("View hidden grades for owner", frozenset({"teacher", "editingteacher", "manager"})),
    "moodle/course:viewsuspendedusers": ("View suspended users", frozenset({"editingteacher", "manager"})),
    "report/completion:view": ("View course completion report", frozenset({"teacher", "editingteacher", "manager"})),
    "report/progress:view": ("View activity completion reports", frozenset({"teacher", "editingteacher", "manager"})),
}


def context_has_capability(site: Site, capability: str, context: Any, userid: int | None = None) -> bool:
    """has_capability() with the default role definitions; the enrol module's model of roles and admins."""
    from bufsync.sandbox.moodle.functions import enrol
    userid = getattr(site, "userid", 2) if userid is None else userid
    if capability in enrol.CAPABILITIES:
        return enrol.has_capability(site, capability, context, userid)
    if enrol.is_siteadmin(userid):
        return True
    archetypes = enrol._user_role_archetypes(site, userid, context)  # noqa: SLF001 (the shared role model)
    return bool(archetypes & CAPABILITIES[capability][1])


def require_context_capability(site: Site, capability: str, context: Any) -> None:
    if not context_has_capability(site, capability, context):
        name = CAPABILITIES[capability][0] if capability in CAPABILITIES else capability
        raise WsError("core\\exception\\required_capability_exception", "nopermissions",
                      f"Sorry, but you do not currently have permissions to do that ({name}).")


def require_any_capability(site: Site, capabilities: tuple[str, ...], contextid: int, reported: str) -> None:
    """has_any_capability() or required_capability_exception naming `reported`, as the cohort functions do."""
    context = context_object(site, contextid)
    if not any(context_has_capability(site, cap, context) for cap in capabilities):
        require_context_capability(site, reported, context)


def context_object(site: Site, contextid: int) -> Any:
    """The enrol module's Context for a context id (system when unknown)."""
    from bufsync.sandbox.moodle.functions import enrol
    found = context_by_id(site, contextid)
    if found is None:
        return enrol.Context(CONTEXT_SYSTEM, 0, SYSCONTEXTID)
    return enrol.Context(found[0], found[1], contextid)


def get_user_must_exist(site: Site, userid: int, active: bool = True) -> Any:
    """$DB->get_record('user', [id, deleted => 0, mnethostid], '*', MUST_EXIST), as group/cohort calls do."""
    row = site.store.one("SELECT * FROM user WHERE id = ? AND deleted = 0", (userid,)) if active else \
        site.store.one("SELECT * FROM user WHERE id = ?", (userid,))
    if row is None:
        if active:
            raise missing_record("invaliduser", "Invalid user", "user", "id = ? AND deleted = ? AND mnethostid = ?",
                                 [userid, 0, MNET_LOCALHOST_ID])
        raise missing_record("invaliduser", "Invalid user", "user", "id = ?", [userid])
    return row


# --- cohorts ----------------------------------------------------------------------------------

_CUSTOMFIELDS_IN = Multiple(Single({"shortname": Value("alphanumext"), "value": Value("raw")}), VALUE_OPTIONAL)
_CUSTOMFIELDS_OUT = Multiple(Single({k: Value("raw") for k in ("name", "shortname", "type", "valueraw", "value")}),
                             VALUE_OPTIONAL)
_CATEGORYTYPE = Single({"type": Value("text"), "value": Value("raw")})

COHORT_RECORD = Single({
    "id": Value("int"), "name": Value("raw"), "idnumber": Value("raw"), "description": Value("raw"),
    "descriptionformat": Value("int"), "visible": Value("bool"), "theme": Value("theme", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS_OUT,
})
_CREATED_COHORT = Single({k: v for k, v in COHORT_RECORD.keys.items() if k != "customfields"})


def _bump(site: Site, table: str, row_id: int) -> None:
    """Emulates PostgreSQL's heap order: a rewritten row moves behind the others in an unordered scan."""
    site.store.x(f"UPDATE {table} SET heap = ? WHERE id = ?", (site.store.next_id(f"{table}_heap"), row_id))


def _category_context(site: Site, categorytype: dict[str, Any], message: str) -> int:
    """The cohort's context from categorytype {type: system|id|idnumber, value}."""
    kind, value = categorytype["type"], categorytype["value"]
    if kind not in ("idnumber", "id", "system"):
        raise invalid_parameter("category type must be id, idnumber or system:" + kind)
    if kind == "system":
        return SYSCONTEXTID
    catid = None
    if site.store.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'course_categories'"):
        if kind == "id":
            wanted = pg_bigint(value, "SELECT id FROM {course_categories} WHERE id = $1", [value])
            row = site.store.one("SELECT id FROM course_categories WHERE id = ?", (wanted,))
        else:
            row = site.store.one("SELECT id FROM course_categories WHERE idnumber = ? ORDER BY id", (value,))
        catid = row["id"] if row is not None else None
    if not catid:
        raise invalid_parameter(message.format(kind=kind, value=value))
    cid = context_id(site, CONTEXT_COURSECAT, int(catid))
    assert cid is not None
    return cid


def _cohort_out(site: Site, row: Any, customfields: bool) -> dict[str, Any]:
    description, fmt = format_text(row["description"], row["descriptionformat"])
    out: dict[str, Any] = {"id": row["id"], "name": format_string(row["name"]), "idnumber": row["idnumber"],
                           "description": description, "descriptionformat": fmt, "visible": bool(row["visible"]),
                           "theme": row["theme"] or ""}
    if out["theme"] and not site_allows_cohort_themes(site):
        out["theme"] = None
    if customfields:
        out["customfields"] = []  # no cohort custom fields can be defined on this site
    return out


def site_allows_cohort_themes(site: Site) -> bool:
    row = site.store.one("SELECT value FROM sandbox_config WHERE name = 'allowcohortthemes'")
    return bool(row and row["value"] not in ("", "0"))


@ws_function("core_cohort_create_cohorts", {"cohorts": Multiple(Single({
    "categorytype": _CATEGORYTYPE, "name": Value("raw"), "idnumber": Value("raw"),
    "description": Value("raw", VALUE_OPTIONAL), "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "visible": Value("bool", VALUE_OPTIONAL, True), "theme": Value("theme", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS_IN,
}))}, returns=Multiple(_CREATED_COHORT))
def create_cohorts(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All or nothing; an idnumber already used (even '') is invalid_parameter_exception."""
    created = []
    for cohort in params["cohorts"]:
        contextid = _category_context(site, cohort["categorytype"], "category not exists: category {kind} = {value}")
        if site.store.one("SELECT id FROM cohort WHERE idnumber = ?", (cohort["idnumber"],)):
            raise invalid_parameter("record already exists: idnumber=" + php_str(cohort["idnumber"]))
        require_context_capability(site, "moodle/cohort:manage", context_object(site, contextid))
        fmt = validate_format(cohort["descriptionformat"])
        now = site.now()
        theme = cohort.get("theme") if site_allows_cohort_themes(site) else ""
        row = {"id": site.store.next_id("cohort"), "contextid": contextid, "name": cohort["name"],
               "idnumber": cohort["idnumber"], "description": cohort.get("description") or "",
               "descriptionformat": fmt, "visible": 1 if cohort.get("visible", True) is not False else 0,
               "component": "", "timecreated": now, "timemodified": now, "theme": theme or ""}
        site.store.insert("cohort", row)
        _bump(site, "cohort", row["id"])
        created.append(_cohort_out(site, site.store.one("SELECT * FROM cohort WHERE id = ?", (row["id"],)), False))
    return created


@ws_function("core_cohort_delete_cohorts", {"cohortids": Multiple(Value("int"))})
def delete_cohorts(site: Site, params: dict[str, Any]) -> None:
    for cohortid in params["cohortids"]:
        cohort = _cohort_must_exist(site, cohortid)
        require_context_capability(site, "moodle/cohort:manage", context_object(site, cohort["contextid"]))
        site.store.x("DELETE FROM cohort_members WHERE cohortid = ?", (cohortid,))
        site.store.x("DELETE FROM cohort WHERE id = ?", (cohortid,))
    return None


def _cohort_must_exist(site: Site, cohortid: int) -> Any:
    row = site.store.one("SELECT * FROM cohort WHERE id = ?", (cohortid,))
    if row is None:
        raise missing_record("invalidrecord", "Can't find data record in database table cohort.", "cohort",
                             "id = ?", [cohortid])
    return row


@ws_function("core_cohort_get_cohorts", {"cohortids": Multiple(Value("int"), VALUE_DEFAULT, [])},
             returns=Multiple(COHORT_RECORD))
def get_cohorts(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Unknown ids are skipped; no ids means every cohort. Order is the table's, as get_records_list gives it."""
    if not params["cohortids"]:
        rows = site.store.q("SELECT * FROM cohort ORDER BY heap, id")
    else:
        marks = ",".join("?" for _ in params["cohortids"])
        rows = site.store.q(f"SELECT * FROM cohort WHERE id IN ({marks}) ORDER BY heap, id", params["cohortids"])
    for row in rows:
        require_any_capability(site, ("moodle/cohort:manage", "moodle/cohort:view"), row["contextid"],
                               "moodle/cohort:view")
    return [_cohort_out(site, row, True) for row in rows]


def _search_filter(rows: list[Any], query: str) -> list[Any]:
    """cohort_get_search_query: ILIKE '%query%' on name, idnumber or description; '0' and '' mean no filter."""
    if php_empty(query):
        return rows
    needle = query.casefold()
    return [r for r in rows if any(needle in (r[f] or "").casefold() for f in ("name", "idnumber", "description"))]


def _ordered(rows: list[Any]) -> list[Any]:
    return sorted(rows, key=lambda r: (sort_key(r["name"]), null_sort_key(r["idnumber"])))


@ws_function("core_cohort_search_cohorts", {
    "query": Value("raw"),
    "context": Single({"contextid": Value("int", VALUE_DEFAULT, 0),
                       "contextlevel": Value("alphanum", VALUE_DEFAULT, ""),
                       "instanceid": Value("int", VALUE_DEFAULT, 0)}),
    "includes": Value("alpha", VALUE_DEFAULT, "parents"),
    "limitfrom": Value("int", VALUE_DEFAULT, 0),
    "limitnum": Value("int", VALUE_DEFAULT, 25),
}, returns=Single({"cohorts": Multiple(COHORT_RECORD)}))
def search_cohorts(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """includes self|parents|all. limitfrom is a page number here (Moodle passes it as $page)."""
    contextid, level, instanceid = context_from_params(site, params["context"])
    contextid = require_context(contextid)
    require_any_capability(site, ("moodle/cohort:manage", "moodle/cohort:view"), contextid, "moodle/cohort:view")
    query, includes = params["query"], params["includes"]
    page, perpage = params["limitfrom"], params["limitnum"]

    def window(rows: list[Any], offset: int) -> list[Any]:
        rows = _ordered(rows)
        if offset > 0:
            rows = rows[offset:]
        return rows[:perpage] if perpage > 0 else rows

    if includes in ("self", "parents"):
        results = window(_search_filter(site.store.q("SELECT * FROM cohort WHERE contextid = ?", (contextid,)), query),
                         page * perpage)
        if includes == "parents" and contextid != SYSCONTEXTID:
            parents = parent_context_ids(site, level, instanceid)
            marks = ",".join("?" for _ in parents)
            more = window(_search_filter(site.store.q(f"SELECT * FROM cohort WHERE contextid IN ({marks})", parents),
                                         query), page)
            seen = {r["id"] for r in results}
            results += [r for r in more if r["id"] not in seen]
    elif includes == "all":
        results = window(_search_filter(site.store.q("SELECT * FROM cohort"), query), page * perpage)
    else:
        raise coding_error("Invalid parameter value for 'includes'.")
    return {"cohorts": [_cohort_out(site, row, True) for row in results]}


@ws_function("core_cohort_update_cohorts", {"cohorts": Multiple(Single({
    "id": Value("int"), "categorytype": _CATEGORYTYPE, "name": Value("raw"), "idnumber": Value("raw"),
    "description": Value("raw", VALUE_OPTIONAL), "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "visible": Value("bool", VALUE_OPTIONAL), "theme": Value("theme", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS_IN,
}))})
def update_cohorts(site: Site, params: dict[str, Any]) -> None:
    """All or nothing. Note Moodle does not check the new idnumber for duplicates here."""
    for cohort in params["cohorts"]:
        if php_trim(cohort["name"]) == "":
            raise invalid_parameter("Invalid cohort name")
        old = site.store.one("SELECT * FROM cohort WHERE id = ?", (cohort["id"],))
        if old is None:
            raise missing_record("invalidrecord", "Can't find data record in database table cohort.", "cohort",
                                 "id = ?", [cohort["id"]])
        require_context_capability(site, "moodle/cohort:manage", context_object(site, old["contextid"]))
        contextid = _category_context(site, cohort["categorytype"], "category not exists: category={value}")
        if contextid != old["contextid"]:
            require_context_capability(site, "moodle/cohort:manage", context_object(site, contextid))
        changes: dict[str, Any] = {"contextid": contextid, "name": cohort["name"], "idnumber": cohort["idnumber"],
                                   "timemodified": site.now()}
        changes["descriptionformat"] = cohort["descriptionformat"]
        if cohort.get("description") is not None:
            changes["description"] = cohort["description"]
            if not php_empty(cohort["description"]):
                validate_format(cohort["descriptionformat"])
        if cohort.get("visible") is not None:
            changes["visible"] = int(bool(cohort["visible"]))
        if cohort.get("theme") and site_allows_cohort_themes(site):
            changes["theme"] = cohort["theme"]
        site.store.update("cohort", cohort["id"], changes)
        _bump(site, "cohort", cohort["id"])
    return None


_TYPE_PAIR = Single({"type": Value("alphanumext"), "value": Value("raw")})


@ws_function("core_cohort_add_cohort_members", {"members": Multiple(Single({
    "cohorttype": _TYPE_PAIR, "usertype": _TYPE_PAIR}))},
    returns=Single({"warnings": Multiple(Single({k: Value("raw")
                                                for k in ("item", "itemid", "warningcode", "message")}))}))
def add_cohort_members(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Bad members become warnings: '1' unsupported type, '2' not found, '3' already a member."""
    warnings = []
    for member in params["members"]:
        ctype, cvalue = member["cohorttype"]["type"], member["cohorttype"]["value"]
        utype, uvalue = member["usertype"]["type"], member["usertype"]["value"]
        if ctype not in ("id", "idnumber"):
            warnings.append({"warningcode": "1", "message": "invalid parameter: cohortype=" + ctype})
            continue
        if utype not in ("id", "username"):
            warnings.append({"warningcode": "1", "message": "invalid parameter: usertype=" + utype})
            continue
        try:
            if ctype == "id":
                cid = pg_bigint(cvalue, "SELECT id FROM {cohort} WHERE id = $1", [cvalue])
                cohort = site.store.one("SELECT id FROM cohort WHERE id = ?", (cid,))
            else:
                cohort = site.store.one("SELECT id FROM cohort WHERE idnumber = ? ORDER BY heap, id", (cvalue,))
            if cohort is None:
                warnings.append({"warningcode": "2", "message": f"cohort {ctype}={php_str(cvalue)} not exists"})
                continue
            if utype == "id":
                uid = pg_bigint(uvalue, "SELECT id FROM {user} WHERE id = $1 AND deleted = $2 AND mnethostid = $3",
                                [uvalue, 0, MNET_LOCALHOST_ID])
                user = site.store.one("SELECT id FROM user WHERE id = ? AND deleted = 0", (uid,))
            else:
                user = site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0", (uvalue,))
        except WsError as exc:
            # The real code wraps any failure of these look-ups in moodle_exception('Error', 'cohort').
            raise moodle_exception("Error", "cohort/Error") from exc
        if user is None:
            warnings.append({"warningcode": "2", "message": f"user {utype}={php_str(uvalue)} not exists"})
            continue
        if site.store.one("SELECT id FROM cohort_members WHERE cohortid = ? AND userid = ?",
                          (cohort["id"], user["id"])):
            warnings.append({"warningcode": "3", "message": f"record already exists: cohort({ctype}={php_str(cvalue)} "
                                                            f"{utype}={php_str(uvalue)})"})
            continue
        contextid = _cohort_must_exist(site, cohort["id"])["contextid"]
        require_any_capability(site, ("moodle/cohort:manage", "moodle/cohort:assign"), contextid,
                               "moodle/cohort:assign")
        add_member(site, cohort["id"], user["id"])
    return {"warnings": warnings}


def add_member(site: Site, cohortid: int, userid: int) -> None:
    """cohort_add_member(): silently keeps a single membership."""
    if site.store.one("SELECT id FROM cohort_members WHERE cohortid = ? AND userid = ?", (cohortid, userid)):
        return
    site.store.insert("cohort_members", {"id": site.store.next_id("cohort_members"), "cohortid": cohortid,
                                         "userid": userid, "timeadded": site.now()})


@ws_function("core_cohort_delete_cohort_members", {"members": Multiple(Single({
    "cohortid": Value("int"), "userid": Value("int")}))})
def delete_cohort_members(site: Site, params: dict[str, Any]) -> None:
    """Unknown cohort or user is an exception (batch rolled back); a non-member is silently fine."""
    for member in params["members"]:
        cohort = _cohort_must_exist(site, member["cohortid"])
        user = get_user_must_exist(site, member["userid"])
        require_any_capability(site, ("moodle/cohort:manage", "moodle/cohort:assign"), cohort["contextid"],
                               "moodle/cohort:assign")
        site.store.x("DELETE FROM cohort_members WHERE cohortid = ? AND userid = ?", (cohort["id"], user["id"]))
    return None


@ws_function("core_cohort_get_cohort_members", {"cohortids": Multiple(Value("int"))},
             returns=Multiple(Single({"cohortid": Value("int"), "userids": Multiple(Value("int"))})))
def get_cohort_members(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for cohortid in params["cohortids"]:
        cohort = _cohort_must_exist(site, cohortid)
        require_any_capability(site, ("moodle/cohort:manage", "moodle/cohort:view"), cohort["contextid"],
                               "moodle/cohort:view")
        out.append({"cohortid": cohortid, "userids": cohort_member_ids(site, cohort["id"])})
    return out


# --- read helpers for tests and the sync engine ---------------------------------------------------

def cohort_member_ids(site: Site, cohortid: int) -> list[int]:
    """Members in Moodle's order (lastname, firstname)."""
    rows = site.store.q("SELECT u.id, u.firstname, u.lastname FROM user u JOIN cohort_members m ON m.userid = u.id "
                        "WHERE m.cohortid = ?", (cohortid,))
    return [row["id"] for row in sorted(rows, key=user_name_order)]


def cohort_by_idnumber(site: Site, idnumber: str) -> dict[str, Any] | None:
    row = site.store.one("SELECT * FROM cohort WHERE idnumber = ? ORDER BY id", (idnumber,))
    return dict(row) if row is not None else None


@admin_action("cohort_members")
def admin_cohort_members(site: Site, cohortid: int | None = None, idnumber: str | None = None) -> list[int]:
    """Read helper: member ids of a cohort given by id or idnumber."""
    if cohortid is None and idnumber is not None:
        found = cohort_by_idnumber(site, idnumber)
        cohortid = found["id"] if found else None
    return cohort_member_ids(site, cohortid) if cohortid is not None else []


@admin_action("set_allowcohortthemes")
def set_allowcohortthemes(site: Site, enabled: bool = True) -> dict[str, Any]:
    """$CFG->allowcohortthemes (off on the recorded site): cohorts then keep and return their theme."""
    site.store.x("INSERT OR REPLACE INTO sandbox_config (name, value) VALUES ('allowcohortthemes', ?)",
                 ("1" if enabled else "0",))
    return {"allowcohortthemes": bool(enabled)}


def _user_deleted(site: Site, userid: int) -> None:
    """delete_user() removes the user from every cohort."""
    site.store.x("DELETE FROM cohort_members WHERE userid = ?", (userid,))


def _category_deleted(site: Site, categoryid: int, _newparent: int | None) -> None:
    """cohort_delete_category(): cohorts of a deleted category move to its parent category, else to system."""
    old = context_id(site, CONTEXT_COURSECAT, categoryid)
    row = site.store.one("SELECT parent FROM course_categories WHERE id = ?", (categoryid,))
    parent = context_id(site, CONTEXT_COURSECAT, int(row["parent"])) if row is not None and row["parent"] else None
    if old is not None:
        site.store.x("UPDATE cohort SET contextid = ? WHERE contextid = ?", (parent or SYSCONTEXTID, old))


def _register() -> None:
    from bufsync.sandbox.moodle.functions.users import DELETE_HOOKS
    if _user_deleted not in DELETE_HOOKS:
        DELETE_HOOKS.append(_user_deleted)
    if _category_deleted not in CATEGORY_DELETE_HOOKS:
        CATEGORY_DELETE_HOOKS.append(_category_deleted)


_register()
