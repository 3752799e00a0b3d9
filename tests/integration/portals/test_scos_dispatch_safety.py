"""A dispatcher killed mid-batch, and a key the portal refuses (issue 11, defects 8 and 11b), as users meet them:
`bufsync queue dispatch` in its own process against the sandbox СЦОС over HTTP, on SQLite and PostgreSQL.

What the portal holds is read from the sandbox; what was sent twice from its delivery counter; what bufsync
knows from sync_queue and sync_runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bufsync import tls
from bufsync.portals.scos.client import ScosClient
from bufsync.portals.scos.dispatch import NOT_RESENT
from bufsync.queue import outbox
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
from bufsync.state.ledger import now_utc

KEY = "k" * 32
PARTNER = "sandbox-partner"
PARTICIPATION = "/api/v2/courses/participation"
PASSPORT = {"title": "Python", "description": "d", "content": "c", "results": "r", "institution": "inst",
            "started_at": "2026-09-01", "image": "https://lms.example/i.png", "competences": "a\nb",
            "requirements": ["r"], "direction": ["09.03.01"], "duration": {"code": "week", "value": 16},
            "cert": "true", "teachers": [{"display_name": "T"}], "business_version": 1, "credits": 3, "lectures": 10}


def url(n: int) -> str:
    return f"https://lms.example/course/view.php?id={n}"


@pytest.fixture
def portal():
    server = PortalServer(Portal(SandboxConfig(key=KEY, moderation_seconds=3600)), port=0)
    server.serve_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def bufsync(buffer_url: str, portal: PortalServer, cwd: Path, *args: str, key: str = KEY) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")} | {
        "BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_SCOS_URL": f"{portal.url}/api/v2", "BUFSYNC_SCOS_KEY": key,
        "BUFSYNC_SCOS_PARTNER_ID": PARTNER, "BUFSYNC_SCOS_INSTITUTION": "inst"}
    return subprocess.Popen([str(Path(sys.executable).with_name("bufsync")), *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, seconds: float = 60.0) -> None:
    """Polls what the test observes (never a fixed sleep an assertion relies on)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def state(portal: PortalServer) -> dict[str, Any]:
    return httpx.get(f"{portal.url}/sandbox/state", verify=tls.verify()).json()


def queue_rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    return {r["idempotency_key"]: r for r in outbox.listing(engine, table, limit=1000)}


def runs(engine: sa.Engine) -> list[dict[str, Any]]:
    table = sa.Table("sync_runs", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]


