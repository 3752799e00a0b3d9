"""The gradebook: grade categories, items and grades, and the functions that read them
(gradereport_user_get_grade_items, core_grades_get_gradeitems), as Moodle 4.5 computes them.

Supported: one course category with Moodle's default aggregation (Natural, empty grades
excluded), value and scale items (text/none items are listed but not aggregated), per-user
weights and ranges, overridden/locked/hidden flags, display types with the course's own letters,
the pass/fail icon the user report puts before a grade when its item has a pass grade, and which
users `userid = 0` lists (only active enrolments unless grade_report_showonlyactiveenrol is off
and the caller may see suspended users). Subcategories, calculated items, outcomes, drop-lowest,
extra credit and the hidden-grade adjustments shown to students are not emulated.

Like Moodle, grades are regraded lazily: a new or changed item marks itself and the course total
"needs update"; a grade for an up-to-date item regrades that user at once; otherwise the next
report (or the regrade_course admin action) recomputes everything. PostgreSQL returns
grade_items unordered, in physical order; `heap` reproduces that order (a rewritten row moves
to the end), because core_grades_get_gradeitems shows it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bufsync.sandbox.moodle.errors import WsError, missing_record, moodle_exception
from bufsync.sandbox.moodle.functions.categories import format_string
from bufsync.sandbox.moodle.functions.cohorts import (
    CONTEXT_COURSE,
    CONTEXT_MODULE,
    context_has_capability,
    require_context_capability,
    user_name_order,
)
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value
from bufsync.sandbox.moodle.site import CONFIG_DEFAULTS, Site, admin_action, ws_function
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS grade_categories (
    id INTEGER PRIMARY KEY, courseid INTEGER NOT NULL, parent INTEGER, depth INTEGER NOT NULL DEFAULT 0, path TEXT,
    fullname TEXT NOT NULL, aggregation INTEGER NOT NULL DEFAULT 0, keephigh INTEGER NOT NULL DEFAULT 0,
    droplow INTEGER NOT NULL DEFAULT 0, aggregateonlygraded INTEGER NOT NULL DEFAULT 0,
    aggregateoutcomes INTEGER NOT NULL DEFAULT 0, timecreated INTEGER NOT NULL, timemodified INTEGER NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS grade_items (
    id INTEGER PRIMARY KEY, courseid INTEGER, categoryid INTEGER, itemname TEXT, itemtype TEXT NOT NULL,
    itemmodule TEXT, iteminstance INTEGER, itemnumber INTEGER, iteminfo TEXT, idnumber TEXT, calculation TEXT,
    gradetype INTEGER NOT NULL DEFAULT 1, grademax REAL NOT NULL DEFAULT 100, grademin REAL NOT NULL DEFAULT 0,
    scaleid INTEGER, outcomeid INTEGER, gradepass REAL NOT NULL DEFAULT 0, multfactor REAL NOT NULL DEFAULT 1,
    plusfactor REAL NOT NULL DEFAULT 0, aggregationcoef REAL NOT NULL DEFAULT 0,
    aggregationcoef2 REAL NOT NULL DEFAULT 0, sortorder INTEGER NOT NULL DEFAULT 0, display INTEGER NOT NULL DEFAULT 0,
    decimals INTEGER, hidden INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0,
    locktime INTEGER NOT NULL DEFAULT 0, needsupdate INTEGER NOT NULL DEFAULT 0,
    weightoverride INTEGER NOT NULL DEFAULT 0, timecreated INTEGER, timemodified INTEGER,
    heap INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS grade_items_course ON grade_items (courseid);
CREATE TABLE IF NOT EXISTS grade_grades (
    id INTEGER PRIMARY KEY, itemid INTEGER NOT NULL, userid INTEGER NOT NULL, rawgrade REAL,
    rawgrademax REAL NOT NULL DEFAULT 100, rawgrademin REAL NOT NULL DEFAULT 0, rawscaleid INTEGER,
    usermodified INTEGER, finalgrade REAL, hidden INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0,
    locktime INTEGER NOT NULL DEFAULT 0, exported INTEGER NOT NULL DEFAULT 0, overridden INTEGER NOT NULL DEFAULT 0,
    excluded INTEGER NOT NULL DEFAULT 0, feedback TEXT, feedbackformat INTEGER NOT NULL DEFAULT 0, information TEXT,
    informationformat INTEGER NOT NULL DEFAULT 0, timecreated INTEGER, timemodified INTEGER,
    aggregationstatus TEXT NOT NULL DEFAULT 'unknown', aggregationweight REAL,
    UNIQUE (userid, itemid));
CREATE TABLE IF NOT EXISTS modules (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, visible INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS course_modules (
    id INTEGER PRIMARY KEY, course INTEGER NOT NULL, module INTEGER NOT NULL, instance INTEGER NOT NULL,
    section INTEGER NOT NULL DEFAULT 0, idnumber TEXT, added INTEGER NOT NULL DEFAULT 0,
    visible INTEGER NOT NULL DEFAULT 1, visibleoncoursepage INTEGER NOT NULL DEFAULT 1,
    completion INTEGER NOT NULL DEFAULT 0, completionview INTEGER NOT NULL DEFAULT 0,
    completionexpected INTEGER NOT NULL DEFAULT 0, completionpassgrade INTEGER NOT NULL DEFAULT 0,
    completiongradeitemnumber INTEGER, deletioninprogress INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS scale (
    id INTEGER PRIMARY KEY, courseid INTEGER NOT NULL DEFAULT 0, userid INTEGER NOT NULL DEFAULT 0, name TEXT NOT NULL,
    scale TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', descriptionformat INTEGER NOT NULL DEFAULT 1,
    timemodified INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS grade_letters (
    id INTEGER PRIMARY KEY, contextid INTEGER NOT NULL, lowerboundary REAL NOT NULL, letter TEXT NOT NULL,
    UNIQUE (contextid, lowerboundary));
CREATE TABLE IF NOT EXISTS assign (
    id INTEGER PRIMARY KEY, course INTEGER NOT NULL, name TEXT NOT NULL, intro TEXT NOT NULL DEFAULT '',
    introformat INTEGER NOT NULL DEFAULT 1, grade INTEGER NOT NULL DEFAULT 100,
    timemodified INTEGER NOT NULL DEFAULT 0, duedate INTEGER NOT NULL DEFAULT 0,
    allowsubmissionsfromdate INTEGER NOT NULL DEFAULT 0, cutoffdate INTEGER NOT NULL DEFAULT 0,
    gradingduedate INTEGER NOT NULL DEFAULT 0, submissiondrafts INTEGER NOT NULL DEFAULT 0,
    completionsubmit INTEGER NOT NULL DEFAULT 0, markingworkflow INTEGER NOT NULL DEFAULT 0,
    teamsubmission INTEGER NOT NULL DEFAULT 0,
    -- the submission plugins' settings (assign_plugin_config in Moodle): online text on/off, the file limit
    onlinetext INTEGER NOT NULL DEFAULT 0, maxfiles INTEGER NOT NULL DEFAULT 20);
""")

GRADE_TYPE_NONE, GRADE_TYPE_VALUE, GRADE_TYPE_SCALE, GRADE_TYPE_TEXT = 0, 1, 2, 3
GRADE_AGGREGATE_SUM = 13  # "Natural", $CFG->grade_aggregation on a fresh site
GRADE_DISPLAY_TYPE_DEFAULT, GRADE_DISPLAY_TYPE_REAL = 0, 1
GRADE_DISPLAY_TYPE_PERCENTAGE, GRADE_DISPLAY_TYPE_LETTER = 2, 3
DEFAULT_DECIMALS = 2        # $CFG->grade_decimalpoints
RANGE_DECIMALS = 0          # $CFG->grade_report_user_rangedecimals
GRADEBOOK_ROLES = (5,)      # $CFG->gradebookroles = student
SHOW_ONLY_ACTIVE_ENROL = "grade_report_showonlyactiveenrol"  # $CFG-> and user preference; 1 on a fresh site
CONFIG_DEFAULTS[SHOW_ONLY_ACTIVE_ENROL] = "1"
# The user report's pass/fail icon (pix_icon i/valid, i/invalid with the boost theme's Font Awesome map).
PASS_ICON = '<i class="icon fa fa-check text-success fa-fw inline"  title="Pass" role="img" aria-label="Pass"></i>'
FAIL_ICON = '<i class="icon fa fa-xmark text-danger fa-fw inline"  title="Fail" role="img" aria-label="Fail"></i>'
# The default letter boundaries (grade_get_letters with no course or site overrides).
LETTERS = [(93, "A"), (90, "A-"), (87, "B+"), (83, "B"), (80, "B-"), (77, "C+"), (73, "C"), (70, "C-"), (67, "D+"),
           (60, "D"), (0, "F")]
