"""A dispatcher: claim a batch, hand each item to the portal's handler, record the outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bufsync.errors import EXIT_CONFIG, BufsyncError
from bufsync.queue import outbox

log = logging.getLogger("bufsync.queue")


@dataclass
class Delivered:
    response: Any = None
    sent: bool = True       # False: an item in doubt was found on the portal already, nothing was sent


@dataclass
class Transient:
    """Worth another try later: 5xx, a timeout, a connection refused."""

    error: str
    in_doubt: bool = False  # the request may have reached the portal (its answer was lost): the next try checks
    sent: bool = True


@dataclass
class Permanent:
    """The portal rejected the data (4xx with a reason): retrying cannot help."""

    error: str
    sent: bool = True       # False: not sent at all (e.g. an item in doubt that is unsafe to send again)


@dataclass
class AccessRefused:
    """The portal refused the dispatcher's credentials (401/403): no item is at fault, none may lose an
    attempt or die for it; the dispatcher gives its batch back and stops."""

    error: str


Result = Delivered | Transient | Permanent | AccessRefused
Handler = Callable[[dict[str, Any]], Result]
BatchHandler = Callable[[list[dict[str, Any]]], list[Result]]


class DispatchRefused(BufsyncError):
    """The portal refused the credentials: stop (exit 2) with the handler's message; the batch went back."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, stats: DispatchStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass
class DispatchStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    lost_lease: int = 0
    in_doubt: int = 0       # claimed items a dead dispatcher (or a lost answer) left unsure
    confirmed: int = 0      # ... of those, found on the portal: not sent again
    resent: int = 0         # ... of those, sent again (the portal may have had them)
    released: int = 0       # given back untouched because the portal refused the credentials


def dispatch(engine: sa.Engine, table: sa.Table, portal: str, handler: Handler | None = None, *,
             batch_handler: BatchHandler | None = None, batch: int = 50, lease_seconds: float = 60.0,
             poll_seconds: float = 1.0, stop: threading.Event | None = None, until_empty: bool = False,
             worker: str | None = None) -> DispatchStats:
    """Claim, deliver, record, until stopped (or, with until_empty, until nothing is due).

    A batch handler sends a claimed batch in as few portal calls as the portal allows; the
    successes are recorded in one statement. An item arrives with `in_doubt` when its previous
    send may have reached the portal: the handler decides, per operation, to ask the portal, to
    send again (only what the portal takes twice without harm) or to refuse; sends of such items
    are counted (stats.resent, sync_queue.resends). AccessRefused from the handler raises
    DispatchRefused after the batch was recorded and its refused items released.
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
                results = [Transient(f"{type(exc).__name__}: {exc}", in_doubt=True) for _ in items]
        else:
            assert handler is not None  # exactly one of the two was given (checked above)
            results = []
            for item in items:
                if results and isinstance(results[-1], AccessRefused):  # the key is wrong for all of them
                    results.append(results[-1])
                    continue
                try:
                    results.append(handler(item))
                except Exception as exc:  # a handler bug or a network error: the item is retried, not lost
                    results.append(Transient(f"{type(exc).__name__}: {exc}", in_doubt=True))
        refused = _record(engine, table, worker, items, results, stats)
        if refused is not None:
            raise DispatchRefused(refused, stats)
    return stats


def _record(engine: sa.Engine, table: sa.Table, worker: str, items: list[dict[str, Any]], results: list[Result],
            stats: DispatchStats) -> str | None:
    """Write each outcome to its row; returns the refusal message when the portal refused the credentials."""
    def resent(item: dict[str, Any], result: Result) -> bool:
        return bool(item.get("in_doubt")) and not isinstance(result, AccessRefused) and result.sent

    stats.in_doubt += sum(1 for item in items if item.get("in_doubt"))
    stats.resent += sum(1 for item, r in zip(items, results, strict=True) if resent(item, r))
    stats.confirmed += sum(1 for item, r in zip(items, results, strict=True)
                           if item.get("in_doubt") and isinstance(r, Delivered) and not r.sent)
    done = [(item["id"], r.response, resent(item, r))
            for item, r in zip(items, results, strict=True) if isinstance(r, Delivered)]
    completed = outbox.complete_many(engine, table, done, worker)
    stats.done += completed
    stats.lost_lease += len(done) - completed
    refused = [(item, r) for item, r in zip(items, results, strict=True) if isinstance(r, AccessRefused)]
    for item, result in zip(items, results, strict=True):
        if isinstance(result, (Delivered, AccessRefused)):
            continue
        status = outbox.fail(engine, table, item, worker, result.error, isinstance(result, Permanent),
                             in_doubt=isinstance(result, Transient) and result.in_doubt, resent=resent(item, result))
        if status == outbox.DEAD:
            stats.dead += 1
        else:
            stats.retried += 1
    if not refused:
        return None
    stats.released += outbox.release(engine, table, [item for item, _ in refused], worker, refused[0][1].error)
    return refused[0][1].error
