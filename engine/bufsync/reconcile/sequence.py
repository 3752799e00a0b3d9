"""The mappings of one run, whatever the remote: every inbound mapping's guards before the first write,
then each mapping in dependency order (buffer -> remote, or remote -> buffer), its costs in its report.
The runner wires Moodle to it; tests wire the in-memory remote (bufsync.adapters.memory)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bufsync.buffer import derived
from bufsync.mapping.model import Mapping
from bufsync.reconcile import inbound, pull
from bufsync.reconcile.context import Context
from bufsync.reconcile.guards import GuardRefused, removal_refusal, source_refusal
from bufsync.reconcile.lookups import known_remote_ids
from bufsync.reconcile.scan import scan, weigh
from bufsync.report import MappingReport, RunReport


def sync_mappings(ctx: Context, chosen: Sequence[Mapping], report: RunReport, calls: Callable[[], int] = lambda: 0,
                  progress: Callable[[str], None] | None = None) -> None:
    """Apply the chosen mappings into `report`; GuardRefused says what was applied before a refusal.
    `calls` tells how many remote calls were made so far (each mapping's share goes into its report)."""
    options = ctx.options
    # tables bufsync derives from others (a learning process's enrolments): brought up to date first, so the
    # guards and the scan see them as they follow from the buffer now (in a dry run too: they are bufsync's own)
    deriving: dict[str, float] = {}  # what each refresh took, counted in its mapping's seconds
    for mapping in (m for m in chosen if m.table.derived is not None):
        if progress:
            progress(f"{mapping.name}: deriving {mapping.table.name}")
        began = time.perf_counter()
        derived.refresh(ctx.engine, ctx.mappings, ctx.tables, mapping)
        deriving[mapping.name] = time.perf_counter() - began
    # guards that need no remote and no full read: all of them before anything changes
    for mapping in (m for m in chosen if m.flow.inbound):
        table = ctx.tables[mapping.table.name]
        weighed = weigh(ctx, mapping)  # rows, linked records and removals: one count for both guards
        refusal = source_refusal(ctx, mapping, table, weighed)
        if refusal and not (options.allow_removals is not None and options.allow_removals >= weighed.removals
                            and "require_batch" not in refusal):
            raise GuardRefused(refusal)
        # the removal guards too, before the first write of the run: a refusal changes nothing
        refusal = removal_refusal(mapping, weighed, options.allow_removals)
        if refusal:
            raise GuardRefused(refusal)
    warmed = False
    for mapping in chosen:
        before, began = calls(), time.perf_counter()
        mreport = MappingReport(mapping.name)
        try:
            if not mapping.flow.inbound:
                if progress:
                    progress(f"{mapping.name}: reading {mapping.flow.source.entity}")
                report.mappings.append(mreport)
                try:
                    pull.run(ctx, mapping, mreport)
                except GuardRefused as refused:
                    raise GuardRefused(f"{refused}{applied_so_far(report)}") from None
                continue
            if progress:
                progress(f"{mapping.name}: reading {mapping.table.name}")
            found = scan(ctx, mapping)
            refusal = removal_refusal(mapping, found.weighed, options.allow_removals)
            if refusal:  # 1C removed rows while this run was going: say what was applied before the refusal
                raise GuardRefused(refusal + applied_so_far(report))
            mreport.source_rows = found.source_rows
            report.mappings.append(mreport)
            if (found.changed or found.missing) and not warmed:
                warmed = True  # lookups and the records' own ids: read once, when there is work
                for synced in ctx.mappings.synced():
                    if synced.flow.inbound:
                        known_remote_ids(ctx, synced)
            inbound.run(ctx, mapping, found, mreport, _progress(progress, calls, began, before))
        finally:  # what each mapping cost, kept in sync_runs.counts even when the run stops in it
            mreport.moodle_calls = calls() - before
            mreport.seconds = time.perf_counter() - began + deriving.get(mapping.name, 0.0)


def _progress(progress: Callable[[str], None] | None, calls: Callable[[], int], began: float,
              before: int) -> inbound.Progress | None:
    """A mapping's progress line with its rate and remote calls (None: no progress wanted)."""
    if progress is None:
        return None
    say = progress

    def line(mapping: str, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - began, 1e-6)
        say(f"{mapping}: {min(done, total)} of {total} rows ({rate:.0f} rows/s, {calls() - before} Moodle calls)")
    return line


def applied_so_far(report: RunReport) -> str:
    done = {m.mapping: {k: v for k, v in m.counts.items() if v and k not in ("unchanged", "failing")}
            for m in report.mappings}
    done = {name: c for name, c in done.items() if c}
    if not done:
        return "; nothing was applied before the refusal"
    return "; applied before the refusal: " + "; ".join(
        f"{name}: " + ", ".join(f"{n} {k}" for k, n in c.items()) for name, c in done.items())