# --- small Moodle helpers ---------------------------------------------------------------------------

def number_format(value: float, decimals: int) -> str:
    """PHP number_format() with '.' and no thousands separator (rounds half away from zero)."""
    quantum = Decimal(1).scaleb(-decimals) if decimals > 0 else Decimal(1)
    rounded = Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP)
    text = f"{rounded:f}"
    return "0" + text[2:] if text.startswith("-0") and rounded == 0 else text


def _db_number(value: float | None) -> float | None:
    """numeric(10,5) columns keep five decimals."""
    return None if value is None else round(float(value), 5)


def has_capability(site: Site, capability: str, courseid: int, userid: int | None = None) -> bool:
    """has_capability() in a course context."""
    from bufsync.sandbox.moodle.functions import enrol
    context = enrol.course_context(site, courseid) or enrol.Context(CONTEXT_COURSE, courseid)
    return context_has_capability(site, capability, context, userid)


def require_capability(site: Site, capability: str, courseid: int) -> None:
    from bufsync.sandbox.moodle.functions import enrol
    context = enrol.course_context(site, courseid) or enrol.Context(CONTEXT_COURSE, courseid)
    require_context_capability(site, capability, context)


def get_course(site: Site, courseid: int) -> Any:
    """get_course(): MUST_EXIST, with Moodle's debuginfo."""
    row = site.store.one("SELECT * FROM course WHERE id = ?", (courseid,))
    if row is None:
        raise missing_record("invalidrecord", "Can't find data record in database table course.", "course",
                             "id = ?", [courseid])
    return row


def course_context_must_exist(site: Site, courseid: int) -> None:
    """context_course::instance($id) (MUST_EXIST) looks the course up with only id and category."""
    if site.store.one("SELECT id FROM course WHERE id = ?", (courseid,)) is None:
        raise WsError("dml_missing_record_exception", "invalidrecord",
                      "Can't find data record in database table course.",
                      f"SELECT id,category FROM {{course}} WHERE id = ?\n[array (\n  0 => {courseid},\n)]")


def get_user_record(site: Site, userid: int) -> Any:
    """core_user::get_user($id, '*', MUST_EXIST) followed by core_user::require_active_user()."""
    row = site.store.one("SELECT * FROM user WHERE id = ?", (userid,))
    if row is None:
        raise missing_record("invaliduser", "Invalid user", "user", "id = ?", [userid])
    if userid <= 0:
        raise moodle_exception("invaliduser", "Invalid user")
    if row["deleted"]:
        raise moodle_exception("userdeleted", "error/userdeleted")
    if not row["confirmed"]:
        raise moodle_exception("usernotconfirmed", f"Could not confirm {row['username']}")
    if userid == 1:
        raise moodle_exception("guestsarenotallowed", "The guest user is not allowed to do this")
    return row


def fullname(user: Any) -> str:
    """fullname() with the default fullnamedisplay (firstname lastname)."""
    return f"{user['firstname']} {user['lastname']}"


def _bump(site: Site, ids: list[int]) -> None:
    """Rewrite grade_items rows: each moves to the end of the physical order, in current order."""
    if not ids:
        return
    marks = ",".join("?" for _ in ids)
    for row in site.store.q(f"SELECT id FROM grade_items WHERE id IN ({marks}) ORDER BY heap, id", ids):
        site.store.x("UPDATE grade_items SET heap = ? WHERE id = ?",
                     (site.store.next_id("grade_items_heap"), row["id"]))


# --- categories and items -------------------------------------------------------------------------

def course_category(site: Site, courseid: int) -> Any:
    """grade_category::fetch_course_category(): created (with the course total item) on first use."""
    row = site.store.one("SELECT * FROM grade_categories WHERE courseid = ? AND parent IS NULL", (courseid,))
    if row is not None:
        return row
    now = site.now()
    catid = site.store.next_id("grade_categories")
    site.store.insert("grade_categories", {
        "id": catid, "courseid": courseid, "parent": None, "depth": 1, "path": f"/{catid}/", "fullname": "?",
        "aggregation": GRADE_AGGREGATE_SUM, "aggregateonlygraded": 1, "aggregateoutcomes": 0, "droplow": 0,
        "keephigh": 0, "timecreated": now, "timemodified": now, "hidden": 0})
    _insert_item(site, {"courseid": courseid, "categoryid": None, "itemtype": "course", "iteminstance": catid,
                        "gradetype": GRADE_TYPE_VALUE})
    return site.store.one("SELECT * FROM grade_categories WHERE id = ?", (catid,))


def course_item(site: Site, courseid: int) -> Any:
    """grade_item::fetch_course_item()."""
    category = course_category(site, courseid)
    return site.store.one("SELECT * FROM grade_items WHERE courseid = ? AND itemtype = 'course' AND iteminstance = ?",
                          (courseid, category["id"]))


def _insert_item(site: Site, fields: dict[str, Any]) -> int:
    """grade_item::insert(): placed last in sortorder, then force_regrading() (item + course total)."""
    courseid = fields["courseid"]
    if fields.get("categoryid") is None and fields["itemtype"] not in ("course", "category"):
        fields["categoryid"] = course_category(site, courseid)["id"]
    last = site.store.row("SELECT MAX(sortorder) AS m FROM grade_items WHERE courseid = ?", (courseid,))["m"]
    now = site.now()
    row = {"grademax": 100.0, "grademin": 0.0, "gradetype": GRADE_TYPE_VALUE, "needsupdate": 1, **fields,
           "id": site.store.next_id("grade_items"), "sortorder": (last + 1) if last else 1,
           "timecreated": now, "timemodified": now}
    if row["itemtype"] == "manual" and not row.get("itemnumber"):
        row["itemnumber"] = 0
    site.store.insert("grade_items", row)
    _bump(site, [row["id"]])
    force_regrading(site, row["id"])
    return int(row["id"])


def force_regrading(site: Site, itemid: int) -> None:
    """grade_item::force_regrading(): the item and the course total need update (both rows rewritten)."""
    item = site.store.row("SELECT courseid FROM grade_items WHERE id = ?", (itemid,))
    ids = [r["id"] for r in site.store.q(
        "SELECT id FROM grade_items WHERE (itemtype = 'course' OR id = ?) AND courseid = ?",
        (itemid, item["courseid"]))]
    site.store.x(f"UPDATE grade_items SET needsupdate = 1 WHERE id IN ({','.join('?' * len(ids))})", ids)
    _bump(site, ids)


def _children(site: Site, category: Any) -> list[Any]:
    """The items aggregated into the course category (depends_on): value and scale items, no outcomes."""
    return list(site.store.q(
        "SELECT * FROM grade_items WHERE categoryid = ? AND gradetype IN (?, ?) AND outcomeid IS NULL "
        "AND itemtype NOT IN ('course', 'category') ORDER BY id", (category["id"], GRADE_TYPE_VALUE, GRADE_TYPE_SCALE)))


def report_items(site: Site, courseid: int) -> list[Any]:
    """The grade tree in display order: the category's items by sortorder, the course total last."""
    category = course_category(site, courseid)
    items = list(site.store.q("SELECT * FROM grade_items WHERE categoryid = ? "
                              "AND itemtype NOT IN ('course', 'category') AND outcomeid IS NULL "
                              "ORDER BY sortorder, id", (category["id"],)))
    return items + [course_item(site, courseid)]


