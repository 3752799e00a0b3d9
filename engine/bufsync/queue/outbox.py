"""Queue operations; each is also a plain SQL statement a DBA may run (docs/queue.md says which)."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bufsync.dialects import dialect_named
from bufsync.errors import EXIT_CONFIG, BufsyncError
from bufsync.secrets import redact
from bufsync.state.ledger import now_utc

PENDING, RUNNING, DONE, FAILED, DEAD, CANCELLED = "pending", "running", "done", "failed", "dead", "cancelled"
STATUSES = (PENDING, RUNNING, DONE, FAILED, DEAD, CANCELLED)
# what an operator may do with an item in each status; anything else is refused with the reason
RETRYABLE = (FAILED, DEAD, CANCELLED)
CANCELLABLE = (PENDING, FAILED, DEAD)
WHY_NOT = {
    ("retry", DONE): "done items were delivered: sending them again would deliver them twice",
    ("retry", RUNNING): "a dispatcher holds running items now (a dead one's are taken over when its lease ends)",
    ("retry", PENDING): "pending items are waiting to be sent already",
    ("cancel", DONE): "done items were delivered already and cannot be taken back",
    ("cancel", RUNNING): "a dispatcher is sending running items now; cancel them once they are failed or dead",
    ("cancel", CANCELLED): "they are cancelled already",
}


class QueueRefused(BufsyncError):
    """An operator action the queue will not do (exit 2); nothing was changed."""

    exit_code = EXIT_CONFIG


@dataclass
class Item:
    portal: str
    operation: str
    payload: dict[str, Any]
    key: str                      # idempotency key, unique per portal
    max_attempts: int = 8


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def enqueue(bind: sa.Engine | sa.Connection, table: sa.Table, items: list[Item]) -> int:
    """Add operations; one already queued under the same (portal, key) is left alone. Returns how many were new.

    Given a connection, the rows join the caller's transaction: a scenario records its own state
    and the operations it queued in one commit, so a crash cannot leave one without the other.
    """
    if not items:
        return 0
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            return _enqueue(conn, table, items)
    return _enqueue(bind, table, items)


def _enqueue(conn: sa.Connection, table: sa.Table, items: list[Item]) -> int:
    now = now_utc()
    rows = [{"portal": i.portal, "operation": i.operation,
             "payload": json.dumps(i.payload, ensure_ascii=False, sort_keys=True, default=str),
             "idempotency_key": i.key[:200], "status": PENDING, "attempts": 0, "max_attempts": i.max_attempts,
             "available_at": now, "created_at": now} for i in items]
    dialect = dialect_named(conn.dialect.name)
    added = 0
    for start in range(0, len(rows), 500):
        chunk = rows[start:start + 500]
        # most of what a scenario offers is queued already: look the keys up first (one cached statement)
        # and insert only the rest, instead of compiling a 500-row INSERT that would conflict everywhere
        existing = {(portal, key) for portal, key in conn.execute(sa.select(table.c.portal, table.c.idempotency_key)
                                                                  .where(table.c.idempotency_key.in_(
                                                                      [r["idempotency_key"] for r in chunk])))}
        chunk = [r for r in chunk if (r["portal"], r["idempotency_key"]) not in existing]
        if not chunk:
            continue
        statement = dialect.insert_ignoring(table, chunk, ["portal", "idempotency_key"])
        if statement is not None:
            added += conn.execute(statement).rowcount or 0
            continue
        # a dialect without INSERT ... ON CONFLICT: the chunk at once; only if another process queued one of
        # the same keys meanwhile, row by row, each in its own savepoint
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), chunk)
            added += len(chunk)
        except sa.exc.IntegrityError:
            for row in chunk:
                try:
                    with conn.begin_nested():
                        conn.execute(table.insert(), row)
                    added += 1
                except sa.exc.IntegrityError:
                    pass
    return added


def claim(engine: sa.Engine, table: sa.Table, portal: str, limit: int, lease_seconds: float,
          worker: str | None = None) -> list[dict[str, Any]]:
    """Take up to `limit` items that are due, or whose lease expired (their dispatcher died).

    An item taken over from a dead holder comes back with `in_doubt` set: the holder may have sent it
    before dying, so the portal's handler must ask the portal, or resend only what the portal takes twice
    without harm. The flag stays until the portal's answer settles it (done, dead, or an operator's retry).
    """
    now = now_utc()
    ready = sa.and_(table.c.portal == portal, sa.or_(
        sa.and_(table.c.status.in_([PENDING, FAILED]), table.c.available_at <= now),
        sa.and_(table.c.status == RUNNING, table.c.locked_until < now)))
    values = {"status": RUNNING, "locked_by": worker or worker_name(),
              "locked_until": now + timedelta(seconds=lease_seconds), "attempts": table.c.attempts + 1,
              # SET sees the row as it was: status is still the old one here
              "in_doubt": sa.case((table.c.status == RUNNING, sa.literal(True)), else_=table.c.in_doubt)}
    with engine.begin() as conn:
        rows = dialect_named(engine.dialect.name).claim(conn, table, ready, [table.c.available_at, table.c.id],
                                                        limit, values)
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["payload"] = json.loads(item["payload"])
        out.append(item)
    return out


def complete(engine: sa.Engine, table: sa.Table, item_id: int, worker: str, response: Any,
             resent: bool = False) -> bool:
    """Done, if this worker still holds the item (a lease taken over by another is not overwritten)."""
    with engine.begin() as conn:
        result = conn.execute(table.update().where(
            table.c.id == item_id, table.c.status == RUNNING, table.c.locked_by == worker).values(
            status=DONE, completed_at=now_utc(), locked_until=None, last_error=None, in_doubt=False,
            resends=table.c.resends + int(resent),
            response=json.dumps(response, ensure_ascii=False, default=str)[:100000]))
    return bool(result.rowcount)


def complete_many(engine: sa.Engine, table: sa.Table, done: list[tuple[int, Any]] | list[tuple[int, Any, bool]],
                  worker: str) -> int:
    """Many items done in one executemany; returns how many this worker still held.

    Each entry is (id, response) or (id, response, resent): resent counts a send of an item in doubt.
    """
    if not done:
        return 0
    statement = table.update().where(
        table.c.id == sa.bindparam("item_id"), table.c.status == RUNNING,
        table.c.locked_by == sa.bindparam("worker")).values(
        status=DONE, completed_at=sa.bindparam("now"), locked_until=None, last_error=None, in_doubt=False,
        resends=table.c.resends + sa.bindparam("resent", type_=sa.Integer()),
        response=sa.bindparam("response_json"))
    now = now_utc()
    with engine.begin() as conn:
        conn.execute(statement, [
            {"item_id": entry[0], "worker": worker, "now": now, "resent": int(len(entry) > 2 and bool(entry[2])),
             "response_json": json.dumps(entry[1], ensure_ascii=False, default=str)[:100000]}
            for entry in done])
        # rowcount of an executemany is not reliable on every driver: count what this worker completed
        return conn.execute(sa.select(sa.func.count()).where(
            table.c.id.in_([entry[0] for entry in done]), table.c.status == DONE, table.c.locked_by == worker)
        ).scalar_one()


def backoff(attempts: int, base: float = 5.0, cap: float = 3600.0) -> float:
    """Exponential with "equal jitter": at least half the step, so a retry never comes at once,
    and spread over the other half, so retries from many dispatchers do not arrive together."""
    step = min(cap, base * 2.0 ** max(0, attempts - 1))
    return step / 2 + random.uniform(0, step / 2)


def fail(engine: sa.Engine, table: sa.Table, item: dict[str, Any], worker: str, error: str,
         permanent: bool, *, in_doubt: bool = False, resent: bool = False) -> str:
    """A permanent error (the portal rejected the data) goes dead at once; a transient one retries.

    in_doubt: the request may have reached the portal (its answer was lost), so the next attempt must
    be as careful as with an item taken over from a dead dispatcher. resent counts a send of an item in doubt.
    """
    attempts = item["attempts"]
    if permanent or attempts >= item["max_attempts"]:
        status, available = DEAD, now_utc()
    else:
        status, available = FAILED, now_utc() + timedelta(seconds=backoff(attempts))
    values: dict[str, Any] = {"status": status, "available_at": available, "locked_until": None,
                              "last_error": redact(error)[:2000], "completed_at": now_utc() if status == DEAD else None,
                              "resends": table.c.resends + int(resent)}
    if in_doubt:
        values["in_doubt"] = True
    with engine.begin() as conn:
        conn.execute(table.update().where(
            table.c.id == item["id"], table.c.status == RUNNING, table.c.locked_by == worker).values(values))
    return status


def release(engine: sa.Engine, table: sa.Table, items: list[dict[str, Any]], worker: str, error: str) -> int:
    """Give claimed items back untouched, as if never claimed: the attempt is not counted (the portal refused
    the dispatcher's credentials, not the item). pending, or failed if an earlier attempt failed."""
    if not items:
        return 0
    statement = table.update().where(
        table.c.id == sa.bindparam("item_id"), table.c.status == RUNNING,
        table.c.locked_by == sa.bindparam("worker")).values(
        status=sa.bindparam("back_to"), attempts=sa.bindparam("attempts_before"), available_at=sa.bindparam("now"),
        locked_by=None, locked_until=None, last_error=sa.bindparam("error"))
    now = now_utc()
    with engine.begin() as conn:
        conn.execute(statement, [
            {"item_id": item["id"], "worker": worker, "now": now, "error": redact(error)[:2000],
             "attempts_before": max(0, item["attempts"] - 1),
             "back_to": FAILED if item["attempts"] > 1 else PENDING} for item in items])
        return conn.execute(sa.select(sa.func.count()).where(
            table.c.id.in_([item["id"] for item in items]), table.c.status.in_([PENDING, FAILED]),
            table.c.locked_by.is_(None))).scalar_one()


def _operator_update(engine: sa.Engine, table: sa.Table, action: str, allowed: tuple[str, ...],
                     values: dict[str, Any], ids: list[int] | None, portal: str | None, status: str | None) -> int:
    """retry and cancel: only items whose status allows it, by id or by status alike; otherwise refused with
    the reason and nothing changed (the check and the update are one transaction)."""
    takes = f"{action} takes only {', '.join(allowed[:-1])} or {allowed[-1]} items"
    if status is not None and status not in allowed:
        why = WHY_NOT.get((action, status), f"{status} is not a status the queue knows")
        raise QueueRefused(f"queue {action} refused: {why} ({takes}, not {status}); nothing was changed")
    wanted = [status] if status else list(allowed)
    with engine.begin() as conn:
        if ids:
            ids = sorted(set(ids))
            found = {row.id: row for row in conn.execute(
                sa.select(table.c.id, table.c.status, table.c.portal).where(table.c.id.in_(ids)))}
            problems = _id_problems(ids, found, wanted, portal)
            if problems:
                raise QueueRefused(f"queue {action} refused: {problems} ({takes}"
                                   + (f", --status {status}" if status else "") + "); nothing was changed")
        where: list[sa.ColumnElement[bool]] = [table.c.status.in_(wanted)]
        if ids:
            where.append(table.c.id.in_(ids))
        if portal:
            where.append(table.c.portal == portal)
        changed = conn.execute(table.update().where(*where).values(values)).rowcount or 0
        if ids and changed != len(ids):  # a dispatcher took one meanwhile: all or nothing, as checked
            raise QueueRefused(f"queue {action} refused: an item changed status meanwhile (a dispatcher took it); "
                               "nothing was changed, look again with `bufsync queue list`")
        return changed


def _id_problems(ids: list[int], found: dict[int, Any], wanted: list[str], portal: str | None) -> str:
    """`item 7 is done; items 8, 9 are running; no item 12`, or '' when every id may be acted on."""
    groups: dict[str, list[int]] = {}
    for item_id in ids:
        row = found.get(item_id)
        if row is None:
            groups.setdefault("missing", []).append(item_id)
        elif portal and row.portal != portal:
            groups.setdefault(f"of portal {row.portal}, not {portal}", []).append(item_id)
        elif row.status not in wanted:
            groups.setdefault(row.status, []).append(item_id)
    parts = []
    for what, members in groups.items():
        shown = ", ".join(str(i) for i in members[:10])
        shown += f" and {len(members) - 10} more" if len(members) > 10 else ""
        if what == "missing":
            parts.append(f"no item {shown}" if len(members) == 1 else f"no items {shown}")
        else:
            parts.append(f"item {shown} is {what}" if len(members) == 1 else f"items {shown} are {what}")
    return "; ".join(parts)


def retry(engine: sa.Engine, table: sa.Table, ids: list[int] | None = None, portal: str | None = None,
          status: str | None = None) -> int:
    """UPDATE sync_queue SET status='pending', available_at=now, attempts=0, in_doubt=(failed ones keep it)
    WHERE status IN ('failed','dead','cancelled') AND ...; QueueRefused for any other status.

    Retrying a dead or cancelled item is the operator's decision to send it again (after checking the portal),
    so it loses its doubt; a failed one is only tried sooner, and the handler still checks before sending.
    """
    keep_doubt = sa.case((table.c.status == FAILED, table.c.in_doubt), else_=sa.literal(False))
    return _operator_update(engine, table, "retry", RETRYABLE,
                            {"status": PENDING, "available_at": now_utc(), "attempts": 0, "completed_at": None,
                             "in_doubt": keep_doubt, "locked_by": None, "locked_until": None}, ids, portal, status)


def cancel(engine: sa.Engine, table: sa.Table, ids: list[int] | None = None, portal: str | None = None,
           status: str | None = None) -> int:
    """UPDATE sync_queue SET status='cancelled', completed_at=now WHERE status IN ('pending','failed','dead')
    AND ...; QueueRefused for any other status."""
    return _operator_update(engine, table, "cancel", CANCELLABLE,
                            {"status": CANCELLED, "completed_at": now_utc()}, ids, portal, status)


def purge(engine: sa.Engine, table: sa.Table, before: datetime, keep: Sequence[sa.Select[Any]] = ()) -> int:
    """DELETE FROM sync_queue WHERE status IN ('done','cancelled') AND completed_at < :before, except the keys
    `keep` selects (items some state row still waits for). Dead items stay until an operator acts."""
    where = [table.c.status.in_([DONE, CANCELLED]), table.c.completed_at < before]
    where += [table.c.idempotency_key.not_in(select) for select in keep]
    with engine.begin() as conn:
        return conn.execute(table.delete().where(*where)).rowcount or 0


def stats(engine: sa.Engine, table: sa.Table, portal: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(table.c.portal, table.c.status, sa.func.count().label("items"),
                      sa.func.min(table.c.created_at).label("oldest")).group_by(table.c.portal, table.c.status)
    if portal:
        query = query.where(table.c.portal == portal)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(table.c.portal, table.c.status))]


def listing(engine: sa.Engine, table: sa.Table, portal: str | None = None, status: str | None = None,
            limit: int = 50) -> list[dict[str, Any]]:
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if portal:
        query = query.where(table.c.portal == portal)
    if status:
        query = query.where(table.c.status == status)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