def test_a_dispatcher_killed_mid_batch_leaves_nothing_delivered_twice_that_must_not_be(
        portal, queue, buffer_url: str, tmp_path: Path) -> None:
    engine, table = queue
    client = ScosClient(f"{portal.url}/api/v2", KEY)
    course = client.publish(PARTNER, PASSPORT | {"external_url": url(1)})  # learners are enrolled here
    updated = client.publish(PARTNER, PASSPORT | {"external_url": url(2)})  # its version 2 is queued
    archived = client.publish(PARTNER, PASSPORT | {"external_url": url(3)})
    learner = {"course_id": course, "session_id": "s1", "enroll_date": "2026-09-01T08:00:00+03:00"}
    assert client.participation_add([learner | {"user_id": "graduate"}])[0]["saved"]
    queued = [outbox.Item("scos", "course_publish", PASSPORT | {"external_url": url(n)}, f"publish:{n}")
              for n in (10, 11, 12)]
    queued += [outbox.Item("scos", "course_update", PASSPORT | {"external_url": url(2), "id": updated,
                                                                 "business_version": 2, "title": "Python 2"},
                           "update:2:v2"),
               outbox.Item("scos", "course_status", {"course_id": archived, "status": "archive"}, "archive:3"),
               outbox.Item("scos", "certificate", {"course_id": course, "session_id": "s1", "user_id": "graduate",
                                                   "document": {"number": "1-1", "issued_at": "2026-12-25"}},
                           "certificate:1:graduate")]
    queued += [outbox.Item("scos", "participation_add", learner | {"user_id": f"u{i}"}, f"enrol:{i}")
               for i in range(25)]
    outbox.enqueue(engine, table, queued)
    # the portal takes each enrolment array, then never answers: the dispatcher hangs with its whole batch
    portal.faults.add(FaultRule(kind="timeout_after_write", function=PARTICIPATION, seconds=600))
    victim = bufsync(buffer_url, portal, tmp_path, "queue", "dispatch", "--portal", "scos")
    try:
        wait_for(lambda: len(portal.portal.participation) == 26, "the killed dispatcher's enrolments to arrive")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    held = state(portal)
    assert sorted(c["external_url"] for c in held["courses"]) == sorted(url(n) for n in (1, 2, 3, 10, 11, 12))
    assert {c["id"]: (c["status"], c["business_version"]) for c in held["courses"]}[updated] == ("ACTIVE", 2)
    assert len(held["certificates"]) == 1
    assert {r["status"] for r in queue_rows(engine, table).values()} == {"running"}  # nothing was recorded

    portal.faults.clear()
    with engine.begin() as conn:  # the dead dispatcher's lease runs out (the clock is the test's)
        conn.execute(table.update().where(table.c.status == "running").values(
            locked_until=now_utc() - timedelta(seconds=1)))
    second = bufsync(buffer_url, portal, tmp_path, "queue", "dispatch", "--portal", "scos")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 1, err  # 1: an item went dead (the certificate, on purpose)
    assert "claimed=31 done=30 retried=0 dead=1 in_doubt=31 (confirmed=4 resent=26)" in out, out

    # the portal holds each thing once; only operations it takes twice without harm were sent twice
    held = state(portal)
    assert sorted(c["external_url"] for c in held["courses"]) == sorted(url(n) for n in (1, 2, 3, 10, 11, 12))
    by_id = {c["id"]: c for c in held["courses"]}
    assert (by_id[updated]["business_version"], by_id[updated]["title"]) == (2, "Python 2")
    assert by_id[archived]["status"] == "ARCHIVE"
    assert sorted(p["user_id"] for p in held["participation"]) == sorted([f"u{i}" for i in range(25)] + ["graduate"])
    assert len(held["certificates"]) == 1
    deliveries = portal.portal.deliveries
    assert all(deliveries[f"course:{url(n)}"] == 1 for n in (10, 11, 12))  # asked, not published again
    assert deliveries[f"certificate:{course}:graduate"] == 1  # not sent again
    assert all(deliveries[f"enrol:{course}:s1:u{i}"] == 2 for i in range(25))  # sent again, kept once
    assert portal.portal.calls["PUT /registry/courses"] == 1  # the update was read back, not sent again

    rows = queue_rows(engine, table)
    published = {c["external_url"]: c["id"] for c in held["courses"]}
    for n in (10, 11, 12):
        row = rows[f"publish:{n}"]
        assert (row["status"], row["resends"], bool(row["in_doubt"]), row["attempts"]) == ("done", 0, False, 2)
        assert json.loads(row["response"]) == {"course_id": published[url(n)], "adopted": True}
    assert (rows["update:2:v2"]["status"], rows["update:2:v2"]["resends"]) == ("done", 0)
    assert (rows["archive:3"]["status"], rows["archive:3"]["resends"]) == ("done", 1)
    assert all((rows[f"enrol:{i}"]["status"], rows[f"enrol:{i}"]["resends"]) == ("done", 1) for i in range(25))
    certificate = rows["certificate:1:graduate"]
    assert (certificate["status"], certificate["resends"], bool(certificate["in_doubt"])) == ("dead", 0, True)
    assert certificate["last_error"] == NOT_RESENT.format(id=certificate["id"])
    recorded = runs(engine)[-1]
    counts = json.loads(recorded["counts"])
    assert recorded["outcome"] == "rejected" and recorded["kind"] == "dispatch"
    assert {k: counts[k] for k in ("claimed", "done", "dead", "in_doubt", "confirmed", "resent")} == {
        "claimed": 31, "done": 30, "dead": 1, "in_doubt": 31, "confirmed": 4, "resent": 26}

    # the operator looks at the portal, finds the certificate there, and cancels the item
    assert outbox.cancel(engine, table, [certificate["id"]]) == 1


