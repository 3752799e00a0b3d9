"""Enrolments and roles: enrol instances, user_enrolments, role_assignments and the web-service
functions enrol_manual_enrol_users / enrol_manual_unenrol_users, core_enrol_get_enrolled_users,
core_enrol_get_users_courses, core_enrol_get_course_enrolment_methods, core_role_assign_roles and
core_role_unassign_roles.

Behaviour follows Moodle 4.5 (enrol/manual/externallib.php, enrol/externallib.php, lib/enrollib.php,
lib/accesslib.php, user/lib.php) and the recorded transcripts; where the real code has an odd edge
(a PHP TypeError for an unknown user id, a welcome mail that fails after the commit) the sandbox
reproduces it, because clients meet it in production.

Other modules use: `is_enrolled`, `enrolled_user_ids`, `user_course_ids`, `enabled_enrol_methods`,
`course_contacts`, `has_capability`, `user_roles_in_course`, `delete_course_enrolments`, and the hook
lists `UNENROL_HOOKS`, `USER_GROUPS`, `COMPLETION_INFO`, `COURSE_SEEDED_HOOKS`. A course gets its
default enrolment instances through `ensure_course_instances` (courses.py calls it at creation; it also
runs lazily on first use). Sandbox admin actions: delete_enrol_instance, set_enrol_instance_status,
break_mail / repair_mail (the welcome mail failing after the commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bufsync.sandbox.moodle.errors import WsError, invalid_parameter, missing_record, moodle_exception
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value, clean_param
from bufsync.sandbox.moodle.site import Site, admin_action, installer, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS role (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', shortname TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '', sortorder INTEGER NOT NULL, archetype TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS role_context_levels (
    roleid INTEGER NOT NULL, contextlevel INTEGER NOT NULL, PRIMARY KEY (roleid, contextlevel));
CREATE TABLE IF NOT EXISTS role_allow_assign (
    roleid INTEGER NOT NULL, allowassign INTEGER NOT NULL, PRIMARY KEY (roleid, allowassign));
CREATE TABLE IF NOT EXISTS role_assignments (
    id INTEGER PRIMARY KEY, roleid INTEGER NOT NULL, contextlevel INTEGER NOT NULL, instanceid INTEGER NOT NULL,
    contextid INTEGER NOT NULL DEFAULT 0, userid INTEGER NOT NULL, timemodified INTEGER NOT NULL DEFAULT 0,
    modifierid INTEGER NOT NULL DEFAULT 0, component TEXT NOT NULL DEFAULT '', itemid INTEGER NOT NULL DEFAULT 0,
    sortorder INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS role_assignments_ctx ON role_assignments (contextlevel, instanceid, userid);
CREATE INDEX IF NOT EXISTS role_assignments_user ON role_assignments (userid);
CREATE TABLE IF NOT EXISTS enrol (
    id INTEGER PRIMARY KEY, enrol TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, courseid INTEGER NOT NULL,
    sortorder INTEGER NOT NULL DEFAULT 0, name TEXT, enrolperiod INTEGER DEFAULT 0, enrolstartdate INTEGER DEFAULT 0,
    enrolenddate INTEGER DEFAULT 0, expirynotify INTEGER DEFAULT 0, expirythreshold INTEGER DEFAULT 0,
    notifyall INTEGER DEFAULT 0, password TEXT, roleid INTEGER DEFAULT 0, customint1 INTEGER, customint2 INTEGER,
    customint3 INTEGER, customint4 INTEGER, customint5 INTEGER, customint6 INTEGER, customtext1 TEXT,
    timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS enrol_course ON enrol (courseid);
CREATE TABLE IF NOT EXISTS enrol_seeded (courseid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS user_enrolments (
    id INTEGER PRIMARY KEY, status INTEGER NOT NULL DEFAULT 0, enrolid INTEGER NOT NULL, userid INTEGER NOT NULL,
    timestart INTEGER NOT NULL DEFAULT 0, timeend INTEGER NOT NULL DEFAULT 0, modifierid INTEGER NOT NULL DEFAULT 0,
    timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0, UNIQUE (enrolid, userid));
CREATE INDEX IF NOT EXISTS user_enrolments_user ON user_enrolments (userid);
""")

SITEID = 1
ADMIN_ID, GUEST_ID = 2, 1
CONTEXT_SYSTEM, CONTEXT_USER, CONTEXT_COURSECAT, CONTEXT_COURSE, CONTEXT_MODULE, CONTEXT_BLOCK = 10, 30, 40, 50, 70, 80
CONTEXT_LEVELS = {"system": CONTEXT_SYSTEM, "user": CONTEXT_USER, "coursecat": CONTEXT_COURSECAT,
                  "course": CONTEXT_COURSE, "module": CONTEXT_MODULE, "block": CONTEXT_BLOCK}
ENROL_INSTANCE_ENABLED, ENROL_INSTANCE_DISABLED = 0, 1
ENROL_USER_ACTIVE, ENROL_USER_SUSPENDED = 0, 1
ENROL_SEND_EMAIL_FROM_COURSE_CONTACT, ENROL_SEND_EMAIL_FROM_NOREPLY = 1, 3
ENROL_PLUGINS_ENABLED = ("manual", "guest", "self", "cohort")  # $CFG->enrol_plugins_enabled on a fresh site
COURSE_CONTACT_ROLES = (3,)  # $CFG->coursecontact = editingteacher
STUDENT_ROLE = 5

# Moodle's standard roles: id, shortname, display name (role_get_name: the name column is empty),
# context levels where they can be assigned (get_default_contextlevels).
ROLES: list[tuple[int, str, str, tuple[int, ...]]] = [
    (1, "manager", "Manager", (CONTEXT_SYSTEM, CONTEXT_COURSECAT, CONTEXT_COURSE)),
    (2, "coursecreator", "Course creator", (CONTEXT_SYSTEM, CONTEXT_COURSECAT)),
    (3, "editingteacher", "Teacher", (CONTEXT_COURSE, CONTEXT_MODULE)),
    (4, "teacher", "Non-editing teacher", (CONTEXT_COURSE, CONTEXT_MODULE)),
    (5, "student", "Student", (CONTEXT_COURSE, CONTEXT_MODULE)),
    (6, "guest", "Guest", ()),
    (7, "user", "Authenticated user", ()),
    (8, "frontpage", "Authenticated user on site home", ()),
]
# get_default_role_archetype_allows('assign'): which roles a holder of each role may assign.
ALLOW_ASSIGN = {"manager": ("manager", "coursecreator", "editingteacher", "teacher", "student"),
                "editingteacher": ("teacher", "student")}

# The capabilities this module checks: display name (for required_capability_exception) and the
# archetypes that have it by default (db/access.php). Site admins have every capability.
CAPABILITIES: dict[str, tuple[str, frozenset[str]]] = {
    "enrol/manual:enrol": ("Enrol users", frozenset({"manager", "editingteacher"})),
    "enrol/manual:unenrol": ("Unenrol users from the course", frozenset({"manager", "editingteacher"})),
    "moodle/role:assign": ("Assign roles to users", frozenset({"manager", "editingteacher"})),
    "moodle/role:review": ("Review permissions for others", frozenset({"manager", "editingteacher", "teacher"})),
    "moodle/course:viewparticipants": ("View participants",
                                       frozenset({"manager", "editingteacher", "teacher", "student"})),
    "moodle/site:viewparticipants": ("View participants", frozenset({"manager"})),
    "moodle/course:enrolreview": ("Review course enrolments", frozenset({"manager", "editingteacher"})),
    "moodle/course:view": ("View courses without participation", frozenset({"manager"})),
    "moodle/course:viewhiddencourses": ("View hidden courses",
                                        frozenset({"manager", "coursecreator", "editingteacher", "teacher"})),
    "moodle/course:isincompletionreports": ("Be shown on completion reports", frozenset({"student"})),
    "moodle/site:accessallgroups": ("Access all groups", frozenset({"manager", "editingteacher", "teacher"})),
    "moodle/user:viewdetails": ("View user profiles",
                                frozenset({"guest", "student", "teacher", "editingteacher", "manager"})),
    "moodle/user:viewalldetails": ("View user full information", frozenset({"manager"})),
    "moodle/user:viewhiddendetails": ("View hidden details of users", frozenset({"manager"})),
    "moodle/site:viewfullnames": ("Always see full names of users",
                                  frozenset({"manager", "editingteacher", "teacher"})),
    "moodle/site:viewuseridentity": ("See full user identity in lists",
                                     frozenset({"manager", "editingteacher", "teacher"})),
    "moodle/course:useremail": ("Enable/disable email address", frozenset({"manager", "editingteacher"})),
}

