"""Course categories (core_course_*_categories), the context tree and Moodle's text formatting.

Contexts live here because categories are the first thing that needs them: the system, a
category, a course and a user each get a row in `context`, with ids from one sequence, as
on the recorded site (the course image URL shows the course context id, so they must
match). The users module does not create contexts itself; `new_context` first hands out
the ids that the users created since the last call took on the real site, which keeps
the sequence exact without the users module knowing about contexts.

Category order follows Moodle's fix_course_sortorder(): a depth-first walk of the tree,
MAX_COURSES_IN_CATEGORY (10000) apart; the courses of a category use the slots right after
it, the newest first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bufsync.adapters.moodle.rules import CATEGORY_COLUMNS
from bufsync.sandbox.moodle.errors import WsError, moodle_exception
from bufsync.sandbox.moodle.params import VALUE_DEFAULT, VALUE_OPTIONAL, Multiple, Single, Value, clean_param, php_str
from bufsync.sandbox.moodle.site import Site, installer, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

MAX_COURSES_IN_CATEGORY = 10000
MAX_COURSE_CATEGORIES = 10000
SITEID = 1
CONTEXT_SYSTEM, CONTEXT_USER, CONTEXT_COURSECAT, CONTEXT_COURSE, CONTEXT_MODULE, CONTEXT_BLOCK = 10, 30, 40, 50, 70, 80
FORMAT_MOODLE, FORMAT_HTML, FORMAT_PLAIN, FORMAT_MARKDOWN = 0, 1, 2, 4
SYSTEM_CONTEXT_PATH = "/1"
# A fresh Moodle 4.5 install uses context ids 1-10 (system, front page, Category 1, guest,
# admin, front-page and dashboard blocks); the recording's first course context (26, after
# 11 user ids and 4 categories) pins this down.
FIRST_FREE_CONTEXT = 11
FIRST_USER_ID = 3

schema("""
CREATE TABLE IF NOT EXISTS context (
    id INTEGER PRIMARY KEY, contextlevel INTEGER NOT NULL, instanceid INTEGER NOT NULL,
    path TEXT, depth INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS context_instance ON context (contextlevel, instanceid);
CREATE INDEX IF NOT EXISTS context_path ON context (path);
CREATE TABLE IF NOT EXISTS course_categories (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, idnumber TEXT, description TEXT,
    descriptionformat INTEGER NOT NULL DEFAULT 0, parent INTEGER NOT NULL DEFAULT 0,
    sortorder INTEGER NOT NULL DEFAULT 0, coursecount INTEGER NOT NULL DEFAULT 0,
    visible INTEGER NOT NULL DEFAULT 1, visibleold INTEGER NOT NULL DEFAULT 1,
    timemodified INTEGER NOT NULL DEFAULT 0, depth INTEGER NOT NULL DEFAULT 0,
    path TEXT NOT NULL DEFAULT '', theme TEXT);
CREATE INDEX IF NOT EXISTS course_categories_parent ON course_categories (parent);
CREATE INDEX IF NOT EXISTS course_categories_idnumber ON course_categories (idnumber);
""")
column_limits("course_categories", CATEGORY_COLUMNS)  # the real database refuses longer values (dmlwriteexception)

# Called when a category is deleted: (site, categoryid, id of the category that takes over
# its content, or None when everything is deleted). Cohorts in the category context use it.
CATEGORY_DELETE_HOOKS: list[Callable[[Site, int, int | None], None]] = []


# --- contexts -----------------------------------------------------------------------------------

def _catch_up_user_contexts(site: Site, below: int | None = None) -> None:
    """Give the users created since the last call the context ids they took on the real site.

    Moodle creates a user's context right after inserting the user (even when the call then
    rolls back), so every user id handed out also consumed one context id, in that order.
    """
    store = site.store
    seen = store.peek_id("context_user_seen", FIRST_USER_ID)
    upto = store.peek_id("user", FIRST_USER_ID) if below is None else below
    if upto <= seen:
        return
    for userid in range(seen, upto):
        ctxid = store.next_id("context", FIRST_FREE_CONTEXT)
        user = store.one("SELECT id FROM user WHERE id = ?", (userid,))
        exists = store.one("SELECT id FROM context WHERE contextlevel = ? AND instanceid = ?", (CONTEXT_USER, userid))
        if user is not None and exists is None:
            store.insert("context", {"id": ctxid, "contextlevel": CONTEXT_USER, "instanceid": userid,
                                     "path": f"{SYSTEM_CONTEXT_PATH}/{ctxid}", "depth": 2})
    store.set_sequence("context_user_seen", upto)


def new_context(site: Site, level: int, instanceid: int, parent_path: str = SYSTEM_CONTEXT_PATH) -> int:
    """Create the context of a new category/course/module/user; returns its id.

    parent_path is the context path of the parent (system "/1", a category's, a course's).
    """
    if level == CONTEXT_USER:
        _catch_up_user_contexts(site, below=instanceid)
    else:
        _catch_up_user_contexts(site)
    ctxid = site.store.next_id("context", FIRST_FREE_CONTEXT)
    path = f"{parent_path}/{ctxid}"
    site.store.insert("context", {"id": ctxid, "contextlevel": level, "instanceid": instanceid,
                                  "path": path, "depth": path.count("/")})
    if level == CONTEXT_USER and site.store.peek_id("context_user_seen", FIRST_USER_ID) <= instanceid:
        site.store.set_sequence("context_user_seen", instanceid + 1)
    return ctxid


def context_row(site: Site, level: int, instanceid: int) -> Any:
    """The context row of an instance (a user's context is handed out here if still pending)."""
    query = "SELECT * FROM context WHERE contextlevel = ? AND instanceid = ?"
    row = site.store.one(query, (level, instanceid))
    if row is None and level == CONTEXT_USER and instanceid >= site.store.peek_id("context_user_seen",
                                                                                 FIRST_USER_ID):
        _catch_up_user_contexts(site)
        row = site.store.one(query, (level, instanceid))
    return row


def context_id(site: Site, level: int, instanceid: int) -> int | None:
    """Id of an existing context (None if the instance has none)."""
    row = context_row(site, level, instanceid)
    return row["id"] if row is not None else None


def category_context_path(site: Site, categoryid: int) -> str:
    """Context path of a category (the system's for 0, the top pseudo-category)."""
    if not categoryid:
        return SYSTEM_CONTEXT_PATH
    row = context_row(site, CONTEXT_COURSECAT, categoryid)
    return row["path"] if row is not None else SYSTEM_CONTEXT_PATH


def move_context(site: Site, level: int, instanceid: int, new_parent_path: str) -> None:
    """context::update_moved(): the context and everything below it get the new path."""
    row = context_row(site, level, instanceid)
    if row is None:
        return
    old = row["path"]
    new = f"{new_parent_path}/{row['id']}"
    if old == new:
        return
    site.store.x(
        "UPDATE context SET path = ? || substr(path, ?), "
        "depth = length(? || substr(path, ?)) - length(replace(? || substr(path, ?), '/', '')) "
        "WHERE path = ? OR path LIKE ?",
        (new, len(old) + 1, new, len(old) + 1, new, len(old) + 1, old, old + "/%"))


def delete_context(site: Site, level: int, instanceid: int) -> None:
    """context::delete(): the context and all contexts below it."""
    row = context_row(site, level, instanceid)
    if row is not None:
        site.store.x("DELETE FROM context WHERE id = ? OR path LIKE ?", (row["id"], row["path"] + "/%"))


# --- text formatting (format_string / format_text as the web services apply them) ---------------

_AMP = re.compile(r"&(?![a-zA-Z0-9#]{1,8};)")
_PHP_TAG = re.compile(r"<!--.*?(?:-->|$)|<(?=[^\s<>=])[^>]*(?:>|$)", re.S)


def strip_tags(text: str) -> str:
    """PHP strip_tags(): a '<' followed by a space is text, anything else up to '>' is a tag."""
    return _PHP_TAG.sub("", text)


def format_string(text: Any) -> str:
    """format_string() with Moodle's defaults: escape on, formatstringstriptags on, filterall off."""
    if text is None:
        return ""
    text = _AMP.sub("&amp;", php_str(text))
    return strip_tags(text).replace("<", "&lt;").replace(">", "&gt;")


def _nl2br(text: str) -> str:
    return re.sub(r"(\r\n|\n\r|\n|\r)", r"<br />\1", text)


def s(text: str) -> str:
    """Moodle's s(): htmlspecialchars with quotes, numeric entities left alone."""
    out = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
           .replace('"', "&quot;").replace("'", "&#039;"))
    return re.sub(r"&amp;#(\d+|x[0-9a-fA-F]+);", r"&#\1;", out)


