"""The outbox on real databases: idempotent enqueue, claims that never collide, leases, backoff, dead letters."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from bufsync.queue import outbox
from bufsync.queue.dispatcher import Delivered, Permanent, Transient, dispatch


def items(n: int, start: int = 0) -> list[outbox.Item]:
    return [outbox.Item("scos", "participation_add", {"course_id": "c1", "user_id": f"u{i}"}, f"enrol:c1:u{i}", 3)
            for i in range(start, start + n)]


def elapse(engine: sa.Engine, table: sa.Table, seconds: float) -> None:
    """Time passes for the queue without anybody waiting: every item's due time and lease move `seconds`
    into the past, as if the next claim came that much later. Tests of backoff and leases use this, never
    a sleep, so they neither wait nor depend on how fast the machine is."""
    shift = timedelta(seconds=seconds)
    with engine.begin() as conn:
        rows = conn.execute(sa.select(table.c.id, table.c.available_at, table.c.locked_until)).all()
        for row in rows:
            conn.execute(table.update().where(table.c.id == row.id).values(
                available_at=row.available_at - shift if row.available_at else None,
                locked_until=row.locked_until - shift if row.locked_until else None))


def test_enqueue_twice_is_a_no_op(queue) -> None:
    engine, table = queue
    assert outbox.enqueue(engine, table, items(10)) == 10
    assert outbox.enqueue(engine, table, items(12)) == 2
    assert sum(s["items"] for s in outbox.stats(engine, table)) == 12


def test_claim_lease_complete_retry_and_dead(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(3))
    first = outbox.claim(engine, table, "scos", 2, lease_seconds=60, worker="a")
    second = outbox.claim(engine, table, "scos", 5, lease_seconds=60, worker="b")
    assert len(first) == 2 and len(second) == 1
    assert {i["id"] for i in first}.isdisjoint(i["id"] for i in second)
    assert outbox.complete(engine, table, first[0]["id"], "a", {"saved": True})
    assert not outbox.complete(engine, table, first[1]["id"], "b", {})  # not b's item
    assert outbox.fail(engine, table, first[1], "a", "HTTP 503", permanent=False) == outbox.FAILED
    assert outbox.fail(engine, table, second[0], "b", "HTTP 422: bad course_id", permanent=True) == outbox.DEAD
    rows = {r["id"]: r for r in outbox.listing(engine, table)}
    assert rows[first[0]["id"]]["status"] == "done" and rows[second[0]["id"]]["last_error"] == "HTTP 422: bad course_id"
    failed = rows[first[1]["id"]]
    assert failed["status"] == "failed" and failed["available_at"] >= failed["created_at"]
    assert outbox.retry(engine, table, status="dead") == 1
    assert outbox.cancel(engine, table, portal="scos") == 2


def test_an_expired_lease_is_taken_over(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(1))
    taken = outbox.claim(engine, table, "scos", 1, lease_seconds=60, worker="dead-worker")
    assert outbox.claim(engine, table, "scos", 1, lease_seconds=60, worker="other") == []
    elapse(engine, table, 30)  # half the lease: still held
    assert outbox.claim(engine, table, "scos", 1, lease_seconds=60, worker="other") == []
    elapse(engine, table, 31)  # the lease has ended
    again = outbox.claim(engine, table, "scos", 1, lease_seconds=60, worker="other")
    assert [i["id"] for i in again] == [taken[0]["id"]] and again[0]["attempts"] == 2
    assert not outbox.complete(engine, table, taken[0]["id"], "dead-worker", {})  # the old holder cannot finish it


def test_dispatcher_outcomes(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(30))

    tried: set[int] = set()

    def handler(item):
        n = int(item["payload"]["user_id"][1:])
        if n % 10 == 3:
            return Permanent("HTTP 400: user_id unknown")
        if n % 10 == 7 and n not in tried:
            tried.add(n)
            return Transient("HTTP 503")
        return Delivered({"saved": True})

    stats = dispatch(engine, table, "scos", handler, batch=7, until_empty=True)
    assert stats.done == 24 and stats.dead == 3 and stats.retried == 3
    assert outbox.retry(engine, table, status="failed") == 3
    stats = dispatch(engine, table, "scos", handler, batch=7, until_empty=True)
    assert stats.done == 3
    counts = {s["status"]: s["items"] for s in outbox.stats(engine, table)}
    assert counts == {"done": 27, "dead": 3}


def _worker(url: str, deliveries: str) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table("sync_queue", meta, autoload_with=engine)
    sink = sa.Table(deliveries, meta, autoload_with=engine)
    others = False

    def deliver(item):
        nonlocal others
        with engine.begin() as conn:  # the "portal": one row per delivery; the primary key rejects a second
            conn.execute(sink.insert().values(item_id=item["id"], worker=os.getpid()))
        # this worker's first delivery waits (its batch claimed) until another worker delivered too, so the
        # dispatchers do overlap however the processes happen to be scheduled; a claim that handed one worker
        # everything, or blocked the others while a batch is held, leaves this worker alone: spread 1
        deadline = time.monotonic() + 60
        while not others and time.monotonic() < deadline:
            with engine.connect() as conn:
                others = conn.execute(sa.select(sa.func.count(sa.distinct(sink.c.worker)))).scalar_one() > 1
            if not others:
                time.sleep(0.02)
        others = True
        return Delivered()

    dispatch(engine, table, "scos", deliver, batch=25, until_empty=True)
    engine.dispose()


@pytest.mark.parametrize("processes", [4])
def test_concurrent_dispatchers_deliver_each_item_once(queue, buffer_url: str, processes: int) -> None:
    engine, table = queue
    total = 2000
    outbox.enqueue(engine, table, items(total))
    meta = sa.MetaData()
    sink = sa.Table("test_deliveries", meta, sa.Column("item_id", sa.BigInteger, primary_key=True),
                    sa.Column("worker", sa.Integer))
    meta.create_all(engine)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(buffer_url, "test_deliveries")) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    with engine.connect() as conn:
        delivered = conn.execute(sa.select(sa.func.count()).select_from(sink)).scalar_one()
        spread = conn.execute(sa.select(sa.func.count(sa.distinct(sink.c.worker)))).scalar_one()
    assert delivered == total
    assert {s["status"]: s["items"] for s in outbox.stats(engine, table)} == {"done": total}
    assert spread >= 2  # the work was shared: another dispatcher claimed while one held its batch


def test_operator_commands(queue, buffer_url: str, tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.integration.clirun import bufsync_in_process
    engine, table = queue
    outbox.enqueue(engine, table, items(3))
    taken = outbox.claim(engine, table, "scos", 1, 60, "w")
    outbox.fail(engine, table, taken[0], "w", "HTTP 422: course_id unknown", permanent=True)
    exe = str(Path(sys.executable).with_name("bufsync"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")} | {"BUFSYNC_BUFFER_URL": buffer_url}

    def run(*args: str, process: bool = False) -> str:
        """`bufsync queue ...`: once as a real process, then in-process without a process start (tests/clirun.py)."""
        if process:
            result = subprocess.run([exe, "queue", *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        else:
            result = bufsync_in_process("queue", *args, env={"BUFSYNC_BUFFER_URL": buffer_url})
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "dead" in run("stats", process=True) and "pending" in run("stats", "--portal", "scos")
    dead = json.loads(run("list", "--status", "dead", "--json"))
    assert [d["id"] for d in dead] == [taken[0]["id"]]
    assert "HTTP 422" in run("show", str(taken[0]["id"]))
    assert run("retry", str(taken[0]["id"])).startswith("1 item(s)")
    assert run("cancel", "--portal", "scos").startswith("3 item(s)")


def test_purge_deletes_finished_items_but_not_dead_ones_or_those_still_awaited(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(4))
    claimed = outbox.claim(engine, table, "scos", 4, lease_seconds=60, worker="w")
    outbox.complete_many(engine, table, [(i["id"], {}) for i in claimed[:2]], "w")
    outbox.fail(engine, table, claimed[2], "w", "HTTP 400: bad", permanent=True)
    awaited = claimed[1]["idempotency_key"]
    keep = [sa.select(sa.literal(awaited))]
    assert outbox.purge(engine, table, datetime(2000, 1, 1), keep) == 0  # nothing finished that long ago
    assert outbox.purge(engine, table, datetime(2100, 1, 1), keep) == 1
    left = {r["idempotency_key"]: r["status"] for r in outbox.listing(engine, table)}
    assert left == {awaited: "done", claimed[2]["idempotency_key"]: "dead", claimed[3]["idempotency_key"]: "running"}


def test_enqueue_without_on_conflict_keeps_the_same_key_once(queue, monkeypatch) -> None:
    """The path MS SQL takes (no INSERT ... ON CONFLICT), run here on SQLite and PostgreSQL: a chunk goes in
    at once; a key offered twice falls back to one savepoint per row, and lands once."""
    from bufsync.dialects import dialect_named
    engine, table = queue
    monkeypatch.setattr(type(dialect_named(engine.dialect.name)), "insert_ignoring", lambda self, *args: None)
    assert outbox.enqueue(engine, table, items(5)) == 5
    assert outbox.enqueue(engine, table, items(3, 4) + items(1, 6)) == 2  # u4 is queued; u5 new; u6 offered twice
    assert sorted(r["idempotency_key"] for r in outbox.listing(engine, table)) == sorted(
        i.key for i in items(7))
