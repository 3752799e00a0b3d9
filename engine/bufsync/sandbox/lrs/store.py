"""The emulated LRS's state and rules: statements by id, credentials, the size and rate limits, the clock.

Learning Locker's rules for a POST (storeStatements/, getUnstoredModels.ts): every statement is validated first
(one bad statement refuses the batch); a client-chosen id twice in one batch is 400 "… is duplicated in the
current batch"; an id already stored with a different hash is 409 "… is conflicting" and nothing of the batch
is stored; an id stored with the same hash is left alone; the answer is every statement's id in input order,
the known ones included, so a resent batch answers exactly as the first time did. Statements without an id get
a fresh UUID (and skip the duplicate check). Time is `Lrs.now()`: the wall clock, or a stopped clock
(`LrsConfig.clock`) that `move_clock` moves, so tests of `since`, `stored` and the rate limit never wait.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from bufsync.sandbox.clock import StoppableClock
from bufsync.sandbox.lrs.validate import check, fingerprint, prepare, with_object_types

VERSION = "1.0.3"


def _key() -> str:
    return secrets.token_hex(20)  # LL's client keys and secrets are 40 hex digits


@dataclass
class LrsConfig:
    """The knobs. Defaults are Learning Locker's behaviour where it is known; the limits U2035 sets are not
    public (docs: open question 8), so the size limit is generous and the rate limit off unless asked for.
    The default credentials are one random key/secret pair per sandbox; with a data file they are saved at the
    first start and read back on every later start, so what a user pasted into bufsync's settings stays valid."""
    credentials: dict[str, str] = field(default_factory=lambda: {_key(): _key()})  # Basic key -> secret
    read_only: set[str] = field(default_factory=set)   # keys with statements/read only: a write is 403
    authority_name: str = "New Client"                 # LL's default client name, in `authority`
    authority_mbox: str = "mailto:hello@learninglocker.net"
    base_path: str = "/data/xAPI"                      # where the xAPI resources live, as on the U2035 host
    max_body: int = 10 * 1024 * 1024                   # a larger request body: 413
    rate_limit: int = 0                                # requests per key per rate_window (0: no limit) ...
    rate_window: float = 60.0                          # ... over it: 429 with Retry-After
    page_size: int = 100                               # statements per GET page; `limit` 0 or above it gets this
    clock: float | None = None                         # a stopped clock (epoch seconds); None: the wall clock


