"""Pass one, done by the database: which keys changed and which vanished, without moving unchanged rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bufsync.buffer import reader
from bufsync.mapping.model import Mapping
from bufsync.reconcile import fingerprint
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import Existing
from bufsync.reconcile.context import Context, dialect_of
from bufsync.reconcile.guards import Weighed
from bufsync.reconcile.records import RecordBuilder
from bufsync.state.ledger import LINKED, SUSPENDED, Entry

FEW_CHANGED = 10000  # up to this many changed keys (and a quarter of the table), pass two asks for them by key


@dataclass
class Scan:
    """Pass one, done by the database: which keys changed, which vanished. No row reaches Python
    when nothing changed."""

    entries: dict[str, Entry] = field(default_factory=dict)  # only the entries a run touches
    changed: set[str] = field(default_factory=set)
    source_rows: int = 0
    unchanged: int = 0
    failing: int = 0
    linked_before: int = 0
    missing: list[p.Step] = field(default_factory=list)

    @property
    def removals(self) -> int:
        return len(self.missing)

    @property
    def weighed(self) -> Weighed:
        return Weighed(self.source_rows, self.linked_before, self.removals)


def counts(ctx: Context, conn: sa.Connection, mapping: Mapping) -> tuple[int, int, int]:
    """In one statement: rows in the source table, records the ledger holds as linked or suspended (an
    enrolment has no remote id of its own, so the ledger, not the remote ids, says what was synced), and all
    the ledger's entries of the mapping (none and no rows: there is nothing to look at)."""
    ledger = ctx.ledger.table
    mine = ledger.c.mapping_name == mapping.name

    def number(table: sa.Table, *where: Any) -> Any:
        return sa.select(sa.func.count()).select_from(table).where(*where).scalar_subquery()

    rows, linked, entries = conn.execute(sa.select(
        number(ctx.tables[mapping.table.name]), number(ledger, mine, ledger.c.state.in_([LINKED, SUSPENDED])),
        number(ledger, mine))).one()
    return int(rows), int(linked), int(entries)


def weigh(ctx: Context, mapping: Mapping) -> Weighed:
    """What the removal guards weigh, counted without reading the changed rows (vetted before any write)."""
    on_missing = mapping.flow.on_missing
    with ctx.engine.connect() as conn:
        rows, linked, entries = counts(ctx, conn, mapping)
        if on_missing == "keep" or entries == 0:
            return Weighed(rows, linked, 0)
        gone = fingerprint.missing_query(dialect_of(ctx), ctx.tables, ctx.ledger.table, mapping).subquery()
        query = sa.select(sa.func.count()).select_from(gone).where(
            sa.or_(gone.c.remote_id.is_not(None), gone.c.applied.is_not(None)))
        if on_missing == "suspend":
            query = query.where(gone.c.state == LINKED)
        return Weighed(rows, linked, int(conn.execute(query).scalar_one()))


def scan(ctx: Context, mapping: Mapping) -> Scan:
    builder = RecordBuilder(mapping, ctx.timezone)
    dialect = dialect_of(ctx)
    ledger = ctx.ledger.table
    result = Scan()
    with ctx.engine.connect() as plain:
        conn = dialect.snapshot(plain)  # the counts, the changed keys and the vanished ones: one snapshot
        result.source_rows, result.linked_before, entries = counts(ctx, conn, mapping)
        if result.source_rows == 0 and entries == 0:
            ctx.vanished[mapping.name] = {}
            return result  # an empty table never synced: nothing changed, nothing vanished
        query = fingerprint.scan_query(dialect, ctx.mappings, ctx.tables, ledger, mapping, builder.hash_columns,
                                       ctx.options.full)
        # a plain (not server-side) cursor: the database plans for the whole result (hash joins), and
        # the result is small — the changed keys only
        for key, verdict in conn.execute(query):
            if verdict == "f":
                result.failing += 1  # failed before and nothing changed since: not retried (--full does)
            else:
                result.changed.add(key)
        result.unchanged = result.source_rows - len(result.changed) - result.failing
        vanished = ctx.vanished[mapping.name] = {}
        for row in conn.execute(fingerprint.missing_query(dialect, ctx.tables, ledger, mapping)):
            entry = Entry(row.record_key, row.remote_id, row.content_hash, row.state, row.last_error, row.attempts,
                          row.applied)
            result.entries[entry.key] = entry
            if mapping.flow.group_by:
                vanished.setdefault(mapping.flow.group_of(json.loads(entry.key)), set()).add(entry.key)
            if entry.remote_id is None and not entry.applied:
                continue  # (an enrolment has no id of its own: what was applied says which one)
            existing = Existing(entry.key, entry.remote_id, entry.applied)
            if mapping.flow.on_missing == "delete":
                result.missing.append(p.Step(p.DELETE, entry.key, None, existing))
            elif mapping.flow.on_missing == "suspend" and entry.state == LINKED:
                result.missing.append(p.Step(p.SUSPEND, entry.key, None, existing))
    return result


def present(ctx: Context, mapping: Mapping, keys: list[str]) -> set[str]:
    """Which of these keys the source table holds (for parents in the same table)."""
    table = ctx.tables[mapping.table.name]
    expression = fingerprint.key_expression(dialect_of(ctx), table, mapping)
    found: set[str] = set()
    with ctx.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found |= {r[0] for r in conn.execute(sa.select(expression).where(expression.in_(chunk)))}
    return found


def changed_rows(ctx: Context, conn: sa.Connection, mapping: Mapping, builder: RecordBuilder,
                  found: Scan) -> Iterator[sa.Row[Any]]:
    """The changed rows with their fingerprints: asked for by key when they are few, else one streamed
    pass over the table (an initial load) keeping only them."""
    def query(keys: list[str] | None = None) -> sa.Select[Any]:
        return fingerprint.stream_query(dialect_of(ctx), ctx.mappings, ctx.tables, ctx.ledger.table, mapping,
                                        builder.hash_columns, keys)
    if len(found.changed) <= FEW_CHANGED and len(found.changed) * 4 <= found.source_rows:
        keys = sorted(found.changed)
        for start in range(0, len(keys), 1000):
            yield from conn.execute(query(keys[start:start + 1000]))
        return
    for row in conn.execution_options(stream_results=True, yield_per=reader.BATCH_ROWS).execute(query()):
        if row._key in found.changed:
            yield row