# Hooks other modules register (each module appends at import):
# called with (site, courseid, userid) when a user's last enrolment in a course is removed (groups, grades...)
UNENROL_HOOKS: list[Callable[[Site, int, int], None]] = []
# (site, courseid, userid) -> the user's groups in the course [{id, name, description, descriptionformat}]
USER_GROUPS: list[Callable[[Site, int, int], list[dict[str, Any]]]] = []
# (site, course row, userid) -> {"completed": bool, "hascriteria": bool, "progress": float | None} or None
COMPLETION_INFO: list[Callable[[Site, Any, int], dict[str, Any] | None]] = []
# (site, courseid) -> called when a course got its default enrolment instances
COURSE_SEEDED_HOOKS: list[Callable[[Site, int], None]] = []

TYPE_ERROR_MESSAGE = ("core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, "
                      "bool given, called in /var/www/moodle/lib/enrollib.php on line 3674")


# --- contexts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """A Moodle context: level + instance; id is the context table's id when the site has one (0 if unknown)."""
    level: int
    instanceid: int
    id: int = 0


def _has_table(site: Site, name: str) -> bool:
    return site.store.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None


def _context_id(site: Site, level: int, instanceid: int) -> int:
    """The id of a context row kept by another module (courses), 0 when the sandbox keeps none."""
    if level == CONTEXT_SYSTEM:
        return 1
    if level == CONTEXT_COURSE and instanceid == SITEID:
        return 2
    if _has_table(site, "context"):
        row = site.store.one("SELECT id FROM context WHERE contextlevel = ? AND instanceid = ?", (level, instanceid))
        if row is not None:
            return int(row["id"])
    return 0


def course_row(site: Site, courseid: int) -> Any:
    if not _has_table(site, "course"):
        return None
    return site.store.one("SELECT * FROM course WHERE id = ?", (courseid,))


def _category_row(site: Site, categoryid: int) -> Any:
    if not _has_table(site, "course_categories"):
        return None
    return site.store.one("SELECT * FROM course_categories WHERE id = ?", (categoryid,))


def context_instance(site: Site, level: int, instanceid: int) -> Context | None:
    """context_xxx::instance($instanceid, IGNORE_MISSING): None when the instance does not exist."""
    if level == CONTEXT_SYSTEM:
        return Context(CONTEXT_SYSTEM, 0, 1)
    if level == CONTEXT_COURSE:
        exists = course_row(site, instanceid) is not None
    elif level == CONTEXT_COURSECAT:
        exists = _category_row(site, instanceid) is not None
    elif level == CONTEXT_USER:
        exists = site.store.one("SELECT id FROM user WHERE id = ? AND deleted = 0", (instanceid,)) is not None
    else:
        exists = False  # the sandbox has no activities or blocks
    return Context(level, instanceid, _context_id(site, level, instanceid)) if exists else None


def course_context(site: Site, courseid: int) -> Context | None:
    return context_instance(site, CONTEXT_COURSE, courseid)


def context_by_id(site: Site, contextid: int) -> Context | None:
    """context::instance_by_id($id, IGNORE_MISSING)."""
    if contextid == 1:
        return Context(CONTEXT_SYSTEM, 0, 1)
    if contextid == 2:
        return course_context(site, SITEID)
    if _has_table(site, "context"):
        row = site.store.one("SELECT contextlevel, instanceid FROM context WHERE id = ?", (contextid,))
        if row is not None:
            return context_instance(site, int(row["contextlevel"]), int(row["instanceid"]))
    return None


def parent_contexts(site: Site, context: Context) -> list[Context]:
    """The context and its parents, nearest first (course -> its categories -> system)."""
    chain = [context]
    category = 0
    if context.level == CONTEXT_COURSE and context.instanceid != SITEID:
        row = course_row(site, context.instanceid)
        category = int(_col(row, "category", 0) or 0) if row is not None else 0
    elif context.level == CONTEXT_COURSECAT:
        row = _category_row(site, context.instanceid)
        category = int(_col(row, "parent", 0) or 0) if row is not None else 0
    seen = {context.instanceid} if context.level == CONTEXT_COURSECAT else set()
    while category and category not in seen:
        seen.add(category)
        chain.append(Context(CONTEXT_COURSECAT, category, _context_id(site, CONTEXT_COURSECAT, category)))
        row = _category_row(site, category)
        category = int(_col(row, "parent", 0) or 0) if row is not None else 0
    if context.level != CONTEXT_SYSTEM:
        chain.append(Context(CONTEXT_SYSTEM, 0, 1))
    return chain


def _col(row: Any, name: str, default: Any = None) -> Any:
    """A column of a row owned by another module, tolerating a schema that lacks it."""
    if row is None:
        return default
    try:
        return row[name]
    except (IndexError, KeyError):
        return default


# --- roles and capabilities ----------------------------------------------------------------------

@installer
def install_roles(site: Site) -> None:
    """The eight standard roles and where they can be assigned, as a fresh Moodle 4.5 has them."""
    for roleid, shortname, _display, levels in ROLES:
        site.store.insert("role", {"id": roleid, "shortname": shortname, "sortorder": roleid, "archetype": shortname})
        for level in levels:
            site.store.insert("role_context_levels", {"roleid": roleid, "contextlevel": level})
    ids = {shortname: roleid for roleid, shortname, _d, _l in ROLES}
    for holder, targets in ALLOW_ASSIGN.items():
        for target in targets:
            site.store.insert("role_allow_assign", {"roleid": ids[holder], "allowassign": ids[target]})
    site.store.set_sequence("role", len(ROLES) + 1)


def role_display_name(role: Any) -> str:
    """role_get_name: the custom name, else the standard name of the archetype."""
    if role["name"]:
        return str(role["name"])
    for _roleid, shortname, display, _levels in ROLES:
        if shortname == role["shortname"]:
            return display
    return str(role["shortname"])


def is_siteadmin(userid: int) -> bool:
    return userid == ADMIN_ID


def _user_role_archetypes(site: Site, userid: int, context: Context) -> set[str]:
    """Archetypes of every role the user holds in the context or a parent (+ 'user' for everyone logged in)."""
    archetypes: set[str] = set()
    for ctx in parent_contexts(site, context):
        rows = site.store.q("SELECT r.archetype FROM role_assignments ra JOIN role r ON r.id = ra.roleid "
                            "WHERE ra.userid = ? AND ra.contextlevel = ? AND ra.instanceid = ?",
                            (userid, ctx.level, ctx.instanceid))
        archetypes.update(str(r["archetype"]) for r in rows)
    archetypes.add("guest" if userid == GUEST_ID else "user")
    return archetypes


def has_capability(site: Site, capability: str, context: Context, userid: int | None = None) -> bool:
    """has_capability() with the default role definitions (no overrides); site admins have everything.

    A capability missing from CAPABILITIES is held by nobody but admins (Moodle: false plus a debugging notice).
    """
    userid = site.userid if userid is None else userid
    if is_siteadmin(userid):
        return True
    _name, archetypes = CAPABILITIES.get(capability, (capability, frozenset()))
    return bool(_user_role_archetypes(site, userid, context) & archetypes)