class Refusal(Exception):
    """An xAPI error answer: status and LL's `{errorId, message}` (plus `warnings` for validation)."""

    def __init__(self, status: int, message: str, warnings: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.warnings, self.headers = status, message, warnings, headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errorId": str(uuid.uuid4()), "message": self.message}
        if self.warnings is not None:
            body["warnings"] = self.warnings
        return body


def iso(moment: float) -> str:
    """LL's form of a time it sets: UTC with milliseconds and Z (JavaScript's toISOString)."""
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_time(text: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refusal(400, f"Expected '{name}' to be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class Stored:
    seq: int              # order of storing (ties of `stored` on a stopped clock keep it)
    stored: float
    key: str              # the credential that stored it
    hash: str
    statement: dict[str, Any]


class Lrs(StoppableClock):
    def __init__(self, config: LrsConfig | None = None, path: str | None = None) -> None:
        self.config = config or LrsConfig()
        self.path = path  # the JSON file kept between runs (rewritten after each change)
        self.lock = threading.Lock()
        self.clock = self.config.clock
        self.statements: dict[str, Stored] = {}
        self.calls: Counter[str] = Counter()       # "POST /statements" -> requests received (every one)
        self.answers: Counter[str] = Counter()     # "POST /statements 409" -> answers given
        self.received: Counter[str] = Counter()    # statement id -> times it came in an accepted POST or PUT
        self.windows: dict[str, tuple[int, int]] = {}  # key -> (rate window number, requests in it)
        self._seq = 0
        if path and os.path.exists(path):
            self._load()
        elif path:
            self._save()  # the credentials are kept from the first start on

    # -- time and persistence ---------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        with open(self.path, encoding="utf-8") as handle:
            saved = json.load(handle)
        self.config.credentials = saved["credentials"]  # what users pasted stays valid
        self.statements = {row["statement"]["id"]: Stored(**row) for row in saved["statements"]}
        self._seq = max((s.seq for s in self.statements.values()), default=0)

    def _save(self) -> None:
        if not self.path:
            return
        rows = [vars(s) for s in sorted(self.statements.values(), key=lambda s: s.seq)]
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"credentials": self.config.credentials, "statements": rows}, handle, ensure_ascii=False)
        os.replace(temporary, self.path)

    # -- what tests read -----------------------------------------------------------------------------
    def stored(self, statement_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.statements.get(statement_id)
            return json.loads(json.dumps(found.statement)) if found else None

    def all(self) -> list[dict[str, Any]]:
        """Every stored statement, in the order stored."""
        with self.lock:
            return [json.loads(json.dumps(s.statement)) for s in sorted(self.statements.values(),
                                                                          key=lambda s: s.seq)]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"statements": len(self.statements), "calls": dict(self.calls), "answers": dict(self.answers),
                    "received": dict(self.received), "ids": [s.statement["id"] for s in
                                                              sorted(self.statements.values(), key=lambda s: s.seq)]}

    # -- the limits ----------------------------------------------------------------------------------
    def authorise(self, key: str | None, secret: str | None, write: bool) -> str:
        if key is None or self.config.credentials.get(key) != secret:
            raise Refusal(401, "Unauthorised")
        if write and key in self.config.read_only:
            raise Refusal(403, "Forbidden: the client's scopes do not allow writing statements")
        return key

    def count_rate(self, key: str) -> None:
        """At most rate_limit requests per key in a clock window of rate_window seconds; a refused request is not
        counted. Retry-After is the whole seconds to the window's end."""
        limit = self.config.rate_limit
        if limit <= 0:
            return
        now = self.now()
        window = int(now // self.config.rate_window)
        current, used = self.windows.get(key, (window, 0))
        if current != window:
            used = 0
        if used >= limit:
            wait = max(1, math.ceil((window + 1) * self.config.rate_window - now))
            raise Refusal(429, f"Too many requests: at most {limit} per {self.config.rate_window:g} s",
                          headers={"Retry-After": str(wait)})
        self.windows[key] = (window, used + 1)

    # -- writing -------------------------------------------------------------------------------------------
    def post(self, body: Any, key: str) -> list[str]:
        """Store a statement or a list of them; the ids in input order (LL's storeStatements)."""
        batch = body if isinstance(body, list) else [body]
        if isinstance(body, list) and not body:
            raise Refusal(400, "No statements in request content")
        where = "statements.{}" if isinstance(body, list) else "statement"
        return self._store(batch, key, [where.format(n) for n in range(len(batch))])

    def put(self, body: Any, key: str, statement_id: str) -> None:
        """PUT /statements?statementId=: one statement under the id in the query (its own id, if any, must
        match); stored, or left alone when identical; 409 when different."""
        if isinstance(body, dict) and "id" in body and body["id"] != statement_id:
            raise Refusal(400, f"Statement id must match the query param ({statement_id})")
        if not isinstance(body, dict):
            raise Refusal(400, "Problem in 'statement': expected a statement object",
                          ["Problem in 'statement': expected a statement object"])
        self._store([{**body, "id": statement_id}], key, ["statement"])

    def _store(self, batch: list[Any], key: str, paths: list[str]) -> list[str]:
        prepared = [prepare(s) for s in batch]
        warnings = [w for statement, path in zip(prepared, paths, strict=True) for w in check(statement, path)]
        if warnings:
            raise Refusal(400, "; ".join(warnings), warnings)
        now = self.now()
        models: list[tuple[dict[str, Any], str, bool]] = []  # statement, hash, generated id
        seen: set[str] = set()
        for statement in prepared:
            generated = "id" not in statement
            typed = with_object_types(statement)
            if generated:
                typed = {"id": str(uuid.uuid4()), **typed}
            elif typed["id"] in seen:
                raise Refusal(400, f"{typed['id']} is duplicated in the current batch")
            seen.add(typed["id"])
            models.append((typed, fingerprint(typed), generated))
        unstored = []
        for typed, digest, generated in models:
            known = None if generated else self.statements.get(typed["id"])
            if known is None:
                unstored.append((typed, digest))
            elif known.hash != digest:
                raise Refusal(409, f"{typed['id']} is conflicting")
        for typed, digest in unstored:
            self._seq += 1
            full = dict(typed)
            full.setdefault("timestamp", iso(now))
            full["stored"] = iso(now)
            full["authority"] = {"objectType": "Agent", "name": self.config.authority_name,
                                 "mbox": self.config.authority_mbox}
            full.setdefault("version", "1.0.0")
            self.statements[typed["id"]] = Stored(self._seq, now, key, digest, full)
        for typed, _digest, _generated in models:
            self.received[typed["id"]] += 1
        if unstored:
            self._save()
        return [typed["id"] for typed, _digest, _generated in models]

    # -- reading --------------------------------------------------------------------------------------------
    def one(self, statement_id: str) -> dict[str, Any]:
        found = self.statements.get(statement_id)
        if found is None:
            raise Refusal(404, f"No model found for {statement_id}")
        return found.statement

    def query(self, params: dict[str, str], url_path: str) -> dict[str, Any]:
        """GET /statements with filters: `{statements, more}`, newest first unless `ascending`; `more` is the
        path and query of the next page (LL's `cursor`), or "" on the last page."""
        try:
            limit = int(params.get("limit", "0"))
        except ValueError:
            raise Refusal(400, "Expected 'limit' to be a number") from None
        if limit < 0:
            raise Refusal(400, "Expected 'limit' to be a non-negative number")
        page = self.config.page_size if limit == 0 else min(limit, self.config.page_size)
        ascending = params.get("ascending", "false").lower() in ("true", "1")
        since = parse_time(params["since"], "since") if "since" in params else None
        until = parse_time(params["until"], "until") if "until" in params else None
        agent = None
        if "agent" in params:
            try:
                agent = json.loads(params["agent"])
            except ValueError:
                raise Refusal(400, "Expected valid JSON in query.agent") from None
            if not isinstance(agent, dict) or not any(k in agent for k in ("mbox", "mbox_sha1sum", "openid",
                                                                          "account")):
                raise Refusal(400, "Expected 'agent' to be an Agent or Group with an identifier")
        related_agents = params.get("related_agents", "false").lower() in ("true", "1")
        related_activities = params.get("related_activities", "false").lower() in ("true", "1")
        try:
            cursor = int(params["cursor"]) if "cursor" in params else None
        except ValueError:
            raise Refusal(400, "Expected 'cursor' to be a cursor from a `more` link") from None

        def keep(s: Stored) -> bool:
            statement = s.statement
            if since is not None and not s.stored > since:
                return False
            if until is not None and not s.stored <= until:
                return False
            if "verb" in params and statement["verb"].get("id") != params["verb"]:
                return False
            if "registration" in params and (statement.get("context") or {}).get("registration") \
                    != params["registration"]:
                return False
            if "activity" in params and params["activity"] not in _activities(statement, related_activities):
                return False
            return agent is None or _matches_agent(statement, agent, related_agents)

        rows = sorted((s for s in self.statements.values() if keep(s)), key=lambda s: s.seq, reverse=not ascending)
        if cursor is not None:
            rows = [s for s in rows if (s.seq > cursor if ascending else s.seq < cursor)]
        chosen = rows[:page]
        more = ""
        if len(rows) > page:
            kept = [(k, v) for k, v in params.items() if k != "cursor"]
            more = f"{url_path}?{urlencode(kept + [('cursor', str(chosen[-1].seq))])}"
        return {"statements": [s.statement for s in chosen], "more": more}


def _ifi(agent: dict[str, Any]) -> tuple[str, str] | None:
    for key in ("mbox", "mbox_sha1sum", "openid"):
        if key in agent:
            return key, str(agent[key])
    account = agent.get("account")
    if isinstance(account, dict):
        return "account", f"{account.get('homePage')}|{account.get('name')}"
    return None


def _actors_of(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return []
    found = [x for x in [_ifi(value)] if x]
    for member in value.get("member") or []:
        found += _actors_of(member)
    return found


def _matches_agent(statement: dict[str, Any], agent: dict[str, Any], related: bool) -> bool:
    wanted = _ifi(agent)
    people = _actors_of(statement.get("actor"))
    target = statement.get("object") or {}
    if target.get("objectType") in ("Agent", "Group"):
        people += _actors_of(target)
    if related:
        context = statement.get("context") or {}
        people += _actors_of(context.get("instructor")) + _actors_of(context.get("team"))
        people += _actors_of(statement.get("authority"))
        if target.get("objectType") == "SubStatement":
            people += _actors_of(target.get("actor")) + _actors_of(target.get("object"))
    return wanted in people


def _activities(statement: dict[str, Any], related: bool) -> list[str]:
    target = statement.get("object") or {}
    found = [target["id"]] if target.get("objectType") == "Activity" and "id" in target else []
    if related:
        for items in ((statement.get("context") or {}).get("contextActivities") or {}).values():
            found += [item.get("id") for item in items if isinstance(item, dict)]
        if target.get("objectType") == "SubStatement":
            inner = target.get("object") or {}
            if inner.get("objectType", "Activity") == "Activity" and "id" in inner:
                found.append(inner["id"])
    return found

