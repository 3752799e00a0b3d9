"""The emulated СЦОС: course passports with moderation that takes time, participation, results,
progress; per-item answers with `saved`; validation errors; every delivery counted.

Knobs (SandboxConfig) make the open questions of the protocol switchable: the status code of
a validation error, whether a duplicate enrolment answers saved:true, how long moderation takes.

Moderation ends on the wall clock (`moderation_seconds`, for people trying the sandbox by hand) or
after a number of status polls (`moderation_polls`): tests use the polls, so what they see never
depends on how fast the machine is. Likewise `PortalServer.hold` shows how many calls a client keeps
in flight by holding their answers until that many arrived, instead of timing the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from bufsync.sandbox.faults import Faults, serve
from bufsync.sandbox.httpserver import HttpServer, Link, Reply, Request

API = "/api/v2"
REQUIRED_PASSPORT = ("title", "description", "content", "results", "external_url", "institution", "started_at",
                     "image", "competences", "requirements", "direction", "duration", "cert", "teachers",
                     "business_version", "credits")


@dataclass
class SandboxConfig:
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    partner_id: str = "sandbox-partner"
    moderation_seconds: float = 2.0       # a published course is `in_progress`, then `ok`, after this long ...
    moderation_polls: int | None = None   # ... or, when set, after this many status polls answered `in_progress`
    validation_status: int = 400          # the code of a rejected passport (open question: 400 or 422)
    duplicate_saved: bool = True          # a repeated enrolment answers saved:true (or saved:false)
    reject_marker: str = "[reject]"       # a passport whose title holds this ends moderation `rejected`


class Portal:
    def __init__(self, config: SandboxConfig | None = None, path: str | None = None) -> None:
        self.config = config or SandboxConfig()
        self.path = path  # where the state is kept between runs (JSON, rewritten after each change)
        self.lock = threading.Lock()
        self.courses: dict[str, dict[str, Any]] = {}
        self.participation: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.results: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.progress: dict[tuple[str, str], int | float] = {}
        self.certificates: dict[tuple[str, str], dict[str, Any]] = {}
        self.users: dict[str, str] = {}  # e-mail (lower case) -> СЦОС user id, for GET /users/id
        self.deliveries: Counter[str] = Counter()  # item identity -> times received (exactly-once checks)
        self.calls: Counter[str] = Counter()
        self._changed = False  # a GET that changed the state (a counted moderation poll)
        if path and os.path.exists(path):
            self._load()

    # -- state kept between runs (--data) -------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None  # called only with a data file
        with open(self.path, encoding="utf-8") as handle:
            saved = json.load(handle)
        self.config.key, self.config.partner_id = saved["key"], saved["partner_id"]  # what users pasted stays valid
        self.courses, self.users = saved["courses"], saved["users"]
        for name in ("participation", "results", "progress", "certificates"):
            setattr(self, name, {tuple(key): value for key, value in saved[name]})
        self.deliveries = Counter(saved["deliveries"])

    def _save(self) -> None:
        assert self.path is not None  # called only with a data file
        state: dict[str, Any] = {"key": self.config.key, "partner_id": self.config.partner_id, "courses": self.courses,
                 "users": self.users, "deliveries": self.deliveries}
        for name in ("participation", "results", "progress", "certificates"):
            state[name] = [[list(key), value] for key, value in getattr(self, name).items()]
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(state, handle, ensure_ascii=False)
        os.replace(temporary, self.path)  # never a half-written file

    # -- routing -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        with self.lock:
            self._changed = False
            reply = self._handle(request)
            if self.path and reply.status < 300 and (request.method != "GET" or self._changed):
                self._save()
        return reply

    def _handle(self, request: Request) -> Reply:
        if request.headers.get("x-cn-uuid") != self.config.key:
            return _json(403, {"error": "invalid X-CN-UUID"})
        path = request.path[len(API):] if request.path.startswith(API) else None
        if path is None:
            return _json(404, {"error": "not found"})
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        try:
            body = json.loads(request.body) if request.body else None
        except ValueError:
            return _json(400, {"error": "body is not JSON"})
        route = (request.method, path)
        self.calls[f"{request.method} {path}"] += 1
        if route == ("GET", "/connections/check"):
            return _json(200, {"status": "ok"})
        if route == ("POST", "/registry/courses"):
            return self._publish(body)
        if route == ("PUT", "/registry/courses"):
            return self._update(body)
        if route == ("GET", "/registry/courses"):
            return self._list(query.get("partner_id"))
        if request.method == "GET" and path.startswith("/registry/courses/") and path.count("/") == 3 \
                and path.rsplit("/", 1)[1] in self.courses:
            stored = self.courses[path.rsplit("/", 1)[1]]
            return _json(200, stored["passport"] | {"global_id": stored["id"], "status": stored["status"]})
        if route == ("GET", "/users/id"):
            return self._user_id(query.get("email"))
        if route == ("POST", "/certificates"):
            return self._certificate(body)
        if route == ("GET", "/registry/courses/moderation_status"):
            return self._moderation(query.get("course_id"))
        if route == ("PUT", "/registry/courses/update_status"):
            return self._status(query.get("course_id"), query.get("new_status") or query.get("status"))
        if route == ("POST", "/courses/participation"):
            return self._items(body, ("course_id", "session_id", "user_id", "enroll_date"), self._enrol)
        if route == ("DELETE", "/courses/participation"):
            return self._items(body, ("course_id", "session_id", "user_id"), self._unenrol)
        if route == ("POST", "/courses/results"):
            return self._items(body, ("course_id", "session_id", "user_id", "date", "rating", "checkpoint_id",
                                      "checkpoint_name"), self._result)
        if route == ("POST", "/courses/results/progress"):
            return self._items(body, ("course_id", "session_id", "user_id", "progress"), self._progress)
        return _json(404, {"error": f"no such endpoint: {request.method} {path}"})

    # -- courses -----------------------------------------------------------------------------
    def _passport(self, body: Any) -> tuple[dict[str, Any] | None, Reply | None]:
        if not isinstance(body, dict) or body.get("partner_id") != self.config.partner_id:
            return None, _json(self.config.validation_status, {"errors": {"partner_id": "unknown partner"}})
        items = (body.get("package") or {}).get("items")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            return None, _json(self.config.validation_status, {"errors": {"package.items": "one course expected"}})
        course = items[0]
        missing = [name for name in REQUIRED_PASSPORT if course.get(name) in (None, "", [])]
        if missing:
            return None, _json(self.config.validation_status,
                               {"errors": {name: "required field" for name in missing}})
        return course, None

    def _publish(self, body: Any) -> Reply:
        course, error = self._passport(body)
        if error:
            return error
        assert course is not None  # _passport gives one of the two
        for existing in self.courses.values():
            if existing["passport"].get("external_url") == course["external_url"]:
                return _json(409, {"error": "course with this external_url exists", "course_id": existing["id"]})
        course_id = str(uuid.uuid4())
        self.courses[course_id] = {"id": course_id, "passport": course, "status": "ACTIVE",
                                   "moderation": "in_progress", "sent_at": time.time(), "polls": 0}
        self.deliveries[f"course:{course['external_url']}"] += 1
        return _json(200, {"course_id": course_id})

    def _list(self, partner_id: str | None) -> Reply:
        if partner_id != self.config.partner_id:
            return _json(self.config.validation_status, {"errors": {"partner_id": "unknown partner"}})
        rows = [{"global_id": c["id"], "title": c["passport"].get("title"),
                 "started_at": c["passport"].get("started_at"), "external_url": c["passport"].get("external_url"),
                 "institution_id": c["passport"].get("institution"), "status": c["status"]}
                for c in self.courses.values()]
        return _json(200, {"results": rows, "total_count": len(rows)})

    def _user_id(self, email: str | None) -> Reply:
        found = self.users.get((email or "").strip().lower())
        if found is None:
            return _json(404, {"error": "user not found"})
        return _json(200, {"user_id": found})

    def _certificate(self, body: Any) -> Reply:
        required = ("course_id", "session_id", "user_id", "document")
        if not isinstance(body, dict) or any(body.get(k) in (None, "") for k in required):
            return _json(self.config.validation_status, {"errors": {k: "required field" for k in required
                                                                   if not isinstance(body, dict) or not body.get(k)}})
        participation = (str(body["course_id"]), str(body["session_id"]), str(body["user_id"]))
        if participation not in self.participation:
            return _json(self.config.validation_status, {"error": "no participation for this user and session"})
        key = (participation[0], participation[2])
        self.deliveries[f"certificate:{':'.join(key)}"] += 1
        existing = self.certificates.get(key)
        if existing is None:
            existing = self.certificates[key] = {"id": str(uuid.uuid4()), **body}
        return _json(200, {"certificate_id": existing["id"]})

    def _update(self, body: Any) -> Reply:
        course, error = self._passport(body)
        if error:
            return error
        assert course is not None  # _passport gives one of the two
        stored = self.courses.get(str(course.get("id")))
        if stored is None:
            return _json(404, {"error": "unknown course id"})
        stored["passport"] = course
        stored["moderation"], stored["sent_at"], stored["polls"] = "in_progress", time.time(), 0
        return _json(200, {"course_id": stored["id"]})

    def _moderation(self, course_id: str | None) -> Reply:
        stored = self.courses.get(str(course_id))
        if stored is None:
            return _json(404, {"error": "unknown course id"})
        if stored["moderation"] == "in_progress" and self._moderated(stored):
            marker = self.config.reject_marker
            stored["moderation"] = "rejected" if marker and marker in str(stored["passport"].get("title")) else "ok"
        return _json(200, {"status": stored["moderation"]})

    def _moderated(self, stored: dict[str, Any]) -> bool:
        """Whether the moderators are done with a passport: after `moderation_polls` polls answered
        `in_progress` (this poll being the next one), else after `moderation_seconds` on the wall clock."""
        if self.config.moderation_polls is None:
            return time.time() - stored["sent_at"] >= self.config.moderation_seconds
        stored["polls"] = stored.get("polls", 0) + 1
        self._changed = True  # a poll counts: kept with --data like any change
        return stored["polls"] > self.config.moderation_polls

    def _status(self, course_id: str | None, status: str | None) -> Reply:
        stored = self.courses.get(str(course_id))
        if stored is None:
            return _json(404, {"error": "unknown course id"})
        if status not in ("active", "archive"):
            return _json(self.config.validation_status, {"errors": {"new_status": "active or archive"}})
        stored["status"] = status.upper()
        return _json(200, {"status": stored["status"]})

    def register_users(self, emails: dict[str, str]) -> int:
        """The portal's own accounts (e-mail -> СЦОС user id), for GET /users/id; returns how many it knows."""
        with self.lock:
            self.users.update({k.strip().lower(): v for k, v in emails.items()})
            if self.path:
                self._save()
            return len(self.users)

    def snapshot(self) -> dict[str, Any]:
        """What the portal holds, for the sandbox's users and the tests (GET /sandbox/state)."""
        return _snapshot(self)

    # -- learner data, answered per item --------------------------------------------------------
    def _items(self, body: Any, required: tuple[str, ...], apply: Any) -> Reply:
        if not isinstance(body, list):
            return _json(self.config.validation_status, {"error": "a JSON array of items is expected"})
        answers = []
        for item in body:
            echo = {k: item.get(k) for k in ("course_id", "user_id", "session_id", "checkpoint_id")
                    if isinstance(item, dict) and k in item}
            missing = [k for k in required if not isinstance(item, dict) or item.get(k) in (None, "")]
            if missing:
                answers.append(echo | {"saved": False, "error": f"missing: {', '.join(missing)}"})
                continue
            if str(item["course_id"]) not in self.courses:
                answers.append(echo | {"saved": False, "error": "unknown course_id"})
                continue
            answers.append(echo | apply(item))
        return _json(200, answers)

    def _enrol(self, item: dict[str, Any]) -> dict[str, Any]:
        key = (str(item["course_id"]), str(item["session_id"]), str(item["user_id"]))
        self.deliveries[f"enrol:{':'.join(key)}"] += 1
        if key in self.participation:
            return {"saved": self.config.duplicate_saved} | ({} if self.config.duplicate_saved
                                                             else {"error": "already enrolled"})
        self.participation[key] = dict(item)
        return {"saved": True}

    def _unenrol(self, item: dict[str, Any]) -> dict[str, Any]:
        key = (str(item["course_id"]), str(item["session_id"]), str(item["user_id"]))
        self.deliveries[f"unenrol:{':'.join(key)}"] += 1
        self.participation.pop(key, None)
        return {"saved": True}

    def _result(self, item: dict[str, Any]) -> dict[str, Any]:
        key = (str(item["course_id"]), str(item["user_id"]), str(item["checkpoint_id"]))
        if (key[0], str(item["session_id"]), key[1]) not in self.participation:
            return {"saved": False, "error": "no participation for this user and session"}
        rating = item.get("rating")
        if not isinstance(rating, (int, float)) or not 0 <= rating <= 100:
            return {"saved": False, "error": "rating must be 0..100"}
        self.deliveries[f"result:{':'.join(key)}"] += 1
        self.results[key] = dict(item)
        return {"saved": True}

    def _progress(self, item: dict[str, Any]) -> dict[str, Any]:
        progress = item.get("progress")
        if not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
            return {"saved": False, "error": "progress must be 0..100"}
        self.deliveries[f"progress:{item['course_id']}:{item['user_id']}"] += 1
        self.progress[(str(item["course_id"]), str(item["user_id"]))] = progress
        return {"saved": True}