def _markdown(text: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text.strip()) if p.strip()]
    return "\n\n".join(f"<p>{p}</p>" for p in paragraphs) + "\n"


def format_text(text: Any, textformat: Any) -> tuple[str, int]:
    """core_external util::format_text(): (html, FORMAT_HTML); empty text keeps its format.

    The HTML cleaning (HTMLPurifier) and the text filters of a real site are not emulated:
    HTML is returned as stored.
    """
    if text is None or text == "":
        return "", int(textformat or 0)
    text = php_str(text)
    fmt = int(textformat or 0)
    if fmt == FORMAT_HTML:
        return text, FORMAT_HTML
    if fmt == FORMAT_PLAIN:
        return _nl2br(s(text).replace("  ", "&nbsp; ")), FORMAT_HTML
    if fmt == FORMAT_MARKDOWN:
        return _markdown(text), FORMAT_HTML
    text = re.sub(r">\s+<", "><", text)
    text = re.sub(r"[\n\r]<", " <", text)
    text = re.sub(r">[\n\r]", "> ", text)
    return f'<div class="text_to_html">{_nl2br(text)}</div>', FORMAT_HTML


def validate_format(textformat: Any) -> int:
    """core_external util::validate_format()."""
    if textformat not in (FORMAT_HTML, FORMAT_MOODLE, FORMAT_PLAIN, FORMAT_MARKDOWN):
        raise moodle_exception("formatnotsupported", "webservice/formatnotsupported",
                               f"The format with value={php_str(textformat)} is not supported by this Moodle site")
    return int(textformat)