def require_capability(site: Site, capability: str, context: Context) -> None:
    if not has_capability(site, capability, context):
        raise WsError("core\\exception\\required_capability_exception", "nopermissions",
                      "Sorry, but you do not currently have permissions to do that "
                      f"({CAPABILITIES.get(capability, (capability,))[0]}).")


def validate_context(site: Site, context: Context | None) -> Context:
    """external_api::validate_context: the context must exist and the caller must be able to enter it."""
    if context is None:
        raise invalid_parameter("Context does not exist")
    if context.level == CONTEXT_COURSE and context.instanceid != SITEID and not is_siteadmin(site.userid):
        course = course_row(site, context.instanceid)
        if not int(_col(course, "visible", 1) or 0) and not has_capability(
                site, "moodle/course:viewhiddencourses", context):
            raise _require_login("Course is hidden")
        if not is_enrolled(site, site.userid, context.instanceid, active_only=True) and not has_capability(
                site, "moodle/course:view", context):
            raise _require_login("Not enrolled")
    return context


def _require_login(debuginfo: str) -> WsError:
    return WsError("core\\exception\\require_login_exception", "requireloginerror",
                   "Course or activity not accessible.", debuginfo)


def get_assignable_roles(site: Site, context: Context) -> list[Any]:
    """Roles the caller may assign in the context: allowed at its level (and by role_allow_assign for non-admins)."""
    if not has_capability(site, "moodle/role:assign", context):
        return []
    rows = site.store.q("SELECT r.* FROM role r JOIN role_context_levels l ON l.roleid = r.id "
                        "WHERE l.contextlevel = ? ORDER BY r.sortorder", (context.level,))
    if is_siteadmin(site.userid):
        return list(rows)
    held = _user_role_ids(site, site.userid, context)
    allowed = {r["allowassign"] for r in site.store.q(
        f"SELECT allowassign FROM role_allow_assign WHERE roleid IN ({','.join('?' * len(held))})", list(held))} \
        if held else set()
    return [r for r in rows if r["id"] in allowed]


def _user_role_ids(site: Site, userid: int, context: Context) -> set[int]:
    ids: set[int] = set()
    for ctx in parent_contexts(site, context):
        ids.update(int(r["roleid"]) for r in site.store.q(
            "SELECT roleid FROM role_assignments WHERE userid = ? AND contextlevel = ? AND instanceid = ?",
            (userid, ctx.level, ctx.instanceid)))
    return ids


def role_assign(site: Site, roleid: int, userid: int, context: Context, component: str = "", itemid: int = 0) -> int:
    """accesslib role_assign(): the user must exist and not be deleted; an identical assignment is kept as is."""
    if not roleid:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: "
                      "Invalid call to role_assign(), roleid can not be empty")
    if not userid:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: "
                      "Invalid call to role_assign(), userid can not be empty")
    if site.store.one("SELECT id FROM user WHERE id = ? AND deleted = 0", (userid,)) is None:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: User ID does not exist or is deleted!",
                      f"userid:{userid}")
    existing = site.store.one(
        "SELECT id FROM role_assignments WHERE roleid = ? AND contextlevel = ? AND instanceid = ? AND userid = ? "
        "AND component = ? AND itemid = ? ORDER BY id", (roleid, context.level, context.instanceid, userid,
                                                       component, itemid))
    if existing is not None:
        return int(existing["id"])
    row_id = site.store.next_id("role_assignments")
    site.store.insert("role_assignments", {
        "id": row_id, "roleid": roleid, "contextlevel": context.level, "instanceid": context.instanceid,
        "contextid": context.id, "userid": userid, "timemodified": site.now(), "modifierid": site.userid,
        "component": component, "itemid": itemid, "sortorder": 0})
    return row_id


def role_unassign(site: Site, roleid: int, userid: int, context: Context, component: str = "",
                  itemid: int = 0) -> None:
    """role_unassign(): only the assignment made with that component/item (manual ones by default)."""
    site.store.x("DELETE FROM role_assignments WHERE roleid = ? AND userid = ? AND contextlevel = ? "
                 "AND instanceid = ? AND component = ? AND itemid = ?",
                 (roleid, userid, context.level, context.instanceid, component, itemid))


def user_roles_in_course(site: Site, userid: int, courseid: int) -> list[dict[str, Any]]:
    """get_user_roles($coursecontext, $userid, false) as core_enrol_get_enrolled_users reports them."""
    rows = site.store.q(
        "SELECT ra.roleid, ra.sortorder AS rasortorder, r.name, r.shortname FROM role_assignments ra "
        "JOIN role r ON r.id = ra.roleid WHERE ra.userid = ? AND ra.contextlevel = ? AND ra.instanceid = ? "
        "ORDER BY r.sortorder, ra.id", (userid, CONTEXT_COURSE, courseid))
    return [{"roleid": r["roleid"], "name": r["name"], "shortname": r["shortname"], "sortorder": r["rasortorder"]}
            for r in rows]


# --- enrolment instances -------------------------------------------------------------------------

def ensure_course_instances(site: Site, courseid: int) -> None:
    """Give a course the default instances Moodle adds on creation (manual, guest, self), once.

    Done lazily (the first time anything looks at the course's enrolments), so the courses module
    needs no call into this one; `enrol_seeded` remembers it so deleted instances stay deleted.
    """
    if courseid == SITEID or site.store.one("SELECT 1 FROM enrol_seeded WHERE courseid = ?", (courseid,)):
        return
    course = course_row(site, courseid)
    if course is None:
        return
    now = int(_col(course, "timecreated", 0) or site.now())
    defaults = [
        # manual: enabled, student, welcome mail from the course contact (sendcoursewelcomemessage=1)
        {"enrol": "manual", "status": ENROL_INSTANCE_ENABLED, "roleid": STUDENT_ROLE, "expirythreshold": 86400,
         "customint1": ENROL_SEND_EMAIL_FROM_COURSE_CONTACT},
        # guest: disabled by default (enrol_guest/status)
        {"enrol": "guest", "status": ENROL_INSTANCE_DISABLED, "roleid": 0, "password": ""},
        # self: disabled by default, new enrolments allowed, student, welcome mail from the course contact
        {"enrol": "self", "status": ENROL_INSTANCE_DISABLED, "roleid": STUDENT_ROLE, "expirythreshold": 86400,
         "customint1": 0, "customint2": 0, "customint3": 0, "customint4": ENROL_SEND_EMAIL_FROM_COURSE_CONTACT,
         "customint5": 0, "customint6": 1, "password": None},
    ]
    for sortorder, instance in enumerate(defaults):
        instance.update({"id": site.store.next_id("enrol"), "courseid": courseid, "sortorder": sortorder,
                         "timecreated": now, "timemodified": now})
        site.store.insert("enrol", instance)
    site.store.insert("enrol_seeded", {"courseid": courseid})
    for hook in COURSE_SEEDED_HOOKS:
        hook(site, courseid)


def enrol_instances(site: Site, courseid: int, enabled: bool) -> list[Any]:
    """enrol_get_instances(): sorted by sortorder, id; enabled=True keeps enabled instances of enabled plugins."""
    ensure_course_instances(site, courseid)
    rows = site.store.q("SELECT * FROM enrol WHERE courseid = ? ORDER BY sortorder, id", (courseid,))
    if enabled:
        rows = [r for r in rows if r["status"] == ENROL_INSTANCE_ENABLED and r["enrol"] in ENROL_PLUGINS_ENABLED]
    return list(rows)