def item_by_ref(site: Site, itemid: int | None = None, courseid: int | None = None, idnumber: str | None = None,
                itemname: str | None = None, course_total: bool = False) -> Any:
    """A grade item by id, or by idnumber / name within a course, or the course total (admin actions accept any)."""
    if itemid is not None:
        row = site.store.one("SELECT * FROM grade_items WHERE id = ?", (itemid,))
    elif courseid is not None and idnumber is not None:
        row = site.store.one("SELECT * FROM grade_items WHERE courseid = ? AND idnumber = ?", (courseid, idnumber))
    elif courseid is not None and itemname is not None:
        row = site.store.one("SELECT * FROM grade_items WHERE courseid = ? AND itemname = ? ORDER BY id",
                             (courseid, itemname))
    elif courseid is not None and course_total:
        get_course(site, courseid)
        row = course_item(site, courseid)
    else:
        raise ValueError("give itemid, or courseid with idnumber, itemname or course_total")
    if row is None:
        raise ValueError(f"no such grade item (itemid={itemid}, courseid={courseid}, idnumber={idnumber!r}, "
                         f"itemname={itemname!r})")
    return row


def _user_by_ref(site: Site, userid: int | None, username: str | None) -> int:
    if userid is not None:
        return int(userid)
    row = site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0", (username,))
    if row is None:
        raise ValueError(f"no such user {username!r}")
    return int(row["id"])


# --- grades -----------------------------------------------------------------------------------------

def _grade_row(site: Site, itemid: int, userid: int) -> Any:
    return site.store.one("SELECT * FROM grade_grades WHERE itemid = ? AND userid = ?", (itemid, userid))


def _insert_grade(site: Site, fields: dict[str, Any]) -> int:
    """A grade_grades row as `new grade_grade($params, false)` inserts it (feedbackformat FORMAT_PLAIN)."""
    row = {"rawgrademax": 100.0, "rawgrademin": 0.0, "feedbackformat": 2, "aggregationstatus": "unknown",
           **fields, "id": site.store.next_id("grade_grades")}
    site.store.insert("grade_grades", row)
    return int(row["id"])


def _bounded(item: Any, value: float | None, grademax: float | None = None) -> float | None:
    """grade_item::bounded_grade()."""
    if value is None:
        return None
    top = item["grademax"] if grademax is None else grademax
    if item["gradetype"] == GRADE_TYPE_SCALE:
        return float(int(max(item["grademin"], min(round(value + 0.00001), top))))
    return float(max(item["grademin"], min(value, top)))


def _standardise(value: float | None, smin: float, smax: float, tmin: float, tmax: float) -> float | None:
    if value is None:
        return None
    if smax == smin or tmin == tmax:
        return tmax
    return (value - smin) / (smax - smin) * (tmax - tmin) + tmin


def _editable_grade(site: Site, item: Any, userid: int, feedbackformat: int,
                    usermodified: int | None) -> dict[str, Any] | None:
    """The grade row to change (a new one if none), or None when the item or the grade is locked."""
    if item["gradetype"] == GRADE_TYPE_NONE or item["locked"]:
        return None
    old = _grade_row(site, item["id"], userid)
    if old is not None and old["locked"]:
        return None
    grade = dict(old) if old is not None else {"itemid": item["id"], "userid": userid, "rawgrade": None,
                                               "finalgrade": None, "feedback": None, "feedbackformat": feedbackformat,
                                               "overridden": 0, "timecreated": None, "timemodified": None}
    grade["usermodified"] = usermodified or getattr(site, "userid", 2)  # admin actions run as the admin
    grade.update(rawgrademin=item["grademin"], rawgrademax=item["grademax"], rawscaleid=item["scaleid"])
    return grade


def set_raw_grade(site: Site, item: Any, userid: int, rawgrade: float | None | bool = False,
                  feedback: str | None | bool = False, feedbackformat: int = 0, datesubmitted: int | None = None,
                  dategraded: int | None = None, usermodified: int | None = None) -> None:
    """grade_update() for an activity: grade_item::update_raw_grade() (False = leave unchanged)."""
    grade = _editable_grade(site, item, userid, 2, usermodified)
    if grade is None:
        return
    old = _grade_row(site, item["id"], userid)
    if rawgrade is not False:
        grade["rawgrade"] = _db_number(rawgrade)  # type: ignore[arg-type]
    if feedback == "":
        feedback = None
    if feedback is not False and not grade["overridden"]:
        grade["feedback"], grade["feedbackformat"] = feedback, feedbackformat
    if not grade["overridden"]:
        grade["finalgrade"] = _db_number(_adjust_raw(item, grade["rawgrade"]))
    grade["timecreated"] = datesubmitted
    changed_final = old is None or old["finalgrade"] != grade["finalgrade"]
    if grade["overridden"]:
        pass
    elif grade["rawgrade"] is None and grade["feedback"] is None:
        grade["timemodified"] = None
    elif dategraded:
        grade["timemodified"] = dategraded
    elif changed_final or (old is not None and old["feedback"] != grade["feedback"]) or old is None:
        grade["timemodified"] = site.now()
    _save_grade(site, grade, old)
    gradechanged = old is None or any(old[k] != grade[k] for k in ("finalgrade", "rawgrade", "rawgrademin",
                                                                    "rawgrademax"))
    if gradechanged:
        _after_grade_change(site, item, userid)


def _adjust_raw(item: Any, rawgrade: float | None) -> float | None:
    """grade_item::adjust_raw_grade() when the raw range equals the item's (multfactor, plusfactor, bounds)."""
    if rawgrade is None:
        return None
    if item["gradetype"] == GRADE_TYPE_VALUE:
        if item["grademax"] < item["grademin"]:
            return None
        if item["grademax"] == item["grademin"]:
            return item["grademax"]
        return _bounded(item, rawgrade * item["multfactor"] + item["plusfactor"])
    if item["gradetype"] == GRADE_TYPE_SCALE:
        return _bounded(item, rawgrade) if item["grademax"] >= 0 else None
    return None


def set_final_grade(site: Site, item: Any, userid: int, finalgrade: float | None | bool = False,
                    feedback: str | None | bool = False, feedbackformat: int = 0, usermodified: int | None = None,
                    overridden: bool | None = None) -> None:
    """grade_item::update_final_grade(): manual items, and overriding a course total or activity grade."""
    grade = _editable_grade(site, item, userid, 0, usermodified)
    if grade is None:
        return
    old = _grade_row(site, item["id"], userid)
    overridable = item["itemtype"] in ("mod", "course", "category") or bool(item["calculation"])
    if finalgrade is not False:
        if overridden if overridden is not None else overridable:
            grade["overridden"] = site.now()
        grade["finalgrade"] = _db_number(_bounded(item, finalgrade))  # type: ignore[arg-type]
    if feedback is not False:
        if item["itemtype"] == "mod":
            grade["overridden"] = site.now()
        grade["feedback"], grade["feedbackformat"] = feedback, feedbackformat
    if old is None:
        grade["timecreated"] = None
        grade["timemodified"] = site.now()
        gradechanged = True
    else:
        gradechanged = old["finalgrade"] != grade["finalgrade"] or old["rawgrademin"] != grade["rawgrademin"] \
            or old["rawgrademax"] != grade["rawgrademax"] or (not old["overridden"] and grade["overridden"])
        if not gradechanged and old["feedback"] == grade["feedback"] \
                and old["feedbackformat"] == grade["feedbackformat"]:
            return
        grade["timemodified"] = site.now()
    _save_grade(site, grade, old)
    if gradechanged:
        _after_grade_change(site, item, userid)


def _save_grade(site: Site, grade: dict[str, Any], old: Any) -> None:
    if old is None:
        _insert_grade(site, {k: v for k, v in grade.items() if k != "id"})
    else:
        site.store.update("grade_grades", old["id"], {k: v for k, v in grade.items() if k != "id"})


