"""Items whose previous send may have reached the portal (issue 11, defect 8), and a portal that refuses the
credentials (defect 11b), in the generic queue: what the handler is told, what the rows and the stats say."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bufsync.queue import outbox
from bufsync.queue.dispatcher import AccessRefused, Delivered, DispatchRefused, Permanent, Transient, dispatch
from bufsync.state.ledger import now_utc


def items(n: int) -> list[outbox.Item]:
    return [outbox.Item("scos", "participation_add", {"user_id": f"u{i}"}, f"enrol:u{i}", 5) for i in range(n)]


def expire_leases(engine: sa.Engine, table: sa.Table) -> None:
    """As if the lease of every running item had run out (the clock is driven from the test)."""
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.status == "running").values(
            locked_until=now_utc() - timedelta(seconds=1)))


def make_due(engine: sa.Engine, table: sa.Table) -> None:
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.status == "failed").values(
            available_at=now_utc() - timedelta(seconds=1)))


def rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict]:
    return {r["idempotency_key"]: r for r in outbox.listing(engine, table)}


def test_an_item_taken_over_from_a_dead_holder_is_in_doubt_and_its_resend_is_counted(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(3))
    outbox.claim(engine, table, "scos", 2, 60, worker="killed-dispatcher")  # u0, u1: sent or not, nobody knows
    seen: dict[str, bool] = {}

    def handler(item):
        seen[item["payload"]["user_id"]] = item["in_doubt"]
        if item["payload"]["user_id"] == "u1":
            return Delivered({"found": True}, sent=False)  # the portal was asked: it has it
        return Delivered({"saved": True})

    stats = dispatch(engine, table, "scos", handler, until_empty=True)
    assert seen == {"u2": False}  # the dead holder's items are not free before their lease ends
    expire_leases(engine, table)
    stats = dispatch(engine, table, "scos", handler, until_empty=True)
    assert seen == {"u2": False, "u0": True, "u1": True}
    assert (stats.claimed, stats.done, stats.in_doubt, stats.resent, stats.confirmed) == (2, 2, 2, 1, 1)
    after = rows(engine, table)
    assert {k: (r["status"], r["attempts"], bool(r["in_doubt"]), r["resends"]) for k, r in after.items()} == {
        "enrol:u0": ("done", 2, False, 1), "enrol:u1": ("done", 2, False, 0), "enrol:u2": ("done", 1, False, 0)}


def test_doubt_lasts_until_the_portal_settles_it(queue) -> None:
    """A lost answer leaves the item in doubt; a later 503 does not clear that; an operator's retry does."""
    engine, table = queue
    outbox.enqueue(engine, table, items(1))
    answers = iter([Transient("ReadTimeout", in_doubt=True), Transient("HTTP 503"),
                    Permanent("not sent again: unsafe", sent=False)])
    seen: list[bool] = []

    def handler(item):
        seen.append(bool(item["in_doubt"]))
        return next(answers)

    dispatch(engine, table, "scos", handler, until_empty=True)
    assert rows(engine, table)["enrol:u0"]["in_doubt"]
    assert outbox.retry(engine, table, status="failed") == 1  # "try it now" is no check of the portal
    assert rows(engine, table)["enrol:u0"]["in_doubt"]
    dispatch(engine, table, "scos", handler, until_empty=True)
    make_due(engine, table)
    stats = dispatch(engine, table, "scos", handler, until_empty=True)
    assert seen == [False, True, True] and stats.dead == 1 and stats.resent == 0
    row = rows(engine, table)["enrol:u0"]
    assert (row["status"], bool(row["in_doubt"]), row["resends"]) == ("dead", True, 1)  # the 503 try was a resend
    assert outbox.retry(engine, table, [row["id"]]) == 1  # the operator checked the portal and sends it again
    row = rows(engine, table)["enrol:u0"]
    assert (row["status"], bool(row["in_doubt"]), row["attempts"]) == ("pending", False, 0)


def test_a_refused_key_stops_the_dispatcher_and_costs_no_item_an_attempt(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(5))
    first = outbox.claim(engine, table, "scos", 1, 60, worker="w")  # u0 failed once before (a 503)
    outbox.fail(engine, table, first[0], "w", "HTTP 503", permanent=False)
    make_due(engine, table)
    calls: list[str] = []

    def handler(item):
        calls.append(item["payload"]["user_id"])
        if len(calls) == 1:
            return Delivered({"saved": True})  # accepted just before the key was revoked
        return AccessRefused("the portal refused the key")

    with pytest.raises(DispatchRefused) as refused:
        dispatch(engine, table, "scos", handler, batch=10, until_empty=True, worker="w")
    assert str(refused.value) == "the portal refused the key" and refused.value.exit_code == 2
    stats = refused.value.stats
    assert (stats.claimed, stats.done, stats.dead, stats.retried, stats.released) == (5, 1, 0, 0, 4)
    assert len(calls) == 2  # after the refusal no other item was tried
    attempts_before = {"u0": 1, "u1": 0, "u2": 0, "u3": 0, "u4": 0}
    expected = {f"enrol:{u}": ("failed" if n else "pending", n, None, "the portal refused the key")
                for u, n in attempts_before.items()}
    expected[f"enrol:{calls[0]}"] = ("done", attempts_before[calls[0]] + 1, "w", None)
    assert {k: (r["status"], r["attempts"], r["locked_by"], r["last_error"])
            for k, r in rows(engine, table).items()} == expected


def test_a_refused_key_gives_an_item_that_failed_before_back_as_failed(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, items(1))
    outbox.fail(engine, table, outbox.claim(engine, table, "scos", 1, 60, "w")[0], "w", "HTTP 503", permanent=False)
    make_due(engine, table)
    with pytest.raises(DispatchRefused):
        dispatch(engine, table, "scos", batch_handler=lambda batch: [AccessRefused("refused")] * len(batch),
                 until_empty=True)
    row = rows(engine, table)["enrol:u0"]
    assert (row["status"], row["attempts"], row["locked_until"]) == ("failed", 1, None)
