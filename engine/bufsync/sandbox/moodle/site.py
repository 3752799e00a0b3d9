"""The emulated Moodle site: its settings, the function registry, dispatch of one REST call."""

from __future__ import annotations

import json
import secrets as _secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bufsync.adapters.moodle.rules import PasswordPolicy
from bufsync.sandbox.moodle.errors import WsError, invalid_parameter, missing_record
from bufsync.sandbox.moodle.params import Single, parse_php_form, truncate_input_vars, validate_parameters
from bufsync.sandbox.moodle.render import JSON_TYPE, XML_TYPE, error_json, error_xml, php_json, php_xml
from bufsync.sandbox.moodle.store import Store

RELEASE = "4.5dev+ (Build: 20240903)"
VERSION = "2024090300"


@dataclass
class WsFunction:
    name: str
    params: Single
    handler: Callable[[Site, dict[str, Any]], Any]
    returns: Any = None
    version: str = VERSION
    transactional: bool = True


FUNCTIONS: dict[str, WsFunction] = {}
ADMIN_ACTIONS: dict[str, Callable[..., Any]] = {}
INSTALLERS: list[Callable[[Site], None]] = []
# $CFG settings the sandbox knows, with a fresh site's values (the lab site's time zone); function modules add theirs.
# Read with Site.cfg(), changed with the admin action set_config (kept in sandbox_config as "cfg:<name>").
CONFIG_DEFAULTS: dict[str, str] = {"timezone": "Europe/London", "forcetimezone": "99"}

# The functions of the token's service, in the order site info lists them: those of the recorded site's service
# (tests/integration/contract/moodle-ws), then those bufsync's service has beyond it (BEYOND_RECORDED).
SERVICE_FUNCTIONS: list[tuple[str, str]] = [
    ("core_webservice_get_site_info", VERSION), ("core_user_create_users", VERSION),
    ("core_user_update_users", VERSION), ("core_user_get_users_by_field", VERSION),
    ("core_user_delete_users", VERSION), ("core_course_create_courses", VERSION),
    ("core_course_get_courses_by_field", VERSION), ("core_course_update_courses", VERSION),
    ("core_course_create_categories", VERSION), ("core_course_get_categories", VERSION),
    ("enrol_manual_enrol_users", "2024042200"), ("enrol_manual_unenrol_users", "2024042200"),
    ("core_enrol_get_enrolled_users", VERSION), ("core_cohort_create_cohorts", VERSION),
    ("core_cohort_add_cohort_members", VERSION), ("core_group_create_groups", VERSION),
    ("core_group_add_group_members", VERSION), ("gradereport_user_get_grade_items", "2024042200"),
    ("core_completion_get_course_completion_status", VERSION), ("core_user_get_users", VERSION),
    ("core_course_get_courses", VERSION), ("core_course_delete_courses", VERSION),
    ("core_course_search_courses", VERSION), ("core_course_update_categories", VERSION),
    ("core_course_delete_categories", VERSION), ("core_course_get_contents", VERSION),
    ("core_enrol_get_users_courses", VERSION), ("core_enrol_get_course_enrolment_methods", VERSION),
    ("core_cohort_get_cohorts", VERSION), ("core_cohort_search_cohorts", VERSION),
    ("core_cohort_update_cohorts", VERSION), ("core_cohort_delete_cohorts", VERSION),
    ("core_cohort_get_cohort_members", VERSION), ("core_cohort_delete_cohort_members", VERSION),
    ("core_group_get_course_groups", VERSION), ("core_group_get_groups", VERSION),
    ("core_group_update_groups", VERSION), ("core_group_delete_groups", VERSION),
    ("core_group_get_group_members", VERSION), ("core_group_delete_group_members", VERSION),
    ("core_role_assign_roles", VERSION), ("core_role_unassign_roles", VERSION),
    ("gradereport_user_get_grades_table", "2024042200"), ("core_grades_get_gradeitems", VERSION),
    ("core_completion_get_activities_completion_status", VERSION),
    ("core_group_create_groupings", VERSION), ("core_group_get_course_groupings", VERSION),
    ("core_group_assign_grouping", VERSION), ("core_reportbuilder_retrieve_report", VERSION),
    ("tool_mobile_get_config", "2024042200"), ("core_calendar_create_calendar_events", VERSION),
    ("core_calendar_delete_calendar_events", VERSION), ("core_calendar_get_calendar_events", VERSION),
    ("mod_assign_get_assignments", VERSION), ("mod_assign_get_submissions", VERSION),
]
BEYOND_RECORDED = ["core_group_create_groupings", "core_group_get_course_groupings", "core_group_assign_grouping",
                   "core_reportbuilder_retrieve_report", "tool_mobile_get_config",
                   "core_calendar_create_calendar_events", "core_calendar_delete_calendar_events",
                   "core_calendar_get_calendar_events", "mod_assign_get_assignments", "mod_assign_get_submissions"]
