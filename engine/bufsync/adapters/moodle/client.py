"""The Moodle client bufsync uses: typed calls, batching, isolation, read-back, 1C texts."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.isolation import bisect, chunk_by_fields, field_budget
from bufsync.adapters.moodle.rules import (
    CATEGORY_COLUMNS,
    CATEGORY_TEXT_TYPES,
    COURSE_COLUMNS,
    COURSE_TEXT_TYPES,
    NOT_FOR_NEW_USERS,
    STANDARD_AUTH_PLUGINS,
    USER_COLUMNS,
    USER_TEXT_TYPES,
    PasswordPolicy,
    clean_username,
    field_problem,
    is_plugin_name,
    validate_email,
)
from bufsync.adapters.moodle.transport import Transport
from bufsync.reconcile.adapter import Outcome

if TYPE_CHECKING:
    from bufsync.config import MoodleSettings

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("bufsync.moodle")
_in_worker = threading.local()  # set in the client's worker threads: work they start runs in place
# Courses and categories are created and moved one call after another: Moodle renumbers the sort order of
# the whole category tree on each (fix_course_sortorder), which concurrent calls fight over; measured on the
# lab Moodle 4.5, 60 courses took 2.1-4.1 s in one call and 3.4-5.0 s in three parallel ones
COURSES_IN_PARALLEL = False
MIN_SPREAD = 25  # a list is split over the calls in flight only down to this many items a call

# What bufsync calls; `bufsync check` names the ones the site's service lacks.
REQUIRED_FUNCTIONS = (
    "core_webservice_get_site_info", "core_user_create_users", "core_user_update_users",
    "core_user_get_users_by_field", "core_user_get_users", "core_user_delete_users",
    "core_course_create_categories", "core_course_get_categories", "core_course_create_courses",
    "core_course_update_courses", "core_course_get_courses_by_field", "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users", "core_role_unassign_roles", "core_enrol_get_enrolled_users",
    "core_cohort_create_cohorts", "core_cohort_add_cohort_members", "core_cohort_delete_cohort_members",
    "core_cohort_search_cohorts", "core_cohort_get_cohorts", "core_cohort_update_cohorts",
    "core_cohort_get_cohort_members",
    "core_group_create_groups", "core_group_add_group_members", "core_group_get_course_groups",
    "core_group_update_groups", "core_group_create_groupings", "core_group_get_course_groupings",
    "core_group_assign_grouping", "core_group_delete_group_members", "core_group_get_group_members",
    "gradereport_user_get_grade_items", "core_completion_get_course_completion_status",
)


def failed(error: MoodleError, text: str | None = None) -> Outcome:
    """A record Moodle refused, with the Russian text for sync_error (ending with Moodle's code)."""
    return Outcome(False, error=text or messages.from_moodle(error), code=error.code)


class MoodleClient:
    def __init__(self, transport: Transport, *, max_input_vars: int = 5000,
                 password_policy: PasswordPolicy | None = None, margin: float = 0.05, concurrency: int = 1,
                 batch_items: int | None = None) -> None:
        self.transport = transport
        self.budget = field_budget(max_input_vars, margin)
        self.concurrency = max(1, concurrency)
        self.batch_items = batch_items
        self._check_access = False
        self._checking = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pooling = threading.Lock()
        self.password_policy = password_policy
        self._auth_installed: dict[str, bool] = {name: True for name in STANDARD_AUTH_PLUGINS}
        self._profile_fields: set[str] = set()  # custom profile fields seen holding a value: they exist

    @classmethod
    def connect(cls, url: str, token: str, **kwargs: Any) -> MoodleClient:
        transport_keys = {"timeout", "verify", "attempts", "backoff"}
        transport = Transport(url, token, **{k: v for k, v in kwargs.items() if k in transport_keys})
        return cls(transport, **{k: v for k, v in kwargs.items() if k not in transport_keys})

    @classmethod
    def configured(cls, moodle: MoodleSettings, **kwargs: Any) -> MoodleClient:
        """A client as the `moodle:` settings make it (a sync, a portal's run, a dispatcher's downloads);
        ConfigError when the URL or the token is not set."""
        from bufsync.errors import ConfigError
        if not moodle.url or moodle.token is None:
            raise ConfigError("BUFSYNC_MOODLE_URL and BUFSYNC_MOODLE_TOKEN (moodle.url, moodle.token) must be set")
        return cls.connect(moodle.url, moodle.token.get_secret_value(), timeout=moodle.timeout,
                           verify=moodle.verify_tls, max_input_vars=moodle.max_input_vars,
                           concurrency=moodle.concurrency, batch_items=moodle.batch_items, **kwargs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.transport.close()

    def __enter__(self) -> MoodleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_access_first(self) -> None:
        """Ask for the site's info before the first call this client makes, so a refused token or service fails
        the run before any write, while a run that calls nothing (nothing changed) costs no call at all."""
        self._check_access = True

    def call(self, function: str, params: dict[str, Any] | None = None, *, write: bool = False) -> Any:
        if self._check_access:
            with self._checking:
                if self._check_access:
                    self.transport.call("core_webservice_get_site_info")
                    self._check_access = False
        return self.transport.call(function, params, write=write)

    def parallel(self, items: Sequence[T], work: Callable[[T], R]) -> list[R]:
        """work(item) for each item, up to `concurrency` calls in flight, results in the items' order.

        Moodle serves calls in parallel (one PHP worker each), so a long list costs about its share of the
        site's workers instead of the sum of its calls. Work started from a worker runs in place, so a pool never
        waits on itself. When one item fails, items not started yet are not started and the first failure is
        raised once those in flight have finished: no write is begun after a failure.
        """
        if self.concurrency <= 1 or len(items) <= 1 or getattr(_in_worker, "active", False):
            return [work(item) for item in items]

        def run(item: T) -> R:
            _in_worker.active = True
            try:
                return work(item)
            finally:
                _in_worker.active = False

        with self._pooling:
            if self._pool is None:  # kept for the client's life: threads are started once, not per list
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="moodle")
        futures = [self._pool.submit(run, item) for item in items]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:  # after a failure: what has not started does not start
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.exception()  # wait for those in flight: their writes end before the caller goes on

    def _batches(self, items: Sequence[dict[str, Any]], list_name: str, parallel: bool = True) -> list[list[int]]:
        """Indexes of items per call: within max_input_vars and `batch_items`, and, where the calls may run in
        parallel, split so that the list fills the calls in flight."""
        cap = self.batch_items
        if parallel and self.concurrency > 1:
            spread = max(MIN_SPREAD, -(-len(items) // self.concurrency))
            cap = min(cap, spread) if cap else spread
        return list(chunk_by_fields(items, list_name, self.budget, cap))

    def _idempotent(self, function: str, params: dict[str, Any]) -> Any:
        """A write that states the wanted end state: when its answer is lost, send it again (retry.py)."""
        return self.transport.policy.resend(lambda: self.call(function, params, write=True))

    # -- site -------------------------------------------------------------------------------
    def site_info(self) -> dict[str, Any]:
        return self.call("core_webservice_get_site_info")

    def missing_functions(self, required: Iterable[str] = REQUIRED_FUNCTIONS) -> list[str]:
        present = {f["name"] for f in self.site_info().get("functions", [])}
        return [name for name in required if name not in present]

    # -- reads, batched by the values they carry --------------------------------------------
    def get_users_by_field(self, field: str, values: Sequence[str | int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        values = list(dict.fromkeys(values))
        step = max(1, self.budget - 1)
        for start in range(0, len(values), step):
            chunk = values[start:start + step]
            out += self.call("core_user_get_users_by_field", {"field": field, "values": chunk})
        return out

    def find_users_by_email(self, email: str) -> list[dict[str, Any]]:
        """Case-insensitive exact match (core_user_get_users uses LIKE; filter its wildcards out)."""
        result = self.call("core_user_get_users", {"criteria": [{"key": "email", "value": email}]})
        return [u for u in result.get("users", []) if u.get("email", "").lower() == email.lower()]

    # -- users ------------------------------------------------------------------------------
    def prevalidate_user(self, user: dict[str, Any], creating: bool) -> Outcome | None:
        """Moodle's rules checked here, so the reason is exact even on a production site."""
        username = user.get("username")
        if creating or username is not None:
            if not username:
                return Outcome.rejected(messages.missing_field("username"))
            if clean_username(str(username)) != username:
                return Outcome.rejected(messages.bad_username(str(username)))
        for name in ("firstname", "lastname") if creating else ():
            if not str(user.get(name) or "").strip():
                return Outcome.rejected(messages.missing_field(name))
        email = user.get("email")
        if creating and not email:
            return Outcome.rejected(messages.email_missing())
        if email == "" and not creating:
            return Outcome.rejected(messages.email_cleared(), "useremailinvalid")
        if email is not None and not validate_email(str(email)):
            return Outcome.rejected(messages.bad_email(str(email)))
        auth = user.get("auth")
        if auth is not None:
            why = self._auth_problem(str(auth), creating)
            if why:
                return Outcome.rejected(messages.bad_auth(str(auth), why))
        refused = _field_check(user, USER_TEXT_TYPES, USER_COLUMNS)
        if refused:
            return refused
        for field in user.get("customfields") or ():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", str(field.get("type") or "")):  # PARAM_ALPHANUMEXT
                return Outcome.rejected(messages.bad_profile_field_name(str(field.get("type") or "")))
        password = user.get("password")
        if creating and not password and not user.get("createpassword"):
            return Outcome.rejected(messages.missing_field("password"))
        if password and self.password_policy is not None:
            problems = self.password_policy.errors_ru(str(password))
            if problems:
                return Outcome.rejected(messages.weak_password(problems), "passwordpolicy")
        return None

    def _auth_problem(self, auth: str, creating: bool) -> str | None:
        """Why Moodle would refuse this auth (PARAM_AUTH: an installed auth plugin), or None.

        A name outside the standard plugins is asked once per run with an update of user id 0: Moodle
        validates auth before looking the user up, so it answers invalidparameter for a plugin it lacks and
        a harmless invaliduserid warning for one it has; nothing is written.
        """
        if not is_plugin_name(auth):
            return "name"
        if creating and auth in NOT_FOR_NEW_USERS:
            return "new"
        if auth not in self._auth_installed:
            try:
                self.call("core_user_update_users", {"users": [{"id": 0, "auth": auth}]})
                self._auth_installed[auth] = True
            except MoodleError as error:
                if error.is_access_error:
                    raise
                self._auth_installed[auth] = error.errorcode != "invalidparameter"
        return None if self._auth_installed[auth] else "missing"

    def create_users(self, users: Sequence[dict[str, Any]]) -> list[Outcome]:
        """All-or-nothing in Moodle; here each bad user fails alone, the others are created."""
        results: list[Outcome | None] = [self.prevalidate_user(u, creating=True) for u in users]
        seen: dict[str, int] = {}
        for index, user in enumerate(users):
            if results[index] is None:
                name = user["username"]
                if name in seen:
                    results[index] = Outcome.rejected(messages.username_twice(name))
                seen.setdefault(name, index)
        pending = [i for i, r in enumerate(results) if r is None]

        def send(items: list[int]) -> list[Outcome]:
            outcome = bisect(items, lambda idx: self._create_users_batch([users[i] for i in idx]))
            return [self._explain_user_failure(users[index], result) if isinstance(result, MoodleError) else result
                    for index, result in zip(items, outcome, strict=True)]

        self._fill(results, pending, "users", [users[i] for i in pending], send)
        done = [r for r in results if r is not None]
        self._confirm_profile_fields(users, done)
        return done

    def _create_users_batch(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        """One call; a lost answer is settled by reading back (retry.py), a silently truncated batch by sending
        the rest again."""
        found: dict[str, int] = {}  # read back after a lost answer: created by an earlier send

        def read_back(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found.update({c["username"]: int(c["id"]) for c in self._read_back_users(sent)})
            return [u for u in sent if u["username"] not in found]

        sent, created = self.transport.policy.settle(
            batch, lambda users: self.call("core_user_create_users", {"users": users}, write=True), read_back,
            "users by username")
        ids = {c["username"]: int(c["id"]) for c in created or ()}
        rest = [u for u in sent if u["username"] not in ids]
        if rest and not ids:
            raise MoodleError("truncated", "truncated", "Moodle created none of the users sent and said nothing",
                              None, "core_user_create_users")
        later: dict[str, Outcome] = {}
        if rest:
            # max_input_vars cut the tail silently: send the rest again
            log.warning("Moodle created %d of %d users; sending the other %d again", len(ids), len(sent), len(rest))
            later = {u["username"]: r for u, r in zip(rest, self.create_users(rest), strict=False)}
        ids.update(found)
        return [Outcome(True, ids[u["username"]]) if u["username"] in ids else later[u["username"]]
                for u in batch]

    def _read_back_users(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Users of this batch that exist now (same username and idnumber): the write happened."""
        wanted = {u["username"]: u for u in batch}
        found = self.get_users_by_field("username", list(wanted))
        return [{"id": u["id"], "username": u["username"]} for u in found
                if str(u.get("idnumber", "")) == str(wanted[u["username"]].get("idnumber") or "")]

    def _explain_user_failure(self, user: dict[str, Any], error: MoodleError) -> Outcome:
        """Production Moodle says only `invalidparameter`: find the real reason."""
        if error.errorcode and "Password" in error.errorcode and self.password_policy is None:
            return failed(error, messages.weak_password(PasswordPolicy().errors_ru(
                str(user.get("password") or ""))))
        if error.errorcode == "invalidparameter":
            debug = error.debuginfo or ""
            try:
                if "Username already exists" in debug or self.get_users_by_field("username", [user["username"]]):
                    return failed(error, messages.username_taken(user["username"]))
                if "Email address already exists" in debug or (
                        user.get("email") and self.find_users_by_email(user["email"])):
                    return failed(error, messages.email_taken(user["email"]))
            except MoodleError:
                pass
        return failed(error)

    def update_users(self, users: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Per user in Moodle: valid ones are saved, bad ones come back as warnings."""
        results: list[Outcome | None] = [self.prevalidate_user(u, creating=False) for u in users]
        pending = [i for i, r in enumerate(results) if r is None]

        def send(items: list[int]) -> list[Outcome]:
            outcome = bisect(items, lambda idx: self._update_users_batch([users[i] for i in idx]))
            return [failed(result) if isinstance(result, MoodleError) else result for result in outcome]

        self._fill(results, pending, "users", [users[i] for i in pending], send)
        done = [r for r in results if r is not None]
        self._confirm_profile_fields(users, done)
        return done

    def _fill(self, results: list[Outcome | None], pending: list[int], list_name: str,
              todo: list[dict[str, Any]], send: Callable[[list[int]], list[Outcome]]) -> None:
        """Send the records at `pending` (their dicts: `todo`) in batches, in parallel; results in place."""
        batches = [[pending[i] for i in batch] for batch in self._batches(todo, list_name)]
        for batch, outcome in zip(batches, self.parallel(batches, send), strict=True):
            for index, result in zip(batch, outcome, strict=False):
                results[index] = result

    def _confirm_profile_fields(self, users: Sequence[dict[str, Any]], results: list[Outcome]) -> None:
        """Moodle skips customfields it has no profile field for without a word (profile_save_data saves only the
        fields it has): read the users back and put a warning on each whose value was not stored.

        A field seen holding a value exists; it is not read back again in this run.
        """
        todo: list[tuple[Outcome, set[str]]] = []
        for user, result in zip(users, results, strict=False):
            sent = {str(c.get("type")) for c in user.get("customfields") or () if str(c.get("value") or "") != ""}
            unconfirmed = sent - self._profile_fields
            if result.ok and result.remote_id is not None and unconfirmed:
                todo.append((result, unconfirmed))
        if not todo:
            return
        held = {int(u["id"]): {str(c.get("shortname")) for c in u.get("customfields") or ()}
                for u in self.get_users_by_field("id", [r.remote_id for r, _ in todo if r.remote_id is not None])}
        for result, unconfirmed in todo:
            self._profile_fields |= unconfirmed & held.get(int(result.remote_id or 0), set())
        for result, unconfirmed in todo:
            missing = sorted(unconfirmed - self._profile_fields)
            if missing:
                result.warning = messages.profile_fields_missing(missing)

    def _update_users_batch(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        # an update sends the wanted values: sending it again is harmless
        answer = self._idempotent("core_user_update_users", {"users": batch})
        return _per_item_results(batch, answer, "core_user_update_users")

    def delete_users(self, ids: Sequence[int]) -> list[Outcome]:
        def send(batch: list[int]) -> list[Outcome]:
            self.call("core_user_delete_users", {"userids": batch}, write=True)
            return [Outcome(True, i) for i in batch]
        out = bisect(list(ids), send)
        return [failed(r) if isinstance(r, MoodleError) else r for r in out]

    # -- categories and courses -------------------------------------------------------------
    def get_categories(self, criteria: Sequence[dict[str, str]] = (), subcategories: bool = True) -> list[dict]:
        return self.call("core_course_get_categories",
                         {"criteria": list(criteria), "addsubcategories": subcategories})

    def create_categories(self, categories: Sequence[dict[str, Any]]) -> list[Outcome]:
        return self._prevalidated(categories, self.prevalidate_category, lambda todo: self._create_all_or_nothing(
            "core_course_create_categories", "categories", todo,
            lambda c: self.get_categories([{"key": "idnumber", "value": c["idnumber"]}])))

    @staticmethod
    def prevalidate_category(category: dict[str, Any]) -> Outcome | None:
        """Tags in the name (PARAM_TEXT refuses them) and lengths, named exactly (Moodle: categorytoolong...)."""
        return _field_check(category, CATEGORY_TEXT_TYPES, CATEGORY_COLUMNS)

    @staticmethod
    def prevalidate_course(course: dict[str, Any]) -> Outcome | None:
        """Tags in the names (PARAM_TEXT) and lengths: Moodle's answer to a long name is only dmlwriteexception."""
        return _field_check(course, COURSE_TEXT_TYPES, COURSE_COLUMNS)

    @staticmethod
    def _prevalidated(records: Sequence[dict[str, Any]], check: Any, send: Any) -> list[Outcome]:
        """Records refused by a local rule fail alone with the exact reason; the others go to Moodle."""
        results: list[Outcome | None] = [check(r) for r in records]
        todo = [i for i, r in enumerate(results) if r is None]
        for index, result in zip(todo, send([records[i] for i in todo]) if todo else [], strict=False):
            results[index] = result
        return [r for r in results if r is not None]

    def get_courses_by_field(self, field: str = "", value: str | int = "") -> list[dict[str, Any]]:
        params = {"field": field, "value": value} if field else {}
        return self.call("core_course_get_courses_by_field", params).get("courses", [])

    def create_courses(self, courses: Sequence[dict[str, Any]]) -> list[Outcome]:
        return self._prevalidated(courses, self.prevalidate_course, lambda todo: self._create_all_or_nothing(
            "core_course_create_courses", "courses", todo,
            lambda c: [x for x in self.get_courses_by_field("shortname", c["shortname"])
                       if str(x.get("idnumber") or "") == str(c.get("idnumber") or "")]))

    def update_courses(self, courses: Sequence[dict[str, Any]]) -> list[Outcome]:
        def send(todo: list[dict[str, Any]]) -> list[Outcome]:
            def one(batch: list[int]) -> list[Outcome]:
                items = [todo[i] for i in batch]
                answer = self._idempotent("core_course_update_courses", {"courses": items})
                return _per_item_results(items, answer, "core_course_update_courses")
            return [r for rs in self.parallel(self._batches(todo, "courses", COURSES_IN_PARALLEL), one) for r in rs]
        return self._prevalidated(courses, self.prevalidate_course, send)

    def update_categories(self, categories: Sequence[dict[str, Any]]) -> list[Outcome]:
        """All in one call when all are valid (an update states the end state: resent if its answer is lost);
        a bad one is split out by bisection and fails alone."""
        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            self._idempotent("core_course_update_categories", {"categories": batch})
            return [Outcome(True, int(c["id"])) for c in batch]
        return self._prevalidated(categories, self.prevalidate_category, lambda todo: self._isolated(
            todo, "categories", send, lambda item, error: failed(error), parallel=False))

    def delete_courses(self, ids: Sequence[int]) -> list[Outcome]:
        """One result per course: Moodle warns for each it did not delete (an unknown id is already gone)."""
        answer = self._idempotent("core_course_delete_courses", {"courseids": list(ids)})
        kept = [w for w in answer.get("warnings", []) if w.get("warningcode") != "unknowncourseidnumber"]
        return _per_item_results([{"id": i} for i in ids], {"warnings": kept}, "core_course_delete_courses")

    def _create_all_or_nothing(self, function: str, list_name: str, records: Sequence[dict[str, Any]],
                               find: Any, parallel: bool = False) -> list[Outcome]:

        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            """One call; a lost answer is settled by reading back each record (retry.py)."""
            found: dict[int, int] = {}  # index in batch -> id, read back after a lost answer

            def read_back(sent: list[int]) -> list[int]:
                hits = [(i, find(batch[i])) for i in sent]
                found.update({i: int(f[0]["id"]) for i, f in hits if f})
                return [i for i, f in hits if not f]

            sent, created = self.transport.policy.settle(
                list(range(len(batch))),
                lambda indexes: self.call(function, {list_name: [batch[i] for i in indexes]}, write=True),
                read_back, list_name)
            if created is not None and len(created) < len(sent):
                raise MoodleError("truncated", "truncated", f"{len(created)} of {len(sent)} created")
            ids = found | {i: int(c["id"]) for i, c in zip(sent, created or (), strict=False)}
            return [Outcome(True, ids[i]) for i in range(len(batch))]

        def one(batch: list[int]) -> list[Outcome]:
            return [failed(result) if isinstance(result, MoodleError) else result
                    for result in bisect([records[i] for i in batch], send)]

        return [r for rs in self.parallel(self._batches(records, list_name, parallel), one) for r in rs]

    # -- enrolments -------------------------------------------------------------------------
    def enrol(self, enrolments: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Always the full state: Moodle resets omitted dates and reactivates on re-enrol."""
        full = [{"roleid": int(e["roleid"]), "userid": int(e["userid"]), "courseid": int(e["courseid"]),
                 "timestart": int(e.get("timestart") or 0), "timeend": int(e.get("timeend") or 0),
                 "suspend": 1 if e.get("suspend") else 0} for e in enrolments]

        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            self._idempotent("enrol_manual_enrol_users", {"enrolments": batch})
            return [Outcome(True) for _ in batch]

        return self._isolated(full, "enrolments", send, self._explain_enrol_failure)

    def unenrol(self, enrolments: Sequence[dict[str, Any]]) -> list[Outcome]:
        items = [{"userid": int(e["userid"]), "courseid": int(e["courseid"])} for e in enrolments]

        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            self._idempotent("enrol_manual_unenrol_users", {"enrolments": batch})
            return [Outcome(True) for _ in batch]

        return self._isolated(items, "enrolments", send, lambda item, error: failed(error))

    def unassign_roles(self, unassignments: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Course roles taken back (a role whose row 1C removed while another role keeps the enrolment)."""
        items = [{"roleid": int(u["roleid"]), "userid": int(u["userid"]), "contextlevel": "course",
                  "instanceid": int(u["courseid"])} for u in unassignments]

        def send(batch: list[dict[str, Any]]) -> list[Outcome]:
            self._idempotent("core_role_unassign_roles", {"unassignments": batch})
            return [Outcome(True) for _ in batch]

        return self._isolated(items, "unassignments", send, lambda item, error: failed(error))

    def _explain_enrol_failure(self, item: dict[str, Any], error: MoodleError) -> Outcome:
        if error.errorcode is None and "TypeError" in error.exception:
            return failed(error, messages.with_code(
                f"Пользователь Moodle с id {item['userid']} не найден (удалён вручную?)", "TypeError"))
        if error.errorcode == "codingerror":
            return failed(error, messages.with_code(
                f"Пользователь Moodle с id {item['userid']} удалён", "codingerror"))
        if error.errorcode == "invalidparameter":
            return failed(error, messages.with_code(
                f"Курс Moodle с id {item['courseid']} не найден", "invalidparameter"))
        return failed(error)

    def _isolated(self, items: list[dict[str, Any]], list_name: str, send: Any, explain: Any,
                  parallel: bool = True) -> list[Outcome]:
        """Batches sent (in parallel where the records are independent); a bad record fails alone."""
        def one(batch: list[int]) -> list[Outcome]:
            chunk = [items[i] for i in batch]
            return [explain(item, result) if isinstance(result, MoodleError) else result
                    for item, result in zip(chunk, bisect(chunk, send), strict=False)]

        return [r for rs in self.parallel(self._batches(items, list_name, parallel), one) for r in rs]

    def get_enrolled_users(self, courseid: int, **options: Any) -> list[dict[str, Any]]:
        opts = [{"name": k, "value": (1 if v is True else 0 if v is False else v)} for k, v in options.items()]
        return self.call("core_enrol_get_enrolled_users", {"courseid": courseid, "options": opts})

    # -- cohorts, groups, grades, completion: thin typed calls -------------------------------
    def create_cohorts(self, cohorts: Sequence[dict[str, Any]]) -> list[Outcome]:
        return self._create_all_or_nothing(
            "core_cohort_create_cohorts", "cohorts", cohorts,
            lambda c: [x for x in self.search_cohorts(c["idnumber"]) if x.get("idnumber") == c["idnumber"]])

    def search_cohorts(self, query: str) -> list[dict[str, Any]]:
        answer = self.call("core_cohort_search_cohorts", {"query": query, "context": {"contextlevel": "system",
                                                                                     "instanceid": 0},
                                                           "includes": "all"})
        return answer.get("cohorts", [])

    def add_cohort_members(self, members: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.call("core_cohort_add_cohort_members", {"members": list(members)}, write=True)

    def delete_cohort_members(self, members: Sequence[dict[str, int]]) -> None:
        self.call("core_cohort_delete_cohort_members", {"members": list(members)}, write=True)

    def create_groups(self, groups: Sequence[dict[str, Any]]) -> list[Outcome]:
        return self._create_all_or_nothing("core_group_create_groups", "groups", groups,
                                           lambda g: [x for x in self.call("core_group_get_course_groups",
                                                                           {"courseid": g["courseid"]})
                                                      if x.get("name") == g["name"]])

    def add_group_members(self, members: Sequence[dict[str, int]]) -> list[Outcome]:
        def send(batch: list[dict[str, int]]) -> list[Outcome]:
            self.call("core_group_add_group_members", {"members": batch}, write=True)
            return [Outcome(True) for _ in batch]
        return self._isolated(list(members), "members", send, self._explain_member_failure, parallel=False)

    def delete_group_members(self, members: Sequence[dict[str, int]]) -> list[Outcome]:
        def send(batch: list[dict[str, int]]) -> list[Outcome]:
            self.call("core_group_delete_group_members", {"members": batch}, write=True)
            return [Outcome(True) for _ in batch]
        return self._isolated(list(members), "members", send, lambda item, error: failed(error), parallel=False)

    def get_group_members(self, groupids: Sequence[int]) -> list[dict[str, Any]]:
        return list(self.call("core_group_get_group_members", {"groupids": list(groupids)}))

    @staticmethod
    def _explain_member_failure(item: dict[str, int], error: MoodleError) -> Outcome:
        if error.code == "invalidrecord":
            return failed(error, messages.with_code(
                f"Группа Moodle с id {item['groupid']} не найдена (удалена вручную?); она будет создана заново "
                "при полной сверке (bufsync run --full)", "invalidrecord"))
        return failed(error)

    # -- calendar events (an online lesson's join link for its course group) ---------------------
    def create_calendar_events(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """core_calendar_create_calendar_events as Moodle answers it: {events: [...], warnings: [...]}.

        One transaction: an exception (a missing course, an unknown format) creates none of them; an event the
        token's user may not add is skipped with a warning {item: its name, warningcode: nopermissions}. Not
        resent when the answer is lost: a second call would make the events twice."""
        return self.call("core_calendar_create_calendar_events", {"events": list(events)}, write=True)

    def create_group_event(self, courseid: int, groupid: int, name: str, timestart: int, *,
                           timeduration: int = 0, description: str = "", textformat: int = 1,
                           visible: bool = True) -> dict[str, Any]:
        """A calendar event of one course group (eventtype group): the created event (its id, ...).

        Moodle 4.5 checks neither that the group is the course's nor, for a site admin's token, that the group
        exists: the caller must (core_group_get_course_groups). Raises MoodleError when Moodle refused it
        (an exception, or the nopermissions warning it answers for an event the token's user may not add)."""
        answer = self.create_calendar_events([{
            "name": name, "description": description, "format": textformat, "courseid": courseid,
            "groupid": groupid, "eventtype": "group", "timestart": timestart, "timeduration": timeduration,
            "visible": 1 if visible else 0}])
        if answer.get("events"):
            return dict(answer["events"][0])
        warning = (answer.get("warnings") or [{}])[0]
        raise MoodleError("warning", warning.get("warningcode"), warning.get("message", ""), None,
                          "core_calendar_create_calendar_events")

    def delete_calendar_events(self, eventids: Sequence[int], repeat: bool = False) -> None:
        """core_calendar_delete_calendar_events: all or nothing; an unknown id is MoodleError invalidrecord,
        an event the token's user may not delete MoodleError nopermissions (nothing is deleted then)."""
        self.call("core_calendar_delete_calendar_events",
                  {"events": [{"eventid": int(i), "repeat": 1 if repeat else 0} for i in eventids]}, write=True)

    def get_calendar_events(self, *, eventids: Sequence[int] = (), courseids: Sequence[int] = (),
                            groupids: Sequence[int] = (), categoryids: Sequence[int] = (), userevents: bool = True,
                            siteevents: bool = True, timestart: int = 0, timeend: int = 0,
                            ignorehidden: bool = True) -> dict[str, Any]:
        """core_calendar_get_calendar_events: {events: [...], warnings: [...]}.

        Besides the groups and courses asked for, Moodle adds the token user's own events (userevents), site
        events (siteevents) and category events; a course's events are its course-wide ones (groupid 0), a
        group's events come with groupids. For a user without moodle/calendar:manageentries at system level,
        courses it cannot enter and groups it is not in come back as warnings. Events asked by eventids are
        answered as stored (uuid, sequence); the others as Moodle's event mapper gives them (sequence 1,
        absent links null)."""
        return self.call("core_calendar_get_calendar_events", {
            "events": {"eventids": [int(i) for i in eventids], "courseids": [int(i) for i in courseids],
                       "groupids": [int(i) for i in groupids], "categoryids": [int(i) for i in categoryids]},
            "options": {"userevents": int(userevents), "siteevents": int(siteevents), "timestart": timestart,
                        "timeend": timeend, "ignorehidden": int(ignorehidden)}})

    def group_events(self, groupid: int, *, timestart: int = 0, timeend: int = 0) -> list[dict[str, Any]]:
        """The calendar events of one group (hidden ones too), read back from Moodle."""
        answer = self.get_calendar_events(groupids=[groupid], timestart=timestart, timeend=timeend,
                                          ignorehidden=False)
        return [e for e in answer.get("events", []) if e.get("groupid") == groupid]

    # -- assignments, their submissions and files (a portal collecting learners' work) ---------------
    def assignments(self, courseids: Sequence[int]) -> list[dict[str, Any]]:
        """mod_assign_get_assignments for these courses, flattened: every assignment (id, cmid, course: its course
        id, name, duedate, allowsubmissionsfromdate, grade, timemodified, completionsubmit, intro, configs, ...)
        in the courses' order.

        Sent with includenotenrolledcourses=1: without it Moodle answers only courses the token's user is
        enrolled in (a service account is in none). Courses go in batches within max_input_vars. A course Moodle
        cannot open (deleted, hidden from the token's user) comes back as a warning, logged and skipped."""
        ids = [int(i) for i in dict.fromkeys(courseids)]
        out: list[dict[str, Any]] = []
        step = max(1, self.budget - 1)
        for start in range(0, len(ids), step):
            answer = self.call("mod_assign_get_assignments", {"courseids": ids[start:start + step],
                                                              "includenotenrolledcourses": 1})
            _log_warnings("mod_assign_get_assignments", answer)
            out += [dict(a) for course in answer.get("courses", []) for a in course.get("assignments", [])]
        return out

    def submissions(self, assignmentids: Sequence[int], since: int = 0) -> list[dict[str, Any]]:
        """mod_assign_get_submissions: per assignment {assignmentid, submissions: [{id, userid, attemptnumber,
        timecreated, timemodified, status (new, draft, submitted, reopened), groupid, plugins: [{type, name,
        fileareas: [{area, files: [{filename, filepath, filesize, fileurl, timemodified, mimetype, ...}]}],
        editorfields}], gradingstatus}]}, each user's latest attempt modified at or after `since`.

        Moodle leaves out an assignment id it does not know without a warning, and an assignment whose
        submissions are all older than `since` comes back with an empty list (its "No submissions found"
        warning is not logged: it is the usual answer of an incremental read)."""
        ids = [int(i) for i in dict.fromkeys(assignmentids)]
        out: list[dict[str, Any]] = []
        step = max(1, self.budget - 2)
        for start in range(0, len(ids), step):
            answer = self.call("mod_assign_get_submissions", {"assignmentids": ids[start:start + step],
                                                              "since": int(since)})
            _log_warnings("mod_assign_get_submissions", answer, quiet={"3"})
            out += [dict(a) for a in answer.get("assignments", [])]
        return out

    def download(self, fileurl: str, sink: BinaryIO) -> tuple[int, str]:
        """Stream a file Moodle listed (a submission file's fileurl) into sink: (bytes written, SHA-256 hex).

        The token is sent as webservice/pluginfile.php expects it (a `token` field, in the POST body: never in a
        URL) and only to this client's own site (ValueError for another site's URL). The service needs "Can
        download files". Retried like a read; Moodle's refusals are MoodleError (filenotfound, invalidtoken,
        accessexception, invalidrecord), see Transport.download."""
        return self.transport.download(fileurl, sink)

    def activities_completion(self, courseid: int, userid: int) -> list[dict[str, Any]]:
        """core_completion_get_activities_completion_status: the user's state of each activity with completion
        tracking [{cmid, modname, instance, state (0 incomplete, 1 complete, 2 pass, 3 fail), timecompleted,
        tracking, overrideby, hascompletion, isautomatic, istrackeduser, uservisible, details: [{rulename,
        rulevalue: {status, description}}], isoverallcomplete}]; activities without tracking are not listed.
        A rule's status in details is checked live (assign's completionsubmit: submitted now), `state` is what
        Moodle stored."""
        answer = self.call("core_completion_get_activities_completion_status",
                           {"courseid": int(courseid), "userid": int(userid)})
        _log_warnings("core_completion_get_activities_completion_status", answer)
        return [dict(s) for s in answer.get("statuses", [])]

    def grade_items(self, courseid: int, userid: int = 0) -> list[dict[str, Any]]:
        return self.call("gradereport_user_get_grade_items", {"courseid": courseid, "userid": userid}
                         ).get("usergrades", [])

    def course_completion(self, courseid: int, userid: int) -> dict[str, Any]:
        return self.call("core_completion_get_course_completion_status", {"courseid": courseid, "userid": userid})


def _log_warnings(function: str, answer: dict[str, Any], quiet: frozenset[str] | set[str] = frozenset()) -> None:
    """A read's warnings (what Moodle skipped and why) go to the log; none stops the read."""
    for warning in answer.get("warnings") or ():
        if str(warning.get("warningcode")) not in quiet:
            log.warning("%s: %s %s skipped: %s (%s)", function, warning.get("item"), warning.get("itemid"),
                        warning.get("message"), warning.get("warningcode"))


def _field_check(record: dict[str, Any], text_types: dict[str, str], columns: dict[str, int]) -> Outcome | None:
    problem = field_problem(record, text_types, columns)
    if problem is None:
        return None
    return Outcome.rejected(messages.field_problem(problem),
                               "toolong" if problem.kind == "toolong" else "invalidparameter")


def _per_item_results(batch: list[dict[str, Any]], answer: dict[str, Any], function: str) -> list[Outcome]:
    """Calls that work per item answer {warnings: [{itemid, warningcode, message}]}: one result each."""
    warnings = {int(w["itemid"]): w for w in answer.get("warnings", []) if w.get("itemid") is not None}
    out = []
    for record in batch:
        warning = warnings.get(int(record["id"]))
        if warning:
            out.append(failed(MoodleError("warning", warning.get("warningcode"),
                                                     warning.get("message", ""), None, function)))
        else:
            out.append(Outcome(True, int(record["id"])))
    return out