def _after_grade_change(site: Site, item: Any, userid: int) -> None:
    """What update_raw/final_grade do next: regrade this user at once if nothing is pending, else wait."""
    item = site.store.one("SELECT * FROM grade_items WHERE id = ?", (item["id"],))
    total = course_item(site, item["courseid"])
    if item["needsupdate"]:
        return
    if total["needsupdate"]:
        force_regrading(site, item["id"])
        return
    regrade(site, item["courseid"], userid)


def regrade(site: Site, courseid: int, userid: int | None = None) -> None:
    """grade_regrade_final_grades(): items needing update first (in physical order), the course total last.

    For one user (after one grade changed) nothing is written to grade_items, as in Moodle.
    """
    total = course_item(site, courseid)
    if userid is None and not total["needsupdate"]:
        return
    category = course_category(site, courseid)
    items = list(site.store.q("SELECT * FROM grade_items WHERE courseid = ? ORDER BY heap, id", (courseid,)))
    children = _children(site, category)
    _auto_update_max_and_weights(site, category, total["id"], children)
    finished: list[int] = []
    for item in items:
        if item["id"] == total["id"]:
            continue
        if item["needsupdate"] or userid is not None:
            if item["itemtype"] == "mod" and not item["locked"]:
                _regrade_raw(site, item, userid)
            finished.append(item["id"])
    _aggregate(site, courseid, category, userid)
    if userid is None:
        for itemid in finished + [total["id"]]:
            if itemid == total["id"] or site.store.row("SELECT needsupdate FROM grade_items WHERE id = ?",
                                                       (itemid,))["needsupdate"]:
                site.store.x("UPDATE grade_items SET needsupdate = 0 WHERE id = ?", (itemid,))
                _bump(site, [itemid])


def _regrade_raw(site: Site, item: Any, userid: int | None) -> None:
    """Normal items: final grades recomputed from raw grades unless locked or overridden."""
    sql, args = "SELECT * FROM grade_grades WHERE itemid = ?", [item["id"]]
    if userid is not None:
        sql, args = sql + " AND userid = ?", args + [userid]
    for grade in site.store.q(sql, args):
        if grade["locked"] or grade["overridden"]:
            continue
        final = _db_number(_adjust_raw(item, grade["rawgrade"]))
        if final != grade["finalgrade"]:
            site.store.update("grade_grades", grade["id"], {"finalgrade": final, "timemodified": site.now()})


def _auto_update_max_and_weights(site: Site, category: Any, totalid: int, children: list[Any]) -> None:
    """pre_regrade_final_grades() for Natural: automatic weights (grademax share), then the total's max."""
    if category["aggregation"] != GRADE_AGGREGATE_SUM:
        return
    counted = [i for i in children if i["aggregationcoef"] <= 0]
    grademax_all = sum(i["grademax"] for i in counted)
    for item in children:
        if item["weightoverride"]:
            continue
        weight = _db_number(item["grademax"] / grademax_all) if grademax_all > 0 and item["grademax"] else 0.0
        if _db_number(item["aggregationcoef2"]) != weight:
            site.store.update("grade_items", item["id"], {"aggregationcoef2": weight})
    weighted = site.store.q(f"SELECT grademax FROM grade_items WHERE id IN ({','.join('?' * len(children))}) "
                            "AND aggregationcoef <= 0 AND aggregationcoef2 > 0",
                            [i["id"] for i in children]) if children else []
    grademax = float(sum(r["grademax"] for r in weighted))
    total = site.store.row("SELECT grademax, grademin, gradetype FROM grade_items WHERE id = ?", (totalid,))
    if total["grademax"] != grademax or total["grademin"] != 0 or total["gradetype"] != GRADE_TYPE_VALUE:
        site.store.update("grade_items", totalid, {"grademax": grademax, "grademin": 0.0,
                                                   "gradetype": GRADE_TYPE_VALUE, "timemodified": site.now()})
        _bump(site, [totalid])


def _aggregate(site: Site, courseid: int, category: Any, userid: int | None) -> None:
    """grade_category::generate_grades(): the course total of every user with a grade (or of one user)."""
    total = course_item(site, courseid)
    items = {i["id"]: i for i in _children(site, category)}
    ids = list(items) + [total["id"]]
    marks = ",".join("?" for _ in ids)
    sql, args = f"SELECT DISTINCT userid FROM grade_grades WHERE itemid IN ({marks})", list(ids)
    if userid is not None:
        sql, args = sql + " AND userid = ?", args + [userid]
    for row in site.store.q(sql + " ORDER BY userid", args):
        _aggregate_user(site, category, total, items, int(row["userid"]))


def _aggregate_user(site: Site, category: Any, total: Any, items: dict[int, Any], userid: int) -> None:
    """grade_category::aggregate_grades() for Natural: sum of the graded items, weights by their maximum."""
    old = _grade_row(site, total["id"], userid)
    if old is None:
        _insert_grade(site, {"itemid": total["id"], "userid": userid})
        old = _grade_row(site, total["id"], userid)
    if old["locked"] or old["overridden"] or total["locked"]:
        return
    values: dict[int, float | None] = {}
    excluded: set[int] = set()
    for itemid in items:
        grade = _grade_row(site, itemid, userid)
        if grade is not None:
            values[itemid] = grade["finalgrade"]
            if grade["excluded"]:
                excluded.add(itemid)
    for itemid, item in items.items():  # a grade row for every item, so its status can be recorded
        if itemid not in values:
            _insert_grade(site, {"itemid": itemid, "userid": userid, "rawgrademin": item["grademin"],
                                 "rawgrademax": item["grademax"]})
    usedweights: dict[int, float] = {}
    novalue: set[int] = set()
    dropped: set[int] = set()
    changes: dict[str, Any] = {}
    if not values or not items:
        dropped = set(values)
        if old["finalgrade"] is not None:
            changes = {"finalgrade": None, "timemodified": site.now()}
    else:
        normalised: dict[int, float | None] = {}
        for itemid, value in values.items():
            if value is None and category["aggregateonlygraded"]:
                novalue.add(itemid)
                continue
            if itemid in excluded:
                dropped.add(itemid)
                continue
            low = 0 if category["aggregation"] == GRADE_AGGREGATE_SUM else items[itemid]["grademin"]
            normalised[itemid] = _standardise(value, low, items[itemid]["grademax"], 0, 1)
        allnull = all(v is None for v in normalised.values())
        for itemid in items:
            if itemid not in normalised and itemid not in excluded and itemid not in novalue:
                if category["aggregateonlygraded"]:
                    novalue.add(itemid)
                else:
                    normalised[itemid] = 0.0
        if not normalised:
            if old["finalgrade"] is not None:
                changes = {"finalgrade": None, "timemodified": site.now()}
        else:
            counted = [i for i in normalised if items[i]["aggregationcoef"] <= 0 and items[i]["aggregationcoef2"] > 0]
            grademax = float(sum(items[i]["grademax"] for i in counted))
            usedweights = {i: (items[i]["grademax"] / grademax if grademax > 0 else 0.0) for i in normalised}
            total_sum = sum((normalised[i] or 0.0) * usedweights[i] * grademax for i in normalised)
            aggregate = total_sum / grademax if grademax > 0 else total_sum
            if grademax <= 0:
                grademax = total_sum
            finalgrade = None if allnull else _db_number(
                _bounded(total, _standardise(aggregate, 0, 1, 0, grademax), grademax))
            if finalgrade != old["finalgrade"] or grademax != old["rawgrademax"] or old["rawgrademin"] != 0:
                changes = {"finalgrade": finalgrade, "rawgrademin": 0.0, "rawgrademax": grademax,
                           "timemodified": site.now()}
    if changes:
        site.store.update("grade_grades", old["id"], changes)
    _set_used_in_aggregation(site, category, userid, usedweights, novalue, dropped)


