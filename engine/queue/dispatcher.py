"""A dispatcher: claim a batch, hand each item to the portal's handler, record the outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bufsync.queue import outbox

log = logging.getLogger("bufsync.queue")


@dataclass
class Delivered:
    response: Any = None


@dataclass
class Transient:
    """Worth another try later: 5xx, a timeout, a connection refused."""

    error: str


@dataclass
class Permanent:
    """The portal rejected the data (4xx with a reason): retrying cannot help."""

    error: str


Handler = Callable[[dict[str, Any]], Delivered | Transient | Permanent]
BatchHandler = Callable[[list[dict[str, Any]]], list[Delivered | Transient | Permanent]]


@dataclass
class DispatchStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0


def dispatch(engine: sa.Engine, table: sa.Table, portal: str, handler: Handler | None = None, *,
             batch_handler: BatchHandler | None = None, batch: int = 50, lease_seconds: float = 60.0,
             poll_seconds: float = 1.0, stop: threading.Event | None = None, until_empty: bool = False,
             worker: str | None = None) -> DispatchStats:
    """Claim, deliver, record, until stopped (or, with until_empty, until nothing is due).

    A batch handler sends a claimed batch in as few portal calls as the portal allows; the
    successes are recorded in one statement.
    """
    if (handler is None) == (batch_handler is None):
        raise ValueError("give exactly one of handler or batch_handler")
    worker = worker or outbox.worker_name()
    stop = stop or threading.Event()
    stats = DispatchStats()
    while not stop.is_set():
        items = outbox.claim(engine, table, portal, batch, lease_seconds, worker)
        if not items:
            if until_empty:
                break
            stop.wait(poll_seconds)
            continue
        stats.claimed += len(items)
        if batch_handler is not None:
            try:
                results = batch_handler(items)
            except Exception as exc:  # the whole batch failed in transit: each item is retried
                results = [Transient(f"{type(exc).__name__}: {exc}") for _ in items]
        else:
            results = []
            for item in items:
                try:
                    results.append(handler(item))
                except Exception as exc:  # a handler bug or a network error: the item is retried, not lost
                    results.append(Transient(f"{type(exc).__name__}: {exc}"))
        done = [(item["id"], r.response) for item, r in zip(items, results) if isinstance(r, Delivered)]
        completed = outbox.complete_many(engine, table, done, worker)
        stats.done += completed
        stats.lost_lease += len(done) - completed
        for item, result in zip(items, results):
            if isinstance(result, Delivered):
                continue
            status = outbox.fail(engine, table, item, worker, result.error, isinstance(result, Permanent))
            if status == outbox.DEAD:
                stats.dead += 1
            else:
                stats.retried += 1
    return stats
