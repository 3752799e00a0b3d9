"""A small asyncio HTTP/1.1 server for the sandboxes, framed by h11.

The stdlib ThreadingHTTPServer spends ~0.7 ms per request on its own bookkeeping, which made
the sandbox the bottleneck of a benchmark; this one spends a fraction of that. h11 does the
protocol, so the emulators speak HTTP as a real server does: keep-alive and pipelining,
Content-Length and chunked request bodies, `Expect: 100-continue` answered with 100 Continue
(and a body over the limit refused with 413 before the client sends it), HTTP/1.0 and
`Connection: close` honoured, a malformed request (request line, headers, Content-Length)
answered 400 and the connection closed. Handlers are plain synchronous functions (the emulators
are fast and serialise their state anyway); a handler's `Reply` may sleep, drop the connection,
or both, without blocking other connections.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

REASONS = {100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
           412: "Precondition Failed", 413: "Payload Too Large", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           503: "Service Unavailable"}
_REASONS = {status: reason.encode("ascii") for status, reason in REASONS.items()}
MAX_BODY = 64 * 1024 * 1024   # a larger request body is answered 413
MAX_HEAD = 64 * 1024          # a longer request line and headers are answered 431
READ = 256 * 1024             # bytes asked of the socket at a time
LINGER = 2.0                  # after refusing a request, read (and drop) what the client still sends this long

log = logging.getLogger(__name__)


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


Handler = Callable[[Request], "Reply"]


class Refused(Exception):
    """A request the server answers itself, without the handler (413: the body is over the limit)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Link:
    """One client connection: its streams and the h11 state machine that frames what goes over it."""

    __slots__ = ("reader", "writer", "conn", "method")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.method = b""  # of the request being answered

    async def _event(self) -> object:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if conn.they_are_waiting_for_100_continue:
                # the head was read and accepted, the client waits for a word before sending the body
                self.writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[],
                                                                      reason=b"Continue")))
            conn.receive_data(await self.reader.read(READ))  # b"" at the end: h11 tells a clean close from a cut

    async def read_request(self, max_body: int) -> Request | None:
        """The next request with its whole body; None when the client closed the connection between requests.
        Raises h11.RemoteProtocolError for a malformed request, Refused for one over the size limit."""
        if not self.conn.trailing_data[0]:  # nothing pipelined: wait for the next request before asking h11
            self.conn.receive_data(await self.reader.read(READ))
        head = await self._event()
        if type(head) is not h11.Request:
            return None  # ConnectionClosed (or PAUSED: the client may send nothing more on this connection)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
        if int(headers.get("content-length") or 0) > max_body:  # h11 checked it is a number
            raise Refused(413, "request body too large")
        parts = []
        size = 0
        while True:
            event = await self._event()
            if type(event) is h11.Data:
                size += len(event.data)
                if size > max_body:
                    raise Refused(413, "request body too large")
                parts.append(event.data)
            elif type(event) is h11.EndOfMessage:
                break
        self.method = head.method
        return Request(head.method.decode("ascii"), head.target.decode("latin-1"), headers, b"".join(parts))

    async def answer(self, reply: Reply, close: bool = False) -> None:
        """Send a reply; `close` asks to close the connection after it (h11 adds that by itself when the
        client sent `Connection: close` or spoke HTTP/1.0)."""
        conn = self.conn
        body = reply.body
        headers = [(b"content-type", reply.content_type.encode("latin-1")),
                   (b"content-length", b"%d" % len(body))]
        if reply.headers:
            headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        if close:
            headers.append((b"connection", b"close"))
        out = [conn.send(h11.Response(status_code=reply.status, headers=headers,
                                      reason=_REASONS.get(reply.status, b"Status")))]
        if body and self.method != b"HEAD" and reply.status not in (204, 304):
            out.append(conn.send(h11.Data(data=body)))
        out.append(conn.send(h11.EndOfMessage()))
        self.writer.write(b"".join(out))
        await self.writer.drain()

    def next_cycle(self) -> bool:
        """After an answer: whether the connection takes another request."""
        if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
            return False  # MUST_CLOSE: HTTP/1.0, `Connection: close` either way
        self.conn.start_next_cycle()
        return True

    async def refuse(self, status: int, text: str) -> None:
        """Answer a request the handler never saw, then close: what the client still sends is read and
        dropped for a while first, so it reads the answer instead of a reset connection."""
        self.method = b""
        try:
            await self.answer(Reply(status, "text/plain; charset=utf-8", text[:200].encode("utf-8", "replace")),
                              close=True)
        except h11.LocalProtocolError:  # not in a state to answer: just close
            return
        if self.writer.can_write_eof():
            self.writer.write_eof()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        try:
            while (left := deadline - loop.time()) > 0:
                if not await asyncio.wait_for(self.reader.read(READ), left):
                    break
        except (TimeoutError, ConnectionError):
            pass

    def abort(self) -> None:
        self.writer.transport.abort()


class HttpServer:
    max_body = MAX_BODY  # a server (or a test) may lower it

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, host, port, backlog=256, limit=READ))
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
        link = Link(reader, writer)
        try:
            while True:
                try:
                    request = await link.read_request(self.max_body)
                except h11.RemoteProtocolError as exc:
                    await link.refuse(exc.error_status_hint, f"bad request: {exc}")
                    return
                except Refused as exc:
                    await link.refuse(exc.status, str(exc))
                    return
                if request is None:
                    return
                await self._flight(+1)
                try:
                    try:
                        reply = self.handler(request)
                    except Exception:  # a real server answers 500 and carries on
                        log.exception("sandbox handler failed on %s %s", request.method, request.target)
                        reply = Reply(500, "text/plain; charset=utf-8", b"internal server error")
                    if reply.gather:
                        await self._gathered(reply.gather, reply.delay)
                    elif reply.delay:
                        await asyncio.sleep(reply.delay)
                    if reply.drop:
                        link.abort()
                        return
                    await self._write(link, reply, False)
                finally:
                    await self._flight(-1)
                if not link.next_cycle():
                    return
        except ConnectionError:
            return
        except asyncio.CancelledError:  # shutdown() with the connection open: end quietly (Python 3.11's
            return                      # start_server logs a cancelled connection task as an error)
        except h11.LocalProtocolError:  # a reply h11 cannot send (a bad header from the handler)
            log.exception("sandbox reply could not be sent")
            link.abort()
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
            except TimeoutError:
                pass

    @staticmethod
    async def _write(link: Link, reply: Reply, close: bool) -> None:
        """Every answer to a request the handler saw goes through here (a subclass may hold it first)."""
        await link.answer(reply, close)
