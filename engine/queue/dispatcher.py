"""A dispatcher: claim a batch, hand each item to the portal's handler, record the outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class DispatchStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


def dispatch(engine: sa.Engine, table: sa.Table, portal: str, handler: Handler, *, batch: int = 50,
             lease_seconds: float = 60.0, poll_seconds: float = 1.0, stop: threading.Event | None = None,
             until_empty: bool = False, worker: str | None = None) -> DispatchStats:
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
        for item in items:
            try:
                result = handler(item)
            except Exception as exc:  # a handler bug or a network error: the item is retried, not lost
                result = Transient(f"{type(exc).__name__}: {exc}")
            if isinstance(result, Delivered):
                if outbox.complete(engine, table, item["id"], worker, result.response):
                    stats.done += 1
                else:
                    stats.lost_lease += 1
                    log.warning("item %s: lease expired before completion; another dispatcher owns it", item["id"])
            else:
                status = outbox.fail(engine, table, item, worker, result.error, isinstance(result, Permanent))
                if status == outbox.DEAD:
                    stats.dead += 1
                else:
                    stats.retried += 1
    return stats