def id_list(sequence: str, table: str) -> list[int]:
    """explode(',', PARAM_SEQUENCE value) used as bigint SQL parameters: an empty item makes
    PostgreSQL fail the query, which Moodle reports as dml_read_exception."""
    items = sequence.split(",")
    if any(item == "" for item in items):
        raise WsError("dml_read_exception", "dmlreadexception", "Error reading from database",
                      'ERROR:  invalid input syntax for type bigint: ""')
    return [int(item) for item in items]


def php_empty(value: Any) -> bool:
    """PHP empty(): null, '', '0', 0, false and [] are empty."""
    return value is None or value is False or value == "" or value == "0" or value == 0 or value == [] \
        or value == {}


# --- records --------------------------------------------------------------------------------------

def get_category(site: Site, categoryid: int | None) -> Any:
    """The course_categories row, or None."""
    return site.store.one("SELECT * FROM course_categories WHERE id = ?", (categoryid,))


def category_exists(site: Site, categoryid: int) -> bool:
    return get_category(site, categoryid) is not None


_TOP = {"id": 0, "parent": 0, "depth": 0, "path": "", "visible": 1, "name": "Top", "sortorder": 0}


def _category_must_exist(site: Site, categoryid: int) -> dict[str, Any]:
    """core_course_category::get($id, MUST_EXIST, true); id 0 is the top pseudo-category."""
    if not categoryid:
        return dict(_TOP)
    row = get_category(site, categoryid)
    if row is None:
        raise moodle_exception("unknowncategory", "error/unknowncategory")  # no such string in Moodle
    return dict(row)


def missing_category_record(categoryid: Any, fields: str = "id,parent") -> WsError:
    """dml_missing_record_exception for a category that does not exist; the default fields are
    those of context_coursecat::instance($id), create_course() reads '*'."""
    value = categoryid if isinstance(categoryid, int) else "'" + php_str(categoryid) + "'"
    return WsError("dml_missing_record_exception", "invalidrecord",
                   "Can't find data record in database table course_categories.",
                   f"SELECT {fields} FROM {{course_categories}} WHERE id = ?\n[array (\n  0 => {value},\n)]")


def _category_context_must_exist(site: Site, categoryid: int) -> str:
    if get_category(site, categoryid) is None:
        raise missing_category_record(categoryid)
    return category_context_path(site, categoryid)


CATEGORY_RECORD = Single({
    "id": Value("int"), "name": Value("raw"), "idnumber": Value("raw"), "description": Value("raw"),
    "descriptionformat": Value("int"), "parent": Value("int"), "sortorder": Value("int"),
    "coursecount": Value("int"), "visible": Value("int"), "visibleold": Value("int"),
    "timemodified": Value("int"), "depth": Value("int"), "path": Value("text"), "theme": Value("theme"),
})