def enabled_enrol_methods(site: Site, courseid: int) -> list[str]:
    """Plugin names of the enabled instances (core_course_get_courses_by_field's `enrollmentmethods`)."""
    return [str(r["enrol"]) for r in enrol_instances(site, courseid, True)]


def _instance_name(site: Site, instance: Any) -> str:
    if instance["name"]:
        return str(instance["name"])
    names = {"manual": "Manual enrolments", "guest": "Guest access", "self": "Self enrolment",
             "cohort": "Cohort sync"}
    name = names.get(instance["enrol"], instance["enrol"])
    if instance["enrol"] != "guest" and instance["roleid"]:
        role = site.store.one("SELECT * FROM role WHERE id = ?", (instance["roleid"],))
        if role is not None:
            name += f" ({role_display_name(role)})"
    return name


def _self_enrol_available(site: Site, instance: Any) -> bool | str:
    """enrol_self_plugin::is_self_enrol_available for the caller: true, or the reason as text."""
    now = site.now()
    if instance["status"] != ENROL_INSTANCE_ENABLED or not instance["customint6"]:
        return "Enrolment is disabled or inactive"
    if instance["enrolstartdate"] and instance["enrolstartdate"] > now:
        return "Enrolment is disabled or inactive"
    if instance["enrolenddate"] and instance["enrolenddate"] < now:
        return "Enrolment is disabled or inactive"
    if instance["customint3"]:
        count = site.store.row("SELECT COUNT(*) AS n FROM user_enrolments WHERE enrolid = ?", (instance["id"],))["n"]
        if count >= instance["customint3"]:
            return "Maximum number of users allowed to self-enrol was already reached."
    return True


def _enrol_info(site: Site, instance: Any) -> dict[str, Any] | None:
    """The plugin's get_enrol_info(); manual (and cohort) have none."""
    info: dict[str, Any] = {"id": instance["id"], "courseid": instance["courseid"], "type": instance["enrol"],
                            "name": _instance_name(site, instance)}
    if instance["enrol"] == "guest":
        info["status"] = instance["status"] == ENROL_INSTANCE_ENABLED
        if info["status"]:
            info["wsfunction"] = "enrol_guest_get_instance_info"
        return info
    if instance["enrol"] == "self":
        info["status"] = _self_enrol_available(site, instance)
        if info["status"] is True and instance["password"]:
            info["wsfunction"] = "enrol_self_get_instance_info"
        return info
    return None


def _course_id(site: Site, courseid: int | None, shortname: str | None) -> int:
    """An admin action's course: by id, or by shortname (what the recorded PHP setup looked up)."""
    if courseid is None and shortname is not None and _has_table(site, "course"):
        row = site.store.one("SELECT id FROM course WHERE shortname = ?", (shortname,))
        courseid = int(row["id"]) if row is not None else None
    if courseid is None or course_row(site, courseid) is None:
        raise ValueError(f"no course {courseid if shortname is None else shortname!r}")
    return courseid


@admin_action("delete_enrol_instance")
def delete_enrol_instance(site: Site, courseid: int | None = None, enrol: str = "manual",
                          shortname: str | None = None) -> dict[str, Any]:
    """What the recorded setup did with PHP: delete a course's instances of a plugin (users unenrolled first)."""
    courseid = _course_id(site, courseid, shortname)
    ensure_course_instances(site, courseid)
    rows = site.store.q("SELECT * FROM enrol WHERE courseid = ? AND enrol = ?", (courseid, enrol))
    for instance in rows:
        for ue in site.store.q("SELECT userid FROM user_enrolments WHERE enrolid = ?", (instance["id"],)):
            unenrol_user(site, instance, int(ue["userid"]))
        site.store.x("DELETE FROM enrol WHERE id = ?", (instance["id"],))
    remaining = [str(r["enrol"]) for r in enrol_instances(site, courseid, False)]
    return {"deleted_instances": len(rows), "remaining": remaining}


@admin_action("set_enrol_instance_status")
def set_enrol_instance_status(site: Site, enrol: str, status: int = ENROL_INSTANCE_ENABLED,
                              courseid: int | None = None, shortname: str | None = None,
                              password: str | None = None) -> dict[str, Any]:
    """Enable (0) or disable (1) a course's instance of a plugin, as a teacher would on the course page."""
    courseid = _course_id(site, courseid, shortname)
    ensure_course_instances(site, courseid)
    changes: dict[str, Any] = {"status": int(status), "timemodified": site.now()}
    if password is not None:
        changes["password"] = password
    rows = site.store.q("SELECT id FROM enrol WHERE courseid = ? AND enrol = ?", (courseid, enrol))
    for row in rows:
        site.store.update("enrol", int(row["id"]), changes)
    return {"updated_instances": len(rows)}


@admin_action("enrol_user")
def admin_enrol_user(site: Site, userid: int, enrol: str = "self", roleid: int | None = STUDENT_ROLE,
                     courseid: int | None = None, shortname: str | None = None,
                     status: int = ENROL_USER_ACTIVE) -> dict[str, Any]:
    """enrol_get_plugin(<enrol>)->enrol_user(<the course's instance>, ...) as PHP does it: through any plugin's
    instance, enabled or not (a student enrolled twice, by hand and by self enrolment or a cohort)."""
    courseid = _course_id(site, courseid, shortname)
    instance = next((i for i in enrol_instances(site, courseid, False) if i["enrol"] == enrol), None)
    if instance is None:
        raise ValueError(f"course {courseid} has no {enrol!r} enrolment instance")
    enrol_user(site, instance, userid, roleid, status=status)
    return {"enrolid": instance["id"], "userid": userid}


# --- mail (the welcome message) ----------------------------------------------------------------------

@admin_action("break_mail")
def break_mail(site: Site, calls: int = 1) -> dict[str, Any]:
    """Make outgoing mail fail for the next `calls` web-service calls that send mail (0: until repair_mail).

    The recorded lab did this for one call (no sendmail, $CFG->noemailever off): the enrolment was
    committed and the call still answered "Message was not sent.".
    """
    _set_config(site, "mail_broken", str(int(calls) if calls > 0 else -1))
    return {"mail_broken": int(calls) if calls > 0 else "until repair_mail"}


@admin_action("repair_mail")
def repair_mail(site: Site) -> dict[str, Any]:
    _set_config(site, "mail_broken", "0")
    return {"mail_broken": 0}


