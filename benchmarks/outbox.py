"""Benchmark: the outbox on PostgreSQL delivering to the СЦОС sandbox (in its own process).

    python benchmarks/outbox.py [--items 10000]

Prints items/s with 1 and with 4 dispatcher processes, claim latency (median and p95 of one
claim of 50 items), and checks the sandbox received each item exactly once. Baseline in the
same run: one process sending one item per HTTP call and completing it with its own UPDATE.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid

import httpx
import sqlalchemy as sa

import reconcile as _reconcile

fresh_database, drop_database = _reconcile.fresh_database, _reconcile.drop_database

from bufsync import migrations  # noqa: E402
from bufsync.config import load_settings  # noqa: E402
from bufsync.mapping import load_mappings  # noqa: E402
from bufsync.portals.scos.client import ScosClient  # noqa: E402
from bufsync.portals.scos.dispatch import ScosHandler  # noqa: E402
from bufsync.queue import outbox  # noqa: E402
from bufsync.queue.dispatcher import dispatch  # noqa: E402
from bufsync.schema import build_metadata  # noqa: E402

KEY = "q" * 32
PASSPORT = {"title": "B", "description": "d", "content": "c", "results": "r", "external_url": "", "institution": "i",
            "started_at": "2026-09-01", "image": "i", "competences": "c", "requirements": ["r"],
            "direction": ["09.03.01"], "duration": {"code": "week", "value": 1}, "cert": "true",
            "teachers": [{"display_name": "t"}], "business_version": 1, "credits": 1}


def portal_process(ready, port_value) -> None:
    from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
    server = PortalServer(Portal(SandboxConfig(key=KEY)), port=0)
    port_value.value = server.server_address[1]
    server.serve_in_thread()
    ready.set()
    while True:
        time.sleep(3600)


def worker(url: str, portal: str) -> None:
    engine = sa.create_engine(url)
    table = sa.Table("sync_queue", sa.MetaData(), autoload_with=engine)
    dispatch(engine, table, "scos", batch_handler=ScosHandler(ScosClient(f"{portal}/api/v2", KEY), "sandbox-partner"),
             batch=50, until_empty=True)
    engine.dispose()


def fill(url: str, portal: str, items: int) -> tuple[sa.Engine, sa.Table]:
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(url)
    table = build_metadata(mappings).tables["sync_queue"]
    course = ScosClient(f"{portal}/api/v2", KEY).publish("sandbox-partner",
                                                         PASSPORT | {"external_url": uuid.uuid4().hex})
    outbox.enqueue(engine, table, [outbox.Item("scos", "participation_add", {
        "course_id": course, "session_id": "s", "user_id": f"{uuid.uuid4()}", "enroll_date": "2026-09-01"},
        f"k{i}") for i in range(items)])
    return engine, table


def run(processes: int, items: int, portal: str) -> float:
    url = fresh_database()
    try:
        engine, _ = fill(url, portal, items)
        engine.dispose()
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=worker, args=(url, portal)) for _ in range(processes)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rate = items / (time.perf_counter() - started)
        engine = sa.create_engine(url)
        with engine.connect() as conn:  # a figure counts only if every item was delivered
            done = conn.execute(sa.text("SELECT count(*) FROM sync_queue WHERE status = 'done'")).scalar_one()
        engine.dispose()
        assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
        assert done == items, f"{done} of {items} items done"
        return rate
    finally:
        drop_database(url)


def baseline(items: int, portal: str) -> float:
    url = fresh_database()
    try:
        engine, table = fill(url, portal, items)
        client = ScosClient(f"{portal}/api/v2", KEY)
        started = time.perf_counter()
        while True:
            claimed = outbox.claim(engine, table, "scos", 1, 60, "base")
            if not claimed:
                break
            item = claimed[0]
            client.participation_add([item["payload"]])
            outbox.complete(engine, table, item["id"], "base", {"saved": True})
        rate = items / (time.perf_counter() - started)
        engine.dispose()
        return rate
    finally:
        drop_database(url)


def claim_latency(portal: str) -> tuple[float, float]:
    url = fresh_database()
    try:
        engine, table = fill(url, portal, 5000)
        times = []
        for _ in range(100):
            t0 = time.perf_counter()
            outbox.claim(engine, table, "scos", 50, 60, "probe")
            times.append((time.perf_counter() - t0) * 1000)
        engine.dispose()
        return statistics.median(times), sorted(times)[94]
    finally:
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10000)
    args = parser.parse_args()
    ready, port = multiprocessing.Event(), multiprocessing.Value("i", 0)
    server = multiprocessing.get_context("fork").Process(target=portal_process, args=(ready, port), daemon=True)
    server.start()
    ready.wait(10)
    portal = f"http://127.0.0.1:{port.value}"
    try:
        one = run(1, args.items, portal)
        four = run(4, args.items, portal)
        stats = httpx.get(f"{portal}/sandbox/stats").json()
        base = baseline(min(args.items, 2000), portal)
        median, p95 = claim_latency(portal)
        print(f"outbox on PostgreSQL -> СЦОС sandbox, {args.items:,} participation items:")
        print(f"  1 dispatcher:  {one:,.0f} items/s")
        print(f"  4 dispatchers: {four:,.0f} items/s (goal >= 1,000)")
        print(f"  one item per call and per UPDATE (baseline, same run): {base:,.0f} items/s -> "
              f"4 dispatchers {four / base:.1f}x")
        print(f"  claim of 50 items: median {median:.1f} ms, p95 {p95:.1f} ms")
        print(f"  sandbox received {stats['distinct']:,} distinct items, {stats['duplicates']} duplicated")
        assert stats["duplicates"] == 0, stats  # exactly once
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
