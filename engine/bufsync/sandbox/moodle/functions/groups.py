"""core_group_*: course groups and their members, as Moodle 4.5's group/externallib.php behaves.

Only enrolled users may join a group (a suspended enrolment is enough); every call is one
transaction, so one bad member rolls the whole batch back. Memberships disappear when the
user's last enrolment in the course is removed or the user is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bufsync.adapters.moodle.rules import GROUP_COLUMNS
from bufsync.sandbox.moodle.errors import WsError, _php_export, invalid_parameter, moodle_exception
from bufsync.sandbox.moodle.functions.categories import FORMAT_HTML, format_string, format_text, validate_format
from bufsync.sandbox.moodle.functions.cohorts import (
    CONTEXT_COURSE,
    context_id,
    get_user_must_exist,
    php_trim,
    require_context_capability,
    sort_key,
    user_name_order,
)
from bufsync.sandbox.moodle.params import (
    VALUE_DEFAULT,
    VALUE_OPTIONAL,
    Multiple,
    Single,
    Value,
    is_numeric,
    loose_equal,
)
from bufsync.sandbox.moodle.site import Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

schema("""
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY, courseid INTEGER NOT NULL, idnumber TEXT NOT NULL DEFAULT '', name TEXT NOT NULL,
    description TEXT, descriptionformat INTEGER NOT NULL DEFAULT 0, enrolmentkey TEXT,
    picture INTEGER NOT NULL DEFAULT 0, visibility INTEGER NOT NULL DEFAULT 0, participation INTEGER NOT NULL DEFAULT 1,
    enablemessaging INTEGER NOT NULL DEFAULT 0, timecreated INTEGER NOT NULL DEFAULT 0,
    timemodified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS groups_courseid ON groups (courseid);
CREATE TABLE IF NOT EXISTS groups_members (
    id INTEGER PRIMARY KEY, groupid INTEGER NOT NULL, userid INTEGER NOT NULL, timeadded INTEGER NOT NULL DEFAULT 0,
    component TEXT NOT NULL DEFAULT '', itemid INTEGER NOT NULL DEFAULT 0, UNIQUE (userid, groupid)
);
""")
column_limits("groups", GROUP_COLUMNS)  # the real database refuses longer values (dmlwriteexception)

GROUPS_VISIBILITY_ALL, GROUPS_VISIBILITY_MEMBERS, GROUPS_VISIBILITY_OWN, GROUPS_VISIBILITY_NONE = 0, 1, 2, 3

_CUSTOMFIELDS_IN = Multiple(Single({"shortname": Value("alphanumext"), "value": Value("raw")}), VALUE_OPTIONAL)
_CUSTOMFIELDS_OUT = Multiple(Single({k: Value("raw") for k in ("name", "shortname", "type", "valueraw", "value")}),
                             VALUE_OPTIONAL)
_GROUP_KEYS = ("id", "courseid", "name", "description", "descriptionformat", "enrolmentkey", "idnumber", "visibility",
               "participation")
GROUP_RECORD = Single({k: Value("raw") for k in _GROUP_KEYS})
_CREATED_GROUP = Single({**{k: Value("raw") for k in _GROUP_KEYS}, "customfields": _CUSTOMFIELDS_IN})
_FULL_GROUP = Single({**{k: Value("raw") for k in _GROUP_KEYS}, "customfields": _CUSTOMFIELDS_OUT})
_MEMBER = Single({"groupid": Value("int"), "userid": Value("int")})


# --- shared checks ------------------------------------------------------------------------------

def _missing_group(fields: str, groupid: int) -> WsError:
    """groups_get_group($id, $fields, MUST_EXIST) failing: the debuginfo shows the fields asked for."""
    return WsError("dml_missing_record_exception", "invalidrecord", "Can't find data record in database table groups.",
                   f"SELECT {fields} FROM {{groups}} WHERE id = ?\n[array (\n  0 => {_php_export(groupid)},\n)]")


def _group(site: Site, groupid: int, fields: str = "*") -> Any:
    row = site.store.one("SELECT * FROM groups WHERE id = ?", (groupid,))
    if row is None:
        raise _missing_group(fields, groupid)
    return row


def require_course_context(site: Site, courseid: int) -> int:
    """context_course::instance(IGNORE_MISSING), validate_context() and moodle/course:managegroups, as every
    group function does; a context failure is rethrown as errorcoursecontextnotvalid carrying its message."""
    from bufsync.sandbox.moodle.functions import enrol
    try:
        context = enrol.validate_context(site, enrol.course_context(site, courseid))
    except WsError as exc:
        raise moodle_exception(
            "errorcoursecontextnotvalid",
            f"You cannot execute functions in the course context (course id:{courseid}). "
            f"The context error message was: {exc.message}") from None
    require_context_capability(site, "moodle/course:managegroups", context)
    contextid = context_id(site, CONTEXT_COURSE, courseid)
    assert contextid is not None
    return contextid


def is_enrolled(site: Site, courseid: int, userid: int, onlyactive: bool = False) -> bool:
    """is_enrolled($coursecontext, $userid): any enrolment of a not-deleted user, suspended ones included."""
    from bufsync.sandbox.moodle.functions import enrol
    return enrol.is_enrolled(site, userid, courseid, active_only=onlyactive)


def _validate_visibility(visibility: Any) -> None:
    if visibility not in (0, 1, 2, 3):
        raise invalid_parameter("Invalid group visibility provided. Must be one of 0,1,2,3")


def _by_idnumber(site: Site, courseid: int, idnumber: str) -> Any:
    """groups_get_group_by_idnumber: empty never matches; PHP's loose == otherwise ('1' == '01')."""
    if idnumber in ("", "0", None):
        return None
    for row in _course_groups(site, courseid):
        if loose_equal(row["idnumber"], idnumber):
            return row
    return None