def _snapshot(portal: Portal) -> dict[str, Any]:
    with portal.lock:
        return {
            "courses": [{"id": c["id"], "title": c["passport"].get("title"), "status": c["status"],
                         "moderation": c["moderation"], "business_version": c["passport"].get("business_version"),
                         "external_url": c["passport"].get("external_url")} for c in portal.courses.values()],
            "participation": [dict(p) for p in portal.participation.values()],
            "results": [dict(r) for r in portal.results.values()],
            "progress": [{"course_id": c, "user_id": u, "progress": p} for (c, u), p in portal.progress.items()],
            "certificates": [dict(c) for c in portal.certificates.values()],
        }


def _json(status: int, body: Any) -> Reply:
    return Reply(status, "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8"))


@dataclass
class Hold:
    calls: int        # answers wait until this many calls to `path` are in flight at once ...
    path: str
    seconds: float    # ... or until this long passed (a client that never sends that many still gets answers)


class PortalServer(HttpServer):
    """The СЦОС sandbox over HTTP, with the same fault knobs as the sandbox Moodle."""

    def __init__(self, portal: Portal, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        super().__init__(self._route, host, port)
        self.portal = portal
        self.faults = faults or Faults()
        # held answers; touched only on the server's event loop, like every request
        self._hold: Hold | None = None
        self._release: asyncio.Event | None = None
        self._held: dict[int, asyncio.Event] = {}  # id(reply) -> the event that releases it
        self.in_flight = 0        # calls to the held path received and not yet answered
        self.most_in_flight = 0   # the most there were at once

    def hold(self, calls: int, path: str, seconds: float = 30.0) -> None:
        """Hold the answers to `path` until `calls` of them are in flight at once, then answer them together.

        A test reads `most_in_flight` to learn how many calls a client keeps in flight, whatever the
        machine's speed: a client that sends one call at a time sees each answer only after `seconds`,
        and `most_in_flight` stays 1."""
        self._hold, self.most_in_flight = Hold(calls, path, seconds), 0

    def _held_reply(self, reply: Reply) -> Reply:
        assert self._hold is not None
        if self._release is None:
            self._release = asyncio.Event()
        self._held[id(reply)] = self._release
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self._hold.calls:
            self._release.set()  # these go together; later calls wait for the next group
            self._release = None
        return reply

    async def _write(self, link: Link, reply: Reply, close: bool) -> None:  # type: ignore[override]
        """HttpServer writes every answer through here: a held one waits for its group first."""
        release = self._held.pop(id(reply), None)
        if release is not None:
            try:
                await asyncio.wait_for(release.wait(), self._hold.seconds if self._hold else 0)
            except TimeoutError:
                pass
            finally:
                self.in_flight -= 1
        await HttpServer._write(link, reply, close)

    def _route(self, request: Request) -> Reply:
        if request.path == "/sandbox/users" and request.method == "POST":
            if request.headers.get("x-cn-uuid") != self.portal.config.key:
                return _json(403, {"error": "invalid X-CN-UUID"})
            return _json(200, {"users": self.portal.register_users(json.loads(request.body))})
        if request.path == "/sandbox/state":
            return _json(200, self.portal.snapshot())
        if request.path == "/sandbox/stats":
            deliveries = self.portal.deliveries
            return _json(200, {"calls": dict(self.portal.calls), "deliveries": sum(deliveries.values()),
                               "distinct": len(deliveries),
                               "duplicates": sum(1 for v in deliveries.values() if v > 1)})
        reply = serve(self.faults, request.path, lambda: self.portal.handle(request),
                      lambda kind: Reply(503 if kind == "http_503" else 500, "text/html", b"<h1>Unavailable</h1>"))
        if reply.drop:
            return reply
        if self._hold is not None and request.path == self._hold.path:
            return self._held_reply(reply)
        return reply
