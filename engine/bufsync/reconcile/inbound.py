"""One inbound mapping (buffer -> remote) after its scan: each planned chunk applied, or in a dry run
only counted, and what happened to every row summed up in the mapping's report."""

from __future__ import annotations

from collections.abc import Callable

from bufsync.mapping.model import Mapping
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import Existing
from bufsync.reconcile.apply import apply_plan
from bufsync.reconcile.context import Context
from bufsync.reconcile.plan import applied_of
from bufsync.reconcile.planner import plans, unreachable_parent
from bufsync.reconcile.scan import Scan
from bufsync.report import MappingReport

Progress = Callable[[str, int, int], None]  # mapping, rows done, rows to do


def run(ctx: Context, mapping: Mapping, found: Scan, report: MappingReport, progress: Progress | None = None) -> None:
    report.add(p.UNCHANGED, found.unchanged)
    report.counts["failing"] += found.failing
    total, done = len(found.changed) + found.removals, 0
    for chunk in plans(ctx, mapping, found):
        if ctx.options.dry_run:
            _dry(ctx, mapping, report, chunk)
        else:
            summarise(report, apply_plan(ctx, mapping, chunk, found.entries), chunk.unchanged)
        done += len(chunk.steps) + chunk.unchanged + len(chunk.waiting)
        if progress is not None:  # a live line on a terminal, a log line per batch otherwise
            progress(mapping.name, done, total)


def summarise(report: MappingReport, results: list[p.Result], unchanged: int) -> None:
    failed = (p.Status.ERROR, p.Status.SKIPPED)
    for result in results:
        if result.status == p.Status.HELD:
            continue
        if result.status in failed and result.action in (*p.WRITES, p.SUSPEND_ROW):
            report.add(p.REJECT)  # a write the remote refused
            report.error(result.key, "error", result.reason)
        elif result.action == p.SUSPEND_ROW:
            report.add(p.SUSPEND)
        else:
            report.add(result.action)
            if result.action in (p.SKIP, p.REJECT, p.DISPUTED):
                report.error(result.key, "skipped" if result.action == p.SKIP else "error", result.reason)
        if result.status == p.Status.WARNING:
            report.counts["warnings"] += 1
            report.error(result.key, "warning", result.reason)
    report.add(p.UNCHANGED, unchanged)


def _dry(ctx: Context, mapping: Mapping, mreport: MappingReport, chunk: p.MappingPlan) -> None:
    for step in chunk.steps:
        mreport.add(step.action)
        if step.action in p.WRITES:
            mreport.plan(step.to_dict())
            if step.action == p.CREATE:
                ctx.remote_ids.setdefault(mapping.name, {})[step.key] = -1  # later lookups resolve
        elif step.reason:
            ctx.errors.setdefault(mapping.name, {})[step.key] = step.reason  # rows pointing at it: skipped, as for real
            mreport.error(step.key, "skipped" if step.action == p.SKIP else "error", step.reason)
    # rows whose parent is in the same table: parents first, as the real run's waves go
    cache = ctx.remote_ids.setdefault(mapping.name, {})
    waiting = list(chunk.waiting)
    while waiting:
        ready = [(d, e) for d, e in waiting
                 if all(v is None or o != mapping.name or d.resolved.get(t) is not None or str(v) in cache
                        for t, (o, v) in d.lookups.items())]
        if not ready:
            for desired, _ in waiting:
                mreport.add(p.REJECT)
                reason = unreachable_parent(mapping, desired, waiting)
                ctx.errors.setdefault(mapping.name, {})[desired.key] = reason
                mreport.error(desired.key, "error", reason)
            break
        adapter = ctx.adapter_for(mapping)
        for desired, entry in ready:
            action = p.CREATE if entry is None else p.UPDATE
            existing = None if entry is None or entry.remote_id is None else Existing(entry.key, entry.remote_id,
                                                                                      applied_of(entry))
            reason = adapter.prevalidate(desired, existing)
            if reason:  # refused as the real run's wave will refuse it
                mreport.add(p.REJECT)
                ctx.errors.setdefault(mapping.name, {})[desired.key] = reason
                mreport.error(desired.key, "error", reason)
                continue
            mreport.add(action)
            cache.setdefault(desired.key, -1)  # later lookups resolve, as after the real create
            mreport.plan({"action": action, "key": desired.key, "after": "its parent"})
        done = {id(d) for d, _ in ready}
        waiting = [w for w in waiting if id(w[0]) not in done]
    mreport.add(p.UNCHANGED, chunk.unchanged)
