"""A small asyncio HTTP/1.1 server for the sandboxes: keep-alive, Content-Length bodies.

The stdlib ThreadingHTTPServer spends ~0.7 ms per request on its own bookkeeping, which made
the sandbox the bottleneck of a benchmark; this one spends a fraction of that. Handlers are
plain synchronous functions (the emulators are fast and serialise their state anyway); a
handler may return an `Action` to sleep, drop the connection, or both, without blocking
other connections.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 411: "Length Required",
           413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
MAX_BODY = 64 * 1024 * 1024


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Reply:
    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""
    delay: float = 0.0          # sleep before answering (latency) ...
    drop: bool = False          # ... then close without an answer
    gather: int = 0             # or: hold the answer until this many requests are in flight (at most `delay` s)
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], "Reply | tuple[float, Callable[[], Reply]]"]


class HttpServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, host, port, backlog=256, limit=MAX_BODY))
        self.server_address = self._server.sockets[0].getsockname()
        self._thread: threading.Thread | None = None
        self.open_requests = 0   # requests read and not yet answered (the event loop's own count)
        self.peak_open_requests = 0
        self._flight_changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def serve_in_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox-http", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()  # open keep-alive connections
            await asyncio.sleep(0)
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def server_close(self) -> None:
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._write(writer, Reply(400, "text/plain", b"bad request line"), close=True)
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    if length > MAX_BODY:
                        await self._write(writer, Reply(413, "text/plain", b"too large"), close=True)
                        return
                    body = await reader.readexactly(length) if length else b""
                await self._flight(+1)
                try:
                    reply = self.handler(Request(method, target, headers, body))
                    if reply.gather:
                        await self._gathered(reply.gather, reply.delay)
                    elif reply.delay:
                        await asyncio.sleep(reply.delay)
                    if reply.drop:
                        writer.transport.abort()
                        return
                    close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                    await self._write(writer, reply, close)
                finally:
                    await self._flight(-1)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _flight(self, step: int) -> None:
        async with self._flight_changed:
            self.open_requests += step
            self.peak_open_requests = max(self.peak_open_requests, self.open_requests)
            self._flight_changed.notify_all()

    async def _gathered(self, count: int, most: float) -> None:
        """Wait until `count` requests are in flight together, or `most` seconds: a test then learns whether a
        client keeps several calls in flight from what arrived, not from how fast the machine is."""
        async with self._flight_changed:
            try:
                await asyncio.wait_for(self._flight_changed.wait_for(lambda: self.open_requests >= count), most)
            except asyncio.TimeoutError:
                pass

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, reply: Reply, close: bool) -> None:
        head = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}",
                f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        await writer.drain()