def _set_config(site: Site, name: str, value: str) -> None:
    site.store.x("INSERT INTO sandbox_config (name, value) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))


def _take_mail_failure(site: Site) -> bool:
    """True when this call's mail must fail; counts the call against the break_mail budget."""
    row = site.store.one("SELECT value FROM sandbox_config WHERE name = 'mail_broken'")
    left = int(row["value"]) if row and row["value"] else 0
    if left == 0:
        return False
    if left > 0:
        _set_config(site, "mail_broken", str(left - 1))
    return True


def _mail_failed() -> None:
    raise moodle_exception("Message was not sent.", "error/Message was not sent.")


def course_contacts(site: Site, courseid: int, active_only: bool = False) -> list[int]:
    """User ids holding a course-contact role ($CFG->coursecontact = editingteacher) in the course.

    active_only=False: get_role_users() as the welcome message picks its sender (role order, then
    assignment order). active_only=True: the course listings' `contacts` (core_course_category::
    get_course_contacts): only users with an active enrolment, by role then name.
    """
    rows = site.store.q(
        "SELECT ra.userid, u.lastname, u.firstname, r.sortorder FROM role_assignments ra "
        "JOIN role r ON r.id = ra.roleid JOIN user u ON u.id = ra.userid "
        f"WHERE ra.roleid IN ({','.join('?' * len(COURSE_CONTACT_ROLES))}) AND ra.contextlevel = ? "
        "AND ra.instanceid = ? AND u.deleted = 0 ORDER BY r.sortorder, ra.id",
        (*COURSE_CONTACT_ROLES, CONTEXT_COURSE, courseid))
    if active_only:
        active = set(enrolled_user_ids(site, courseid, active_only=True))
        rows = sorted((r for r in rows if r["userid"] in active), key=lambda r: (
            r["sortorder"], collation_key(r["lastname"]), collation_key(r["firstname"]), r["userid"]))
    seen: list[int] = []
    for r in rows:
        if r["userid"] not in seen:
            seen.append(int(r["userid"]))
    return seen


def _welcome_message(site: Site, instance: Any, userid: int) -> bool:
    """enrol_manual's after_user_enrolled callback: build the welcome message; True if one is to be sent.

    Building it needs the user record: for an unknown id PHP passes `false` to a typed parameter,
    which is the TypeError the recorded site answered. The message is only sent when a sender exists
    (the course contact, or the no-reply address when so configured).
    """
    sendoption = instance["customint1"] or 0
    if instance["enrol"] != "manual" or not sendoption:
        return False
    if site.store.one("SELECT id FROM user WHERE id = ?", (userid,)) is None:
        raise WsError("TypeError", None, TYPE_ERROR_MESSAGE)
    if sendoption == ENROL_SEND_EMAIL_FROM_NOREPLY:
        return True
    if sendoption == ENROL_SEND_EMAIL_FROM_COURSE_CONTACT:
        return bool(course_contacts(site, int(instance["courseid"])))
    return False


# --- enrolling ------------------------------------------------------------------------------------

def enrol_user(site: Site, instance: Any, userid: int, roleid: int | None, timestart: int = 0, timeend: int = 0,
               status: int | None = None) -> bool:
    """enrol_plugin::enrol_user: insert or update the enrolment, run the welcome hook, then assign the role.

    Returns True when a welcome message was queued (sent by Moodle after the commit).
    """
    courseid = int(instance["courseid"])
    if courseid == SITEID:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: "
                      "invalid attempt to enrol into frontpage course!")
    now = site.now()
    ue = site.store.one("SELECT * FROM user_enrolments WHERE enrolid = ? AND userid = ?", (instance["id"], userid))
    if ue is not None:
        if ue["timestart"] != timestart or ue["timeend"] != timeend or (status is not None and ue["status"] != status):
            changes: dict[str, Any] = {"timestart": timestart, "timeend": timeend, "modifierid": site.userid,
                                       "timemodified": now}
            if status is not None:
                changes["status"] = status
            site.store.update("user_enrolments", int(ue["id"]), changes)
    else:
        site.store.insert("user_enrolments", {
            "id": site.store.next_id("user_enrolments"), "enrolid": instance["id"], "userid": userid,
            "status": ENROL_USER_ACTIVE if status is None else status, "timestart": timestart, "timeend": timeend,
            "modifierid": site.userid, "timecreated": now, "timemodified": now})
    queued = _welcome_message(site, instance, userid)
    if roleid:
        context = course_context(site, courseid) or Context(CONTEXT_COURSE, courseid, 0)
        role_assign(site, roleid, userid, context)  # manual roles are not protected: component ''
    return queued


def unenrol_user(site: Site, instance: Any, userid: int) -> None:
    """enrol_plugin::unenrol_user: remove the enrolment; on the user's last one in the course, all course roles
    and the course's user data (UNENROL_HOOKS: groups, grades...)."""
    courseid = int(instance["courseid"])
    ue = site.store.one("SELECT id FROM user_enrolments WHERE enrolid = ? AND userid = ?", (instance["id"], userid))
    if ue is None:
        return  # not enrolled: nothing to do, no error
    site.store.x("DELETE FROM role_assignments WHERE userid = ? AND contextlevel = ? AND instanceid = ? "
                 "AND component = ? AND itemid = ?", (userid, CONTEXT_COURSE, courseid, f"enrol_{instance['enrol']}",
                                                    instance["id"]))
    site.store.x("DELETE FROM user_enrolments WHERE id = ?", (ue["id"],))
    other = site.store.one("SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid "
                           "WHERE ue.userid = ? AND e.courseid = ?", (userid, courseid))
    if other is None:
        site.store.x("DELETE FROM role_assignments WHERE userid = ? AND contextlevel = ? AND instanceid = ?",
                     (userid, CONTEXT_COURSE, courseid))
        for hook in UNENROL_HOOKS:
            hook(site, courseid, userid)


def delete_course_enrolments(site: Site, courseid: int) -> None:
    """What delete_course() does to enrolments: every instance, enrolment and course role goes.

    The courses module should call this when it deletes a course (core_course_delete_courses).
    """
    for instance in site.store.q("SELECT * FROM enrol WHERE courseid = ?", (courseid,)):
        for ue in site.store.q("SELECT userid FROM user_enrolments WHERE enrolid = ?", (instance["id"],)):
            unenrol_user(site, instance, int(ue["userid"]))
        site.store.x("DELETE FROM enrol WHERE id = ?", (instance["id"],))
    site.store.x("DELETE FROM role_assignments WHERE contextlevel = ? AND instanceid = ?", (CONTEXT_COURSE, courseid))
    site.store.x("INSERT OR IGNORE INTO enrol_seeded (courseid) VALUES (?)", (courseid,))


def _user_deleted(site: Site, userid: int) -> None:
    """delete_user(): unenrol from every course (plugins' user_delete), then drop every role assignment."""
    for ue in site.store.q("SELECT e.* FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid "
                           "WHERE ue.userid = ? ORDER BY e.courseid, e.id", (userid,)):
        unenrol_user(site, ue, userid)
    site.store.x("DELETE FROM user_enrolments WHERE userid = ?", (userid,))
    site.store.x("DELETE FROM role_assignments WHERE userid = ?", (userid,))


def _register_delete_hook() -> None:
    from bufsync.sandbox.moodle.functions import users
    if _user_deleted not in users.DELETE_HOOKS:
        users.DELETE_HOOKS.append(_user_deleted)


_register_delete_hook()


# --- queries other modules use --------------------------------------------------------------------

def _active_sql(now: int) -> tuple[str, list[Any]]:
    """get_enrolled_join's onlyactive condition (Moodle rounds `now` to 100 s for caching)."""
    rounded = int(round(now, -2))
    return ("ue.status = ? AND e.status = ? AND ue.timestart < ? AND (ue.timeend = 0 OR ue.timeend > ?)",
            [ENROL_USER_ACTIVE, ENROL_INSTANCE_ENABLED, rounded, rounded])


def enrolled_user_ids(site: Site, courseid: int, active_only: bool = False) -> list[int]:
    """get_enrolled_sql(): users enrolled in the course (any enrolment, or only active ones), id order.

    Deleted users and the guest never count; on the site course (id 1) every user is enrolled.
    """
    if courseid == SITEID:
        return [int(r["id"]) for r in site.store.q(
            "SELECT id FROM user WHERE deleted = 0 AND id <> ? ORDER BY id", (GUEST_ID,))]
    ensure_course_instances(site, courseid)
    where, args = "e.courseid = ?", [courseid]
    if active_only:
        cond, extra = _active_sql(site.now())
        where, args = f"{where} AND {cond}", args + extra
    rows = site.store.q(
        "SELECT DISTINCT u.id FROM user u JOIN user_enrolments ue ON ue.userid = u.id "
        f"JOIN enrol e ON e.id = ue.enrolid WHERE {where} AND u.deleted = 0 AND u.id <> ? ORDER BY u.id",
        [*args, GUEST_ID])
    return [int(r["id"]) for r in rows]


