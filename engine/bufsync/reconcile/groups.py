"""The rows that are one remote record (a grouped mapping: a person's enrolment in a course, one role per row),
across the mappings that share such records (`group_with`: subscriptions and learning processes)."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.mapping.model import Mapping
from bufsync.reconcile import fingerprint
from bufsync.reconcile.adapter import Member
from bufsync.reconcile.context import Context, dialect_of
from bufsync.reconcile.plan import view_of


def _group_members(ctx: Context, mapping: Mapping, groups: list[tuple[str, ...]]) -> dict[tuple[str, ...], set[str]]:
    """Every key of these groups in one mapping: the rows the buffer holds now, and those that vanished from it
    (the group values are its own `group_by` columns', in order)."""
    sync = mapping.flow
    table = ctx.tables[mapping.table.name]
    dialect = dialect_of(ctx)
    columns = [dialect.text(table.c[name]) for name in sync.group_by]
    key = fingerprint.key_expression(dialect, table, mapping)
    wanted = set(groups)
    out: dict[tuple[str, ...], set[str]] = {g: set(ctx.vanished.get(mapping.name, {}).get(g, ())) for g in groups}
    firsts = sorted({g[0] for g in groups})
    first = table.c[sync.group_by[0]]  # a text column is compared as it is, so its index serves (MS SQL too)
    where = first if isinstance(first.type, sa.String) else columns[0]
    with ctx.engine.connect() as conn:
        for start in range(0, len(firsts), 500):
            query = sa.select(key, *columns).where(where.in_(firsts[start:start + 500]))
            for row in conn.execute(query):
                group = tuple(str(v) for v in row[1:])
                if group in wanted:
                    out[group].add(row[0])
    return out


def group_peers(ctx: Context, mapping: Mapping, groups: list[tuple[str, ...]], exclude: set[str]) -> \
        dict[tuple[str, ...], list[Member]]:
    """The other rows of these groups, as the ledger has them now (read afresh: earlier batches of this run may
    have changed them): this mapping's rows not being written, and the rows of the mappings it shares records
    with (`group_with`: a subscription and a learning process asking for one enrolment). They are unchanged
    members: before = after."""
    out: dict[tuple[str, ...], list[Member]] = {g: [] for g in groups}
    for other in [mapping, *ctx.mappings.grouped_with(mapping.name)]:
        keys_of = _group_members(ctx, other, groups)
        own = other.name == mapping.name
        with ctx.engine.connect() as conn:
            held = ctx.ledger.get_many(conn, other.name, sorted({k for ks in keys_of.values() for k in ks}
                                                                - (exclude if own else set())))
        for group, keys in keys_of.items():
            for key in sorted(keys):
                if own and key in exclude:
                    continue
                view = view_of(held.get(key))
                out[group].append(Member(key if own else f"{other.name}:{key}", view, view))
    return out
