"""The removal guards: what a run refuses to do however the source looks (an empty table, a half-written
one, a mass removal). Weighed before the first write of an inbound run, and before the removals of an
outbound one; a refusal names the guard and the flag that overrides it."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from bufsync.buffer import markers
from bufsync.errors import EXIT_GUARD, BufsyncError
from bufsync.mapping.model import Guards, Mapping
from bufsync.reconcile.context import Context


class GuardRefused(BufsyncError):
    """A guard refused the run; nothing it guards was changed."""

    exit_code = EXIT_GUARD


@dataclass(frozen=True)
class Weighed:
    """What the guards weigh for one mapping."""

    source_rows: int     # rows (or remote records) the source holds now
    linked_before: int   # records the ledger holds as synced
    removals: int        # records this run would remove (suspend, delete or mark)


def source_refusal(ctx: Context, mapping: Mapping, table: sa.Table, weighed: Weighed) -> str | None:
    """An inbound source that must not be read at all: empty after a sync while records it synced are still
    there to remove (once they are all removed deliberately, an empty table is just empty), or not the batch
    1C finished."""
    guards = mapping.flow.guards
    if guards.refuse_empty and weighed.source_rows == 0 and weighed.removals > 0:
        return (f"{mapping.name}: {table.name} is empty but {weighed.linked_before} records were synced before; "
                "an empty table must not suspend everyone. Fill the table, or run with --allow-removals "
                f"{weighed.removals} to remove them deliberately (guard refuse_empty)")
    if guards.require_batch:
        marker_mapping = ctx.mappings.load_markers()
        assert marker_mapping is not None  # the loader refuses require_batch when no mapping declares load_markers
        with ctx.engine.connect() as conn:
            state = markers.latest_ready(conn, marker_mapping, ctx.tables[marker_mapping.table.name],
                                         guards.require_batch, weighed.source_rows)
        if not state.ready:
            return (f"{mapping.name}: {state.reason}; the engine applies only a 'ready' batch whose row count "
                    "matches (guard require_batch)")
    return None


def removal_refusal(mapping: Mapping, weighed: Weighed, allow: int | None) -> str | None:
    """Too many removals for the mapping's limits, unless --allow-removals covers them. A mapping without a sync
    (an attached table a file replaces) is weighed by the default guards."""
    removals = weighed.removals
    if removals == 0 or weighed.linked_before == 0:
        return None
    guards = mapping.sync.guards if mapping.sync is not None else Guards()
    if weighed.source_rows == 0 and guards.refuse_empty and (allow is None or allow < removals):
        return (f"{mapping.name}: the source is empty and {removals} records would be removed (guard refuse_empty); "
                f"to proceed deliberately: --allow-removals {removals}")
    by_ratio = int(guards.max_remove_ratio * weighed.linked_before)
    limit = max(guards.min_removals, by_ratio)  # the floor: a small table may lose a leaver or two
    if removals > limit and (allow is None or allow < removals):
        done = {"suspend": "suspended", "delete": "deleted", "mark": "marked removed"}.get(
            mapping.sync.on_missing if mapping.sync is not None else "", "removed")
        return (f"{mapping.name}: {removals} of {weighed.linked_before} linked records would be {done} "
                f"({removals / weighed.linked_before:.0%}); the limit is {limit} (max_remove_ratio "
                f"{guards.max_remove_ratio:.0%} of {weighed.linked_before} = {by_ratio}, min_removals "
                f"{guards.min_removals}); if this is intended: --allow-removals {removals}")
    return None
