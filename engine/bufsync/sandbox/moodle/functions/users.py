"""core_user_*: create (all or nothing), update (per user, warnings), get, delete; profile fields."""

from __future__ import annotations

import hashlib
from typing import Any

from bufsync.adapters.moodle.rules import NOT_FOR_NEW_USERS, USER_COLUMNS
from bufsync.sandbox.moodle.errors import WsError, invalid_parameter, invalid_response, missing_record, moodle_exception
from bufsync.sandbox.moodle.params import (
    VALUE_DEFAULT,
    VALUE_OPTIONAL,
    Multiple,
    Single,
    Value,
    clean_param,
    clean_username,
    loose_equal,
    validate_email,
)
from bufsync.sandbox.moodle.site import CONFIG_DEFAULTS, Site, admin_action, installer, per_item, ws_function
from bufsync.sandbox.moodle.store import column_limits, schema

schema("""
CREATE TABLE IF NOT EXISTS user (
    id INTEGER PRIMARY KEY, auth TEXT NOT NULL DEFAULT 'manual', confirmed INTEGER NOT NULL DEFAULT 1,
    deleted INTEGER NOT NULL DEFAULT 0, suspended INTEGER NOT NULL DEFAULT 0,
    username TEXT NOT NULL, password TEXT NOT NULL DEFAULT '', idnumber TEXT NOT NULL DEFAULT '',
    firstname TEXT NOT NULL, lastname TEXT NOT NULL, middlename TEXT, alternatename TEXT,
    firstnamephonetic TEXT, lastnamephonetic TEXT, email TEXT NOT NULL DEFAULT '',
    phone1 TEXT NOT NULL DEFAULT '', phone2 TEXT NOT NULL DEFAULT '', institution TEXT NOT NULL DEFAULT '',
    department TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '', city TEXT NOT NULL DEFAULT '',
    country TEXT NOT NULL DEFAULT '', lang TEXT NOT NULL DEFAULT 'en', calendartype TEXT NOT NULL DEFAULT 'gregorian',
    theme TEXT NOT NULL DEFAULT '', timezone TEXT NOT NULL DEFAULT '99', firstaccess INTEGER NOT NULL DEFAULT 0,
    lastaccess INTEGER NOT NULL DEFAULT 0, description TEXT, descriptionformat INTEGER NOT NULL DEFAULT 1,
    mailformat INTEGER NOT NULL DEFAULT 1, maildisplay INTEGER NOT NULL DEFAULT 2,
    trackforums INTEGER NOT NULL DEFAULT 0,
    interests TEXT, timecreated INTEGER NOT NULL DEFAULT 0, timemodified INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS user_username ON user (username);
CREATE INDEX IF NOT EXISTS user_idnumber ON user (idnumber);
CREATE INDEX IF NOT EXISTS user_email ON user (email COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS user_info_field (
    id INTEGER PRIMARY KEY, shortname TEXT NOT NULL UNIQUE, name TEXT NOT NULL, datatype TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_info_data (
    userid INTEGER NOT NULL, fieldid INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (userid, fieldid));
CREATE TABLE IF NOT EXISTS user_preferences (
    userid INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (userid, name));
""")
column_limits("user", USER_COLUMNS)  # the real database refuses longer values (dmlwriteexception)

ADMIN_ID, GUEST_ID = 2, 1

_CUSTOMFIELDS = Multiple(Single({"type": Value("alphanumext"), "value": Value("raw")}), VALUE_OPTIONAL)
_PREFERENCES = Multiple(Single({"type": Value("raw"), "value": Value("raw")}), VALUE_OPTIONAL)


def _user_fields(required_names: bool) -> dict[str, Any]:
    req = 1 if required_names else VALUE_OPTIONAL
    return {
        "firstname": Value("notags", req), "lastname": Value("notags", req),
        "email": Value("raw_trimmed", req), "maildisplay": Value("int", VALUE_OPTIONAL),
        "city": Value("text", VALUE_OPTIONAL), "country": Value("alpha", VALUE_OPTIONAL),
        "timezone": Value("timezone", VALUE_OPTIONAL), "description": Value("raw", VALUE_OPTIONAL),
        "firstnamephonetic": Value("notags", VALUE_OPTIONAL), "lastnamephonetic": Value("notags", VALUE_OPTIONAL),
        "middlename": Value("notags", VALUE_OPTIONAL), "alternatename": Value("notags", VALUE_OPTIONAL),
        "interests": Value("text", VALUE_OPTIONAL),
    }