def _course_groups(site: Site, courseid: int) -> list[Any]:
    """groups_get_all_groups for an admin: the course's groups ordered by name."""
    rows = site.store.q("SELECT * FROM groups WHERE courseid = ?", (courseid,))
    return sorted(rows, key=lambda r: (sort_key(r["name"]), r["id"]))


def _out(row: Any) -> dict[str, Any]:
    description, fmt = format_text(row["description"], row["descriptionformat"])
    return {"id": row["id"], "courseid": row["courseid"], "name": format_string(row["name"]),
            "description": description, "descriptionformat": fmt, "enrolmentkey": row["enrolmentkey"],
            "idnumber": row["idnumber"], "visibility": row["visibility"], "participation": bool(row["participation"])}


# --- web-service functions ------------------------------------------------------------------------

@ws_function("core_group_create_groups", {"groups": Multiple(Single({
    "courseid": Value("int"), "name": Value("text"), "description": Value("raw"),
    "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML), "enrolmentkey": Value("raw", VALUE_OPTIONAL),
    "idnumber": Value("raw", VALUE_OPTIONAL), "visibility": Value("int", VALUE_DEFAULT, 0),
    "participation": Value("bool", VALUE_DEFAULT, True), "customfields": _CUSTOMFIELDS_IN,
}))}, returns=Multiple(_CREATED_GROUP))
def create_groups(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Same name in the course -> invalidparameter; same idnumber -> idnumbertaken; all or nothing."""
    created = []
    for group in params["groups"]:
        if php_trim(group["name"]) == "":
            raise invalid_parameter("Invalid group name")
        if site.store.one("SELECT id FROM groups WHERE courseid = ? AND name = ?", (group["courseid"], group["name"])):
            raise invalid_parameter("Group with the same name already exists in the course")
        require_course_context(site, group["courseid"])
        fmt = validate_format(group["descriptionformat"])
        _validate_visibility(group["visibility"])
        name = php_trim(group["name"])
        idnumber = php_trim(group["idnumber"]) if group.get("idnumber") is not None else None
        if idnumber is not None and _by_idnumber(site, group["courseid"], idnumber):
            raise moodle_exception("idnumbertaken", "This ID number is already in use")
        participation = bool(group["participation"])
        if group["visibility"] not in (GROUPS_VISIBILITY_ALL, GROUPS_VISIBILITY_MEMBERS):
            participation = False
        now = site.now()
        row = {"id": site.store.next_id("groups"), "courseid": group["courseid"], "idnumber": idnumber or "",
               "name": name, "description": group["description"], "descriptionformat": fmt,
               "enrolmentkey": group.get("enrolmentkey"), "visibility": group["visibility"],
               "participation": int(participation), "timecreated": now, "timemodified": now}
        site.store.insert("groups", row)
        # The request's own values come back (trimmed name), not format_string'd ones.
        out = {"id": row["id"], "courseid": row["courseid"], "name": name, "description": group["description"],
               "descriptionformat": fmt,
               "enrolmentkey": group["enrolmentkey"] if group.get("enrolmentkey") is not None else "",
               "idnumber": idnumber if idnumber is not None else "", "visibility": group["visibility"],
               "participation": participation}
        if group.get("customfields") is not None:
            out["customfields"] = group["customfields"]
        created.append(out)
    return created


@ws_function("core_group_get_groups", {"groupids": Multiple(Value("int"))}, returns=Multiple(_FULL_GROUP))
def get_groups(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for groupid in params["groupids"]:
        row = _group(site, groupid, "id, courseid, name, idnumber, description, descriptionformat, enrolmentkey, "
                                    "visibility, participation")
        require_course_context(site, row["courseid"])
        out.append(_out(row) | {"customfields": []})
    return out


@ws_function("core_group_get_course_groups", {"courseid": Value("int")}, returns=Multiple(GROUP_RECORD))
def get_course_groups(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Ordered by name; enrolmentkey is the stored value (null when never set)."""
    require_course_context(site, params["courseid"])
    return [_out(row) for row in _course_groups(site, params["courseid"])]


@ws_function("core_group_update_groups", {"groups": Multiple(Single({
    "id": Value("int"), "name": Value("text"), "description": Value("raw", VALUE_OPTIONAL),
    "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML), "enrolmentkey": Value("raw", VALUE_OPTIONAL),
    "idnumber": Value("raw", VALUE_OPTIONAL), "visibility": Value("text", VALUE_OPTIONAL),
    "participation": Value("bool", VALUE_OPTIONAL), "customfields": _CUSTOMFIELDS_IN,
}))})
def update_groups(site: Site, params: dict[str, Any]) -> None:
    """Visibility/participation cannot change while the group has members; descriptionformat is always written."""
    for group in params["groups"]:
        if php_trim(group["name"]) == "":
            raise invalid_parameter("Invalid group name")
        current = site.store.one("SELECT * FROM groups WHERE id = ?", (group["id"],))
        if current is None:
            raise invalid_parameter(f"Group {group['id']} does not exist")
        if group["name"] != current["name"] and site.store.one(
                "SELECT id FROM groups WHERE courseid = ? AND name = ?", (current["courseid"], group["name"])):
            raise invalid_parameter("A different group with the same name already exists in the course")
        changes: dict[str, Any] = {}
        if group.get("visibility") is not None or group.get("participation") is not None:
            hasmembers = site.store.one("SELECT 1 FROM groups_members WHERE groupid = ?", (group["id"],)) is not None
            if group.get("visibility") is not None:
                visibility = _visibility_int(group["visibility"])
                _validate_visibility(visibility)
                if hasmembers and visibility != current["visibility"]:
                    raise invalid_parameter(
                        "The visibility of this group cannot be changed as it currently has members.")
            else:
                visibility = current["visibility"]
            changes["visibility"] = visibility
            if group.get("participation") is not None:
                if hasmembers and bool(group["participation"]) != bool(current["participation"]):
                    raise invalid_parameter(
                        "The participation mode of this group cannot be changed as it currently has members.")
                changes["participation"] = int(bool(group["participation"]))
        require_course_context(site, current["courseid"])
        changes["descriptionformat"] = group["descriptionformat"]
        if group.get("description") is not None:
            changes["description"] = group["description"]
            if group["description"] not in ("", "0"):
                validate_format(group["descriptionformat"])
        changes["name"] = php_trim(group["name"])
        if group.get("idnumber") is not None:
            idnumber = php_trim(group["idnumber"])
            existing = _by_idnumber(site, current["courseid"], idnumber)
            if existing is not None and existing["id"] != current["id"]:
                raise moodle_exception("idnumbertaken", "This ID number is already in use")
            changes["idnumber"] = idnumber
        if group.get("enrolmentkey") is not None:
            changes["enrolmentkey"] = group["enrolmentkey"]
        if "visibility" in changes and changes["visibility"] not in (GROUPS_VISIBILITY_ALL, GROUPS_VISIBILITY_MEMBERS):
            changes["participation"] = 0
            changes["enablemessaging"] = 0
        changes["timemodified"] = site.now()
        site.store.update("groups", current["id"], changes)
    return None


def _visibility_int(value: str) -> int:
    """validate_visibility(int $visibility) receives a PARAM_TEXT: PHP coerces numeric text, else TypeError."""
    if is_numeric(value):
        return int(float(value))
    raise WsError("TypeError", None,
                  "core_group_external::validate_visibility(): Argument #1 ($visibility) must be of type int, "
                  "string given, called in /var/www/moodle/group/externallib.php on line 1647")


# Called with (site, groupid) when groups_delete_group() removes a group (calendar events...).
GROUP_DELETE_HOOKS: list[Callable[[Site, int], None]] = []


@ws_function("core_group_delete_groups", {"groupids": Multiple(Value("int"))})
def delete_groups(site: Site, params: dict[str, Any]) -> None:
    """Unknown group ids are silently ignored."""
    for groupid in params["groupids"]:
        row = site.store.one("SELECT * FROM groups WHERE id = ?", (groupid,))
        if row is None:
            continue
        require_course_context(site, row["courseid"])
        site.store.x("DELETE FROM groups_members WHERE groupid = ?", (groupid,))
        site.store.x("DELETE FROM groups WHERE id = ?", (groupid,))
        for hook in GROUP_DELETE_HOOKS:
            hook(site, groupid)
    return None


@ws_function("core_group_get_group_members", {"groupids": Multiple(Value("int"))},
             returns=Multiple(Single({"groupid": Value("int"), "userids": Multiple(Value("int"))})))
def get_group_members(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for groupid in params["groupids"]:
        row = _group(site, groupid, "id, courseid, name, enrolmentkey")
        require_course_context(site, row["courseid"])
        out.append({"groupid": groupid, "userids": group_member_ids(site, row["id"])})
    return out


@ws_function("core_group_add_group_members", {"members": Multiple(_MEMBER)})
def add_group_members(site: Site, params: dict[str, Any]) -> None:
    """Only enrolled users (any enrolment status); adding an existing member is a no-op."""
    for member in params["members"]:
        group = _group(site, member["groupid"])
        user = get_user_must_exist(site, member["userid"])
        require_course_context(site, group["courseid"])
        if not is_enrolled(site, group["courseid"], user["id"]):
            raise invalid_parameter("Only enrolled users may be members of groups")
        add_member(site, group["id"], user["id"])
    return None


def add_member(site: Site, groupid: int, userid: int, component: str = "", itemid: int = 0) -> bool:
    """groups_add_member(): refuses users not enrolled in the group's course."""
    group = site.store.one("SELECT * FROM groups WHERE id = ?", (groupid,))
    user = site.store.one("SELECT deleted FROM user WHERE id = ?", (userid,))
    if group is None or user is None or user["deleted"]:
        return False
    if not is_enrolled(site, group["courseid"], userid):
        return False
    if site.store.one("SELECT id FROM groups_members WHERE groupid = ? AND userid = ?", (groupid, userid)):
        return True
    now = site.now()
    site.store.insert("groups_members", {"id": site.store.next_id("groups_members"), "groupid": groupid,
                                         "userid": userid, "timeadded": now, "component": component, "itemid": itemid})
    site.store.update("groups", groupid, {"timemodified": now})
    return True


@ws_function("core_group_delete_group_members", {"members": Multiple(_MEMBER)})
def delete_group_members(site: Site, params: dict[str, Any]) -> None:
    """Removing a non-member is fine; memberships a plugin manages (component set) cannot be removed."""
    for member in params["members"]:
        group = _group(site, member["groupid"])
        user = get_user_must_exist(site, member["userid"])
        require_course_context(site, group["courseid"])
        entry = site.store.one("SELECT component FROM groups_members WHERE groupid = ? AND userid = ?",
                               (group["id"], user["id"]))
        if entry is not None and entry["component"]:
            fullname = f"{user['firstname']} {user['lastname']}"
            raise moodle_exception("errorremovenotpermitted",
                                   f"You do not have permission to remove automatically-added group member {fullname}")
        if entry is not None:
            site.store.x("DELETE FROM groups_members WHERE groupid = ? AND userid = ?", (group["id"], user["id"]))
            site.store.update("groups", group["id"], {"timemodified": site.now()})
    return None


# --- cleanups other components trigger ------------------------------------------------------------

def remove_user_from_course_groups(site: Site, courseid: int, userid: int) -> None:
    """groups_delete_group_members($courseid, $userid): called when the user's last enrolment goes."""
    site.store.x("DELETE FROM groups_members WHERE userid = ? AND groupid IN "
                 "(SELECT id FROM groups WHERE courseid = ?)", (userid, courseid))


def _user_deleted(site: Site, userid: int) -> None:
    site.store.x("DELETE FROM groups_members WHERE userid = ?", (userid,))


def user_groups_in_course(site: Site, courseid: int, userid: int) -> list[dict[str, Any]]:
    """The user's groups in a course as user_get_user_details lists them: by name, description formatted."""
    rows = site.store.q("SELECT g.* FROM groups g JOIN groups_members m ON m.groupid = g.id "
                        "WHERE g.courseid = ? AND m.userid = ?", (courseid, userid))
    out = []
    for row in sorted(rows, key=lambda r: (sort_key(r["name"]), r["id"])):
        description, fmt = format_text(row["description"], row["descriptionformat"])
        out.append({"id": row["id"], "name": row["name"], "description": description, "descriptionformat": fmt})
    return out


def _course_deleted(site: Site, courseid: int) -> None:
    """remove_course_contents(): a deleted course's groups and memberships go."""
    site.store.x("DELETE FROM groups_members WHERE groupid IN (SELECT id FROM groups WHERE courseid = ?)", (courseid,))
    site.store.x("DELETE FROM groups WHERE courseid = ?", (courseid,))


def _register() -> None:
    from bufsync.sandbox.moodle.functions import courses, enrol
    from bufsync.sandbox.moodle.functions.users import DELETE_HOOKS
    if _course_deleted not in courses.COURSE_DELETE_HOOKS:
        courses.COURSE_DELETE_HOOKS.append(_course_deleted)
    if _user_deleted not in DELETE_HOOKS:
        DELETE_HOOKS.append(_user_deleted)
    if remove_user_from_course_groups not in enrol.UNENROL_HOOKS:
        enrol.UNENROL_HOOKS.append(remove_user_from_course_groups)
    if user_groups_in_course not in enrol.USER_GROUPS:
        enrol.USER_GROUPS.append(user_groups_in_course)


_register()


# --- read helpers ---------------------------------------------------------------------------------

def group_member_ids(site: Site, groupid: int) -> list[int]:
    """Members in Moodle's order (lastname, firstname)."""
    rows = site.store.q("SELECT u.id, u.firstname, u.lastname FROM user u JOIN groups_members m ON m.userid = u.id "
                        "WHERE m.groupid = ?", (groupid,))
    return [row["id"] for row in sorted(rows, key=user_name_order)]


def course_groups(site: Site, courseid: int) -> list[dict[str, Any]]:
    """Every group of a course with its member ids, for tests and sync checks."""
    return [dict(row) | {"members": group_member_ids(site, row["id"])} for row in _course_groups(site, courseid)]


@admin_action("course_groups")
def admin_course_groups(site: Site, courseid: int) -> list[dict[str, Any]]:
    """Read helper: a course's groups (stored fields) with their member ids."""
    return course_groups(site, courseid)


# --- groupings ------------------------------------------------------------------------------------

schema("""
CREATE TABLE IF NOT EXISTS groupings (
    id INTEGER PRIMARY KEY, courseid INTEGER NOT NULL, name TEXT NOT NULL, idnumber TEXT NOT NULL DEFAULT '',
    description TEXT, descriptionformat INTEGER NOT NULL DEFAULT 0, configdata TEXT,
    timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS groupings_courseid ON groupings (courseid);
CREATE TABLE IF NOT EXISTS groupings_groups (
    id INTEGER PRIMARY KEY, groupingid INTEGER NOT NULL, groupid INTEGER NOT NULL, timeadded INTEGER NOT NULL DEFAULT 0
);
""")

_GROUPING_KEYS = ("id", "courseid", "name", "description", "descriptionformat", "idnumber")
GROUPING_RECORD = Single({k: Value("raw") for k in _GROUPING_KEYS})


def _grouping(site: Site, groupingid: int) -> Any:
    """groups_get_grouping($id, 'id, courseid', MUST_EXIST)."""
    row = site.store.one("SELECT * FROM groupings WHERE id = ?", (groupingid,))
    if row is None:
        raise WsError("dml_missing_record_exception", "invalidrecord",
                      "Can't find data record in database table groupings.",
                      f"SELECT id, courseid FROM {{groupings}} WHERE id = ?\n[array (\n"
                      f"  0 => {_php_export(groupingid)},\n)]")
    return row


def _grouping_by_idnumber(site: Site, courseid: int, idnumber: str) -> Any:
    """groups_get_grouping_by_idnumber: empty never matches; PHP's loose == otherwise."""
    if idnumber in ("", "0", None):
        return None
    for row in site.store.q("SELECT * FROM groupings WHERE courseid = ?", (courseid,)):
        if loose_equal(row["idnumber"], idnumber):
            return row
    return None


@ws_function("core_group_create_groupings", {"groupings": Multiple(Single({
    "courseid": Value("int"), "name": Value("text"), "description": Value("raw"),
    "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML), "idnumber": Value("raw", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS_IN,
}))}, returns=Multiple(GROUPING_RECORD))
def create_groupings(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All or nothing. Moodle 4.5 returns the grouping object groups_create_grouping() filled, which has no
    idnumber when none was sent; its required `idnumber` in the answer then fails the response
    (invalidresponse) after the transaction committed: the grouping exists, the caller gets an error."""
    from bufsync.sandbox.moodle.functions import enrol
    created = []
    for grouping in params["groupings"]:
        if php_trim(grouping["name"]) == "":
            raise invalid_parameter("Invalid grouping name")
        if site.store.one("SELECT id FROM groupings WHERE courseid = ? AND name = ?",
                          (grouping["courseid"], grouping["name"])):
            raise invalid_parameter("Grouping with the same name already exists in the course")
        if enrol.course_context(site, grouping["courseid"]) is None:  # context_course::instance(MUST_EXIST)
            raise WsError("dml_missing_record_exception", "invalidrecord",
                          "Can't find data record in database table course.",
                          f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => "
                          f"{_php_export(grouping['courseid'])},\n)]")
        require_course_context(site, grouping["courseid"])
        fmt = validate_format(grouping["descriptionformat"])
        idnumber = php_trim(grouping["idnumber"]) if grouping.get("idnumber") is not None else None
        if idnumber is not None and _grouping_by_idnumber(site, grouping["courseid"], idnumber):
            raise moodle_exception("idnumbertaken", "This ID number is already in use")
        now = site.now()
        row = {"id": site.store.next_id("groupings"), "courseid": grouping["courseid"],
               "name": php_trim(grouping["name"]), "idnumber": idnumber or "", "description": grouping["description"],
               "descriptionformat": fmt, "timecreated": now, "timemodified": now}
        site.store.insert("groupings", row)
        out = {k: row[k] for k in ("id", "courseid", "name", "description", "descriptionformat")}
        if idnumber is not None:
            out["idnumber"] = idnumber
        else:
            site.after_commit.append(_missing_idnumber_in_answer)
        created.append(out)
    return created


def _missing_idnumber_in_answer() -> None:
    """Moodle validates the answer after the commit: what was created stays."""
    from bufsync.sandbox.moodle.errors import invalid_response
    raise invalid_response("Error in response - Missing following required key in a single structure: idnumber")


@ws_function("core_group_get_course_groupings", {"courseid": Value("int")}, returns=Multiple(GROUPING_RECORD))
def get_course_groupings(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """groups_get_all_groupings(): the course's groupings by name."""
    require_course_context(site, params["courseid"])
    rows = site.store.q("SELECT * FROM groupings WHERE courseid = ?", (params["courseid"],))
    out = []
    for row in sorted(rows, key=lambda r: (sort_key(r["name"]), r["id"])):
        description, fmt = format_text(row["description"], row["descriptionformat"])
        out.append({"id": row["id"], "courseid": row["courseid"], "name": row["name"], "description": description,
                    "descriptionformat": fmt, "idnumber": row["idnumber"]})
    return out


@ws_function("core_group_assign_grouping", {"assignments": Multiple(Single({
    "groupingid": Value("int"), "groupid": Value("int")}))})
def assign_grouping(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; an assignment that exists is skipped silently. Moodle 4.5 does not check that the
    group and the grouping are of one course."""
    for assignment in params["assignments"]:
        grouping = _grouping(site, assignment["groupingid"])
        _group(site, assignment["groupid"], "id, courseid")
        if site.store.one("SELECT id FROM groupings_groups WHERE groupingid = ? AND groupid = ?",
                          (assignment["groupingid"], assignment["groupid"])):
            continue
        require_course_context(site, grouping["courseid"])
        site.store.insert("groupings_groups", {"id": site.store.next_id("groupings_groups"),
                                               "groupingid": assignment["groupingid"],
                                               "groupid": assignment["groupid"], "timeadded": site.now()})
    return None


def grouping_group_ids(site: Site, groupingid: int) -> list[int]:
    """The groups of a grouping (for tests and the sync engine's read-backs)."""
    return [r["groupid"] for r in site.store.q("SELECT groupid FROM groupings_groups WHERE groupingid = ? "
                                                "ORDER BY groupid", (groupingid,))]