_PAD = "\n" + " " * 21
ACCESS_REASONS = _PAD.join([
    "", "There could be multiple reasons for this:",
    "1. The service linked to the user token does not contain the function.",
    "2. The service is user-restricted and the user is not listed.",
    "3. The service is IP-restricted and the user IP is not listed.",
    "4. The service is time-restricted and the time has expired.",
    "5. The token is time-restricted and the time has expired.",
    "6. The service requires a specific capability which the user does not have.",
    "7. The function is called with username/password (no user token is sent)",
    "and none of the services has the function to allow the user.",
    "These settings can be found in Administration > Site administration",
    "> Server > Web services > External services and Manage tokens."])
# webservice_server::authenticate_user() refusing the token's user (lang/en/webservice.php), username appended.
USER_REFUSALS = {
    "wsaccessuserdeleted": "Refused web service access for deleted username: ",
    "wsaccessuserunconfirmed": "Refused web service access for unconfirmed username: ",
    "wsaccessusersuspended": "Refused web service access for suspended username: ",
    "wsaccessusernologin": "Refused web service access for nologin authentication username: ",
}
# Real Moodle functions outside the service (a call gets accessexception, not invalidrecord).
OTHER_MOODLE_FUNCTIONS = {
    "core_course_delete_modules", "core_user_view_user_list", "core_course_duplicate_course",
    "core_course_import_course", "core_message_send_instant_messages", "core_user_add_user_device",
    "core_webservice_get_site_info_legacy", "enrol_self_enrol_user",
}


def ws_function(name: str, params: dict[str, Any], returns: Any = None, version: str = VERSION,
                transactional: bool = True) -> Callable:
    def register(handler: Callable[[Site, dict[str, Any]], Any]) -> Callable:
        FUNCTIONS[name] = WsFunction(name, Single(params), handler, returns, version, transactional)
        return handler
    return register


def admin_action(name: str) -> Callable:
    """A sandbox-only operation (what the recorded site did with PHP CLI), via POST /sandbox/admin."""
    def register(handler: Callable[..., Any]) -> Callable:
        ADMIN_ACTIONS[name] = handler
        return handler
    return register


def installer(handler: Callable[[Site], None]) -> Callable[[Site], None]:
    """Seeds a fresh site (admin, guest, site course, roles, ...), in registration order."""
    INSTALLERS.append(handler)
    return handler


