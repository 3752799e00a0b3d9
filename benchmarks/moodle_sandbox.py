"""Benchmark: the sandbox Moodle's calls per second, and the Moodle client's overhead per record.

The sandbox runs in its own process (`bufsync sandbox`), as users run it. Figures printed:
- sandbox throughput: simple read calls/s over keep-alive connections (1 and 4, from a bare-socket
  load generator in other processes, so the generator is not what is measured);
- create_users of N users: through MoodleClient (prevalidation, batching, result mapping) and,
  as the baseline in the same run, the same batches as pre-encoded raw HTTP posts; the
  difference per record is the client's overhead; client CPU time and peak RSS.

    python benchmarks/moodle_sandbox.py [--users 20000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import socket
import subprocess
import time
from urllib.parse import urlencode

import httpx

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.isolation import chunk_by_fields, field_budget
from bufsync.adapters.moodle.transport import encode
from bufsync.sandbox.moodle.run import spawn

TOKEN = "b3nchb3nchb3nchb3nchb3nchb3nch00"


def start_sandbox() -> tuple[subprocess.Popen, str]:
    return spawn(TOKEN)


def _raw_worker(args: tuple[str, float]) -> int:
    """Keep-alive requests over a bare socket: the load generator must cost less than the server."""
    url, seconds = args
    host, port = url.split("//", 1)[1].split(":")
    body = urlencode({"wstoken": TOKEN, "wsfunction": "core_user_get_users_by_field",
                      "moodlewsrestformat": "json", "field": "id", "values[0]": "2"}).encode()
    request = (f"POST /webservice/rest/server.php HTTP/1.1\r\nHost: {host}\r\n"
               f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    count = 0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        sock.sendall(request)
        length = 0
        status = stream.readline()
        assert b" 200 " in status, status
        while True:
            line = stream.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        stream.read(length)
        count += 1
    sock.close()
    return count


def throughput(url: str, connections: int, seconds: float) -> float:
    with multiprocessing.Pool(connections) as pool:
        counts = pool.map(_raw_worker, [(url, seconds)] * connections)
    return sum(counts) / seconds


def users(n: int, prefix: str) -> list[dict]:
    return [{"username": f"{prefix}{i:06d}", "firstname": "Иван", "lastname": f"Петров{i}",
             "email": f"{prefix}{i:06d}@bench.example", "idnumber": f"B-{prefix}-{i}", "createpassword": True}
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    proc, url = start_sandbox()
    try:
        for connections in (1, 4):
            rate = throughput(url, connections, args.seconds)
            print(f"sandbox throughput, {connections} keep-alive connection(s): {rate:,.0f} calls/s "
                  "(core_user_get_users_by_field, one user)")

        # baseline: the same batches as raw, pre-encoded posts
        raw_users = users(args.users, "r")
        budget = field_budget(5000)
        bodies = []
        for batch in chunk_by_fields(raw_users, "users", budget):
            fields = [("wstoken", TOKEN), ("wsfunction", "core_user_create_users"), ("moodlewsrestformat", "json")]
            fields += encode({"users": [raw_users[i] for i in batch]})
            bodies.append(urlencode(fields).encode())
        with httpx.Client(timeout=120) as raw:
            t0 = time.perf_counter()
            for body in bodies:
                r = raw.post(f"{url}/webservice/rest/server.php", content=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status_code == 200 and r.json()[0]["id"]
            raw_seconds = time.perf_counter() - t0

        client_users = users(args.users, "c")
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        with MoodleClient.connect(url, TOKEN, timeout=120) as client:
            results = client.create_users(client_users)
            calls = client.transport.stats.calls
        client_seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        assert all(r.ok for r in results)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = args.users
        print(f"create_users, {n:,} users in {calls} calls ({n / calls:.0f} users/call within max_input_vars=5000)")
        print(f"  raw pre-encoded posts (baseline): {raw_seconds:.2f} s, {n / raw_seconds:,.0f} users/s")
        print(f"  MoodleClient:                     {client_seconds:.2f} s, {n / client_seconds:,.0f} users/s, "
              f"ratio {client_seconds / raw_seconds:.2f}x the baseline")
        print(f"  client overhead: {(client_seconds - raw_seconds) / n * 1e6:.0f} µs/record wall, "
              f"{cpu / n * 1e6:.0f} µs/record client CPU (encoding, prevalidation, mapping)")
        print(f"  client peak RSS: {rss:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