def is_enrolled(site: Site, userid: int, courseid: int, active_only: bool = False) -> bool:
    """is_enrolled(): any enrolment in the course (even suspended or expired), or only an active one."""
    if userid == GUEST_ID:
        return False
    if courseid == SITEID:
        return site.store.one("SELECT 1 FROM user WHERE id = ? AND deleted = 0", (userid,)) is not None
    ensure_course_instances(site, courseid)
    where, args = "e.courseid = ? AND ue.userid = ?", [courseid, userid]
    if active_only:
        cond, extra = _active_sql(site.now())
        where, args = f"{where} AND {cond}", args + extra
    row = site.store.one("SELECT 1 FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid "
                         f"JOIN user u ON u.id = ue.userid WHERE {where} AND u.deleted = 0", args)
    return row is not None


def user_course_ids(site: Site, userid: int, active_only: bool = True) -> list[int]:
    """enrol_get_all_users_courses(): ids of the user's courses, visible first, then by course sortorder."""
    if userid == GUEST_ID or not userid or not _has_table(site, "course"):
        return []
    where, args = "ue.userid = ?", [userid]
    if active_only:
        cond, extra = _active_sql(site.now())
        where, args = f"{where} AND {cond}", args + extra
    rows = site.store.q(
        "SELECT c.id FROM course c WHERE c.id <> ? AND c.id IN (SELECT DISTINCT e.courseid FROM enrol e "
        f"JOIN user_enrolments ue ON ue.enrolid = e.id WHERE {where}) ORDER BY c.visible DESC, c.sortorder ASC, c.id",
        [SITEID, *args])
    return [int(r["id"]) for r in rows]


def users_courses(site: Site, userid: int) -> list[Any]:
    """enrol_get_users_courses($userid, true): active enrolments; hidden courses only for those who may see them."""
    out = []
    for courseid in user_course_ids(site, userid, True):
        course = course_row(site, courseid)
        if not int(_col(course, "visible", 1) or 0):
            context = course_context(site, courseid)
            if context is None or not has_capability(site, "moodle/course:viewhiddencourses", context, userid):
                continue
        out.append(course)
    return out


# --- enrol_manual_enrol_users / enrol_manual_unenrol_users -------------------------------------

_ENROLMENT = Single({
    "roleid": Value("int"), "userid": Value("int"), "courseid": Value("int"),
    "timestart": Value("int", VALUE_OPTIONAL), "timeend": Value("int", VALUE_OPTIONAL),
    "suspend": Value("int", VALUE_OPTIONAL),
})


def _manual_instance(site: Site, courseid: int, enabled: bool) -> Any:
    for instance in enrol_instances(site, courseid, enabled):
        if instance["enrol"] == "manual":
            return instance
    return None


def _wsnoinstance(courseid: int) -> WsError:
    return moodle_exception("wsnoinstance", "Manual enrolment plugin instance doesn't exist or is disabled "
                                            f"for the course (id = {courseid})")


@ws_function("enrol_manual_enrol_users", {"enrolments": Multiple(_ENROLMENT)}, version="2024042200")
def enrol_users(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; an existing enrolment is updated (omitted dates become 0, omitted suspend = active)."""
    queued = False
    for item in params["enrolments"]:
        context = validate_context(site, course_context(site, item["courseid"]))
        require_capability(site, "enrol/manual:enrol", context)
        if item["roleid"] not in {r["id"] for r in get_assignable_roles(site, context)}:
            raise moodle_exception(
                "wsusercannotassign", f"You don't have the permission to assign this role ({item['roleid']}) to this "
                f"user ({item['userid']}) in this course ({item['courseid']}).")
        instance = _manual_instance(site, item["courseid"], enabled=True)
        if instance is None:
            raise _wsnoinstance(item["courseid"])
        status = ENROL_USER_SUSPENDED if item.get("suspend") else ENROL_USER_ACTIVE
        queued = enrol_user(site, instance, item["userid"], item["roleid"], item.get("timestart") or 0,
                            item.get("timeend") or 0, status) or queued
    if queued and _take_mail_failure(site):
        site.after_commit.append(_mail_failed)  # Moodle sends buffered messages after the commit
    return None


_UNENROLMENT = Single({"userid": Value("int"), "courseid": Value("int"), "roleid": Value("int", VALUE_OPTIONAL)})


@ws_function("enrol_manual_unenrol_users", {"enrolments": Multiple(_UNENROLMENT)}, version="2024042200")
def unenrol_users(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; roleid is ignored: the whole enrolment goes, with every course role on the last one."""
    for item in params["enrolments"]:
        courseid = item["courseid"]
        context = course_context(site, courseid)
        if context is None:  # context_course::instance($courseid) with MUST_EXIST
            raise WsError("dml_missing_record_exception", "invalidrecord",
                          "Can't find data record in database table course.",
                          f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => {courseid},\n)]")
        validate_context(site, context)
        require_capability(site, "enrol/manual:unenrol", context)
        instance = _manual_instance(site, courseid, enabled=False)
        if instance is None:
            raise _wsnoinstance(courseid)
        if site.store.one("SELECT id FROM user WHERE id = ?", (item["userid"],)) is None:
            raise invalid_parameter(f"User id not exist: {item['userid']}")
        unenrol_user(site, instance, item["userid"])
    return None


# --- core_enrol_get_enrolled_users -------------------------------------------------------------

DEFAULT_USER_FIELDS = (
    "id", "username", "fullname", "firstname", "lastname", "email", "address", "phone1", "phone2", "department",
    "institution", "interests", "firstaccess", "lastaccess", "auth", "confirmed", "idnumber", "lang", "theme",
    "timezone", "mailformat", "description", "descriptionformat", "city", "country", "profileimageurlsmall",
    "profileimageurl", "customfields", "groups",
    "roles", "preferences", "enrolledcourses", "suspended", "lastcourseaccess", "trackforums")

_CUSTOMFIELD = Single({k: Value("raw") for k in ("type", "value", "name", "shortname")})
ENROLLED_USER = Single({
    **{k: Value("raw") for k in (
        "id", "username", "firstname", "lastname", "fullname", "email", "address", "phone1", "phone2", "department",
        "institution", "idnumber", "interests", "firstaccess", "lastaccess", "lastcourseaccess", "description",
        "descriptionformat", "city", "country", "profileimageurlsmall", "profileimageurl")},
    "customfields": Multiple(_CUSTOMFIELD),
    "groups": Multiple(Single({k: Value("raw") for k in ("id", "name", "description", "descriptionformat")})),
    "roles": Multiple(Single({k: Value("raw") for k in ("roleid", "name", "shortname", "sortorder")})),
    "preferences": Multiple(Single({"name": Value("raw"), "value": Value("raw")})),
    "enrolledcourses": Multiple(Single({k: Value("raw") for k in ("id", "fullname", "shortname")})),
})
_SORTABLE = ("id", "firstname", "lastname", "siteorder")


def _enrolled_courses(site: Site, userid: int) -> list[dict[str, Any]] | None:
    """user_get_user_details' enrolledcourses: None when the user has no active course at all."""
    courses = users_courses(site, userid)
    if not courses:
        return None
    return [{"id": c["id"], "fullname": c["fullname"], "shortname": c["shortname"]}
            for c in courses if int(_col(c, "category", 1) or 0)]


def _email_visible(site: Site, row: Any, context: Context) -> bool:
    """maildisplay 1 (everyone), 2 (course members: both actively enrolled in a visible course), or course:useremail."""
    if row["maildisplay"] == 1 or has_capability(site, "moodle/course:useremail", context):
        return True
    if row["maildisplay"] != 2 or not _has_table(site, "course"):
        return False
    shared = site.store.one(
        "SELECT 1 FROM course c JOIN enrol e1 ON e1.courseid = c.id AND e1.status = 0 "
        "JOIN user_enrolments u1 ON u1.enrolid = e1.id AND u1.status = 0 AND u1.userid = ? "
        "JOIN enrol e2 ON e2.courseid = c.id AND e2.status = 0 "
        "JOIN user_enrolments u2 ON u2.enrolid = e2.id AND u2.status = 0 AND u2.userid = ? WHERE c.visible = 1",
        (row["id"], site.userid))
    return shared is not None