def category_record(row: Any) -> dict[str, Any]:
    """One item of get_categories as the admin sees it, in the order of its return description."""
    description, descriptionformat = format_text(row["description"], row["descriptionformat"])
    return {
        "id": row["id"], "name": format_string(row["name"]), "idnumber": row["idnumber"],
        "description": description, "descriptionformat": descriptionformat, "parent": row["parent"],
        "sortorder": row["sortorder"], "coursecount": row["coursecount"], "visible": row["visible"],
        "visibleold": row["visibleold"], "timemodified": row["timemodified"], "depth": row["depth"],
        "path": row["path"], "theme": clean_param(row["theme"] or "", "theme"),
    }


# --- install ------------------------------------------------------------------------------------

@installer
def install_categories(site: Site) -> None:
    """The system context, the contexts of a fresh site and the default category 'Category 1'."""
    store = site.store
    for ctxid, level, instance, path in ((1, CONTEXT_SYSTEM, 0, "/1"), (2, CONTEXT_COURSE, SITEID, "/1/2"),
                                         (3, CONTEXT_COURSECAT, 1, "/1/3"), (4, CONTEXT_USER, 1, "/1/4"),
                                         (5, CONTEXT_USER, 2, "/1/5")):
        store.insert("context", {"id": ctxid, "contextlevel": level, "instanceid": instance, "path": path,
                                 "depth": path.count("/")})
    store.set_sequence("context", FIRST_FREE_CONTEXT)
    store.set_sequence("context_user_seen", FIRST_USER_ID)
    store.insert("course_categories", {
        "id": 1, "name": "Category 1", "idnumber": None, "description": None, "descriptionformat": FORMAT_HTML,
        "parent": 0, "sortorder": MAX_COURSES_IN_CATEGORY, "coursecount": 0, "visible": 1, "visibleold": 1,
        "timemodified": site.now(), "depth": 1, "path": "/1", "theme": None})
    store.set_sequence("course_categories", 2)


# --- fix_course_sortorder ---------------------------------------------------------------------

