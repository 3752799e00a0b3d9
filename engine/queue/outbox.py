"""Queue operations; each is also a plain SQL statement a DBA may run (docs/queue.md says which)."""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bufsync.dialects import dialect_named
from bufsync.secrets import redact
from bufsync.state.ledger import now_utc

PENDING, RUNNING, DONE, FAILED, DEAD, CANCELLED = "pending", "running", "done", "failed", "dead", "cancelled"
STATUSES = (PENDING, RUNNING, DONE, FAILED, DEAD, CANCELLED)


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
    """Take up to `limit` items that are due, or whose lease expired (their dispatcher died)."""
    now = now_utc()
    ready = sa.and_(table.c.portal == portal, sa.or_(
        sa.and_(table.c.status.in_([PENDING, FAILED]), table.c.available_at <= now),
        sa.and_(table.c.status == RUNNING, table.c.locked_until < now)))
    values = {"status": RUNNING, "locked_by": worker or worker_name(),
              "locked_until": now + timedelta(seconds=lease_seconds), "attempts": table.c.attempts + 1}
    with engine.begin() as conn:
        rows = dialect_named(engine.dialect.name).claim(conn, table, ready, [table.c.available_at, table.c.id],
                                                        limit, values)
    out = []
    for row in rows:
        item = dict(row._mapping)
        item["payload"] = json.loads(item["payload"])
        out.append(item)
    return out


def complete(engine: sa.Engine, table: sa.Table, item_id: int, worker: str, response: Any) -> bool:
    """Done, if this worker still holds the item (a lease taken over by another is not overwritten)."""
    with engine.begin() as conn:
        result = conn.execute(table.update().where(
            table.c.id == item_id, table.c.status == RUNNING, table.c.locked_by == worker).values(
            status=DONE, completed_at=now_utc(), locked_until=None, last_error=None,
            response=json.dumps(response, ensure_ascii=False, default=str)[:100000]))
    return bool(result.rowcount)


def complete_many(engine: sa.Engine, table: sa.Table, done: list[tuple[int, Any]], worker: str) -> int:
    """Many items done in one executemany; returns how many this worker still held."""
    if not done:
        return 0
    statement = table.update().where(
        table.c.id == sa.bindparam("item_id"), table.c.status == RUNNING,
        table.c.locked_by == sa.bindparam("worker")).values(
        status=DONE, completed_at=sa.bindparam("now"), locked_until=None, last_error=None,
        response=sa.bindparam("response_json"))
    now = now_utc()
    with engine.begin() as conn:
        conn.execute(statement, [
            {"item_id": item_id, "worker": worker, "now": now,
             "response_json": json.dumps(response, ensure_ascii=False, default=str)[:100000]}
            for item_id, response in done])
        # rowcount of an executemany is not reliable on every driver: count what this worker completed
        return conn.execute(sa.select(sa.func.count()).where(
            table.c.id.in_([i for i, _ in done]), table.c.status == DONE, table.c.locked_by == worker)).scalar_one()


def backoff(attempts: int, base: float = 5.0, cap: float = 3600.0) -> float:
    """Exponential with "equal jitter": at least half the step, so a retry never comes at once,
    and spread over the other half, so retries from many dispatchers do not arrive together."""
    step = min(cap, base * 2 ** max(0, attempts - 1))
    return step / 2 + random.uniform(0, step / 2)


def fail(engine: sa.Engine, table: sa.Table, item: dict[str, Any], worker: str, error: str,
         permanent: bool) -> str:
    """A permanent error (the portal rejected the data) goes dead at once; a transient one retries."""
    attempts = item["attempts"]
    if permanent or attempts >= item["max_attempts"]:
        status, available = DEAD, now_utc()
    else:
        status, available = FAILED, now_utc() + timedelta(seconds=backoff(attempts))
    with engine.begin() as conn:
        conn.execute(table.update().where(
            table.c.id == item["id"], table.c.status == RUNNING, table.c.locked_by == worker).values(
            status=status, available_at=available, locked_until=None, last_error=redact(error)[:2000],
            completed_at=now_utc() if status == DEAD else None))
    return status


def retry(engine: sa.Engine, table: sa.Table, ids: list[int] | None = None, portal: str | None = None,
          status: str | None = None) -> int:
    """UPDATE sync_queue SET status='pending', available_at=now, attempts=0 WHERE ... (failed/dead/cancelled)."""
    where = [table.c.status.in_([status] if status else [FAILED, DEAD, CANCELLED])]
    if ids:
        where.append(table.c.id.in_(ids))
    if portal:
        where.append(table.c.portal == portal)
    with engine.begin() as conn:
        return conn.execute(table.update().where(*where).values(
            status=PENDING, available_at=now_utc(), attempts=0, completed_at=None)).rowcount or 0


def cancel(engine: sa.Engine, table: sa.Table, ids: list[int] | None = None, portal: str | None = None,
           status: str | None = None) -> int:
    """UPDATE sync_queue SET status='cancelled', completed_at=now WHERE status IN ('pending','failed') AND ..."""
    where = [table.c.status.in_([status] if status else [PENDING, FAILED])]
    if ids:
        where.append(table.c.id.in_(ids))
    if portal:
        where.append(table.c.portal == portal)
    with engine.begin() as conn:
        return conn.execute(table.update().where(*where).values(status=CANCELLED, completed_at=now_utc())).rowcount or 0


def purge(engine: sa.Engine, table: sa.Table, before: datetime, keep: list[sa.Select] = ()) -> int:
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
