"""The sandbox Moodle over real HTTP.

Routes: /webservice/rest/server.php (GET or POST, form fields only: a JSON body is ignored,
as Moodle does), and POST /sandbox/admin, POST /sandbox/faults, GET /sandbox/stats for the
sandbox's own administration (the caller sends the web-service token as X-Sandbox-Token).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qsl

from bufsync.sandbox.faults import FaultRule, Faults, serve
from bufsync.sandbox.httpserver import HttpServer, Reply, Request
from bufsync.sandbox.moodle import pluginfile
from bufsync.sandbox.moodle.site import Site

REST_PATH = "/webservice/rest/server.php"
PLUGINFILE_PATH = pluginfile.PATH
UNAVAILABLE = b"<html><body><h1>Service Unavailable</h1></body></html>"


DML_READ_ERROR = (b'{"exception":"dml_read_exception","errorcode":"dmlreadexception",'
                  b'"message":"Error reading from database"}')


class SandboxServer(HttpServer):
    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 8081, faults: Faults | None = None) -> None:
        super().__init__(self._handle, host, port)
        self.site = site
        self.faults = faults or Faults()
        self._counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self.site.config.site_url = self.url

    # -- routing ----------------------------------------------------------------------------
    def _handle(self, request: Request) -> Reply:
        if request.path == REST_PATH and request.method in ("GET", "POST"):
            return self._rest(_form(request))
        if request.path.startswith(PLUGINFILE_PATH) and request.method in ("GET", "POST"):
            return self._pluginfile(request.path, _form(request))
        if request.path == "/sandbox/stats" and request.method == "GET":
            return Reply(body=json.dumps(self.stats()).encode())
        if request.path in ("/sandbox/admin", "/sandbox/faults") and request.method == "POST":
            if request.headers.get("x-sandbox-token") != self.site.config.token:
                return Reply(403, body=b'{"error": "X-Sandbox-Token must be the sandbox token"}')
            try:
                payload = json.loads(request.body or b"{}")
                if request.path == "/sandbox/admin":
                    result = self.site.admin(payload["action"], payload.get("args") or {})
                else:
                    result = self.set_faults(payload)
                return Reply(body=json.dumps({"result": result}, ensure_ascii=False).encode())
            except Exception as exc:  # the admin API reports any mistake to its caller
                return Reply(400, body=json.dumps({"error": str(exc)}, ensure_ascii=False).encode())
        return Reply(404, "text/plain", b"not found")

    def _pluginfile(self, path: str, pairs: list[tuple[str, str]]) -> Reply:
        """webservice/pluginfile.php (pluginfile.py); faults aimed at the function `pluginfile` hit downloads."""
        def handle() -> Reply:
            response = pluginfile.serve(self.site, path, pairs)
            self.count("pluginfile")
            return Reply(response.status, response.content_type, response.body, headers=response.headers)

        def failed(kind: str) -> Reply:
            return Reply(500 if kind == "http_500" else 503, "text/html; charset=utf-8", UNAVAILABLE)
        return serve(self.faults, "pluginfile", handle, failed)

    def _rest(self, pairs: list[tuple[str, str]]) -> Reply:
        function = next((v for k, v in pairs if k == "wsfunction"), None)
        if not self.site.rest_enabled():
            # webservice/rest/server.php: "HTTP/1.0 403 Forbidden" and nothing else when web services or REST are off
            return Reply(403, "text/html; charset=utf-8", b"")
        def handle() -> Reply:
            response = self.site.call(pairs)
            self.count(function)
            return Reply(response.status, response.content_type, response.body)

        def failed(kind: str) -> Reply:
            if kind == "db_error":  # Moodle's own answer when its database fails a read: HTTP 200
                return Reply(200, "application/json", DML_READ_ERROR)
            return Reply(500 if kind == "http_500" else 503, "text/html; charset=utf-8", UNAVAILABLE)
        return serve(self.faults, function, handle, failed)

    # -- statistics and faults ---------------------------------------------------------------
    def count(self, function: str | None) -> None:
        with self._count_lock:
            key = function or "(none)"
            self._counts[key] = self._counts.get(key, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._count_lock:
            return {"calls": dict(self._counts), "total": sum(self._counts.values()),
                    "faults_fired": dict(self.faults.fired), "peak_in_flight": self.peak_open_requests}

    def set_faults(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("clear"):
            self.faults.clear()
        for rule in request.get("rules") or []:
            self.faults.add(FaultRule(**rule))
        if request.get("reset_stats"):
            with self._count_lock:
                self._counts.clear()
            self.faults.fired.clear()
            self.peak_open_requests = self.open_requests
        return {"rules": len(self.faults.rules)}


def _form(request: Request) -> list[tuple[str, str]]:
    """The fields PHP reads, in its order: the query string, then a form-encoded POST body."""
    pairs = parse_qsl(request.query, keep_blank_values=True)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type in ("application/x-www-form-urlencoded", ""):
        pairs += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return pairs