def fix_course_sortorder(site: Site) -> None:
    """lib/datalib.php fix_course_sortorder(): category order/paths/depths, course counts and
    course sortorders, step by step as Moodle does them (so the numbers come out the same)."""
    store = site.store
    per_cat = MAX_COURSES_IN_CATEGORY
    store.x("UPDATE course_categories SET sortorder = ? WHERE sortorder = 0", (per_cat * MAX_COURSE_CATEGORIES,))
    rows = [dict(r) for r in store.q(
        "SELECT id, sortorder, parent, depth, path FROM course_categories ORDER BY sortorder, id")]
    allcats = {r["id"]: r for r in rows}
    topcats: dict[int, dict[str, Any]] = {}
    broken: list[dict[str, Any]] = []
    for cat in rows:
        sortorder = int(cat["sortorder"])
        if not cat["parent"]:
            while sortorder in topcats:
                sortorder += 1
            topcats[sortorder] = cat
            continue
        if cat["parent"] not in allcats:
            broken.append(cat)
            continue
        children = allcats[cat["parent"]].setdefault("children", {})
        while sortorder in children:
            sortorder += 1
        children[sortorder] = cat
    top = list(topcats.values()) + broken
    moved: list[dict[str, Any]] = []
    counter = [0]

    def walk(children: list[dict[str, Any]], parent: int, depth: int, path: str) -> None:
        depth += 1
        for cat in children:
            counter[0] += per_cat
            changes: dict[str, Any] = {}
            if parent != cat["parent"] or depth != cat["depth"] or f"{path}/{cat['id']}" != cat["path"]:
                cat["parent"], cat["depth"], cat["path"] = parent, depth, f"{path}/{cat['id']}"
                changes.update(parent=parent, depth=depth, path=cat["path"])
                moved.append(cat)
            if cat["sortorder"] != counter[0]:
                cat["sortorder"] = counter[0]
                changes["sortorder"] = counter[0]
            if changes:
                store.update("course_categories", cat["id"], changes)
            if "children" in cat:
                walk(list(cat["children"].values()), cat["id"], cat["depth"], cat["path"])

    walk(top, 0, 0, "")
    frontcourses = store.q("SELECT id, sortorder FROM course WHERE category = 0 ORDER BY id")
    frontcourse = None
    if len(frontcourses) > 1:
        ids = [r["id"] for r in frontcourses]
        frontid = SITEID if SITEID in ids else ids[0]
        frontcourse = next(r for r in frontcourses if r["id"] == frontid)
        if top:
            for course in frontcourses:
                if course["id"] != frontid:
                    store.x("UPDATE course SET category = ? WHERE id = ?", (top[0]["id"], course["id"]))
                    move_context(site, CONTEXT_COURSE, course["id"], category_context_path(site, top[0]["id"]))
    elif frontcourses:
        frontcourse = frontcourses[0]
    for moved_cat in sorted(moved, key=lambda c: c["depth"]):
        move_context(site, CONTEXT_COURSECAT, moved_cat["id"], category_context_path(site, moved_cat["parent"]))
    if frontcourse is not None and frontcourse["sortorder"] != 1:
        store.x("UPDATE course SET sortorder = 1 WHERE id = ?", (frontcourse["id"],))
    store.x("UPDATE course_categories SET coursecount = "
            "(SELECT COUNT(c.id) FROM course c WHERE c.category = course_categories.id) "
            "WHERE coursecount <> (SELECT COUNT(c.id) FROM course c WHERE c.category = course_categories.id)")
    out_of_range = store.q(
        "SELECT DISTINCT cc.id, cc.sortorder FROM course_categories cc JOIN course c ON c.category = cc.id "
        "WHERE c.sortorder < cc.sortorder OR c.sortorder > cc.sortorder + ?", (per_cat,))
    for misplaced in out_of_range:
        store.x("UPDATE course SET sortorder = (sortorder % ?) + ? WHERE category = ?",
                (per_cat, misplaced["sortorder"], misplaced["id"]))
    fixcategories: dict[int, Any] = {r["id"]: r for r in store.q(
        "SELECT DISTINCT c1.category AS id, cc.sortorder FROM course c1 "
        "JOIN course c2 ON c1.sortorder = c2.sortorder JOIN course_categories cc ON c1.category = cc.id "
        "WHERE c1.id <> c2.id")}
    gaps = store.q(
        "SELECT cc.id, cc.sortorder, cc.coursecount, MAX(c.sortorder) AS maxsort, MIN(c.sortorder) AS minsort "
        "FROM course_categories cc JOIN course c ON c.category = cc.id "
        "GROUP BY cc.id, cc.sortorder, cc.coursecount "
        "HAVING MAX(c.sortorder) <> cc.sortorder + cc.coursecount OR MIN(c.sortorder) <> cc.sortorder + 1")
    for gap in gaps:
        if gap["id"] in fixcategories:
            continue
        if gap["minsort"] == gap["sortorder"] and gap["maxsort"] == gap["sortorder"] + gap["coursecount"] - 1:
            # the easy case: a new course inserted with sortorder 0, the rest is in order
            store.x("UPDATE course SET sortorder = sortorder + 1 WHERE category = ?", (gap["id"],))
        else:
            fixcategories[gap["id"]] = gap
    for cat in fixcategories.values():
        courses = store.q("SELECT id, sortorder FROM course WHERE category = ? ORDER BY sortorder ASC, id DESC",
                          (cat["id"],))
        for i, course in enumerate(courses, start=1):
            if course["sortorder"] != cat["sortorder"] + i:
                store.x("UPDATE course SET sortorder = ? WHERE id = ?", (cat["sortorder"] + i, course["id"]))


# --- category operations (core_course_category) -----------------------------------------------

