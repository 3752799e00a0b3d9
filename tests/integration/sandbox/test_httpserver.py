"""The sandboxes' HTTP server speaks HTTP/1.1 as a real server does: a real server on 127.0.0.1, driven with raw
sockets (to send what a client library would not) and with httpx. `Expect: 100-continue`, chunked bodies,
malformed requests answered 400 and refused bodies 413, keep-alive and pipelining, HTTP/1.0 and
`Connection: close`, and the handler's own knobs: drop, delay, gather."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from bufsync.sandbox.httpserver import MAX_BODY, MAX_HEAD, HttpServer, Reply, Request

MB2 = 2 * 1024 * 1024


def handler(request: Request) -> Reply:
    query = {k: v[-1] for k, v in parse_qs(request.query).items()}
    if request.path == "/drop":
        return Reply(drop=True, delay=float(query.get("delay", 0)))
    if request.path == "/boom":
        raise RuntimeError("a handler's own mistake")
    echo = {"method": request.method, "path": request.path, "query": request.query, "headers": request.headers,
            "length": len(request.body), "sha256": hashlib.sha256(request.body).hexdigest()}
    return Reply(200, "application/json", json.dumps(echo).encode(), delay=float(query.get("delay", 0)),
                 gather=int(query.get("gather", 0)), headers={"X-Echo": "yes"})


@pytest.fixture
def server() -> Iterator[HttpServer]:
    s = HttpServer(handler, "127.0.0.1", 0)
    s.serve_in_thread()
    yield s
    s.shutdown()
    s.server_close()


class Raw:
    """A bare client connection: sends bytes as given, reads answers as they come."""

    def __init__(self, server: HttpServer) -> None:
        self.sock = socket.create_connection(server.server_address[:2], timeout=15)
        self.stream = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> tuple[str, dict[str, str]]:
        status = self.stream.readline().decode("latin-1").rstrip("\r\n")
        headers = {}
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            name, value = line.decode("latin-1").split(":", 1)
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def answer(self) -> tuple[str, dict[str, str], bytes]:
        status, headers = self.head()
        return status, headers, self.stream.read(int(headers.get("content-length", 0)))

    def closed(self) -> bool:
        """Whether the server closed the connection (waits for it, up to the socket's timeout)."""
        try:
            return self.stream.read(1) == b""
        except ConnectionResetError:
            return True

    def waiting(self) -> bool:
        """Whether nothing has arrived yet (no answer, no close)."""
        return not select.select([self.sock], [], [], 0)[0]

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.fixture
def raw(server: HttpServer) -> Iterator[Any]:
    opened: list[Raw] = []

    def connect() -> Raw:
        opened.append(Raw(server))
        return opened[-1]
    yield connect
    for connection in opened:
        connection.close()


def settled(server: HttpServer) -> bool:
    """Whether the server's count of open requests returns to 0: it counts an answer done just after sending it."""
    for _ in range(500):
        if server.open_requests == 0:
            return True
        time.sleep(0.01)
    return False


def post(target: str, body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST {target} {version}", "Host: sandbox", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- bodies ------------------------------------------------------------------------------------------------------------

def test_expect_100_continue_is_answered_before_the_body_is_sent(raw) -> None:
    body = bytes(range(256)) * (MB2 // 256)
    c = raw()
    c.send(post("/upload", b"", f"Content-Length: {len(body)}", "Expect: 100-continue"))
    status, _ = c.head()  # nothing of the body sent yet: the server must speak first
    assert status == "HTTP/1.1 100 Continue"
    c.send(body)
    status, headers, answer = c.answer()
    assert status == "HTTP/1.1 200 OK"
    echo = json.loads(answer)
    assert echo["length"] == MB2 and echo["sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["headers"]["expect"] == "100-continue"


def test_a_client_that_sends_the_body_without_waiting_gets_one_answer(raw) -> None:
    c = raw()
    c.send(post("/upload", b"hello", "Content-Length: 5", "Expect: 100-continue"))
    status, headers, answer = c.answer()
    if status.startswith("HTTP/1.1 100"):  # allowed (the server may have read the head alone), then the answer
        status, headers, answer = c.answer()
    assert status == "HTTP/1.1 200 OK" and json.loads(answer)["length"] == 5


def test_chunked_body_raw_and_from_httpx(server: HttpServer, raw) -> None:
    c = raw()
    c.send(post("/chunks", b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
                "Transfer-Encoding: chunked"))
    status, _, answer = c.answer()
    assert status == "HTTP/1.1 200 OK"
    assert json.loads(answer)["sha256"] == hashlib.sha256(b"hello world").hexdigest()

    parts = [b"x" * 70000, b"y" * 3, b"z" * 100000]
    response = httpx.post(f"{server.url}/chunks", content=iter(parts))
    assert response.status_code == 200
    assert response.json()["length"] == sum(map(len, parts))
    assert response.json()["headers"]["transfer-encoding"] == "chunked"


def test_a_request_as_the_handler_sees_it(server: HttpServer) -> None:
    response = httpx.post(f"{server.url}/some/path?a=1&b=%D0%AF", content=b"{}", headers={"X-Mixed-Case": "Value"})
    echo = response.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("POST", "/some/path", "a=1&b=%D0%AF")
    assert echo["headers"]["x-mixed-case"] == "Value" and echo["headers"]["content-length"] == "2"
    assert response.headers["x-echo"] == "yes" and response.headers["content-type"] == "application/json"
    head = httpx.head(f"{server.url}/head")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0


# -- malformed and refused requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("request_bytes", [
    post("/x", b"abc", "Content-Length: abc"),
    post("/x", b"abc", "Content-Length: -3"),
    post("/x", b"abc", "Content-Length: 3", "Content-Length: 4"),
    b"GARBAGE\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: sandbox\r\nno colon here\r\n\r\n",
    b"GET /x HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
], ids=["non-numeric-length", "negative-length", "two-lengths", "request-line", "header-line", "no-host"])
def test_a_malformed_request_is_answered_400_and_the_server_serves_on(server: HttpServer, raw,
                                                                     request_bytes: bytes) -> None:
    c = raw()
    c.send(request_bytes)
    status, headers, body = c.answer()
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close" and 0 < len(body) <= 200 and b"Traceback" not in body
    assert c.closed()
    assert httpx.get(f"{server.url}/next").status_code == 200  # a new connection is served as before


def test_an_unknown_transfer_coding_is_501(raw) -> None:
    c = raw()
    c.send(post("/x", b"", "Transfer-Encoding: gzip"))
    assert c.answer()[0] == "HTTP/1.1 501 Not Implemented"
    assert c.closed()


def test_a_request_head_over_the_limit_is_431(raw) -> None:
    c = raw()
    c.send(b"GET /x HTTP/1.1\r\nHost: sandbox\r\nX-Long: " + b"a" * (MAX_HEAD + 1))  # and no end in sight
    assert c.answer()[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert c.closed()


def test_a_body_over_the_limit_is_refused_413_before_it_is_sent(server: HttpServer, raw) -> None:
    c = raw()
    c.send(post("/big", b"", f"Content-Length: {MAX_BODY + 1}", "Expect: 100-continue"))
    status, headers, body = c.answer()  # no 100 first: the client is told not to send the body at all
    assert status == "HTTP/1.1 413 Payload Too Large" and headers["connection"] == "close"
    assert c.closed()
    c = raw()
    c.send(post("/big", b"", f"Content-Length: {MAX_BODY + 1}"))
    assert c.answer()[0] == "HTTP/1.1 413 Payload Too Large"
    assert httpx.get(f"{server.url}/next").status_code == 200


def test_a_chunked_body_growing_over_the_limit_is_refused_413(server: HttpServer, raw) -> None:
    server.max_body = 1000
    c = raw()
    c.send(post("/big", b"", "Transfer-Encoding: chunked") + b"258\r\n" + b"a" * 600 + b"\r\n")
    c.send(b"258\r\n" + b"a" * 600 + b"\r\n")
    assert c.answer()[0] == "HTTP/1.1 413 Payload Too Large"
    assert c.closed()


def test_httpx_sending_a_body_over_the_limit_reads_the_413(server: HttpServer) -> None:
    server.max_body = 1000
    response = httpx.post(f"{server.url}/big", content=b"a" * 500_000)  # the server reads on, so no reset
    assert response.status_code == 413
    assert httpx.post(f"{server.url}/small", content=b"a" * 1000).status_code == 200


def test_a_failing_handler_is_answered_500(server: HttpServer) -> None:
    with httpx.Client() as client:
        assert client.get(f"{server.url}/boom").status_code == 500
        assert client.get(f"{server.url}/after").status_code == 200  # the same connection goes on


# -- connections -------------------------------------------------------------------------------------------------------

def test_keep_alive_several_requests_on_one_connection_and_pipelined(raw) -> None:
    c = raw()
    for i in range(3):
        c.send(post(f"/one/{i}", b"x" * i, f"Content-Length: {i}"))
        status, headers, body = c.answer()
        assert status == "HTTP/1.1 200 OK" and "connection" not in headers
        assert json.loads(body)["path"] == f"/one/{i}"
    c.send(b"".join(post(f"/piped/{i}", b"abc", "Content-Length: 3") for i in range(5)))
    assert [json.loads(c.answer()[2])["path"] for _ in range(5)] == [f"/piped/{i}" for i in range(5)]
    assert c.waiting()  # the connection stays open for more


def test_httpx_reuses_one_connection(server: HttpServer) -> None:
    ports = set()
    with httpx.Client() as client:
        for i in range(5):
            response = client.post(f"{server.url}/reuse", content=b"%d" % i)
            assert response.status_code == 200
            ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_http_10_and_connection_close_are_answered_then_closed(raw) -> None:
    c = raw()
    c.send(b"GET /old HTTP/1.0\r\n\r\n")
    status, headers, body = c.answer()
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert json.loads(body)["path"] == "/old"
    assert c.closed()
    c = raw()
    c.send(post("/last", b"", "Content-Length: 0", "Connection: close"))
    status, headers, _ = c.answer()
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert c.closed()


def test_a_client_closing_between_requests_costs_nothing(server: HttpServer, raw) -> None:
    for _ in range(20):
        raw().close()
    c = raw()
    c.send(post("/x", b"abc", "Content-Length: 3"))  # then disappears mid-request
    c.close()
    assert httpx.get(f"{server.url}/still").status_code == 200


# -- the handler's knobs: drop, delay, gather -------------------------------------------------------------------------

def test_drop_closes_without_an_answer(server: HttpServer, raw) -> None:
    c = raw()
    c.send(post("/drop", b"", "Content-Length: 0"))
    assert c.closed()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{server.url}/drop?delay=0.05")
    assert settled(server)


def test_delay_holds_one_answer_without_holding_the_others(server: HttpServer, raw) -> None:
    slow = raw()
    slow.send(post("/slow?delay=30", b"", "Content-Length: 0"))
    assert httpx.get(f"{server.url}/fast").status_code == 200  # answered while the slow one sleeps
    assert slow.waiting()
    response = httpx.get(f"{server.url}/short?delay=0.2")
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.2


def test_gather_holds_answers_until_that_many_are_in_flight(server: HttpServer) -> None:
    answers: list[int] = []

    def call(i: int) -> None:
        response = httpx.get(f"{server.url}/g/{i}?gather=3&delay=60", timeout=90)
        answers.append(response.status_code if response.elapsed.total_seconds() < 30 else -1)  # not the 60 s bound
    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert answers == [200, 200, 200]
    assert server.peak_open_requests == 3 and settled(server)


def test_gather_answers_after_delay_when_too_few_arrive(server: HttpServer) -> None:
    response = httpx.get(f"{server.url}/alone?gather=5&delay=0.2")
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.2
    assert server.peak_open_requests == 1 and settled(server)