def test_an_answer_lost_after_the_portal_took_a_publish_does_not_publish_twice(portal, queue) -> None:
    """The same doubt without a dead dispatcher: the portal did the call, the answer never came."""
    from bufsync.portals.scos.dispatch import ScosHandler
    from bufsync.queue.dispatcher import dispatch
    engine, table = queue
    outbox.enqueue(engine, table, [outbox.Item("scos", "course_publish", PASSPORT | {"external_url": url(5)},
                                               "publish:5"),
                                   outbox.Item("scos", "participation_add", {"course_id": "none"}, "enrol:x")])
    portal.faults.add(FaultRule(kind="timeout_after_write", function="/api/v2/registry/courses", count=1,
                                seconds=5))
    handler = ScosHandler(ScosClient(f"{portal.url}/api/v2", KEY, timeout=0.5), PARTNER)
    stats = dispatch(engine, table, "scos", batch_handler=handler, until_empty=True)
    assert stats.retried == 1
    row = queue_rows(engine, table)["publish:5"]
    assert (row["status"], bool(row["in_doubt"])) == ("failed", True)
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.status == "failed").values(available_at=now_utc()))
    stats = dispatch(engine, table, "scos", batch_handler=handler, until_empty=True)
    assert (stats.done, stats.in_doubt, stats.confirmed, stats.resent) == (1, 1, 1, 0)
    assert [c["external_url"] for c in state(portal)["courses"]] == [url(5)]
    assert portal.portal.deliveries[f"course:{url(5)}"] == 1


def test_a_refused_key_stops_the_dispatcher_and_kills_no_item(portal, queue, buffer_url: str, tmp_path: Path) -> None:
    engine, table = queue
    client = ScosClient(f"{portal.url}/api/v2", KEY)
    course = client.publish(PARTNER, PASSPORT | {"external_url": url(1)})
    outbox.enqueue(engine, table, [outbox.Item("scos", "participation_add", {
        "course_id": course, "session_id": "s1", "user_id": f"u{i}", "enroll_date": "2026-09-01"}, f"enrol:{i}")
        for i in range(40)] + [outbox.Item("scos", "course_publish", PASSPORT | {"external_url": url(2)}, "publish:2")])
    wrong = "wrong-key-" + "0" * 22
    dispatcher = bufsync(buffer_url, portal, tmp_path, "queue", "dispatch", "--portal", "scos", key=wrong)
    out, err = dispatcher.communicate(timeout=120)
    assert dispatcher.returncode == 2, (out, err)
    assert err.strip().splitlines() == [
        'bufsync: the portal refused the key BUFSYNC_SCOS_KEY (scos.key): HTTP 403 {"error": "invalid X-CN-UUID"}; '
        "no item was sent or used an attempt: fix the key, then dispatch again"]
    assert wrong not in out + err
    rows = queue_rows(engine, table)
    assert {(r["status"], r["attempts"], r["locked_by"]) for r in rows.values()} == {("pending", 0, None)}
    assert portal.portal.calls["POST /registry/courses"] == 1 and not portal.portal.participation  # only the setup
    recorded = runs(engine)[-1]
    assert recorded["outcome"] == "failed" and recorded["error"].startswith("the portal refused the key")
    assert json.loads(recorded["counts"])["released"] == 41 and wrong not in recorded["error"]

    fixed = bufsync(buffer_url, portal, tmp_path, "queue", "dispatch", "--portal", "scos")
    out, err = fixed.communicate(timeout=120)
    assert fixed.returncode == 0, err
    assert len(state(portal)["participation"]) == 40 and len(state(portal)["courses"]) == 2
    assert {(r["status"], r["attempts"]) for r in queue_rows(engine, table).values()} == {("done", 1)}