def create_category(site: Site, data: dict[str, Any]) -> Any:
    """core_course_category::create(): checks, insert, context, fix_course_sortorder()."""
    store = site.store
    newcategory: dict[str, Any] = {"descriptionformat": FORMAT_MOODLE, "description": ""}
    for key in ("description", "descriptionformat"):
        if key in data:
            newcategory[key] = data[key]
    name = data.get("name")
    if php_empty(name):
        raise moodle_exception("categorynamerequired", "Category name is required")
    if len(php_str(name)) > 255:
        raise moodle_exception("categorytoolong", "Category name too long")
    newcategory["name"] = name
    if data.get("idnumber") is not None:
        idnumber = php_str(data["idnumber"])
        if len(idnumber) > 100:
            raise moodle_exception("idnumbertoolong", "ID number is too long")
        if idnumber != "" and store.one("SELECT id FROM course_categories WHERE idnumber = ?", (idnumber,)):
            raise moodle_exception("categoryidnumbertaken", "ID number is already used for another category")
        newcategory["idnumber"] = idnumber
    parent = _category_must_exist(site, data.get("parent") or 0)
    newcategory["parent"] = parent["id"]
    newcategory["depth"] = parent["depth"] + 1
    if "visible" in data and data["visible"] is not None and not data["visible"]:
        newcategory["visible"] = newcategory["visibleold"] = 0
    else:
        newcategory["visible"] = parent["visible"]
        newcategory["visibleold"] = 1
    newcategory["sortorder"] = 0
    newcategory["timemodified"] = site.now()
    newcategory["id"] = store.next_id("course_categories", 2)
    newcategory["path"] = f"{parent['path']}/{newcategory['id']}"
    store.insert("course_categories", newcategory)
    fix_course_sortorder(site)
    new_context(site, CONTEXT_COURSECAT, newcategory["id"], category_context_path(site, parent["id"]))
    return get_category(site, newcategory["id"])


def _parent_ids(row: dict[str, Any]) -> list[int]:
    return [int(p) for p in row["path"].split("/")[1:-1] if p]


def hide_category_raw(site: Site, categoryid: int, visibleold: int = 0) -> None:
    """core_course_category::hide_raw(): hide it, its subcategories and their courses."""
    store = site.store
    cat = get_category(site, categoryid)
    if cat is None:
        return
    if cat["visibleold"] != visibleold:
        store.update("course_categories", categoryid, {"visibleold": visibleold})
    if not cat["visible"]:
        return
    store.update("course_categories", categoryid, {"visible": 0})
    store.x("UPDATE course SET visibleold = visible WHERE category = ?", (categoryid,))
    store.x("UPDATE course SET visible = 0 WHERE category = ?", (categoryid,))
    for sub in store.q("SELECT id, visible FROM course_categories WHERE path LIKE ?", (cat["path"] + "/%",)):
        store.update("course_categories", sub["id"], {"visibleold": sub["visible"], "visible": 0})
        store.x("UPDATE course SET visibleold = visible WHERE category = ?", (sub["id"],))
        store.x("UPDATE course SET visible = 0 WHERE category = ?", (sub["id"],))


def change_parent_raw(site: Site, category: dict[str, Any], newparent: dict[str, Any]) -> None:
    """core_course_category::change_parent_raw(): move, last among the new siblings."""
    store = site.store
    hidecat = False
    if not newparent["id"]:
        store.update("course_categories", category["id"], {"parent": 0})
    else:
        if newparent["id"] == category["id"] or category["id"] in _parent_ids(newparent):
            raise moodle_exception("cannotmovecategory", "Cannot move category")
        store.update("course_categories", category["id"], {"parent": newparent["id"]})
        if not newparent["visible"] and category["visible"]:
            hidecat = True
    move_context(site, CONTEXT_COURSECAT, category["id"], category_context_path(site, newparent["id"]))
    store.update("course_categories", category["id"],
                 {"sortorder": MAX_COURSES_IN_CATEGORY * MAX_COURSE_CATEGORIES})
    if hidecat:
        fix_course_sortorder(site)
        hide_category_raw(site, category["id"], 1)


def update_category(site: Site, categoryid: int, data: dict[str, Any]) -> None:
    """core_course_category::update() with the fields a web service can send."""
    store = site.store
    current = _category_must_exist(site, categoryid)
    if not current["id"]:
        return  # the top pseudo-category has no record
    changes: dict[str, Any] = {}
    for key in ("description", "descriptionformat"):
        if key in data:
            changes[key] = data[key]
    if data.get("name") is not None and php_empty(data["name"]):
        raise moodle_exception("categorynamerequired", "Category name is required")
    if not php_empty(data.get("name")) and data["name"] != current["name"]:
        if len(php_str(data["name"])) > 255:
            raise moodle_exception("categorytoolong", "Category name too long")
        changes["name"] = data["name"]
    if data.get("idnumber") is not None and data["idnumber"] != current["idnumber"]:
        idnumber = php_str(data["idnumber"])
        if len(idnumber) > 100:
            raise moodle_exception("idnumbertoolong", "ID number is too long")
        if idnumber != "" and store.one("SELECT id FROM course_categories WHERE idnumber = ? AND id != ?",
                                        (idnumber, categoryid)):
            raise moodle_exception("categoryidnumbertaken", "ID number is already used for another category")
        changes["idnumber"] = idnumber
    if data.get("parent") is not None and data["parent"] != current["parent"]:
        newparent = _category_must_exist(site, data["parent"])
        change_parent_raw(site, current, newparent)
        fix_course_sortorder(site)
    changes["timemodified"] = site.now()
    store.update("course_categories", categoryid, changes)
    fix_course_sortorder(site)


