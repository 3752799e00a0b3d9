"""The sandbox Moodle over real HTTP (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive).

Routes: /webservice/rest/server.php (GET or POST, form fields only: a JSON body is ignored,
as Moodle does), and POST /sandbox/admin, /sandbox/faults, GET /sandbox/stats for the
sandbox's own administration (the caller sends the web-service token as X-Sandbox-Token).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bufsync.sandbox.faults import FaultRule, Faults
from bufsync.sandbox.moodle.site import Site

REST_PATH = "/webservice/rest/server.php"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "SandboxServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the sandbox serves benchmarks
        return

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == REST_PATH:
            self._rest(parse_qsl(url.query, keep_blank_values=True), b"")
        elif url.path == "/sandbox/stats":
            self._send(200, "application/json", json.dumps(self.server.stats()).encode())
        else:
            self._send(404, "text/plain", b"not found")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path == REST_PATH:
            pairs = parse_qsl(url.query, keep_blank_values=True)
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type in ("application/x-www-form-urlencoded", ""):
                pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            self._rest(pairs, body)
        elif url.path in ("/sandbox/admin", "/sandbox/faults"):
            if self.headers.get("X-Sandbox-Token") != self.server.site.config.token:
                self._send(403, "application/json", b'{"error": "X-Sandbox-Token must be the sandbox token"}')
                return
            try:
                request = json.loads(body or b"{}")
                if url.path == "/sandbox/admin":
                    result = self.server.site.admin(request["action"], request.get("args") or {})
                else:
                    result = self.server.set_faults(request)
                self._send(200, "application/json", json.dumps({"result": result}, ensure_ascii=False).encode())
            except Exception as exc:  # the admin API reports any mistake to its caller
                self._send(400, "application/json", json.dumps({"error": str(exc)}, ensure_ascii=False).encode())
        else:
            self._send(404, "text/plain", b"not found")

    def _rest(self, pairs: list[tuple[str, str]], raw: bytes) -> None:
        function = next((v for k, v in pairs if k == "wsfunction"), None)
        rules = self.server.faults.pick(function)
        after_write = None
        for rule in rules:
            if rule.kind == "latency":
                time.sleep(rule.seconds)
            elif rule.kind in ("http_500", "http_503"):
                status = 500 if rule.kind == "http_500" else 503
                self._send(status, "text/html; charset=utf-8",
                           b"<html><body><h1>Service Unavailable</h1></body></html>")
                return
            elif rule.kind == "drop":
                self._drop()
                return
            else:
                after_write = rule
        response = self.server.site.call(pairs)
        self.server.count(function)
        if after_write is not None:
            if after_write.kind == "timeout_after_write":
                time.sleep(after_write.seconds or 30)
            self._drop()  # the call was committed; the client never hears about it
            return
        self._send(response.status, response.content_type, response.body)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 8081, faults: Faults | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.site = site
        self.faults = faults or Faults()
        self._counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self.site.config.site_url = self.url

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, function: str | None) -> None:
        with self._count_lock:
            key = function or "(none)"
            self._counts[key] = self._counts.get(key, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self._count_lock:
            return {"calls": dict(self._counts), "total": sum(self._counts.values()),
                    "faults_fired": dict(self.faults.fired)}

    def set_faults(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("clear"):
            self.faults.clear()
        for rule in request.get("rules") or []:
            self.faults.add(FaultRule(**rule))
        if request.get("reset_stats"):
            with self._count_lock:
                self._counts.clear()
            self.faults.fired.clear()
        return {"rules": len(self.faults.rules)}

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="sandbox-moodle", daemon=True)
        thread.start()
        return thread