def _set_used_in_aggregation(site: Site, category: Any, userid: int, usedweights: dict[int, float],
                             novalue: set[int], dropped: set[int]) -> None:
    """grade_category::set_usedinaggregation(): each child grade's aggregationstatus and weight.

    A child that took no part (a text item...) is reset to 'unknown' with weight 0 (null counts as different).
    """
    for grade in site.store.q("SELECT g.* FROM grade_grades g JOIN grade_items i ON i.id = g.itemid "
                              "WHERE g.userid = ? AND i.categoryid = ?", (userid, category["id"])):
        itemid = grade["itemid"]
        if itemid in usedweights:
            status, weight = "used", _db_number(usedweights[itemid])
        elif itemid in novalue:
            status, weight = "novalue", 0.0
        elif itemid in dropped:
            status, weight = "dropped", 0.0
        else:
            status, weight = "unknown", 0.0
        if grade["aggregationstatus"] != status or grade["aggregationweight"] is None or \
                _db_number(grade["aggregationweight"]) != weight:
            site.store.update("grade_grades", grade["id"], {"aggregationstatus": status, "aggregationweight": weight})


# --- formatting (grade_format_gradevalue and friends) ----------------------------------------------------

def _decimals(item: Any) -> int:
    return DEFAULT_DECIMALS if item["decimals"] is None else int(item["decimals"])


def format_gradevalue(site: Site, value: float | None, item: dict[str, Any], displaytype: int | None = None,
                      decimals: int | None = None) -> str:
    """grade_format_gradevalue() for value and scale items (real, percentage, letter)."""
    if item["gradetype"] in (GRADE_TYPE_NONE, GRADE_TYPE_TEXT):
        return ""
    if value is None:
        return "-"
    if displaytype is None:
        displaytype = item["display"] or GRADE_DISPLAY_TYPE_REAL
    decimals = _decimals(item) if decimals is None else decimals
    real = lambda: _format_real(site, value, item, decimals)  # noqa: E731
    percent = lambda: _format_percentage(value, item, decimals)  # noqa: E731
    letter = lambda: _format_letter(site, value, item)  # noqa: E731
    combos = {1: lambda: real(), 2: lambda: percent(), 3: lambda: letter(),
              12: lambda: f"{real()} ({percent()})", 13: lambda: f"{real()} ({letter()})",
              21: lambda: f"{percent()} ({real()})", 31: lambda: f"{letter()} ({real()})",
              32: lambda: f"{letter()} ({percent()})", 23: lambda: f"{percent()} ({letter()})"}
    return combos[displaytype]() if displaytype in combos else ""


def _format_real(site: Site, value: float, item: dict[str, Any], decimals: int) -> str:
    """grade_format_gradevalue_real(): a scale shows its item's text («хорошо»), a value its number."""
    if item["gradetype"] != GRADE_TYPE_SCALE:
        return number_format(value, decimals)
    items = scale_items(site, item["scaleid"])
    if not items:
        return "Error"
    position = int(_bounded(item, value) or 0) - 1
    return format_string(items[position]) if 0 <= position < len(items) else "Error"


def _format_percentage(value: float, item: dict[str, Any], decimals: int) -> str:
    """Against the item's range; a scale grade is rounded to a whole item first (bounded_grade)."""
    low, high = item["grademin"], item["grademax"]
    if low == high:
        return ""
    bounded = float(_bounded(item, value) or 0.0)
    return number_format((bounded - low) * 100 / (high - low), decimals) + " %"


def _format_letter(site: Site, value: float, item: dict[str, Any]) -> str:
    """grade_format_gradevalue_letter(): the first letter whose lower boundary the percentage reaches."""
    percent = _standardise(value, item["grademin"], item["grademax"], 0, 100)
    percent = max(0.0, min(100.0, percent or 0.0))
    for boundary, letter in grade_letters(site, item["courseid"]):
        if percent >= boundary:
            return format_string(letter)
    return "-"


def grade_letters(site: Site, courseid: int) -> list[tuple[float, str]]:
    """grade_get_letters(): the nearest context with letters of its own (course, its categories, the site),
    highest boundary first; the defaults when none has."""
    from bufsync.sandbox.moodle.functions import enrol
    context = enrol.course_context(site, courseid)
    for ctx in enrol.parent_contexts(site, context) if context is not None else []:
        if not ctx.id:
            continue
        rows = site.store.q("SELECT lowerboundary, letter FROM grade_letters WHERE contextid = ? "
                            "ORDER BY lowerboundary DESC", (ctx.id,))
        if rows:
            return [(float(r["lowerboundary"]), r["letter"]) for r in rows]
    return [(float(b), letter) for b, letter in LETTERS]


def scale_items(site: Site, scaleid: int | None) -> list[str]:
    """grade_scale::load_items(): the comma-separated list, each item trimmed."""
    row = site.store.one("SELECT scale FROM scale WHERE id = ?", (scaleid,)) if scaleid else None
    return [part.strip() for part in row["scale"].split(",")] if row is not None else []


def is_passed(item: dict[str, Any], finalgrade: float | None) -> bool | None:
    """grade_grade::is_passed(): None without a grade, without a pass grade (gradepass equal to the minimum, or
    0 on a scale); else whether the grade reaches it."""
    if finalgrade is None or item["gradepass"] is None or item["gradepass"] == item["grademin"]:
        return None
    if item["gradetype"] == GRADE_TYPE_SCALE and abs(float(item["gradepass"])) < 1e-5:
        return None
    return bool(finalgrade >= item["gradepass"])


# --- gradereport_user_get_grade_items ---------------------------------------------------------------

_GRADE_ITEM_KEYS = (
    "id", "itemname", "itemtype", "itemmodule", "iteminstance", "itemnumber", "idnumber", "categoryid", "outcomeid",
    "scaleid", "locked", "cmid", "weightraw", "weightformatted", "status", "graderaw", "gradedatesubmitted",
    "gradedategraded", "gradehiddenbydate", "gradeneedsupdate", "gradeishidden", "gradeislocked", "gradeisoverridden",
    "gradeformatted", "grademin", "grademax", "rangeformatted", "percentageformatted", "lettergradeformatted", "rank",
    "numusers", "averageformatted", "feedback", "feedbackformat")
_USERGRADE = Single({
    "courseid": Value("int"), "courseidnumber": Value("text"), "userid": Value("int"),
    "userfullname": Value("text"), "useridnumber": Value("raw"), "maxdepth": Value("int"),
    "gradeitems": Multiple(Single({k: Value("raw", VALUE_OPTIONAL) for k in _GRADE_ITEM_KEYS})),
})
_WARNINGS = Multiple(Single({k: Value("raw") for k in ("item", "itemid", "warningcode", "message")}))


def _is_hidden(row: Any, now: int) -> bool:
    return bool(row and (row["hidden"] == 1 or (row["hidden"] > 1 and row["hidden"] > now)))


def _cm_of(site: Site, item: Any) -> Any:
    if item["itemtype"] != "mod" or not item["itemmodule"] or not item["iteminstance"]:
        return None
    return site.store.one("SELECT cm.* FROM course_modules cm JOIN modules m ON m.id = cm.module "
                          "WHERE cm.course = ? AND m.name = ? AND cm.instance = ?",
                          (item["courseid"], item["itemmodule"], item["iteminstance"]))


