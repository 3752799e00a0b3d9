"""The sandbox LRS over real HTTP, and `start()` for tests and for people trying it.

Routes under `LrsConfig.base_path` (`/data/xAPI`, as on lrs-external.u2035test.ru): `POST /statements`,
`PUT /statements?statementId=`, `GET /statements` (one by `statementId`, or a filtered page with `more`),
`GET /about`. Every xAPI answer carries `X-Experience-API-Version: 1.0.3` and
`X-Experience-API-Consistent-Through`, errors included (LL's handleError.ts sets both first). Requests need
HTTP Basic with a configured key and secret (401 otherwise) and an `X-Experience-API-Version: 1.0.x` header
(400 otherwise); `/about` needs neither. `GET /sandbox/state` (Basic auth) shows what is stored and counted.

Transport faults (faults.py) are matched on "METHOD /resource", e.g. "POST /statements"; a `drop_after_write`
there is the lost answer: the statements are stored, the client sees the connection drop, and a resend must be
answered 200 with the same ids (it is: same ids, same statements).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl

from bufsync.sandbox.faults import FaultRule, Faults, serve
from bufsync.sandbox.httpserver import HttpServer, Reply, Request
from bufsync.sandbox.lrs.store import VERSION, Lrs, LrsConfig, Refusal, iso

JSON = "application/json; charset=utf-8"
GET_PARAMS = {"agent", "verb", "activity", "registration", "related_activities", "related_agents", "since", "until",
              "limit", "format", "attachments", "ascending", "cursor"}
SINGLE_PARAMS = {"statementId", "voidedStatementId", "format", "attachments"}


class LrsServer(HttpServer):
    def __init__(self, lrs: Lrs, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        super().__init__(self._route, host, port)
        self.lrs = lrs
        self.faults = faults or Faults()

    @property
    def endpoint(self) -> str:
        """The xAPI base URL a client is configured with (like https://lrs-external.u2035test.ru/data/xAPI)."""
        return self.url + self.lrs.config.base_path

    def _route(self, request: Request) -> Reply:
        base = self.lrs.config.base_path
        if request.path == "/sandbox/state":
            return self._state(request)
        resource = request.path[len(base):] if request.path.startswith(base + "/") else None
        name = f"{request.method} {resource}"
        with self.lrs.lock:
            self.lrs.calls[name] += 1

        def failed(kind: str) -> Reply:
            return Reply(503 if kind == "http_503" else 500, "text/html", b"<html><body>Bad Gateway</body></html>")

        reply = serve(self.faults, name, lambda: self._answer(request, resource), failed)
        with self.lrs.lock:
            self.lrs.answers[f"{name} {'lost' if reply.drop else reply.status}"] += 1
        return reply

    def _answer(self, request: Request, resource: str | None) -> Reply:
        with self.lrs.lock:
            try:
                return self._xapi(request, resource)
            except Refusal as refusal:
                return self._json(refusal.status, refusal.body(), refusal.headers)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        return Reply(status, JSON, data, headers={"X-Experience-API-Version": VERSION,
                                                  "X-Experience-API-Consistent-Through": iso(self.lrs.now()),
                                                  **(headers or {})})

    def _xapi(self, request: Request, resource: str | None) -> Reply:
        lrs = self.lrs
        if resource == "/about" and request.method == "GET":
            return self._json(200, {"version": [VERSION], "extensions": {"X-Experience-API-Version": VERSION}})
        if resource != "/statements":
            raise Refusal(404, f"No route for {request.method} {request.path}")
        if request.method not in ("GET", "POST", "PUT"):
            raise Refusal(405, f"Method ({request.method}) is not allowed on /statements")
        write = request.method != "GET"
        key = lrs.authorise(*_basic(request.headers.get("authorization", "")), write=write)
        version = request.headers.get("x-experience-api-version", "")
        if not version.startswith("1.0"):
            raise Refusal(400, "X-Experience-API-Version header is missing or not 1.0.x" if not version
                          else f"X-Experience-API-Version {version!r} is not supported (1.0.x)")
        lrs.count_rate(key)
        if write and len(request.body) > lrs.config.max_body:
            raise Refusal(413, f"Request body of {len(request.body)} bytes is over the limit of "
                               f"{lrs.config.max_body}")
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        if not write:
            return self._get(params, request.path)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Refusal(400, f"Content-Type ({kind or 'none'}) is not supported (the sandbox takes "
                               "application/json; attachments go by fileUrl)")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise Refusal(400, "Expected valid JSON in body") from None
        if request.method == "PUT":
            if "statementId" not in params:
                raise Refusal(400, "Missing required 'statementId' query param")
            lrs.put(body, key, params["statementId"])
            return self._json(204, None)
        if params:
            raise Refusal(400, f"Cannot use unknown params '{', '.join(params)}'")
        return self._json(200, lrs.post(body, key))

    def _get(self, params: dict[str, str], path: str) -> Reply:
        if "statementId" in params or "voidedStatementId" in params:
            if "statementId" in params and "voidedStatementId" in params:
                raise Refusal(400, "Cannot use 'statementId' and 'voidedStatementId'")
            extra = sorted(set(params) - SINGLE_PARAMS)
            if extra:
                raise Refusal(400, f"Cannot use unknown params '{', '.join(extra)}'")
            if "voidedStatementId" in params:  # the sandbox keeps no voided statements
                raise Refusal(404, f"No model found for {params['voidedStatementId']}")
            return self._json(200, self.lrs.one(params["statementId"]))
        unknown = sorted(set(params) - GET_PARAMS)
        if unknown:
            raise Refusal(400, f"Cannot use unknown params '{', '.join(unknown)}'")
        return self._json(200, self.lrs.query(params, path))

    def _state(self, request: Request) -> Reply:
        try:
            with self.lrs.lock:
                self.lrs.authorise(*_basic(request.headers.get("authorization", "")), write=False)
        except Refusal as refusal:
            return self._json(refusal.status, refusal.body())
        return self._json(200, self.lrs.snapshot())

    def set_faults(self, rules: list[dict[str, Any]] | None = None, clear: bool = False) -> int:
        """Transport faults (faults.py's FaultRule, `function` = "METHOD /resource")."""
        return self.faults.set(rules, clear)


def _basic(header: str) -> tuple[str | None, str | None]:
    if not header.lower().startswith("basic "):
        return None, None
    try:
        key, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return key, secret


def start(port: int = 0, config: LrsConfig | None = None, faults: list[FaultRule] | None = None,
          host: str = "127.0.0.1", data: str | None = None) -> LrsServer:
    """A running sandbox LRS in a background thread (its `url`, `endpoint` and `lrs`); the caller shuts it down.
    `data` is a JSON file that keeps the statements and credentials across restarts."""
    server = LrsServer(Lrs(config, data), host, port, Faults(list(faults or [])))
    server.serve_in_thread()
    return server
