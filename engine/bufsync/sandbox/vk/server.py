"""The sandbox VK API over real HTTP, and `start()` for tests and for people trying it.

Routes: `GET|POST /method/<name>` as api.vk.com serves them: parameters from the query and from a
form-urlencoded or multipart body (an `application/json` body is not read, as VK does not read it: see
docs/portals/sferum.md), the token as `access_token` or `Authorization: Bearer`, every answer HTTP 200 JSON.
`POST /sandbox/admin` (`{"action", "args"}`) and `GET /sandbox/state` are the sandbox's own administration:
the caller sends `X-Sandbox-Token` (SandboxConfig.admin_token). The transport faults (faults.py: latency,
http_500/503, drop, drop_after_write, timeout_after_write, gather) are matched on the VK method's name; a
`drop_after_write` is the lost answer: the method took effect, the client sees the connection drop.
"""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, unquote

from bufsync.sandbox.faults import FaultRule, Faults, serve
from bufsync.sandbox.httpserver import HttpServer, Reply, Request
from bufsync.sandbox.vk.api import SandboxConfig, VkApi
from bufsync.sandbox.vk.errors import ApiError

PREFIX = "/method/"
JSON = "application/json; charset=utf-8"
UNAVAILABLE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _json(body: Any, status: int = 200) -> Reply:
    return Reply(status, JSON, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def form_fields(request: Request) -> list[tuple[str, str]]:
    """The request's parameters, query first, then a form body; other bodies (JSON among them) are not read."""
    pairs = parse_qsl(request.query, keep_blank_values=True, encoding="utf-8", errors="replace")
    if request.method != "POST" or not request.body:
        return pairs
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", ""):
        pairs += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    elif kind == "multipart/form-data":
        pairs += _multipart(content_type, request.body)
    return pairs


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            pairs.append((name, payload.decode("utf-8", "replace")))
    return pairs


def merge(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """One value per name, the last one winning; `ids[]=1&ids[]=2` (or `ids[0]`, `ids[1]`) becomes `ids=1,2`."""
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in pairs:
        if key.endswith("]") and "[" in key:
            lists.setdefault(key[:key.index("[")], []).append(value)
        else:
            values[key] = value
    for key, items in lists.items():
        values[key] = ",".join(items)
    return values


class VkServer(HttpServer):
    """The sandbox VK API with the same transport fault knobs as the other sandboxes."""

    def __init__(self, api: VkApi, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        super().__init__(self._route, host, port)
        self.api = api
        self.faults = faults or Faults()

    def _route(self, request: Request) -> Reply:
        if request.path.startswith(PREFIX) and request.method in ("GET", "POST"):
            return self._method(unquote(request.path[len(PREFIX):]), request)
        if request.path in ("/sandbox/admin", "/sandbox/state"):
            if request.headers.get("x-sandbox-token") != self.api.config.admin_token:
                return _json({"error": "X-Sandbox-Token must be the sandbox's admin token"}, 403)
            if request.path == "/sandbox/state" and request.method == "GET":
                return _json(self.api.snapshot())
            if request.path == "/sandbox/admin" and request.method == "POST":
                return self._admin(request)
        return Reply(404, "text/plain; charset=utf-8", b"not found")

    def _method(self, method: str, request: Request) -> Reply:
        values = merge(form_fields(request))
        token = values.pop("access_token", None)
        authorization = request.headers.get("authorization", "")
        if token is None and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()

        def failed(kind: str) -> Reply:
            if kind == "db_error":  # VK's own answer when its back end fails: error 10, HTTP 200
                return _json({"error": ApiError(10).body([])})
            return Reply(500 if kind == "http_500" else 503, "text/html; charset=utf-8", UNAVAILABLE)
        return serve(self.faults, method, lambda: _json(self.api.request(method, values, token)), failed)

    def _admin(self, request: Request) -> Reply:
        try:
            payload = json.loads(request.body or b"{}")
            action, args = payload["action"], payload.get("args") or {}
            if action == "faults":
                result: Any = self.set_faults(**args)
            else:
                result = self.api.admin(action, args)
            return _json({"result": result})
        except Exception as exc:  # the admin API reports any mistake to its caller
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)

    def set_faults(self, rules: list[dict[str, Any]] | None = None, clear: bool = False) -> int:
        """Transport faults (faults.py's FaultRule, `function` = a VK method name)."""
        return self.faults.set(rules, clear)


def start(port: int = 0, config: SandboxConfig | None = None, faults: list[FaultRule] | None = None,
          host: str = "127.0.0.1") -> VkServer:
    """A running sandbox VK API in a background thread (its `url`, its `api`); the caller shuts it down."""
    server = VkServer(VkApi(config), host, port, Faults(list(faults or [])))
    server.serve_in_thread()
    return server