def user_report_items(site: Site, courseid: int, userid: int) -> list[dict[str, Any]]:
    """gradereport_user report's gradeitemsdata: one entry per item the viewer may see, course total last."""
    now = site.now()
    canviewall = has_capability(site, "moodle/grade:viewall", courseid)
    canviewhidden = has_capability(site, "moodle/grade:viewhidden", courseid)
    out = []
    for item in report_items(site, courseid):
        item = dict(item)
        grade = _grade_row(site, item["id"], userid)
        item_hidden = _is_hidden(item, now)
        grade_hidden = item_hidden or _is_hidden(grade, now)
        if grade_hidden and not canviewhidden and (item["hidden"] == 1 or (grade and grade["hidden"] == 1)):
            continue  # hidden items are left out for those who cannot see them (showhiddenitems: until date)
        data: dict[str, Any] = {}
        cm = _cm_of(site, item)
        if cm is not None:
            data["cmid"] = cm["id"]
        gradeval = grade["finalgrade"] if grade else None
        status = grade["aggregationstatus"] if grade else "unknown"
        weight = grade["aggregationweight"] if grade else None
        if gradeval is not None and (item["itemtype"] in ("course", "category") and not item["calculation"]):
            item["grademin"], item["grademax"] = grade["rawgrademin"], grade["rawgrademax"]
        data.update({"id": item["id"], "itemname": item["itemname"], "itemtype": item["itemtype"],
                     "itemmodule": item["itemmodule"], "iteminstance": item["iteminstance"],
                     "itemnumber": item["itemnumber"], "idnumber": item["idnumber"], "categoryid": item["categoryid"],
                     "outcomeid": item["outcomeid"], "scaleid": item["outcomeid"],  # sic: Moodle reports outcomeid
                     "locked": bool(item["locked"]) if canviewall else None})
        if weight is not None:
            data["weightraw"] = float(weight)
            data["weightformatted"] = number_format(float(weight) * 100.0, 2) + " %"
        if status not in ("used", "unknown"):
            data["status"] = status
        locked = bool(item["locked"]) or bool(grade and grade["locked"])
        overridden = bool(grade and grade["overridden"])
        dategraded = None
        if grade is not None and not (grade["finalgrade"] is None and grade["feedback"] is None):
            dategraded = grade["overridden"] or grade["timemodified"]
        data.update({"graderaw": None, "gradehiddenbydate": False, "gradeneedsupdate": bool(item["needsupdate"]),
                     "gradeishidden": grade_hidden, "gradedatesubmitted": grade["timecreated"] if grade else None,
                     "gradedategraded": dategraded, "gradeislocked": locked if canviewall else None,
                     "gradeisoverridden": overridden if canviewall else None})
        if item["needsupdate"]:
            data["gradeformatted"] = "Error"
        elif grade_hidden and not canviewhidden:
            data["gradeformatted"] = "-"
        elif grade_hidden:  # shown to those who see hidden grades, without the pass/fail icon
            data["graderaw"] = gradeval
            data["gradeformatted"] = format_gradevalue(site, gradeval, item)
        else:
            passed = is_passed(item, gradeval)
            icon = "" if passed is None else PASS_ICON if passed else FAIL_ICON
            data["graderaw"] = gradeval
            data["gradeformatted"] = icon + format_gradevalue(site, gradeval, item)
        data["rangeformatted"] = (
            format_gradevalue(site, item["grademin"], item, GRADE_DISPLAY_TYPE_REAL, RANGE_DECIMALS) + "&ndash;"
            + format_gradevalue(site, item["grademax"], item, GRADE_DISPLAY_TYPE_REAL, RANGE_DECIMALS))
        data["grademin"], data["grademax"] = item["grademin"], item["grademax"]
        if item["needsupdate"]:
            data["percentageformatted"] = "Error"
        elif grade_hidden and not canviewhidden:
            data["percentageformatted"] = "-"
        else:
            data["percentageformatted"] = format_gradevalue(site, gradeval, item, GRADE_DISPLAY_TYPE_PERCENTAGE)
        data["feedback"] = ""
        data["feedbackformat"] = grade["feedbackformat"] if grade else 0
        if grade and grade["feedback"] and (canviewhidden or not grade_hidden):
            data["feedback"] = grade["feedback"]
        out.append({k: data[k] for k in _GRADE_ITEM_KEYS if k in data})
    return out


def graded_users(site: Site, courseid: int) -> list[Any]:
    """graded_users_iterator: enrolled (only actively, unless show_only_active() says no), holding a gradebook
    role, by name."""
    from bufsync.sandbox.moodle.functions import enrol
    if course_item(site, courseid)["needsupdate"]:
        return []
    enrolled = set(enrol.enrolled_user_ids(site, courseid, active_only=show_only_active(site, courseid)))
    context = enrol.course_context(site, courseid) or enrol.Context(CONTEXT_COURSE, courseid)
    roles = ",".join("?" for _ in GRADEBOOK_ROLES)
    holders: set[int] = set()
    for ctx in enrol.parent_contexts(site, context):  # one query per context level, not per user
        holders |= {int(r["userid"]) for r in site.store.q(
            f"SELECT DISTINCT userid FROM role_assignments WHERE contextlevel = ? AND instanceid = ? "
            f"AND roleid IN ({roles})", (ctx.level, ctx.instanceid, *GRADEBOOK_ROLES))}
    ids = sorted(enrolled & holders)
    graded = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        graded += site.store.q(f"SELECT * FROM user WHERE deleted = 0 AND id IN ({','.join('?' for _ in chunk)})",
                               tuple(chunk))
    return sorted(graded, key=user_name_order)


def show_only_active(site: Site, courseid: int) -> bool:
    """The report's showonlyactiveenrol (grade/report/user/classes/external/user.php): the caller's preference,
    else the site's setting (on by default); always on for a caller without moodle/course:viewsuspendedusers."""
    row = site.store.one("SELECT value FROM user_preferences WHERE userid = ? AND name = ?",
                         (getattr(site, "userid", 2), SHOW_ONLY_ACTIVE_ENROL))
    value = row["value"] if row is not None else site.cfg(SHOW_ONLY_ACTIVE_ENROL)
    return value not in ("", "0") or not has_capability(site, "moodle/course:viewsuspendedusers", courseid)


def _check_report_access(site: Site, courseid: int, userid: int) -> tuple[Any, Any]:
    """gradereport_user external::check_report_access()."""
    from bufsync.sandbox.moodle.functions import enrol
    course = get_course(site, courseid)
    enrol.validate_context(site, enrol.course_context(site, courseid))
    require_capability(site, "gradereport/user:view", courseid)
    user = None
    if not userid:
        require_capability(site, "moodle/grade:viewall", courseid)
    else:
        user = get_user_record(site, userid)
    if not has_capability(site, "moodle/grade:viewall", courseid) and not (
            userid == site.userid and has_capability(site, "moodle/grade:view", courseid) and course["showgrades"]):
        raise moodle_exception("nopermissiontoviewgrades", "Cannot view grades.")
    return course, user


def _usergrade(site: Site, course: Any, user: Any) -> dict[str, Any]:
    return {"courseid": course["id"], "courseidnumber": course["idnumber"], "userid": user["id"],
            "userfullname": fullname(user), "useridnumber": user["idnumber"], "maxdepth": 2,
            "gradeitems": user_report_items(site, course["id"], user["id"])}