def collation_key(text: str | None) -> tuple[str, str, str]:
    """Approximates PostgreSQL's en_US.UTF-8 collation (the recorded site's): case and punctuation
    matter only to break ties, and Cyrillic yo sorts with ye."""
    folded = (text or "").casefold().replace("ё", "е")
    return "".join(ch for ch in folded if ch.isalnum()), folded, text or ""


def user_details_in_course(site: Site, row: Any, course: Any, userfields: list[str] | None = None,
                           lastcourseaccess: int = 0) -> dict[str, Any] | None:
    """user_get_user_details($user, $course, $userfields) trimmed to core_enrol_get_enrolled_users' answer."""
    from bufsync.sandbox.moodle.functions.users import user_record
    fields = list(userfields) if userfields else list(DEFAULT_USER_FIELDS)
    for field in fields:
        if field not in DEFAULT_USER_FIELDS:
            raise moodle_exception("invaliduserfield", f"Invalid user field: {field}")
    courseid = int(course["id"])
    context = course_context(site, courseid) or Context(CONTEXT_COURSE, courseid, 0)
    viewer = site.userid
    current = row["id"] == viewer
    admin = is_siteadmin(viewer)
    if not current and not admin and not has_capability(site, "moodle/user:viewdetails", context) \
            and row["id"] not in course_contacts(site, courseid):
        return None
    full = user_record(site, row)
    wanted = set(fields) | {"id", "fullname"}
    alldetails = current or has_capability(site, "moodle/user:viewalldetails", context)
    fullnames = admin or has_capability(site, "moodle/site:viewfullnames", context)
    identity = has_capability(site, "moodle/site:viewuseridentity", context)  # showuseridentity = email
    out: dict[str, Any] = {}
    for key in full:
        if key not in wanted:
            continue
        if key in ("username", "idnumber", "institution", "department") and not alldetails:
            continue
        if key in ("firstname", "lastname") and not fullnames:
            continue
        if key in ("address", "phone1", "phone2") and not admin:  # not identity fields on a default site
            continue
        if key == "email" and not (current or identity or _email_visible(site, row, context)):
            continue
        out[key] = full[key]
    if "customfields" in out:
        out["customfields"] = [{"type": f["type"], "value": f["value"], "name": f["name"],
                                "shortname": f["shortname"]} for f in out["customfields"]]
    if "lastcourseaccess" in wanted:
        out["lastcourseaccess"] = lastcourseaccess
    if "roles" in wanted:
        out["roles"] = user_roles_in_course(site, int(row["id"]), courseid)
    if "groups" in wanted:
        groups: list[dict[str, Any]] = []
        for provider in USER_GROUPS:
            groups.extend(provider(site, courseid, int(row["id"])))
        if groups:
            out["groups"] = groups
    if "enrolledcourses" in wanted:
        enrolled = _enrolled_courses(site, int(row["id"]))
        if enrolled is not None:
            out["enrolledcourses"] = enrolled
    return {key: out[key] for key in ENROLLED_USER.keys if key in out}


@ws_function("core_enrol_get_enrolled_users",
             {"courseid": Value("int"),
              "options": Multiple(Single({"name": Value("alphanumext"), "value": Value("raw")}), VALUE_DEFAULT, [])},
             returns=Multiple(ENROLLED_USER))
