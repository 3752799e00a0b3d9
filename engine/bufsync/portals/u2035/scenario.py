"""One footprint run: settle what the dispatchers finished, read the facts from Moodle, give each new or changed
fact a statement (its UUID minted now and kept), and queue the statements, each row and its queue item in one
transaction. While the connection is not active nothing is queued: new facts wait as `held`, with their ids, and
are queued by the first run after the connection is active."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.config import LoadedSettings
from bufsync.portals.pending import chunks, queue_items, update_many
from bufsync.portals.u2035 import connection as connections
from bufsync.portals.u2035.footprint import UNTI_ID_MAX, Fact, Footprint, courses_in_scope
from bufsync.portals.u2035.settings import U2035Settings
from bufsync.portals.u2035.statements import PORTAL, build
from bufsync.queue import outbox
from bufsync.report import Tally
from bufsync.state.ledger import now_utc

QUEUED, SENT, ERROR, HELD = "queued", "sent", "error", "held"
WRITE_CHUNK = 1000  # facts written (rows and queue items) in one transaction


@dataclass(slots=True)  # one per fact of the site: kept small
class Known:
    statement_id: str
    fingerprint: str
    state: str
    sends: int
    occurred_at: datetime


def run_footprint(engine: sa.Engine, state: dict[str, sa.Table], loaded: LoadedSettings, settings: U2035Settings,
                  client: MoodleClient, unti_of: dict[str, str], managed: set[int]) -> Tally:
    report = Tally()
    statements, queue = state["sync_u2035_statements"], state["sync_queue"]
    settle(engine, statements, queue, report)
    current = connections.read(engine, state["sync_u2035_connection"])
    blocked = connections.frozen_problem(settings, current)
    if blocked is not None:
        report.problems.append(blocked)
    known = _known(engine, statements)
    footprint = Footprint(client, settings, loaded.moodle.url or "", loaded.moodle.grades, unti_of)
    courses = courses_in_scope(client, settings, managed)
    report.add("courses", len(courses))
    seen: set[str] = set()
    batch: list[tuple[Fact, Known | None]] = []
    for fact in footprint.read(courses):
        if fact.key in seen:
            continue
        seen.add(fact.key)
        report.add(f"facts.{fact.kind}")
        was = known.get(fact.key)
        if was is not None and was.fingerprint == fact.fingerprint and not (was.state == HELD and blocked is None):
            continue
        batch.append((fact, was))
        if len(batch) >= WRITE_CHUNK:
            _write(engine, statements, queue, settings, batch, blocked is None, report)
            batch = []
    _write(engine, statements, queue, settings, batch, blocked is None, report)
    report.add("learners.without_unti", len(footprint.without_unti))
    for userid, value in sorted(footprint.too_long.items()):
        report.problems.append(f"UNTI ID пользователя Moodle {userid} длиннее {UNTI_ID_MAX} символов "
                               f"({value[:80]!r}…): это не UNTI ID, его след не отправляется; исправьте значение")
    # held while the connection was not active and not met again by this read (the course left the scope): they
    # stay held, counted here, until their fact is read again
    report.add("statements.held", sum(1 for k, v in known.items() if v.state == HELD and k not in seen))
    return report


def _known(engine: sa.Engine, table: sa.Table) -> dict[str, Known]:
    t = table
    with engine.connect() as conn:
        return {r.fact_key: Known(r.statement_id, r.fingerprint, r.state, r.sends, r.occurred_at)
                for r in conn.execute(sa.select(t.c.fact_key, t.c.statement_id, t.c.fingerprint, t.c.state, t.c.sends,
                                                t.c.occurred_at))}


def _item(settings: U2035Settings, fact: Fact, statement_id: str, occurred_at: datetime) -> outbox.Item:
    payload = {"fact_key": fact.key, "statement_id": statement_id, "unti_id": fact.unti_id,
               "verb": fact.verb, "course_id": fact.course["id"], "user_id": fact.user_id,
               "statement": build(settings, fact, statement_id, occurred_at), "files": fact.files}
    if fact.files:  # the attachments are made when the files are in S3, from what is decided now
        payload |= {"usage_type": settings.profile.usage_type, "language": settings.profile.language}
    return outbox.Item(PORTAL, "statement", payload, f"stmt:{statement_id}", settings.max_attempts)


def _write(engine: sa.Engine, table: sa.Table, queue: sa.Table, settings: U2035Settings,
           batch: list[tuple[Fact, Known | None]], active: bool, report: Tally) -> None:
    """New facts inserted, changed ones given a new statement; their queue items in the same transaction."""
    if not batch:
        return
    now = now_utc()
    inserts, updates, items = [], [], []
    for fact, was in batch:
        same = was is not None and was.fingerprint == fact.fingerprint  # a held fact, now the connection is active
        statement_id = was.statement_id if same and was is not None else str(uuid.uuid4())
        occurred = fact.occurred_at or (was.occurred_at if same and was is not None else now)
        sends = (was.sends if same else was.sends + 1) if was is not None else 1
        key = f"stmt:{statement_id}"
        values = {"kind": fact.kind, "unti_id": fact.unti_id, "moodle_user_id": fact.user_id,
                  "moodle_course_id": int(fact.course["id"]), "statement_id": statement_id, "verb": fact.verb[:255],
                  "fingerprint": fact.fingerprint, "occurred_at": occurred, "files": len(fact.files),
                  "state": QUEUED if active else HELD, "sends": sends, "pending_key": key if active else None,
                  "last_error": None, "updated_at": now}
        if was is None:
            inserts.append({"fact_key": fact.key, **values, "sent_at": None})
            report.add("statements.new")
        else:
            updates.append({"fact_key": fact.key, **values})
            report.add("statements.changed" if not same else "statements.released")
        if active:
            items.append(_item(settings, fact, statement_id, occurred))
    with engine.begin() as conn:
        if inserts:
            conn.execute(table.insert(), inserts)
        update_many(conn, table, ("fact_key",), updates)
        report.add("queued", outbox.enqueue(conn, queue, items))
        # a held fact whose item `disable` cancelled: that item comes back, with the body it was queued with
        revived = [r.id for part in chunks([i.key for i in items]) for r in conn.execute(
            sa.select(queue.c.id).where(queue.c.portal == PORTAL, queue.c.status == outbox.CANCELLED,
                                        queue.c.idempotency_key.in_(part)))]
    if revived:
        report.add("queued", outbox.retry(engine, queue, revived))


def settle(engine: sa.Engine, table: sa.Table, queue: sa.Table, report: Tally) -> None:
    """The rows whose queue item finished: done -> sent, dead -> error (the LRS's reason), cancelled by an operator
    -> error; the pending key stays on an error row so a `bufsync queue retry` settles it again."""
    t = table
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(t.c.fact_key, t.c.pending_key, t.c.state)
                                 .where(t.c.pending_key.is_not(None), t.c.state.in_([QUEUED, ERROR]))))
    if not rows:
        return
    items = queue_items(engine, queue, PORTAL, [r.pending_key for r in rows])
    now = now_utc()
    changes: list[dict[str, Any]] = []
    for row in rows:
        item = items.get(row.pending_key)
        if item is None:
            continue
        if item.status == outbox.DONE:
            changes.append({"fact_key": row.fact_key, "pending_key_was": row.pending_key, "state": SENT,
                            "pending_key": None, "last_error": None, "sent_at": now, "updated_at": now})
            report.add("settled.sent")
        elif item.status in (outbox.DEAD, outbox.CANCELLED) and row.state != ERROR:
            why = item.last_error or "отменено оператором (bufsync queue cancel)"
            changes.append({"fact_key": row.fact_key, "pending_key_was": row.pending_key, "state": ERROR,
                            "last_error": why[:2000], "updated_at": now})
            report.add("settled.error")
    for part in chunks(changes, WRITE_CHUNK):
        with engine.begin() as conn:
            update_many(conn, t, ("fact_key", "pending_key_was"), part)


def hold_all(engine: sa.Engine, tables: dict[str, sa.Table]) -> int:
    """`disable`: the queued statements' items cancelled, their rows held (queued again, same ids, once active)."""
    t, queue = tables["sync_u2035_statements"], tables["sync_queue"]
    settle(engine, t, queue, Tally())  # what was delivered already is sent, not held
    with engine.begin() as conn:
        cancelled = conn.execute(queue.update().where(queue.c.portal == PORTAL,
                                                      queue.c.status.in_([outbox.PENDING, outbox.FAILED]))
                                 .values(status=outbox.CANCELLED, completed_at=now_utc(),
                                         last_error="отключено: bufsync u2035 disable")).rowcount or 0
        conn.execute(t.update().where(t.c.state == QUEUED).values(state=HELD, pending_key=None, updated_at=now_utc()))
    return cancelled
