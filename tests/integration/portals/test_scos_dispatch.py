"""СЦОС learner data through the outbox: the sandbox portal counts what it receives."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import sqlalchemy as sa

from bufsync.portals.scos.client import ScosClient, ScosRejected
from bufsync.portals.scos.dispatch import ScosHandler
from bufsync.queue import outbox
from bufsync.queue.dispatcher import dispatch
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
from tests.integration.queue.test_outbox import elapse

PASSPORT = {"title": "Python", "description": "d", "content": "c", "results": "r",
            "external_url": "https://lms.example/course/view.php?id=2", "institution": "inst",
            "started_at": "2026-09-01", "image": "https://lms.example/i.png", "competences": "a\nb",
            "requirements": ["r"], "direction": ["09.03.01"],
            "duration": {"code": "week", "value": 16}, "cert": "true", "teachers": [{"display_name": "T"}],
            "business_version": 1, "credits": 3, "lectures": 10}


@pytest.fixture
def portal():
    server = PortalServer(Portal(SandboxConfig(key="k" * 32, moderation_polls=1)), port=0)
    server.serve_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def client(server: PortalServer) -> ScosClient:
    return ScosClient(f"{server.url}/api/v2", "k" * 32, timeout=5)


def test_course_passport_moderation_and_archive(portal) -> None:
    c = client(portal)
    c.check()
    course_id = c.publish("sandbox-partner", PASSPORT)
    assert c.moderation_status(course_id) == "in_progress"
    assert c.moderation_status(course_id) == "ok"  # moderation lasts one status poll
    assert c.set_status(course_id, "archive") == "ARCHIVE"
    with pytest.raises(ScosRejected) as err:
        c.publish("sandbox-partner", {k: v for k, v in PASSPORT.items() if k != "title"} | {"external_url": "x"})
    assert err.value.status == 400 and "title" in err.value.body
    with pytest.raises(ScosRejected) as err:
        ScosClient(f"{portal.url}/api/v2", "wrong-key-0000").check()
    assert err.value.status == 403


def enqueue_participation(engine, table, course_id: str, n: int) -> None:
    outbox.enqueue(engine, table, [outbox.Item(
        "scos", "participation_add", {"course_id": course_id, "session_id": "2026-autumn", "user_id": f"user-{i}",
                                      "enroll_date": "2026-09-01T08:00:00+03:00"}, f"enrol:{course_id}:user-{i}")
        for i in range(n)])


def test_bad_items_fail_alone_with_the_portal_reason(portal, queue) -> None:
    engine, table = queue
    course_id = client(portal).publish("sandbox-partner", PASSPORT)
    enqueue_participation(engine, table, course_id, 25)
    outbox.enqueue(engine, table, [outbox.Item("scos", "participation_add", {"course_id": "no-such-course",
                                                                             "session_id": "s", "user_id": "u",
                                                                             "enroll_date": "2026-09-01"}, "bad")])
    portal.faults.add(FaultRule(kind="http_503", count=1))
    stats = dispatch(engine, table, "scos", batch_handler=ScosHandler(client(portal), "sandbox-partner"),
                     batch=30, until_empty=True)
    assert stats.dead == 1
    dead = outbox.listing(engine, table, status="dead")
    assert "unknown course_id" in dead[0]["last_error"]
    elapse(engine, table, 60)  # the transient 503's backoff (seconds) is over
    dispatch(engine, table, "scos", batch_handler=ScosHandler(client(portal), "sandbox-partner"), until_empty=True)
    assert len(portal.portal.participation) == 25


def _dispatcher(url: str, portal_url: str) -> None:
    engine = sa.create_engine(url)
    table = sa.Table("sync_queue", sa.MetaData(), autoload_with=engine)
    handler = ScosHandler(ScosClient(f"{portal_url}/api/v2", "k" * 32, timeout=30), "sandbox-partner")
    # a lease far longer than any batch takes, even on a loaded machine: no live dispatcher's batch is ever
    # taken over; the test of a dead one's lease moves the queue's time on instead of waiting
    dispatch(engine, table, "scos", batch_handler=handler, batch=50, lease_seconds=60, until_empty=True)
    engine.dispose()


@pytest.mark.parametrize("buffer_url", ["postgresql"], indirect=True)
def test_four_dispatchers_deliver_10000_items_exactly_once(portal, queue, buffer_url: str) -> None:
    engine, table = queue
    course_id = client(portal).publish("sandbox-partner", PASSPORT)
    enqueue_participation(engine, table, course_id, 10000)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_dispatcher, args=(buffer_url, portal.url)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
        assert w.exitcode == 0
    deliveries = portal.portal.deliveries
    enrol = {k: v for k, v in deliveries.items() if k.startswith("enrol:")}
    assert len(enrol) == 10000 and all(v == 1 for v in enrol.values())  # every item once, none twice
    assert {s["status"]: s["items"] for s in outbox.stats(engine, table)} == {"done": 10000}


@pytest.mark.parametrize("buffer_url", ["postgresql"], indirect=True)
def test_a_killed_dispatchers_items_are_reclaimed_after_the_lease(portal, queue, buffer_url: str) -> None:
    engine, table = queue
    course_id = client(portal).publish("sandbox-partner", PASSPORT)
    enqueue_participation(engine, table, course_id, 200)
    # the portal takes the victim's first call and never answers it in time: the victim dies holding its batch
    portal.faults.add(FaultRule(kind="latency", seconds=600.0, count=1))
    victim = multiprocessing.get_context("spawn").Process(target=_dispatcher, args=(buffer_url, portal.url))
    victim.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not portal.faults.fired.get("latency"):
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    held = outbox.listing(engine, table, status="running")
    assert held  # its batch is stuck with a lease
    _dispatcher(buffer_url, portal.url)  # takes what is free, not the dead one's batch: its lease runs
    assert {i["id"] for i in outbox.listing(engine, table, status="running")} == {i["id"] for i in held}
    elapse(engine, table, 61)  # the lease (60 s) ends
    _dispatcher(buffer_url, portal.url)
    assert {s["status"]: s["items"] for s in outbox.stats(engine, table)} == {"done": 200}
    assert len(portal.portal.participation) == 200  # one participation each, whatever was re-sent


def test_one_dispatcher_keeps_several_arrays_in_flight(portal, queue) -> None:
    engine, table = queue
    course_id = client(portal).publish("sandbox-partner", PASSPORT)
    enqueue_participation(engine, table, course_id, 39)
    outbox.enqueue(engine, table, [outbox.Item("scos", "participation_add", {
        "course_id": course_id, "session_id": "s", "user_id": "", "enroll_date": "2026-09-01"}, "bad")])
    # the portal answers the arrays only once four are in flight at once (a client sending one at a time
    # would get each answer after 30 s): what is measured is the client's concurrency, not its speed
    portal.hold(4, "/api/v2/courses/participation", seconds=30)
    handler = ScosHandler(ScosClient(f"{portal.url}/api/v2", "k" * 32, timeout=60), "sandbox-partner", parallel=4)
    stats = dispatch(engine, table, "scos", batch_handler=handler, batch=40, until_empty=True)
    handler.close()
    assert stats.done == 39 and stats.dead == 1  # the bad item still fails alone
    assert portal.most_in_flight == 4  # four arrays of 10 in flight at once, not one after another
    assert "missing: user_id" in outbox.listing(engine, table, status="dead")[0]["last_error"]