@ws_function("gradereport_user_get_grade_items", {
    "courseid": Value("int"), "userid": Value("int", VALUE_DEFAULT, 0), "groupid": Value("int", VALUE_DEFAULT, 0),
}, returns=Single({"usergrades": Multiple(_USERGRADE), "warnings": _WARNINGS}), version="2024042200")
def get_grade_items(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """One user (even one not enrolled: items with empty grades), or userid=0: every active graded user."""
    course, user = _check_report_access(site, params["courseid"], params["userid"])
    regrade(site, course["id"])
    if user is not None:
        return {"usergrades": [_usergrade(site, course, user)], "warnings": []}
    users = graded_users(site, course["id"])
    if params["groupid"]:
        members = {r["userid"] for r in site.store.q("SELECT userid FROM groups_members WHERE groupid = ?",
                                                     (params["groupid"],))}
        users = [u for u in users if u["id"] in members]
    return {"usergrades": [_usergrade(site, course, u) for u in users], "warnings": []}


# --- core_grades_get_gradeitems ---------------------------------------------------------------------------

@ws_function("core_grades_get_gradeitems", {"courseid": Value("int")}, returns=Single({
    "gradeItems": Multiple(Single({"id": Value("alphanum"), "itemname": Value("raw"),
                                   "category": Value("text", VALUE_OPTIONAL)})),
    "warnings": _WARNINGS}))
def get_gradeitems(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Item definitions (no course total), ids as strings, in the table's physical order.

    A course whose gradebook was never touched has no grade items at all, and Moodle 4.5 then
    passes false to array_filter(): a PHP TypeError.
    """
    from bufsync.sandbox.moodle.functions import enrol
    courseid = params["courseid"]
    course_context_must_exist(site, courseid)
    enrol.validate_context(site, enrol.course_context(site, courseid))
    rows = site.store.q("SELECT * FROM grade_items WHERE courseid = ? ORDER BY heap, id", (courseid,))
    if not rows:
        raise WsError("TypeError", None,
                      "array_filter(): Argument #1 ($array) must be of type array, bool given")
    course = get_course(site, courseid)
    out = []
    for row in rows:
        if row["gradetype"] == GRADE_TYPE_NONE or row["itemtype"] in ("course", "category"):
            continue
        out.append({"id": str(row["id"]), "itemname": item_name(row),
                    "category": category_name(site, row["categoryid"], course)})
    return {"gradeItems": out, "warnings": []}


def item_name(item: Any) -> str:
    """grade_item::get_name()."""
    if item["itemname"] not in (None, ""):
        return format_string(item["itemname"])
    if item["itemtype"] == "course":
        return "Course total"
    return ""


def category_name(site: Site, categoryid: int | None, course: Any) -> str:
    """grade_category::get_name(): the course category named '?' shows the course's full name."""
    row = site.store.one("SELECT * FROM grade_categories WHERE id = ?", (categoryid,)) if categoryid else None
    if row is None:
        return ""
    if row["parent"] is None and row["fullname"] == "?":
        return format_string(course["fullname"])
    return format_string(row["fullname"])


# --- activities (what the recorded site created with PHP: an assignment) -----------------------------------

def create_activity(site: Site, courseid: int, modname: str, instance: int, idnumber: str = "",
                    cmid: int | None = None, completion: int = 0, visible: int = 1) -> int:
    """A course module: the modules row, the course_modules row and its module context."""
    from bufsync.sandbox.moodle.functions import categories
    module = site.store.one("SELECT id FROM modules WHERE name = ?", (modname,))
    if module is None:
        moduleid = site.store.next_id("modules")
        site.store.insert("modules", {"id": moduleid, "name": modname, "visible": 1})
    else:
        moduleid = module["id"]
    if cmid is None:
        cmid = site.store.next_id("course_modules")
    elif site.store.peek_id("course_modules") <= cmid:
        site.store.set_sequence("course_modules", cmid + 1)
    site.store.insert("course_modules", {"id": cmid, "course": courseid, "module": moduleid, "instance": instance,
                                         "idnumber": idnumber, "added": site.now(), "visible": visible,
                                         "completion": completion})
    course_ctx = site.store.one("SELECT path FROM context WHERE contextlevel = ? AND instanceid = ?",
                                (CONTEXT_COURSE, courseid))
    if course_ctx is not None:
        categories.new_context(site, CONTEXT_MODULE, cmid, course_ctx["path"])
    return cmid


ASSIGN_SETTINGS = ("intro", "duedate", "allowsubmissionsfromdate", "cutoffdate", "gradingduedate",
                   "submissiondrafts", "markingworkflow", "onlinetext", "maxfiles", "timemodified")


@admin_action("create_assignment")
def admin_create_assignment(site: Site, courseid: int, name: str, grademax: float = 100, idnumber: str = "",
                            cmid: int | None = None, completion: int = 0, visible: int = 1,
                            completionsubmit: int = 0, **settings: Any) -> dict[str, Any]:
    """An assignment activity with its grade item (itemtype mod, itemmodule assign), as the generator makes it:
    add_moduleinfo() regrades the course at once (edit_module_post_actions), so the new item is up to date.

    settings: the assign row's intro, duedate, allowsubmissionsfromdate, cutoffdate, gradingduedate,
    submissiondrafts, markingworkflow, timemodified (default now), and its submission plugins: file submissions
    (always on, `maxfiles` of them) and online text (`onlinetext`). completionsubmit=1 makes completion
    automatic on "Make a submission"."""
    get_course(site, courseid)
    unknown = set(settings) - set(ASSIGN_SETTINGS)
    if unknown:
        raise ValueError(f"unknown assignment settings {sorted(unknown)}; known: {', '.join(ASSIGN_SETTINGS)}")
    row = {k: (int(v) if k not in ("intro",) else str(v)) for k, v in settings.items()}
    row.setdefault("timemodified", site.now())
    instance = site.store.next_id("assign")
    site.store.insert("assign", {"id": instance, "course": courseid, "name": name, "grade": int(grademax),
                                 "completionsubmit": int(bool(completionsubmit)), **row})
    if completionsubmit:
        completion = 2  # COMPLETION_TRACKING_AUTOMATIC
    cmid = create_activity(site, courseid, "assign", instance, idnumber, cmid, completion, visible)
    itemid = _insert_item(site, {"courseid": courseid, "itemtype": "mod", "itemmodule": "assign",
                                 "iteminstance": instance, "itemnumber": 0, "itemname": name,
                                 "idnumber": idnumber, "grademax": float(grademax), "grademin": 0.0})
    regrade(site, courseid)
    return {"assign_instance": instance, "cmid": cmid, "itemid": itemid}


@admin_action("create_grade_item")
def admin_create_grade_item(site: Site, courseid: int, itemname: str, grademax: float = 100, grademin: float = 0,
                            idnumber: str | None = None, gradetype: int = GRADE_TYPE_VALUE, hidden: int = 0,
                            locked: int = 0, gradepass: float = 0, decimals: int | None = None,
                            display: int = 0, scaleid: int | None = None) -> dict[str, Any]:
    """A manual grade item in the course category (gradetype 1 value, 2 scale with scaleid, 3 text, 0 none).

    A scale item's range is its scale's: 1 to the number of its items, as grade_item::load_scale() sets it.
    """
    get_course(site, courseid)
    if gradetype not in (GRADE_TYPE_VALUE, GRADE_TYPE_SCALE, GRADE_TYPE_TEXT, GRADE_TYPE_NONE):
        raise ValueError("gradetype must be 1 (value), 2 (scale), 3 (text) or 0 (none)")
    if gradetype == GRADE_TYPE_SCALE:
        items = scale_items(site, scaleid)
        if not items:
            raise ValueError(f"a scale item needs the id of a scale (create_scale); {scaleid!r} is none")
        grademin, grademax = 1, len(items)
    elif scaleid is not None:
        raise ValueError("scaleid is for gradetype 2 (scale) only")
    itemid = _insert_item(site, {"courseid": courseid, "itemtype": "manual", "itemname": itemname,
                                 "idnumber": idnumber, "grademax": float(grademax), "grademin": float(grademin),
                                 "gradetype": gradetype, "scaleid": scaleid, "hidden": hidden, "locked": locked,
                                 "gradepass": float(gradepass), "decimals": decimals, "display": display})
    return {"itemid": itemid}


@admin_action("create_scale")
def admin_create_scale(site: Site, name: str, scale: str | list[str], courseid: int = 0,
                       description: str = "") -> dict[str, Any]:
    """A scale (Grades > Scales): courseid 0 is a standard (site) scale; items comma-separated or a list."""
    if courseid:
        get_course(site, courseid)
    text = scale if isinstance(scale, str) else ",".join(scale)
    if not [part for part in text.split(",") if part.strip()]:
        raise ValueError("a scale needs at least one item")
    scaleid = site.store.next_id("scale")
    site.store.insert("scale", {"id": scaleid, "courseid": courseid, "userid": getattr(site, "userid", 2),
                                "name": name, "scale": text, "description": description,
                                "timemodified": site.now()})
    return {"scaleid": scaleid}


@admin_action("set_grade_letters")
def admin_set_grade_letters(site: Site, letters: dict[str, str] | list[list[Any]] | None,
                            courseid: int | None = None) -> dict[str, Any]:
    """The course's own letters (Grades > Letters; courseid None: the site's), {lower boundary %: letter};
    letters None goes back to inheriting them."""
    from bufsync.sandbox.moodle.functions import enrol
    if courseid is None:
        contextid = 1
    else:
        get_course(site, courseid)
        context = enrol.course_context(site, courseid)
        contextid = context.id if context is not None and context.id else 0
        if not contextid:
            raise ValueError(f"course {courseid} has no context")
    pairs = list(letters.items()) if isinstance(letters, dict) else [tuple(pair) for pair in letters or []]
    site.store.x("DELETE FROM grade_letters WHERE contextid = ?", (contextid,))
    for boundary, letter in sorted(((float(b), str(t)) for b, t in pairs), reverse=True):
        if not 0 <= boundary <= 100:
            raise ValueError(f"a letter boundary is a percentage: {boundary}")
        site.store.insert("grade_letters", {"id": site.store.next_id("grade_letters"), "contextid": contextid,
                                            "lowerboundary": boundary, "letter": letter})
    return {"contextid": contextid, "letters": len(pairs)}


_ITEM_FIELDS = ("itemname", "idnumber", "grademax", "grademin", "gradepass", "hidden", "locked", "decimals",
                "display", "multfactor", "plusfactor")


@admin_action("update_grade_item")
def admin_update_grade_item(site: Site, itemid: int | None = None, courseid: int | None = None,
                            item_idnumber: str | None = None, item_name: str | None = None,
                            course_total: bool = False, **changes: Any) -> dict[str, Any]:
    """grade_item::update(): rename, set the idnumber, range, pass grade, display, hidden/locked...; a new range
    forces a regrade.

    The item is itemid, or courseid with item_idnumber, item_name or course_total; the other arguments are the
    changes.
    """
    item = item_by_ref(site, itemid, courseid, item_idnumber, item_name, course_total)
    unknown = set(changes) - set(_ITEM_FIELDS)
    if unknown or not changes:
        raise ValueError(f"cannot change {sorted(unknown) or 'nothing'}; allowed: {', '.join(_ITEM_FIELDS)}")
    regrading = any(k in changes and changes[k] != item[k]
                    for k in ("grademax", "grademin", "multfactor", "plusfactor", "locked"))
    if regrading:
        force_regrading(site, item["id"])
    changes["timemodified"] = site.now()
    site.store.update("grade_items", item["id"], changes)
    _bump(site, [item["id"]])
    if item["itemtype"] == "mod" and "idnumber" in changes:
        cm = _cm_of(site, item)
        if cm is not None:
            site.store.update("course_modules", cm["id"], {"idnumber": changes["idnumber"]})
    return {"itemid": item["id"]}


@admin_action("set_grade")
def admin_set_grade(site: Site, grade: float | None = None, itemid: int | None = None, courseid: int | None = None,
                    idnumber: str | None = None, itemname: str | None = None, userid: int | None = None,
                    username: str | None = None, feedback: str | None = None, feedbackformat: int = 0,
                    datesubmitted: int | None = None, override: bool = False, dategraded: int | None = None,
                    course_total: bool = False) -> dict[str, Any]:
    """Grade a user: activities through grade_update() (raw grade, with the dates the activity gives), manual
    items and overrides (of the course total too) through update_final_grade(). grade None with no feedback
    clears the grade."""
    item = item_by_ref(site, itemid, courseid, idnumber, itemname, course_total)
    uid = _user_by_ref(site, userid, username)
    fb: str | None | bool = feedback if feedback is not None else False
    if item["itemtype"] == "mod" and not override:
        set_raw_grade(site, item, uid, grade, fb, feedbackformat, datesubmitted, dategraded)
    else:
        set_final_grade(site, item, uid, grade, fb, feedbackformat, overridden=True if override else None)
    row = _grade_row(site, item["id"], uid)
    return {"itemid": item["id"], "userid": uid, "finalgrade": row["finalgrade"] if row else None}


@admin_action("regrade_course")
def admin_regrade_course(site: Site, courseid: int) -> dict[str, Any]:
    """grade_regrade_final_grades(): what opening the gradebook does."""
    get_course(site, courseid)
    regrade(site, courseid)
    return {"courseid": courseid}


# --- read helpers ------------------------------------------------------------------------------------

def user_grades(site: Site, courseid: int, userid: int) -> list[dict[str, Any]]:
    """A user's grades in a course (course total last), stored values, for sync tests."""
    out = []
    for item in report_items(site, courseid):
        grade = _grade_row(site, item["id"], userid)
        out.append({"itemid": item["id"], "itemtype": item["itemtype"], "itemname": item["itemname"],
                    "idnumber": item["idnumber"], "grademax": item["grademax"],
                    "finalgrade": grade["finalgrade"] if grade else None,
                    "rawgrade": grade["rawgrade"] if grade else None,
                    "feedback": grade["feedback"] if grade else None,
                    "overridden": bool(grade and grade["overridden"]),
                    "timemodified": grade["timemodified"] if grade else None})
    return out


@admin_action("fill_gradebook")
def admin_fill_gradebook(site: Site, courseid: int, items: int = 5, seed: int = 0) -> dict[str, Any]:
    """Benchmarks: `items` manual grade items (idnumbers I1..In, out of 100) with a grade for every active
    student, as a term of teaching leaves a gradebook; one call a course instead of one per grade."""
    from bufsync.sandbox.moodle.functions import enrol
    get_course(site, courseid)
    students = enrol.enrolled_user_ids(site, courseid, active_only=True)
    made = []
    for n in range(1, items + 1):
        made.append(admin_create_grade_item(site, courseid, f"Контрольная {n}", idnumber=f"I{n}")["itemid"])
    for itemid in made:
        item = site.store.one("SELECT * FROM grade_items WHERE id = ?", (itemid,))
        for userid in students:
            set_final_grade(site, item, userid, float((userid * 37 + itemid * 11 + seed) % 61 + 40))
    regrade(site, courseid)
    return {"items": made, "students": len(students)}


@admin_action("user_grades")
def admin_user_grades(site: Site, courseid: int, userid: int | None = None,
                      username: str | None = None) -> list[dict[str, Any]]:
    """Read helper: the user's stored grades in the course (regrades first, as a report would)."""
    regrade(site, courseid)
    return user_grades(site, courseid, _user_by_ref(site, userid, username))


# --- cleanups ----------------------------------------------------------------------------------------

def _user_unenrolled(site: Site, courseid: int, userid: int) -> None:
    """grade_user_unenrol(): the last enrolment in a course removes the user's grades there."""
    site.store.x("DELETE FROM grade_grades WHERE userid = ? AND itemid IN (SELECT id FROM grade_items "
                 "WHERE courseid = ?)", (userid, courseid))


def _user_deleted(site: Site, userid: int) -> None:
    """grade_user_delete()."""
    site.store.x("DELETE FROM grade_grades WHERE userid = ?", (userid,))


def _course_deleted(site: Site, courseid: int) -> None:
    """remove_course_contents(): activities (and their completion states) and the whole gradebook go."""
    for cm in site.store.q("SELECT cm.id, cm.instance, m.name FROM course_modules cm "
                           "JOIN modules m ON m.id = cm.module WHERE cm.course = ?", (courseid,)):
        site.store.x("DELETE FROM course_modules_completion WHERE coursemoduleid = ?", (cm["id"],))
        if cm["name"] == "assign":
            site.store.x("DELETE FROM assign WHERE id = ?", (cm["instance"],))
    site.store.x("DELETE FROM course_modules WHERE course = ?", (courseid,))
    site.store.x("DELETE FROM grade_grades WHERE itemid IN (SELECT id FROM grade_items WHERE courseid = ?)",
                 (courseid,))
    site.store.x("DELETE FROM grade_items WHERE courseid = ?", (courseid,))
    site.store.x("DELETE FROM grade_categories WHERE courseid = ?", (courseid,))


def _register() -> None:
    from bufsync.sandbox.moodle.functions import courses, enrol
    from bufsync.sandbox.moodle.functions.users import DELETE_HOOKS
    if _course_deleted not in courses.COURSE_DELETE_HOOKS:
        courses.COURSE_DELETE_HOOKS.append(_course_deleted)
    if _user_deleted not in DELETE_HOOKS:
        DELETE_HOOKS.append(_user_deleted)
    if _user_unenrolled not in enrol.UNENROL_HOOKS:
        enrol.UNENROL_HOOKS.append(_user_unenrolled)


_register()