def delete_category_full(site: Site, categoryid: int) -> None:
    """core_course_category::delete_full(): subcategories, courses, then the category."""
    from bufsync.sandbox.moodle.functions.courses import delete_course

    store = site.store
    for child in store.q("SELECT id FROM course_categories WHERE parent = ? ORDER BY sortorder ASC", (categoryid,)):
        delete_category_full(site, child["id"])
    for course in store.q("SELECT * FROM course WHERE category = ? ORDER BY sortorder ASC", (categoryid,)):
        delete_course(site, course["id"])
    for hook in CATEGORY_DELETE_HOOKS:
        hook(site, categoryid, None)
    store.x("DELETE FROM course_categories WHERE id = ?", (categoryid,))
    delete_context(site, CONTEXT_COURSECAT, categoryid)


def delete_category_move(site: Site, categoryid: int, newparentid: int) -> None:
    """core_course_category::delete_move(): children and courses go to newparentid first."""
    from bufsync.sandbox.moodle.functions.courses import move_courses

    store = site.store
    newparent = _category_must_exist(site, newparentid)
    children = [dict(r) for r in store.q(
        "SELECT * FROM course_categories WHERE parent = ? ORDER BY sortorder", (categoryid,))]
    courseids = [r["id"] for r in store.q("SELECT id FROM course WHERE category = ? ORDER BY sortorder ASC",
                                          (categoryid,))]
    if children:
        for child in children:
            change_parent_raw(site, child, dict(_category_must_exist(site, newparent["id"])))
        fix_course_sortorder(site)
    if courseids:
        move_courses(site, courseids, newparentid)
    for hook in CATEGORY_DELETE_HOOKS:
        hook(site, categoryid, newparentid)
    store.x("DELETE FROM course_categories WHERE id = ?", (categoryid,))
    delete_context(site, CONTEXT_COURSECAT, categoryid)


# --- web service functions ------------------------------------------------------------------------

_CREATE_CATEGORY = Single({
    "name": Value("text"),
    "parent": Value("int", VALUE_DEFAULT, 0),
    "idnumber": Value("raw", VALUE_OPTIONAL),
    "description": Value("raw", VALUE_OPTIONAL),
    "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "theme": Value("theme", VALUE_OPTIONAL),
})


@ws_function("core_course_create_categories", {"categories": Multiple(_CREATE_CATEGORY)},
             returns=Multiple(Single({"id": Value("int"), "name": Value("raw")})))