def get_enrolled_users(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every enrolled user (suspended and not-yet-started too unless onlyactive=1); unknown options ignored."""
    courseid = params["courseid"]
    withcapability, groupid, onlyactive = "", 0, False
    userfields: list[str] = []
    limitfrom = limitnumber = 0
    sortby, sortdirection = "id", "ASC"
    for option in params["options"]:
        name, value = option["name"], option["value"]
        if name == "withcapability":
            withcapability = value
        elif name == "groupid":
            groupid = clean_param(value, "int")
        elif name == "onlyactive":
            onlyactive = value not in ("", "0")
        elif name == "userfields":
            userfields = [clean_param(f, "alphanumext") for f in value.split(",")]
        elif name == "limitfrom":
            limitfrom = clean_param(value, "int")
        elif name == "limitnumber":
            limitnumber = clean_param(value, "int")
        elif name == "sortby":
            if value not in _SORTABLE:
                raise invalid_parameter(f"Invalid value for sortby parameter (value: {value}),allowed values are: "
                                        + ",".join(_SORTABLE))
            sortby = value
        elif name == "sortdirection":
            sortdirection = value.upper()
            if sortdirection not in ("ASC", "DESC"):
                raise invalid_parameter("Invalid value for sortdirection parameter\n                        "
                                        f"(value: {sortdirection}),allowed values are: ASC,DESC")
    course = course_row(site, courseid)
    if course is None:
        raise missing_record("invalidrecord", "Can't find data record in database table course.", "course",
                             "id = ?", [courseid])
    coursecontext = course_context(site, courseid) or Context(CONTEXT_COURSE, courseid, 0)
    context = Context(CONTEXT_SYSTEM, 0, 1) if courseid == SITEID else coursecontext
    try:
        validate_context(site, context)
    except WsError as exc:
        raise moodle_exception("errorcoursecontextnotvalid",
                               f"You cannot execute functions in the course context (course id:{courseid}). "
                               f"The context error message was: {exc.message}") from None
    if courseid == SITEID:
        require_capability(site, "moodle/site:viewparticipants", context)
    else:
        require_capability(site, "moodle/course:viewparticipants", context)
    if withcapability:
        require_capability(site, "moodle/role:review", coursecontext)
    members: set[int] = set()
    if groupid and _has_table(site, "groups_members"):
        members = {int(r["userid"]) for r in site.store.q(
            "SELECT userid FROM groups_members WHERE groupid = ?", (groupid,))}
    if groupid and site.userid not in members:
        require_capability(site, "moodle/site:accessallgroups", coursecontext)
    if onlyactive:
        require_capability(site, "moodle/course:enrolreview", coursecontext)
    ids = enrolled_user_ids(site, courseid, active_only=onlyactive)
    if withcapability:
        # get_enrolled_sql's capability join reads role definitions only: admins are not special there,
        # and a capability this sandbox does not describe is held by nobody
        _name, archetypes = CAPABILITIES.get(withcapability, ("", frozenset()))
        ids = [i for i in ids if _user_role_archetypes(site, i, coursecontext) & archetypes]
    if groupid:
        ids = [i for i in ids if i in members]
    if not ids:
        return []
    marks = ",".join("?" for _ in ids)
    rows = list(site.store.q(f"SELECT * FROM user WHERE id IN ({marks}) ORDER BY id", ids))
    if sortby in ("firstname", "lastname"):
        rows.sort(key=lambda r: (collation_key(r[sortby]), r["id"]), reverse=sortdirection == "DESC")
    elif sortby == "siteorder":  # users_order_by_sql: "lastname, firstname, id" + direction on the last column
        rows.sort(key=lambda r: r["id"], reverse=sortdirection == "DESC")
        rows.sort(key=lambda r: (collation_key(r["lastname"]), collation_key(r["firstname"])))
    elif sortdirection == "DESC":
        rows.reverse()
    start = max(int(limitfrom), 0)
    rows = rows[start:start + limitnumber] if limitnumber > 0 else rows[start:]
    users = []
    for row in rows:
        details = user_details_in_course(site, row, course, userfields)
        if details is not None:
            users.append(details)
    return users


# --- core_enrol_get_users_courses ------------------------------------------------------------------

USERS_COURSE = Single({
    **{k: Value("raw") for k in (
        "id", "shortname", "fullname", "displayname", "enrolledusercount", "idnumber", "visible", "summary",
        "summaryformat", "format", "courseimage", "showgrades", "lang", "enablecompletion", "completionhascriteria",
        "completionusertracked", "category", "progress", "completed", "startdate", "enddate", "marker",
        "lastaccess", "isfavourite", "hidden")},
    "overviewfiles": Multiple(Single({k: Value("raw") for k in (
        "filename", "filepath", "filesize", "fileurl", "timemodified", "mimetype", "isexternalfile",
        "repositorytype", "icon")})),
    **{k: Value("raw") for k in ("showactivitydates", "showcompletionconditions", "timemodified")},
})


def course_image_url(site: Site, course: Any) -> str:
    """The generated course image (no overview file): pluginfile.php/<course context id>/course/generated/course.svg."""
    context = course_context(site, int(course["id"]))
    contextid = context.id if context else 0
    return f"{site.config.site_url}/pluginfile.php/{contextid}/course/generated/course.svg"


def _completion(site: Site, course: Any, userid: int) -> tuple[bool | None, bool, bool, float | None]:
    """completed, hascriteria, usertracked, progress as get_users_courses reports them."""
    if not int(_col(course, "enablecompletion", 0) or 0):
        return None, False, False, None
    context = course_context(site, int(course["id"])) or Context(CONTEXT_COURSE, int(course["id"]), 0)
    tracked = is_enrolled(site, userid, int(course["id"]), active_only=True) and has_capability(
        site, "moodle/course:isincompletionreports", context, userid)
    info: dict[str, Any] | None = None
    for provider in COMPLETION_INFO:
        info = provider(site, course, userid)
        if info is not None:
            break
    completed = bool(info and info.get("completed"))
    hascriteria = bool(info and info.get("hascriteria"))
    progress = None
    if tracked:
        progress = 100.0 if completed else (info or {}).get("progress")
    return completed, hascriteria, tracked, progress


@ws_function("core_enrol_get_users_courses",
             {"userid": Value("int"), "returnusercount": Value("bool", VALUE_DEFAULT, True)},
             returns=Multiple(USERS_COURSE))
def get_users_courses(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The user's courses with an active enrolment ([] for an unknown user, not an error)."""
    userid = params["userid"]
    sameuser = userid == site.userid
    result = []
    for course in users_courses(site, userid):
        courseid = int(course["id"])
        context = course_context(site, courseid)
        try:
            context = validate_context(site, context)
        except WsError:
            continue  # the caller cannot see this course: it is left out silently
        if not sameuser and not has_capability(site, "moodle/course:viewparticipants", context):
            continue
        completed, hascriteria, tracked, progress = _completion(site, course, userid)
        item: dict[str, Any] = {
            "id": courseid, "shortname": course["shortname"], "fullname": course["fullname"],
            "displayname": course["fullname"],
        }
        if params["returnusercount"]:
            item["enrolledusercount"] = len(enrolled_user_ids(site, courseid))
        item.update({
            "idnumber": _col(course, "idnumber", ""), "visible": int(_col(course, "visible", 1)),
            "summary": _col(course, "summary", "") or "", "summaryformat": int(_col(course, "summaryformat", 1) or 0),
            "format": _col(course, "format", "topics"), "courseimage": course_image_url(site, course),
            "showgrades": bool(int(_col(course, "showgrades", 1) or 0)),
            "lang": clean_param(_col(course, "lang", "") or "", "lang"),
            "enablecompletion": bool(int(_col(course, "enablecompletion", 0) or 0)),
            "completionhascriteria": hascriteria, "completionusertracked": tracked,
            "category": int(_col(course, "category", 0) or 0), "progress": progress, "completed": completed,
            "startdate": int(_col(course, "startdate", 0) or 0), "enddate": int(_col(course, "enddate", 0) or 0),
            "marker": int(_col(course, "marker", 0) or 0), "lastaccess": None, "isfavourite": False,
            "hidden": _hidden_on_dashboard(site, userid, courseid) if sameuser else False,
            "overviewfiles": [],
            "showactivitydates": bool(int(_col(course, "showactivitydates", 0) or 0)),
            "showcompletionconditions": _nullable_bool(_col(course, "showcompletionconditions", 1)),
            "timemodified": int(_col(course, "timemodified", 0) or 0),
        })
        result.append(item)
    return result


def _nullable_bool(value: Any) -> bool | None:
    return None if value is None else bool(int(value))


def _hidden_on_dashboard(site: Site, userid: int, courseid: int) -> bool:
    row = site.store.one("SELECT value FROM user_preferences WHERE userid = ? AND name = ?",
                         (userid, f"block_myoverview_hidden_course_{courseid}"))
    return bool(row and row["value"] not in ("", "0"))


# --- core_enrol_get_course_enrolment_methods -------------------------------------------------------

ENROL_METHOD = Single({k: Value("raw") for k in ("id", "courseid", "type", "name", "status", "wsfunction")})


@ws_function("core_enrol_get_course_enrolment_methods", {"courseid": Value("int")}, returns=Multiple(ENROL_METHOD))
def get_course_enrolment_methods(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Enabled instances whose plugin describes itself (guest, self); manual never appears."""
    courseid = params["courseid"]
    course = course_row(site, courseid)
    if course is None:
        raise missing_record("invalidrecord", "Can't find data record in database table course.", "course",
                             "id = ?", [courseid])
    if not is_siteadmin(site.userid) and not int(_col(course, "visible", 1) or 0):
        context = course_context(site, courseid)
        if context is None or not has_capability(site, "moodle/course:viewhiddencourses", context):
            raise moodle_exception("coursehidden", "This course is currently unavailable to students")
    result = []
    for instance in enrol_instances(site, courseid, True):
        info = _enrol_info(site, instance)
        if info is not None:
            result.append(info)
    return result


# --- core_role_assign_roles / core_role_unassign_roles ---------------------------------------------

_ASSIGNMENT = {
    "roleid": Value("int"), "userid": Value("int"), "contextid": Value("int", VALUE_OPTIONAL),
    "contextlevel": Value("alpha", VALUE_OPTIONAL), "instanceid": Value("int", VALUE_OPTIONAL),
}


def _context_from_params(site: Site, item: dict[str, Any]) -> Context | None:
    """external_api::get_context_from_params: contextid, else contextlevel + instanceid."""
    if item.get("contextid"):
        return context_by_id(site, item["contextid"])
    if item.get("contextlevel") and item.get("instanceid") is not None:
        level = CONTEXT_LEVELS.get(item["contextlevel"])
        if level is None:
            raise invalid_parameter(f"Invalid context level = {item['contextlevel']}")
        return context_instance(site, level, item["instanceid"])
    raise invalid_parameter("Missing parameters, please provide either context level with instance id or contextid")


@ws_function("core_role_assign_roles", {"assignments": Multiple(Single(_ASSIGNMENT))})
def assign_roles(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; the role must be assignable in the context by the caller."""
    for item in params["assignments"]:
        context = validate_context(site, _context_from_params(site, item))
        require_capability(site, "moodle/role:assign", context)
        if item["roleid"] not in {r["id"] for r in get_assignable_roles(site, context)}:
            raise invalid_parameter(f"Can not assign roleid={item['roleid']} in contextid={item.get('contextid', '')}")
        role_assign(site, item["roleid"], item["userid"], context)
    return None


@ws_function("core_role_unassign_roles", {"unassignments": Multiple(Single(_ASSIGNMENT))})
def unassign_roles(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; removes only manual assignments (those an enrol plugin made stay)."""
    for item in params["unassignments"]:
        context = validate_context(site, _context_from_params(site, item))
        require_capability(site, "moodle/role:assign", context)
        if item["roleid"] not in {r["id"] for r in get_assignable_roles(site, context)}:
            raise invalid_parameter(
                f"Can not unassign roleid={item['roleid']} in contextid={item.get('contextid', '')}")
        role_unassign(site, item["roleid"], item["userid"], context)
    return None