@dataclass
class SiteConfig:
    token: str = field(default_factory=lambda: _secrets.token_hex(16))
    debug: bool = False
    max_input_vars: int = 5000
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    allow_accounts_same_email: bool = False
    site_url: str = "http://127.0.0.1:8081"
    sitename: str = "Lab"


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Site:
    """One emulated Moodle site. `call` is the whole REST endpoint, transport excluded."""

    def __init__(self, config: SiteConfig | None = None, data_path: str | None = None) -> None:
        _load_functions()
        self.config = config or SiteConfig()
        self.store = Store(data_path)
        self.lock = threading.RLock()
        self.calls: dict[str, int] = {}
        self.after_commit: list[Callable[[], None]] = []
        self.clock: int | None = None  # None: the wall clock; else the time a test set (admin action `clock`)
        with self.store.transaction():
            if self.store.fresh:
                for install in INSTALLERS:
                    install(self)
                self.store.x("INSERT INTO sandbox_config (name, value) VALUES ('installed', ?)",
                             (str(int(time.time())),))
            self.store.x("INSERT INTO ws_token (token, userid, validuntil) VALUES (?, 2, 0) "
                         "ON CONFLICT(token) DO NOTHING", (self.config.token,))

    # -- helpers for function modules -------------------------------------------------------
    def now(self) -> int:
        """Every time the site records (grades, enrolments, courses) and checks (tokens) comes from here."""
        return int(time.time()) if self.clock is None else self.clock

    def cfg(self, name: str) -> str:
        """$CFG->name: what set_config stored, else the fresh site's value (CONFIG_DEFAULTS)."""
        row = self.store.one("SELECT value FROM sandbox_config WHERE name = ?", (f"cfg:{name}",))
        return str(row["value"]) if row is not None else CONFIG_DEFAULTS[name]

    @property
    def debug(self) -> bool:
        return self.config.debug

    def rest_enabled(self) -> bool:
        """Web services and the REST protocol are on (admin action `service` with rest=False turns them off)."""
        row = self.store.one("SELECT value FROM sandbox_config WHERE name = 'service'")
        return bool(json.loads(row["value"]).get("rest", True)) if row else True

    def service_functions(self) -> list[tuple[str, str]]:
        """The functions the token's service allows now: none when an admin disabled it, fewer when some were
        removed (admin action `service`); a call to any other gets accessexception."""
        row = self.store.one("SELECT value FROM sandbox_config WHERE name = 'service'")
        state = json.loads(row["value"]) if row else {}
        if not state.get("enabled", True):
            return []
        removed = set(state.get("removed", ()))
        return [(name, version) for name, version in SERVICE_FUNCTIONS if name not in removed]

    def download_files(self) -> bool:
        """The service's "Can download files" (off, as on the recorded site, until admin action `service` with
        downloadfiles=True): webservice/pluginfile.php refuses the token without it."""
        row = self.store.one("SELECT value FROM sandbox_config WHERE name = 'service'")
        return bool(json.loads(row["value"]).get("downloadfiles", False)) if row else False

    def authenticate(self, token: Any) -> int:
        """webservice::authenticate_user(): the token's user id (also set as self.userid), or Moodle's refusal."""
        row = self.store.one("SELECT userid, validuntil FROM ws_token WHERE token = ?", (str(token),)) \
            if isinstance(token, str) else None
        if row is None:
            raise WsError("core\\exception\\moodle_exception", "invalidtoken", "Invalid token - token not found")
        if row["validuntil"] and row["validuntil"] < self.now():
            self.store.x("DELETE FROM ws_token WHERE token = ?", (token,))  # as Moodle does: next time invalidtoken
            raise WsError("webservice_access_exception", "accessexception", "Access control exception",
                          "Invalid token - token expired - check validuntil time for the token")
        user = self.store.row("SELECT username, deleted, confirmed, suspended, auth FROM user WHERE id = ?",
                              (row["userid"],))
        refusals = (("wsaccessuserdeleted", user["deleted"]), ("wsaccessuserunconfirmed", not user["confirmed"]),
                    ("wsaccessusersuspended", user["suspended"]), ("wsaccessusernologin", user["auth"] == "nologin"))
        for code, refused in refusals:
            if refused:  # webservice_server::authenticate_user(), in this order
                raise WsError("core\\exception\\moodle_exception", code, USER_REFUSALS[code] + user["username"])
        self.userid = int(row["userid"])
        return self.userid

    # -- the REST endpoint -----------------------------------------------------------------
    def call(self, pairs: list[tuple[str, str]]) -> Response:
        """Form fields in request order (query string then body), as PHP receives them."""
        pairs = truncate_input_vars(pairs, self.config.max_input_vars)
        form = parse_php_form(pairs)
        fmt = form.get("moodlewsrestformat")
        use_json = fmt == "json"
        try:
            result, function = self._dispatch(form)
        except WsError as error:
            if use_json:
                return Response(200, JSON_TYPE, error_json(error, self.debug))
            return Response(200, XML_TYPE, error_xml(error, self.debug))
        if use_json:
            return Response(200, JSON_TYPE, php_json(result))
        return Response(200, XML_TYPE, php_xml(result, function.returns))

    def _dispatch(self, form: dict[Any, Any]) -> tuple[Any, WsFunction]:
        with self.lock:
            userid = self.authenticate(form.get("wstoken"))
        name = form.get("wsfunction")
        if not isinstance(name, str):
            raise invalid_parameter("Missing function name")
        service = dict(self.service_functions())
        if name not in service:
            if name in OTHER_MOODLE_FUNCTIONS or name in FUNCTIONS:
                raise WsError(
                    "webservice_access_exception", "accessexception", "Access control exception",
                    f"Access to the function {name}() is not allowed."
                    + ACCESS_REASONS)
            raise missing_record("invalidrecord", "Can't find data record in database table external_functions.",
                                 "external_functions", "name = ?", [name])
        function = FUNCTIONS.get(name)
        if function is None:
            raise WsError("core\\exception\\moodle_exception", "sandboxnotemulated",
                          f"The bufsync sandbox does not emulate {name}")
        params = {k: v for k, v in form.items() if k not in ("wstoken", "wsfunction", "moodlewsrestformat")}
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.userid = userid
            if function.transactional:
                with self.store.transaction():
                    cleaned = validate_parameters(function.params, params)
                    result = function.handler(self, cleaned)
            else:
                cleaned = validate_parameters(function.params, params)
                result = function.handler(self, cleaned)
            hooks, self.after_commit = self.after_commit, []
        for hook in hooks:
            hook()  # e.g. a welcome mail that fails after the enrolment was saved
        return result, function

    # -- sandbox administration -----------------------------------------------------------
    def admin(self, action: str, args: dict[str, Any]) -> Any:
        handler = ADMIN_ACTIONS.get(action)
        if handler is None:
            raise KeyError(f"unknown sandbox admin action {action!r}; known: {', '.join(sorted(ADMIN_ACTIONS))}")
        with self.lock, self.store.transaction():
            return handler(self, **args)

    def close(self) -> None:
        self.store.close()