_CREATE_USER = Single({
    "createpassword": Value("bool", VALUE_OPTIONAL),
    "username": Value("username"),
    "auth": Value("auth", VALUE_DEFAULT, "manual", allownull=False),
    "password": Value("raw", VALUE_OPTIONAL),
    **_user_fields(True),
    "idnumber": Value("raw", VALUE_DEFAULT, ""),
    "institution": Value("text", VALUE_OPTIONAL), "department": Value("text", VALUE_OPTIONAL),
    "phone1": Value("notags", VALUE_OPTIONAL), "phone2": Value("notags", VALUE_OPTIONAL),
    "address": Value("text", VALUE_OPTIONAL),
    "lang": Value("lang", VALUE_DEFAULT, "en", allownull=False),
    "calendartype": Value("plugin", VALUE_DEFAULT, "gregorian", allownull=False),
    "theme": Value("plugin", VALUE_OPTIONAL), "mailformat": Value("int", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS, "preferences": _PREFERENCES,
})

_UPDATE_USER = Single({
    "id": Value("int"),
    "username": Value("username", VALUE_OPTIONAL, allownull=False),
    "auth": Value("auth", VALUE_OPTIONAL, allownull=False),  # PARAM_AUTH here too: an uninstalled one fails the call
    "suspended": Value("bool", VALUE_OPTIONAL),
    "password": Value("raw", VALUE_OPTIONAL, allownull=False),
    **_user_fields(False),
    "userpicture": Value("int", VALUE_OPTIONAL),
    "idnumber": Value("raw", VALUE_OPTIONAL), "institution": Value("text", VALUE_OPTIONAL),
    "department": Value("text", VALUE_OPTIONAL), "phone1": Value("notags", VALUE_OPTIONAL),
    "phone2": Value("notags", VALUE_OPTIONAL), "address": Value("text", VALUE_OPTIONAL),
    "lang": Value("lang", VALUE_OPTIONAL), "calendartype": Value("plugin", VALUE_OPTIONAL),
    "theme": Value("plugin", VALUE_OPTIONAL), "mailformat": Value("int", VALUE_OPTIONAL),
    "customfields": _CUSTOMFIELDS, "preferences": _PREFERENCES,
})

_PLAIN_COLUMNS = ("auth", "idnumber", "firstname", "lastname", "middlename", "alternatename", "firstnamephonetic",
                  "lastnamephonetic", "email", "phone1", "phone2", "institution", "department", "address", "city",
                  "country", "lang", "calendartype", "theme", "timezone", "description", "mailformat", "maildisplay",
                  "interests", "username")

# Description of a user record (for XML, where every optional key appears, null when absent).
USER_RECORD = Single({k: Value("raw") for k in (
    "id", "username", "firstname", "lastname", "fullname", "email", "address", "phone1", "phone2", "department",
    "institution", "idnumber", "interests", "firstaccess", "lastaccess", "auth", "suspended", "confirmed", "lang",
    "calendartype", "theme", "timezone", "mailformat", "trackforums", "description", "descriptionformat", "city",
    "country", "profileimageurlsmall", "profileimageurl")} | {
    "customfields": Multiple(Single({k: Value("raw") for k in ("type", "value", "displayvalue", "name", "shortname")})),
    "preferences": Multiple(Single({"name": Value("raw"), "value": Value("raw")})),
})


@installer
def install_users(site: Site) -> None:
    now = site.now()
    site.store.x("INSERT INTO sandbox_config (name, value) VALUES ('themerev', ?)", (str(now),))
    site.store.insert("user", {"id": GUEST_ID, "username": "guest", "firstname": "Guest user", "lastname": " ",
                               "email": "root@localhost", "description":
                               "This user is a special user that allows read-only access to some courses.",
                               "timecreated": now})
    site.store.insert("user", {"id": ADMIN_ID, "username": "admin", "firstname": "Admin", "lastname": "User",
                               "email": "admin@example.com", "timecreated": now})
    site.store.set_sequence("user", 3)
    site.store.insert("user_preferences", {"userid": ADMIN_ID, "name": "last_time_enrolments_synced",
                                           "value": str(now)})


@admin_action("create_profile_field")
def create_profile_field(site: Site, shortname: str, name: str, datatype: str = "text") -> dict[str, Any]:
    """What the recorded site's PHP setup did: a custom user profile field."""
    row_id = site.store.next_id("user_info_field")
    site.store.insert("user_info_field", {"id": row_id, "shortname": shortname, "name": name, "datatype": datatype})
    return {"id": row_id, "shortname": shortname, "datatype": datatype}


def password_hash(password: str) -> str:
    return "sandbox$" + hashlib.sha256(password.encode("utf-8")).hexdigest()


HIDDEN_USER_FIELDS = "hiddenuserfields"  # $CFG->hiddenuserfields: fields a caller without viewhiddendetails lacks
CONFIG_DEFAULTS[HIDDEN_USER_FIELDS] = ""


def _hidden_fields(site: Site, userid: int) -> set[str]:
    """user_get_user_details(): $CFG->hiddenuserfields unless the caller has moodle/user:viewhiddendetails in the
    user's context (a site admin always has it); the user's own record is no exception."""
    from bufsync.sandbox.moodle.functions.enrol import CONTEXT_USER, Context, has_capability
    if has_capability(site, "moodle/user:viewhiddendetails", Context(CONTEXT_USER, userid)):
        return set()
    return {name for name in site.cfg(HIDDEN_USER_FIELDS).split(",") if name}


def user_record(site: Site, row: Any) -> dict[str, Any]:
    """user_get_user_details as a site admin sees it (optional keys only when they have a value), less the
    hidden user fields the sandbox knows (timezone, city, country) for a caller who may not see them."""
    out: dict[str, Any] = {"id": row["id"], "username": row["username"], "firstname": row["firstname"],
                           "lastname": row["lastname"], "fullname": f"{row['firstname']} {row['lastname']}",
                           "email": row["email"]}
    for key in ("address", "phone1", "phone2"):
        if row[key]:
            out[key] = row[key]
    out["department"] = row["department"]
    for key in ("institution", "idnumber", "interests"):
        if row[key]:
            out[key] = row[key]
    out.update({"firstaccess": row["firstaccess"], "lastaccess": row["lastaccess"], "auth": row["auth"],
                "suspended": bool(row["suspended"]), "confirmed": bool(row["confirmed"]), "lang": row["lang"],
                "theme": row["theme"], "timezone": row["timezone"], "mailformat": row["mailformat"],
                "trackforums": row["trackforums"]})
    hidden = _hidden_fields(site, int(row["id"]))
    if "timezone" in hidden or not row["timezone"]:
        del out["timezone"]
    if row["description"]:
        out["description"] = row["description"]
        out["descriptionformat"] = row["descriptionformat"]
    for key in ("city", "country"):
        if row[key] and key not in hidden:
            out[key] = row[key]
    from bufsync.sandbox.moodle.functions.webservice import theme_url
    out["profileimageurlsmall"] = theme_url(site, "u/f2")
    out["profileimageurl"] = theme_url(site, "u/f1")
    fields = site.store.q(
        "SELECT f.shortname, f.name, f.datatype, d.data FROM user_info_data d JOIN user_info_field f "
        "ON f.id = d.fieldid WHERE d.userid = ? AND d.data <> '' ORDER BY f.id", (row["id"],))
    if fields:
        out["customfields"] = [{"type": f["datatype"], "value": f["data"], "displayvalue": f["data"],
                                "name": f["name"], "shortname": f["shortname"]} for f in fields]
    if row["id"] == site.userid:
        prefs = site.store.q("SELECT name, value FROM user_preferences WHERE userid = ? ORDER BY rowid", (row["id"],))
        out["preferences"] = [{"name": p["name"], "value": p["value"]} for p in prefs]
        out["preferences"].append({"name": "_lastloaded", "value": site.now()})
    return out


def _email_taken(site: Site, email: str, exclude: int | None = None) -> bool:
    # NOCASE index: Moodle compares e-mails case-insensitively (sql_equal(..., false))
    row = site.store.one("SELECT id FROM user WHERE email = ? COLLATE NOCASE AND deleted = 0 AND id <> ?",
                         (email, exclude or 0))
    return row is not None


def _save_customfields(site: Site, userid: int, fields: list[dict[str, Any]] | None) -> None:
    for item in fields or []:
        field = site.store.one("SELECT id FROM user_info_field WHERE shortname = ?", (item["type"],))
        if field is None:
            continue  # unknown shortnames are silently ignored, as on the real site
        site.store.x("INSERT INTO user_info_data (userid, fieldid, data) VALUES (?, ?, ?) "
                     "ON CONFLICT(userid, fieldid) DO UPDATE SET data = excluded.data",
                     (userid, field["id"], item["value"]))


def _check_password(site: Site, password: str) -> None:
    problems = site.config.password_policy.errors(password)
    if problems:
        text = "".join(problems)
        raise moodle_exception(text, f"error/{text}")


@ws_function("core_user_create_users", {"users": Multiple(_CREATE_USER)})
def create_users(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    created = []
    for user in params["users"]:
        for name in ("username", "firstname", "lastname"):
            if user[name].strip() == "":
                raise invalid_parameter(f"The field {name} cannot be blank")
        if site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0", (user["username"],)):
            raise invalid_parameter(f"Username already exists: {user['username']}")
        if user["auth"] in NOT_FOR_NEW_USERS:  # unset from $availableauths: they would need more than WS gives
            raise invalid_parameter(f"Invalid authentication type: {user['auth']}")
        if not user.get("password") and not user.get("createpassword"):
            raise invalid_parameter("Invalid password: you must provide a password, or set createpassword.")
        if not validate_email(user["email"]):
            raise invalid_parameter(f"Email address is invalid: {user['email']}")
        if not site.config.allow_accounts_same_email and _email_taken(site, user["email"]):
            raise invalid_parameter(f"Email address already exists: {user['email']}")
        password = ""
        if not user.get("createpassword"):
            _check_password(site, user["password"])
            password = password_hash(user["password"])
        row = {k: user[k] for k in _PLAIN_COLUMNS if k in user and user[k] is not None}
        row.update({"id": site.store.next_id("user", 3), "password": password, "timecreated": site.now(),
                    "timemodified": site.now()})
        site.store.insert("user", row)
        _save_customfields(site, row["id"], user.get("customfields"))
        for pref in user.get("preferences") or []:
            site.store.x("INSERT OR REPLACE INTO user_preferences (userid, name, value) VALUES (?, ?, ?)",
                         (row["id"], pref["type"], pref["value"]))
        created.append({"id": row["id"], "username": user["username"]})
    return created


def _update_one(site: Site, user: dict[str, Any]) -> None:
    existing = site.store.one("SELECT * FROM user WHERE id = ?", (user["id"],))
    if existing is None:
        raise moodle_exception("invaliduserid", "Invalid user ID")
    if existing["deleted"]:
        raise moodle_exception("usernotexists", "User does not exist")
    if existing["id"] == GUEST_ID:
        raise moodle_exception("cannotupdateguestuser", "You cannot update the guest user.")
    if "email" in user and user["email"] != existing["email"]:
        if not validate_email(user["email"]):
            raise moodle_exception("useremailinvalid", "error/useremailinvalid")
        if not site.config.allow_accounts_same_email and _email_taken(site, user["email"], existing["id"]):
            raise moodle_exception("useremailduplicate", "Duplicate address")
    changes = {k: user[k] for k in _PLAIN_COLUMNS if k in user and user[k] is not None}
    if "username" in changes and changes["username"] != existing["username"]:
        if site.store.one("SELECT id FROM user WHERE username = ? AND deleted = 0 AND id <> ?",
                          (changes["username"], existing["id"])):
            raise moodle_exception("usernameexists", "This username already exists, choose another")
    if user.get("password"):
        _check_password(site, user["password"])
        changes["password"] = password_hash(user["password"])
    if "suspended" in user and user["suspended"] is not None:
        if existing["id"] == ADMIN_ID and user["suspended"]:
            raise moodle_exception("useradminodelete", "Administrator accounts cannot be deleted.")
        changes["suspended"] = int(bool(user["suspended"]))
    changes["timemodified"] = site.now()
    site.store.update("user", existing["id"], changes)
    _save_customfields(site, existing["id"], user.get("customfields"))
    for pref in user.get("preferences") or []:
        site.store.x("INSERT OR REPLACE INTO user_preferences (userid, name, value) VALUES (?, ?, ?)",
                     (existing["id"], pref["type"], pref["value"]))


@ws_function("core_user_update_users", {"users": Multiple(_UPDATE_USER)}, transactional=False)
def update_users(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    """Each user in its own transaction; a failure becomes a warning, the others are saved."""
    warnings = per_item(site, params["users"], "user", _update_one)
    for warning in warnings:
        code = warning["warningcode"] or ""
        if clean_param(code, "alphanum") != code:
            # Moodle then fails validating its own response (a password-policy text as warningcode)
            raise invalid_response(
                "warnings => Invalid response value detected: warningcode => Invalid response value detected: "
                f'Invalid external api response: the value is "{code}" of PHP type "string", '
                'the server was expecting "alphanum" type')
    return {"warnings": warnings}


_BY_FIELD_TYPES = {"id": "int", "idnumber": "raw", "username": "username", "email": "raw"}


@ws_function("core_user_get_users_by_field", {"field": Value("alpha"), "values": Multiple(Value("raw"))},
             returns=Multiple(USER_RECORD))
def get_users_by_field(site: Site, params: dict[str, Any]) -> list[dict[str, Any]]:
    field = params["field"]
    if field not in _BY_FIELD_TYPES:
        raise WsError("core\\exception\\coding_exception", "codingerror",
                      "Coding error detected, it must be fixed by a programmer: invalid field parameter",
                      f"The search field '{field}' is not supported, look at the web service documentation")
    values = []
    for value in params["values"]:
        cleaned = clean_param(value, _BY_FIELD_TYPES[field])
        if not loose_equal(value, cleaned):
            raise invalid_parameter(f"The field '{field}' value is invalid: {value}(cleaned value: {cleaned})")
        values.append(cleaned)
    if not values:
        return []
    marks = ",".join("?" for _ in values)
    deleted = "" if field == "id" else " AND deleted = 0"
    rows = site.store.q(f"SELECT * FROM user WHERE {field} IN ({marks}){deleted} ORDER BY id", values)
    return [user_record(site, row) for row in rows]


_GET_USERS_KEYS = ("id", "lastname", "firstname", "idnumber", "username", "email", "auth")


@ws_function("core_user_get_users", {"criteria": Multiple(Single({"key": Value("alpha"), "value": Value("raw")}))})
def get_users(site: Site, params: dict[str, Any]) -> dict[str, Any]:
    warnings = []
    clauses, args = ["deleted = 0"], []
    for criterion in params["criteria"]:
        key, value = criterion["key"], criterion["value"]
        if key not in _GET_USERS_KEYS:
            warnings.append({"item": key, "warningcode": "invalidfieldparameter",
                             "message": "The search key '" + key
                                        + "' is not supported, look at the web service documentation"})
            continue
        if key == "email":
            clauses.append("email LIKE ?")  # '%' wildcards, case-insensitive like Moodle's sql_like
        else:
            clauses.append(f"{key} = ?")
        args.append(value)
    rows = site.store.q(f"SELECT * FROM user WHERE {' AND '.join(clauses)} ORDER BY id", args)
    return {"users": [user_record(site, row) for row in rows], "warnings": warnings}


@ws_function("core_user_delete_users", {"userids": Multiple(Value("int"))})
def delete_users(site: Site, params: dict[str, Any]) -> None:
    for userid in params["userids"]:
        row = site.store.one("SELECT * FROM user WHERE id = ? AND deleted = 0", (userid,))
        if row is None:
            raise missing_record("invaliduser", "Invalid user", "user", "id = ? AND deleted = ?", [userid, 0])
        if userid == ADMIN_ID:
            raise moodle_exception("useradminodelete", "Administrator accounts cannot be deleted.")
        if userid == GUEST_ID:
            raise moodle_exception("guestnodeleteaccount", "The guest account cannot be deleted.")
        now = site.now()
        # delete_user(): the e-mail (or a made-up one) as a login, cut so that ".<time>" still fits 100 characters
        email = row["email"] or f"{row['username']}.{row['id']}@unknownemail.invalid"
        username = clean_username(email)[:100 - len(str(now)) - 1] + f".{now}"
        site.store.update("user", userid, {
            "deleted": 1, "username": username, "email": hashlib.md5(row["username"].encode()).hexdigest(),
            "idnumber": "", "password": "", "timemodified": now})
        site.store.x("DELETE FROM user_info_data WHERE userid = ?", (userid,))
        for hook in DELETE_HOOKS:
            hook(site, userid)
    return None


DELETE_HOOKS: list = []  # enrolments, cohorts, groups register cleanups of a deleted user