def create_categories(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """All or nothing (one delegated transaction); the theme is ignored (allowcategorythemes off)."""
    created = []
    for category in params["categories"]:
        if category["parent"]:
            if not category_exists(site, category["parent"]):
                raise moodle_exception("unknowcategory", "Category not known!")
        validate_format(category["descriptionformat"])
        data = {k: v for k, v in category.items() if k != "theme"}
        row = create_category(site, data)
        created.append({"id": row["id"], "name": format_string(row["name"])})
    return created


def _criteriaerror(detail: str) -> WsError:
    return moodle_exception("criteriaerror", "Missing permissions to search on a criterion.", detail)


@ws_function("core_course_get_categories", {
    "criteria": Multiple(Single({"key": Value("alpha"), "value": Value("raw")}), VALUE_DEFAULT, []),
    "addsubcategories": Value("bool", VALUE_DEFAULT, 1),
}, returns=Multiple(CATEGORY_RECORD))
def get_categories(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Criteria are ANDed; subcategories (all levels) come too unless addsubcategories=0."""
    store = site.store
    if params["criteria"]:
        seen: set[str] = set()
        wheres: list[str] = []
        args: list[Any] = []
        extra_sub, extra_args = "", []
        for crit in params["criteria"]:
            key = crit["key"].strip()
            if key in seen:
                continue  # Moodle keeps the first value of a repeated key ('ids' excepted)
            if key == "id" or key == "parent":
                value: Any = clean_param(crit["value"], "int")
            elif key == "ids":
                ids = id_list(clean_param(crit["value"], "sequence"), "course_categories")
                wheres.append(f"id IN ({','.join('?' for _ in ids)})")
                args.extend(ids)
                continue
            elif key == "idnumber":
                value = clean_param(crit["value"], "raw")
            elif key == "name":
                value = clean_param(crit["value"], "text")
            elif key == "visible":
                value = clean_param(crit["value"], "int")
                extra_sub += " AND visible = ?"
                extra_args.append(value)
            elif key == "theme":
                value = clean_param(crit["value"], "theme")
                extra_sub += " AND theme = ?"
                extra_args.append(value)
            else:
                raise _criteriaerror(f"You can not search on this criteria: {key}")
            seen.add(key)
            wheres.append(f"{key} = ?")
            args.append(value)
        found = {r["id"]: r for r in store.q(
            f"SELECT * FROM course_categories WHERE {' AND '.join(wheres)} ORDER BY id", args)}
        if found and params["addsubcategories"]:
            subs: dict[int, Any] = {}
            for row in found.values():
                for sub in store.q(f"SELECT * FROM course_categories WHERE path LIKE ?{extra_sub} ORDER BY id",
                                   [row["path"] + "/%", *extra_args]):
                    subs.setdefault(sub["id"], sub)
            for cid, sub in subs.items():
                found.setdefault(cid, sub)
        categories = list(found.values())
    else:
        categories = store.q("SELECT * FROM course_categories ORDER BY id")
    categories = sorted(categories, key=lambda r: r["path"])  # parents are checked first in Moodle
    result = [category_record(row) for row in categories]
    # Moodle sorts with strcmp() on the sortorder: as strings ("100000" before "20000").
    return sorted(result, key=lambda r: str(r["sortorder"]))


_UPDATE_CATEGORY = Single({
    "id": Value("int"),
    "name": Value("text", VALUE_OPTIONAL),
    "idnumber": Value("raw", VALUE_OPTIONAL),
    "parent": Value("int", VALUE_OPTIONAL),
    "description": Value("raw", VALUE_OPTIONAL),
    "descriptionformat": Value("int", VALUE_DEFAULT, FORMAT_HTML),
    "theme": Value("theme", VALUE_OPTIONAL),
})


@ws_function("core_course_update_categories", {"categories": Multiple(_UPDATE_CATEGORY)})
def update_categories(site: Site, params: dict[str, Any]) -> None:
    """All or nothing; descriptionformat defaults to 1 and is always written, as in Moodle."""
    for cat in params["categories"]:
        category = _category_must_exist(site, cat["id"])
        if not category["id"]:
            raise missing_category_record(cat["id"])
        if cat.get("parent") is not None:
            # Moodle compares the int parameter with the string from the database (!==), so a
            # sent parent is always checked, even when unchanged.
            if cat["parent"] != 0:
                _category_context_must_exist(site, cat["parent"])
        validate_format(cat["descriptionformat"])
        data = {k: v for k, v in cat.items() if k not in ("id", "theme")}
        update_category(site, cat["id"], data)
    return None


@ws_function("core_course_delete_categories", {"categories": Multiple(Single({
    "id": Value("int"),
    "newparent": Value("int", VALUE_OPTIONAL),
    "recursive": Value("bool", VALUE_DEFAULT, 0),
}))})
def delete_categories(site: Site, params: dict[str, Any]) -> None:
    """Recursive: delete everything inside; otherwise move the content to newparent or the parent."""
    for item in params["categories"]:
        deletecat = _category_must_exist(site, item["id"])
        if not deletecat["id"]:
            raise missing_category_record(item["id"])
        if item["recursive"]:
            delete_category_full(site, deletecat["id"])
        else:
            if not php_empty(item.get("newparent")):
                newparent = _category_must_exist(site, item["newparent"])
            else:
                newparent = _category_must_exist(site, deletecat["parent"])
            if not newparent["id"]:
                raise moodle_exception(
                    "movecatcontentstoroot", "Moving the category content to root is not allowed. "
                    "You must move the contents to an existant category!")
            delete_category_move(site, deletecat["id"], newparent["id"])
    return None

