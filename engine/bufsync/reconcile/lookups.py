"""Lookups: another mapping's key in a row (a person, a course, a parent department) turned into the
remote id that mapping's ledger holds, or found in the remote; and why a row whose lookup fails waits."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bufsync.mapping.model import Mapping
from bufsync.reconcile.context import Context
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import ERROR


def lookup_reason(ctx: Context, mapping_name: str, value: Any) -> tuple[str, str]:
    """(sync_status, text) for a record whose referenced record is not in the LMS."""
    other = ctx.mappings[mapping_name]
    failed = ctx.errors.get(mapping_name, {}).get(str(value))
    what = other.title
    if failed:
        return "skipped", f"{what} «{value}» не применён(а) в LMS: {failed}"
    return "error", (f"{what} «{value}» не найден(а) ни в LMS, ни в таблице {other.table.name}; "
                     f"добавьте строку в {other.table.name} или проверьте идентификатор (notfound)")


def resolve(ctx: Context, mapping: Mapping, batch: list[Desired]) -> None:
    """Turn lookup values into remote ids: the other mapping's ledger, else that adapter's find()."""
    wanted: dict[str, set[Any]] = {}
    for desired in batch:
        for target, (other, value) in desired.lookups.items():
            if value is None:
                desired.resolved[target] = None
                continue
            known = ctx.remote_ids.get(other, {}).get(str(value))
            if known is not None:
                desired.resolved[target] = known
            else:
                wanted.setdefault(other, set()).add(value)
    for other, values in wanted.items():
        values_failed = {v for v in values if str(v) in ctx.errors.get(other, {})}
        ask = sorted(values - values_failed, key=str)
        found = ctx.adapter_for(ctx.mappings[other]).find(ask) if ask else {}
        cache = ctx.remote_ids.setdefault(other, {})
        for value, remote_id in found.items():
            cache[str(value)] = remote_id
    for desired in batch:
        for target, (other, value) in desired.lookups.items():
            if value is not None and target not in desired.resolved:
                desired.resolved[target] = ctx.remote_ids.get(other, {}).get(str(value))


def known_remote_ids(ctx: Context, mapping: Mapping) -> None:
    """Warm the lookup cache of a mapping from its ledger (one query)."""
    with ctx.engine.connect() as conn:
        ctx.remote_ids[mapping.name] = ctx.ledger.remote_ids(conn, mapping.name)
        t = ctx.ledger.table
        rows = conn.execute(sa.select(t.c.record_key, t.c.last_error).where(
            t.c.mapping_name == mapping.name, t.c.state == ERROR))
        ctx.errors[mapping.name] = {r.record_key: r.last_error or "" for r in rows}