@admin_action("clock")
def admin_clock(site: Site, at: int | None = None, advance: int = 0, wall: bool = False) -> dict[str, int]:
    """A clock the caller drives: stopped at `at` (default: now) and moved on by `advance` seconds, so a test
    says when things happen instead of waiting for the wall clock; `wall` goes back to the wall clock."""
    site.clock = None if wall else (site.now() if at is None else int(at)) + int(advance)
    return {"now": site.now()}


@admin_action("set_config")
def admin_set_config(site: Site, name: str, value: str) -> dict[str, str]:
    """set_config() for a setting the sandbox knows (CONFIG_DEFAULTS): the site's time zone (`timezone`,
    `forcetimezone`: "99" lets each user's own zone count), gradebook settings (grade_report_showonlyactiveenrol)."""
    if name not in CONFIG_DEFAULTS:
        raise ValueError(f"unknown setting {name!r}; the sandbox knows {', '.join(sorted(CONFIG_DEFAULTS))}")
    site.store.x("INSERT OR REPLACE INTO sandbox_config (name, value) VALUES (?, ?)", (f"cfg:{name}", str(value)))
    return {name: str(value)}


def _load_functions() -> None:
    """Import every function module once (each registers its functions, tables and installers)."""
    from bufsync.sandbox.moodle import functions  # noqa: F401


def per_item(site: Site, items: list[dict[str, Any]], item: str, apply: Callable[[Site, dict[str, Any]], None],
             ) -> list[dict[str, Any]]:
    """Moodle's per-item calls (update_users, update_courses): each item in its own transaction;
    a failure becomes a warning {item, itemid, warningcode, message} and the others are saved."""
    warnings = []
    for record in items:
        try:
            with site.store.transaction():
                apply(site, record)
        except WsError as exc:
            warnings.append({"item": item, "itemid": record["id"], "warningcode": exc.errorcode,
                             "message": exc.message})
    return warnings
