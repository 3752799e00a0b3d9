"""core_calendar_*: calendar events (course, group, user, site), as Moodle 4.5's calendar/externallib.php and
calendar/lib.php (calendar_event, calendar_add_event_allowed, calendar_edit_event_allowed) behave.

What the real code does, and the sandbox with it:
- create_calendar_events: one transaction. An event the caller may not add is skipped with a warning
  (nopermissions, item = the event's name); anything else (an unknown format, a missing course while the
  event's context is worked out, a too long eventtype) is an exception that rolls the whole call back.
  Nothing checks that a group event's group belongs to the event's course, nor that the group exists when
  the caller has moodle/calendar:manageentries at system level (a site admin): Moodle only looks the group
  up for callers without it (calendar_can_manage_non_user_event_in_system comes first).
  An empty description gets FORMAT_HTML, and so does FORMAT_MOODLE (0: PHP's empty()), as the
  calendar_event constructor does. repeats > 0 makes a weekly series of `repeats` events (7 days apart in
  the caller's time zone), answered as database rows (with repeatid); a single event is answered from
  the event object (without repeatid).
- delete_calendar_events: one transaction; an unknown event id is dml_missing_record_exception, an event
  the caller may not delete is moodle_exception nopermissions; either rolls back every deletion before it.
  Deleting the first event of a series alone makes the next one the series' parent.
- get_calendar_events: the events of the given courses (course-wide events: groupid 0), groups, the
  caller's own user events, site events and category events, in the time window, ordered by time then
  id (calendar_get_legacy_events with raw_event_retrieval_strategy, its priority sub-query included),
  then events asked for by id. A site admin sees everything; others get warnings for courses they
  cannot enter and groups they are not in.
The descriptions are not run through HTMLPurifier or text filters (as elsewhere in the sandbox).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bufsync.sandbox.moodle.dates import user_timezone
from bufsync.sandbox.moodle.errors import WsError, missing_record, moodle_exception
from bufsync.sandbox.moodle.functions import enrol
from bufsync.sandbox.moodle.functions.categories import (
    FORMAT_HTML,
    format_string,
    format_text,
    php_empty,
    validate_format,
)
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value
from bufsync.sandbox.moodle.site import Site, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

schema("""
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL, format INTEGER NOT NULL DEFAULT 0,
    categoryid INTEGER NOT NULL DEFAULT 0, courseid INTEGER NOT NULL DEFAULT 0, groupid INTEGER NOT NULL DEFAULT 0,
    userid INTEGER NOT NULL DEFAULT 0, repeatid INTEGER NOT NULL DEFAULT 0, component TEXT,
    modulename TEXT NOT NULL DEFAULT '', instance INTEGER NOT NULL DEFAULT 0, type INTEGER NOT NULL DEFAULT 0,
    eventtype TEXT NOT NULL, timestart INTEGER NOT NULL DEFAULT 0, timeduration INTEGER NOT NULL DEFAULT 0,
    timesort INTEGER, visible INTEGER NOT NULL DEFAULT 1, uuid TEXT NOT NULL DEFAULT '',
    sequence INTEGER NOT NULL DEFAULT 1, timemodified INTEGER NOT NULL DEFAULT 0, subscriptionid INTEGER,
    priority INTEGER, location TEXT
);
CREATE INDEX IF NOT EXISTS event_courseid ON event (courseid);
CREATE INDEX IF NOT EXISTS event_groupid ON event (groupid);
CREATE INDEX IF NOT EXISTS event_repeatid ON event (repeatid);
""")
column_limits("event", {"component": 100, "modulename": 20, "eventtype": 20, "uuid": 255})

PHP_INT_MAX = 2**63 - 1
MANAGE = "moodle/calendar:manageentries"
MANAGE_GROUP = "moodle/calendar:managegroupentries"
MANAGE_OWN = "moodle/calendar:manageownentries"

# lib/db/access.php: who has the calendar capabilities by default (site admins have all).
enrol.CAPABILITIES.update({
    MANAGE: ("Manage entries", frozenset({"teacher", "editingteacher", "manager"})),
    MANAGE_GROUP: ("Manage group entries", frozenset({"teacher", "editingteacher", "manager"})),
    MANAGE_OWN: ("Manage own entries", frozenset({"user", "manager"})),
    "moodle/category:manage": ("Manage course categories", frozenset({"manager"})),
})

_EVENT_IN = Single({
    "name": Value("text", allownull=False),
    "description": Value("raw", VALUE_DEFAULT, None),
    "format": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "courseid": Value("int", VALUE_DEFAULT, 0, allownull=False),
    "groupid": Value("int", VALUE_DEFAULT, 0, allownull=False),
    "repeats": Value("int", VALUE_DEFAULT, 0, allownull=False),
    "eventtype": Value("text", VALUE_DEFAULT, "user", allownull=False),
    "timestart": Value("int", VALUE_OPTIONAL, allownull=False),  # VALUE_DEFAULT time(): filled in by the call
    "timeduration": Value("int", VALUE_DEFAULT, 0, allownull=False),
    "visible": Value("int", VALUE_DEFAULT, 1, allownull=False),
    "sequence": Value("int", VALUE_DEFAULT, 1, allownull=False),
})
_WARNINGS = Multiple(Single({"item": Value("text", VALUE_OPTIONAL), "itemid": Value("int", VALUE_OPTIONAL),
                             "warningcode": Value("alphanum"), "message": Value("text")}), VALUE_OPTIONAL)
_CREATED = Single({
    "id": Value("int"), "name": Value("raw"), "description": Value("raw", VALUE_OPTIONAL), "format": Value("int"),
    "courseid": Value("int"), "groupid": Value("int"), "userid": Value("int"),
    "repeatid": Value("int", VALUE_OPTIONAL), "modulename": Value("text", VALUE_OPTIONAL), "instance": Value("int"),
    "eventtype": Value("text"), "timestart": Value("int"), "timeduration": Value("int"), "visible": Value("int"),
    "uuid": Value("text", VALUE_OPTIONAL), "sequence": Value("int"), "timemodified": Value("int"),
    "subscriptionid": Value("int", VALUE_OPTIONAL),
})
_LISTED = Single({
    "id": Value("int"), "name": Value("raw"), "description": Value("raw", VALUE_OPTIONAL), "format": Value("int"),
    "courseid": Value("int"), "categoryid": Value("int", VALUE_OPTIONAL), "groupid": Value("int"),
    "userid": Value("int"), "repeatid": Value("int"), "modulename": Value("text", VALUE_OPTIONAL),
    "instance": Value("int"), "eventtype": Value("text"), "timestart": Value("int"), "timeduration": Value("int"),
    "visible": Value("int"), "uuid": Value("text", VALUE_OPTIONAL), "sequence": Value("int"),
    "timemodified": Value("int"), "subscriptionid": Value("int", VALUE_OPTIONAL),
})


# --- contexts and permissions (calendar/lib.php) ---------------------------------------------------------

def _missing_course(courseid: Any) -> WsError:
    """context_course::instance($courseid) (MUST_EXIST) for a course that is not there."""
    shown = "NULL" if courseid is None else str(int(courseid))
    return WsError("dml_missing_record_exception", "invalidrecord", "Can't find data record in database table course.",
                   f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => {shown},\n)]")


def event_context(site: Site, event: dict[str, Any]) -> enrol.Context:
    """calendar_event::calculate_context(): category, course, the group's course, else the user's context."""
    courseid: Any
    if int(event.get("categoryid") or 0) > 0:
        found = enrol.context_instance(site, enrol.CONTEXT_COURSECAT, int(event["categoryid"]))
        if found is None:
            raise missing_record("invalidrecord", "Can't find data record in database table course_categories.",
                                 "course_categories", "id = ?", [int(event["categoryid"])])
        return found
    if int(event.get("courseid") or 0) > 0:
        courseid = int(event["courseid"])
    elif int(event.get("groupid") or 0) > 0:
        group = site.store.one("SELECT courseid FROM groups WHERE id = ?", (int(event["groupid"]),))
        courseid = None if group is None else int(group["courseid"])  # PHP: $group->courseid on false is null
    else:
        return enrol.Context(enrol.CONTEXT_USER, int(event["userid"]),
                             enrol._context_id(site, enrol.CONTEXT_USER, int(event["userid"])))  # noqa: SLF001
    context = enrol.course_context(site, courseid) if courseid is not None else None
    if context is None:
        raise _missing_course(courseid)
    return context


def _can(site: Site, capability: str, context: enrol.Context, doanything: bool = True) -> bool:
    """has_capability(); without doanything a site admin has only what their roles give (as everyone)."""
    if doanything:
        return enrol.has_capability(site, capability, context)
    archetypes = enrol._user_role_archetypes(site, site.userid, context)  # noqa: SLF001 (the shared role model)
    return bool(archetypes & enrol.CAPABILITIES[capability][1])


def _system() -> enrol.Context:
    return enrol.Context(enrol.CONTEXT_SYSTEM, 0, 1)


def _in_group(site: Site, groupid: int) -> bool:
    return site.store.one("SELECT 1 FROM groups_members WHERE groupid = ? AND userid = ?",
                          (groupid, site.userid)) is not None


def _manage_non_user_event_in_system(site: Site, event: dict[str, Any]) -> bool:
    """calendar_can_manage_non_user_event_in_system()."""
    return event["eventtype"] != "user" and _can(site, MANAGE, _system())


def _manage_user_event(site: Site, event: dict[str, Any]) -> bool:
    """calendar_can_manage_user_event()."""
    context = event_context(site, event)
    if _can(site, MANAGE_OWN, context) and int(event["userid"]) == site.userid:
        return True
    return _can(site, MANAGE, context) and not enrol.is_siteadmin(int(event["userid"]))


def _group_allowed(site: Site, event: dict[str, Any]) -> bool:
    groupid = int(event.get("groupid") or 0)
    if site.store.one("SELECT id FROM groups WHERE id = ?", (groupid,)) is None:
        return False
    context = event_context(site, event)
    return _can(site, MANAGE, context) or (_can(site, MANAGE_GROUP, context) and _in_group(site, groupid))


def add_event_allowed(site: Site, event: dict[str, Any]) -> bool:
    """calendar_add_event_allowed()."""
    if site.userid == enrol.GUEST_ID:
        return False
    if _manage_non_user_event_in_system(site, event):
        return True
    kind = event["eventtype"]
    if kind == "category":
        return _can(site, "moodle/category:manage", event_context(site, event))
    if kind == "group":
        return _group_allowed(site, event)
    if kind == "user":
        return _manage_user_event(site, event)
    return _can(site, MANAGE, event_context(site, event))  # course, site and any other type


def edit_event_allowed(site: Site, event: dict[str, Any]) -> bool:
    """calendar_edit_event_allowed() (not a manual edit; the sandbox has no subscriptions)."""
    if site.userid == enrol.GUEST_ID:
        return False
    if _manage_non_user_event_in_system(site, event):
        return True
    if int(event["groupid"] or 0):
        return _group_allowed(site, event)
    if int(event["courseid"] or 0) or int(event["categoryid"] or 0):
        return _can(site, MANAGE, event_context(site, event))
    if int(event["userid"] or 0) and int(event["userid"]) == site.userid:
        return _can(site, MANAGE_OWN, enrol.Context(enrol.CONTEXT_USER, site.userid))
    if int(event["userid"] or 0):
        return _manage_user_event(site, event)
    return False


# --- core_calendar_create_calendar_events ---------------------------------------------------------------

_ROW_KEYS = ("id", "name", "description", "format", "courseid", "groupid", "userid", "repeatid", "modulename",
             "instance", "eventtype", "timestart", "timeduration", "visible", "uuid", "sequence", "timemodified",
             "subscriptionid")


@ws_function("core_calendar_create_calendar_events", {"events": Multiple(_EVENT_IN)},
             returns=Single({"events": Multiple(_CREATED), "warnings": _WARNINGS}))
def create_calendar_events(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    created: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for given in params["events"]:
        fmt = validate_format(given["format"])
        event = dict(given, userid=site.userid, categoryid=0)
        event["timestart"] = site.now() if given.get("timestart") is None else given["timestart"]
        if php_empty(event["eventtype"]):
            event["eventtype"] = "user"
        if php_empty(event["description"]):  # calendar_event::__construct(): editors_get_preferred_format()
            event["description"], fmt = "", FORMAT_HTML
        event["format"] = fmt or FORMAT_HTML  # empty(FORMAT_MOODLE): the preferred format again
        if not add_event_allowed(site, event):
            warnings.append({"item": event["name"], "warningcode": "nopermissions",
                             "message": "you do not have permissions to create this event"})
            continue
        event_context(site, event)  # calendar_event::update() logs the creation in the event's context
        now = site.now()
        row = {"id": site.store.next_id("event"), "name": event["name"], "description": event["description"],
               "format": event["format"], "categoryid": 0, "courseid": event["courseid"],
               "groupid": event["groupid"], "userid": site.userid, "repeatid": 0, "component": None,
               "modulename": "", "instance": 0, "type": 0, "eventtype": event["eventtype"],
               "timestart": event["timestart"], "timeduration": event["timeduration"], "timesort": None,
               "visible": event["visible"], "uuid": "", "sequence": event["sequence"], "timemodified": now,
               "subscriptionid": None, "priority": None, "location": None}
        site.store.insert("event", row)
        if event["repeats"] <= 0:
            created.append({k: row[k] for k in _ROW_KEYS if k != "repeatid"})
            continue
        site.store.x("UPDATE event SET repeatid = id WHERE id = ?", (row["id"],))
        moment = datetime.fromtimestamp(row["timestart"], ZoneInfo(user_timezone(site)))
        for _ in range(1, event["repeats"]):
            moment = moment + timedelta(days=7)  # DateTime::add(P7D): the same wall-clock time a week on
            copy = dict(row, id=site.store.next_id("event"), repeatid=row["id"], timestart=int(moment.timestamp()))
            site.store.insert("event", copy)
        for child in site.store.q("SELECT * FROM event WHERE repeatid = ? ORDER BY id", (row["id"],)):
            created.append({k: child[k] for k in _ROW_KEYS})
    return {"events": created, "warnings": warnings}


# --- core_calendar_delete_calendar_events ---------------------------------------------------------------

def _delete(site: Site, event: Any, deleterepeated: bool) -> None:
    """calendar_event::delete()."""
    site.store.x("DELETE FROM event WHERE id = ?", (event["id"],))
    if event["id"] == event["repeatid"] and not deleterepeated:
        parent = site.store.one("SELECT id FROM event WHERE repeatid = ? ORDER BY id", (event["id"],))
        if parent is not None:
            site.store.x("UPDATE event SET repeatid = ? WHERE repeatid = ?", (parent["id"], event["id"]))
    if deleterepeated and int(event["repeatid"] or 0) > 0:
        for other in site.store.q("SELECT * FROM event WHERE repeatid = ?", (event["repeatid"],)):
            _delete(site, other, False)


@ws_function("core_calendar_delete_calendar_events", {"events": Multiple(Single({
    "eventid": Value("int", allownull=False), "repeat": Value("bool")}))})
def delete_calendar_events(site: Site, params: dict[str, Any]) -> None:
    for item in params["events"]:
        event = site.store.one("SELECT * FROM event WHERE id = ?", (item["eventid"],))
        if event is None:  # calendar_event::load(): MUST_EXIST
            raise missing_record("invalidrecord", "Can't find data record in database table event.", "event",
                                 "id = ?", [item["eventid"]])
        if not (edit_event_allowed(site, dict(event)) and php_empty(event["modulename"])
                and php_empty(event["component"])):
            raise moodle_exception("nopermissions",
                                   "Sorry, but you do not currently have permissions to do that (Delete event).")
        _delete(site, event, bool(item["repeat"]))
    return None


# --- core_calendar_get_calendar_events ------------------------------------------------------------------

def _in(values: list[int]) -> str:
    return ",".join("?" * len(values))


def _my_groups(site: Site, courseid: int | None = None) -> list[int]:
    sql = "SELECT g.id FROM groups g JOIN groups_members m ON m.groupid = g.id WHERE m.userid = ?"
    args: list[Any] = [site.userid]
    if courseid is not None:
        sql, args = sql + " AND g.courseid = ?", args + [courseid]
    return [int(r["id"]) for r in site.store.q(sql + " ORDER BY g.id", args)]


def _category_parents(site: Site, categoryid: int) -> list[int]:
    row = site.store.one("SELECT path FROM course_categories WHERE id = ?", (categoryid,))
    return [int(p) for p in str(row["path"]).split("/") if p] if row is not None else []


def _user_groups_filter(site: Site, usercourses: list[int]) -> tuple[bool | list[int], bool]:
    """calendar_set_filters($courses, true, $USER)'s groups and raw_event_retrieval_strategy's viewgroupsonly."""
    groupids: list[int] = []
    for courseid in usercourses:
        course = enrol.course_row(site, courseid)
        if int(enrol._col(course, "groupmode", 0) or 0) != 0 or not int(  # noqa: SLF001
                enrol._col(course, "groupmodeforce", 0) or 0):  # noqa: SLF001
            context = enrol.course_context(site, courseid)
            assert context is not None  # an enrolled course
            if _can(site, "moodle/site:accessallgroups", context) and _can(site, MANAGE, context):
                groupids += [int(r["id"]) for r in site.store.q("SELECT id FROM groups WHERE courseid = ?",
                                                                (courseid,))]
            else:
                groupids += _my_groups(site, courseid)
    viewgroupsonly = False
    for courseid in sorted(usercourses) + [enrol.SITEID]:
        context = enrol.course_context(site, courseid)
        if context is not None and _can(site, "moodle/site:accessallgroups", context) \
                and not _my_groups(site, courseid):
            viewgroupsonly = True
            break
    return (groupids or False), viewgroupsonly


def legacy_events(site: Site, tstart: int, tend: int, users: list[int], groups: list[int], courses: list[int],
                  categories: list[int], ignorehidden: bool) -> list[Any]:
    """calendar_get_legacy_events() through raw_event_retrieval_strategy, priority sub-query included."""
    if not (users or groups or courses or categories):
        return []
    filters: list[str] = []
    args: list[Any] = []
    if users:
        filters.append(f"(e.userid IN ({_in(users)}) AND e.courseid = 0 AND e.groupid = 0 AND e.categoryid = 0)")
        args += users
    if groups:
        filters.append(f"e.groupid IN ({_in(groups)})")
        args += groups
    if courses:
        filters.append(f"(e.groupid = 0 AND e.courseid IN ({_in(courses)}))")
        args += courses
    if categories:
        filters.append(f"(e.groupid = 0 AND e.courseid = 0 AND e.categoryid IN ({_in(categories)}))")
        args += categories
    times: list[str] = []
    targs: list[Any] = []
    if tstart:
        times.append("(timestart >= ? OR timestart + timeduration > ?)")
        targs += [tstart, tstart]
    times.append("timestart <= ?")
    targs.append(tend)
    where = " AND ".join(times + [f"({' OR '.join(filters)})"] + (["(e.visible = 1)"] if ignorehidden else []))
    subs: list[str] = []
    sargs: list[Any] = []
    allusercourses: list[int] = []
    groupcond: str | None = None
    gargs: list[Any] = []
    if users:
        usercourses = enrol.user_course_ids(site, site.userid, True)  # calendar_get_default_courses()
        mine = sorted(usercourses) + [enrol.SITEID]
        allusercourses = [c for c in mine if c in courses]
        subs.append(f"(ev.userid IN ({_in(users)}) AND ev.courseid = 0 AND ev.groupid = 0 AND ev.categoryid = 0)")
        sargs += users
        usergroups, viewgroupsonly = _user_groups_filter(site, usercourses)
        if usergroups is True or viewgroupsonly:
            groupcond = "(ev.groupid != 0 AND ev.eventtype = 'group')"
        elif usergroups:
            assert isinstance(usergroups, list)
            groupcond, gargs = f"(ev.groupid IN ({_in(usergroups)}))", list(usergroups)
    subcourses = list(dict.fromkeys(courses + allusercourses))
    subtimes = "".join(" AND " + t for t in times)
    if subcourses:
        lead = f"{groupcond} OR " if groupcond else ""
        subs.append(f"({lead}(ev.groupid = 0 AND ev.courseid IN ({_in(subcourses)}) AND ev.categoryid = 0))"
                    + subtimes)
        sargs += gargs + subcourses + targs
    if categories:
        subs.append(f"(ev.groupid = 0 AND ev.courseid = 0 AND ev.categoryid IN ({_in(categories)}))" + subtimes)
        sargs += categories + targs
    head = "SELECT modulename, instance, eventtype, priority FROM event ev WHERE "
    union = "(" + " UNION ".join(head + s for s in subs) + ")" if subs else "event"
    sql = (f"SELECT e.* FROM event e JOIN (SELECT ev.modulename, ev.instance, ev.eventtype, MIN(ev.priority) AS "
           f"priority FROM {union} ev GROUP BY ev.modulename, ev.instance, ev.eventtype) fe "
           "ON e.modulename = fe.modulename AND e.instance = fe.instance AND e.eventtype = fe.eventtype "
           "AND (e.priority = fe.priority OR (e.priority IS NULL AND fe.priority IS NULL)) "
           f"WHERE {where} ORDER BY COALESCE(e.timesort, e.timestart), e.id")
    return site.store.q(sql, sargs + targs + args)


def _mapped(row: Any) -> dict[str, Any]:
    """event_mapper::from_event_to_assoc_array(): absent links are null, sequence is always 1, no uuid."""
    return {"id": row["id"], "name": row["name"], "description": row["description"], "format": row["format"],
            "courseid": row["courseid"], "categoryid": row["categoryid"] or None, "groupid": row["groupid"] or None,
            "userid": row["userid"] or None, "repeatid": row["repeatid"] or None, "modulename": None,
            "instance": None, "eventtype": row["eventtype"], "timestart": row["timestart"],
            "timeduration": row["timeduration"], "visible": 1 if row["visible"] else 0, "sequence": 1,
            "timemodified": row["timemodified"], "subscriptionid": row["subscriptionid"]}


def _raw(row: Any) -> dict[str, Any]:
    """A database row (events asked for by id), as get_calendar_events_returns() keeps it."""
    keys = ("id", "name", "description", "format", "courseid", "categoryid", "groupid", "userid", "repeatid",
            "modulename", "instance", "eventtype", "timestart", "timeduration", "visible", "uuid", "sequence",
            "timemodified", "subscriptionid")
    return {k: row[k] for k in keys}


def _formatted(event: dict[str, Any]) -> dict[str, Any]:
    """format_external_name() / format_external_text(): an empty description is '' in FORMAT_HTML."""
    description, fmt = event["description"], event["format"]
    if php_empty(description):
        description, fmt = "", FORMAT_HTML
    text, textformat = format_text(description, fmt or FORMAT_HTML)
    return dict(event, name=format_string(event["name"]), description=text, format=textformat)


# Exception::getTraceAsString() of validate_context()'s require_login_exception (zend.exception_ignore_args on), in
# the recorded site's directory (/var/www/moodle, as the sandbox's other PHP messages).
_LOGIN_TRACE = "\n".join([
    "#0 /var/www/moodle/lib/external/classes/external_api.php(521): require_login()",
    "#1 /var/www/moodle/calendar/externallib.php(201): core_external\\external_api::validate_context()",
    "#2 /var/www/moodle/webservice/lib.php(1504): core_calendar_external::get_calendar_events()",
    "#3 /var/www/moodle/webservice/lib.php(1350): webservice_base_server->execute()",
    "#4 /var/www/moodle/webservice/rest/server.php(44): webservice_base_server->run()",
    "#5 {main}"])


@ws_function("core_calendar_get_calendar_events", {
    "events": Single({
        "eventids": Multiple(Value("int"), VALUE_DEFAULT, []),
        "courseids": Multiple(Value("int"), VALUE_DEFAULT, []),
        "groupids": Multiple(Value("int"), VALUE_DEFAULT, []),
        "categoryids": Multiple(Value("int"), VALUE_DEFAULT, []),
    }, VALUE_DEFAULT, {}),
    "options": Single({
        "userevents": Value("bool", VALUE_DEFAULT, True),
        "siteevents": Value("bool", VALUE_DEFAULT, True),
        "timestart": Value("int", VALUE_DEFAULT, 0),
        "timeend": Value("int", VALUE_DEFAULT, 0),
        "ignorehidden": Value("bool", VALUE_DEFAULT, True),
    }, VALUE_DEFAULT, {}),
}, returns=Single({"events": Multiple(_LISTED), "warnings": _WARNINGS}), transactional=False)
def get_calendar_events(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    asked, options = params["events"], params["options"]
    systemcap = _can(site, MANAGE, _system())
    warnings: list[dict[str, Any]] = []
    courses: list[int] = []
    coursecats: set[int] = set()
    if not systemcap:
        mine = enrol.user_course_ids(site, site.userid, True)  # enrol_get_my_courses()
        coursecats = {int(enrol._col(enrol.course_row(site, c), "category", 0)) for c in mine}  # noqa: SLF001
        for courseid in asked["courseids"]:
            try:
                context = enrol.course_context(site, courseid)
                if context is None:
                    raise _missing_course(courseid)
                enrol.validate_context(site, context)
                courses.append(courseid)
            except WsError as exc:  # the message ends with the exception's trace, as PHP prints it
                trace = _LOGIN_TRACE if exc.errorcode == "requireloginerror" else ""
                warnings.append({"item": "course", "itemid": courseid, "warningcode": "nopermissions",
                                 "message": f"No access rights in course context {exc.message}{trace}"})
        known = set(_my_groups(site))
        groups = [g for g in asked["groupids"] if g in known]
        warnings += [{"item": str(g), "warningcode": "nopermissions",
                      "message": "you do not have permissions to access this group"}
                     for g in asked["groupids"] if g not in known]
        allowedcourses = mine
    else:
        courses = list(asked["courseids"])
        for courseid in courses:
            row = enrol.course_row(site, courseid)
            if row is not None:
                coursecats.add(int(row["category"]))
        groups = list(asked["groupids"])
        allowedcourses = courses
    categories: set[int] = set()
    if systemcap or allowedcourses:
        wanted = set(asked["categoryids"]) | coursecats if asked["categoryids"] else None
        for cat in site.store.q("SELECT id FROM course_categories ORDER BY id"):
            catid = int(cat["id"])
            if wanted is not None and catid not in wanted:
                continue
            context = enrol.context_instance(site, enrol.CONTEXT_COURSECAT, catid)
            if catid in coursecats or (context is not None and _can(site, "moodle/category:manage", context,
                                                                    doanything=wanted is not None)):
                categories.add(catid)
                categories.update(_category_parents(site, catid))
    users = [site.userid] if options["userevents"] else []
    querycourses = courses + ([enrol.SITEID] if options["siteevents"] else [])
    tend = options["timeend"] or PHP_INT_MAX
    found: dict[int, dict[str, Any]] = {}
    for row in legacy_events(site, options["timestart"] or 0, tend, users, groups, querycourses,
                             sorted(categories), bool(options["ignorehidden"])):
        found[int(row["id"])] = _mapped(row)
    if asked["eventids"]:
        for row in site.store.q(f"SELECT * FROM event WHERE id IN ({_in(asked['eventids'])}) ORDER BY id",
                                asked["eventids"]):
            found.setdefault(int(row["id"]), _raw(row))
    events: list[dict[str, Any]] = []
    for eventid, event in found.items():
        if systemcap or _may_see(site, event, categories, groups, courses):
            events.append(_formatted(event))
        else:
            warnings.append({"item": str(eventid), "warningcode": "nopermissions",
                             "message": "you do not have permissions to view this event"})
    return {"events": events, "warnings": warnings}


def _may_see(site: Site, event: dict[str, Any], categories: set[int], groups: list[int], courses: list[int]) -> bool:
    """get_calendar_events()' own check for callers without manageentries at system level."""
    courseid, categoryid = int(event["courseid"] or 0), int(event["categoryid"] or 0)
    groupid, userid = int(event["groupid"] or 0), int(event["userid"] or 0)
    row = site.store.one("SELECT * FROM event WHERE id = ?", (event["id"],))
    return ((courseid == enrol.SITEID and not categoryid) or (categoryid and categoryid in categories)
            or (groupid and groupid in groups) or (courseid and courseid in courses) or userid == site.userid
            or (row is not None and edit_event_allowed(site, dict(row))))


# --- cleanups other components trigger ------------------------------------------------------------------

def _course_deleted(site: Site, courseid: int) -> None:
    """remove_course_contents(): the course's events go."""
    site.store.x("DELETE FROM event WHERE courseid = ?", (courseid,))


def _group_deleted(site: Site, groupid: int) -> None:
    """groups_delete_group(): the group's events go."""
    site.store.x("DELETE FROM event WHERE groupid = ?", (groupid,))


def _register() -> None:
    from bufsync.sandbox.moodle.functions import courses, groups
    if _course_deleted not in courses.COURSE_DELETE_HOOKS:
        courses.COURSE_DELETE_HOOKS.append(_course_deleted)
    if _group_deleted not in groups.GROUP_DELETE_HOOKS:
        groups.GROUP_DELETE_HOOKS.append(_group_deleted)


_register()


def course_events(site: Site, courseid: int) -> list[dict[str, Any]]:
    """Every stored event of a course (group events included), for tests and read-backs."""
    return [dict(r) for r in site.store.q("SELECT * FROM event WHERE courseid = ? ORDER BY id", (courseid,))]
