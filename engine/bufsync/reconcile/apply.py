"""Applying a plan: writes in batches by action, parents before children, grouped records whole; each
batch's ledger entries and buffer write-back stored in one transaction, and what happened returned."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bufsync.buffer import writeback
from bufsync.mapping.model import Mapping
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import Member, Outcome, TargetAdapter
from bufsync.reconcile.context import CHUNK, Context, Interrupted
from bufsync.reconcile.correlate import correlate
from bufsync.reconcile.groups import group_peers
from bufsync.reconcile.plan import desired_of, existing_of, vanished_view, view_of, written_status
from bufsync.reconcile.planner import classify_one, prevalidate, unreachable_parent
from bufsync.reconcile.records import Desired, RecordBuilder
from bufsync.state.ledger import ERROR, LINKED, REMOVED, SUSPENDED, Entry, RemoteId, now_utc

Writer = Callable[[list[p.Step]], list[Outcome]]


def apply_plan(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry]) -> list[p.Result]:
    """Apply in batches by action; each batch's ledger entries and write-back are stored in one transaction.
    Returns what happened to every step, held ones included."""
    opts = ctx.options
    adapter: TargetAdapter = ctx.adapter_for(mapping)
    builder = RecordBuilder(mapping, ctx.timezone)
    table = ctx.tables[mapping.table.name]
    groups: dict[p.Action, list[p.Step]] = {}
    for step in plan.steps:
        groups.setdefault(step.action, []).append(step)
    results: list[p.Result] = []

    def create(steps: list[p.Step]) -> list[Outcome]:
        return adapter.create([desired_of(s) for s in steps])

    def update(steps: list[p.Step]) -> list[Outcome]:
        return adapter.update([(desired_of(s), existing_of(s)) for s in steps])

    def rehash(steps: list[p.Step]) -> list[Outcome]:
        return [Outcome(True, existing_of(s).remote_id) for s in steps]

    def refused(steps: list[p.Step]) -> list[Outcome]:
        return [Outcome(False, None, s.reason) for s in steps]

    suspend: Writer = lambda steps: adapter.suspend([existing_of(s) for s in steps])  # noqa: E731
    delete: Writer = lambda steps: adapter.delete([existing_of(s) for s in steps])  # noqa: E731
    if mapping.flow.group_by:  # several rows are one remote record: every write goes through the group
        create = update = suspend = delete = lambda steps: _grouped(ctx, mapping, builder, steps, entries)  # noqa: E731
    # action -> (how it is written, the ledger state it leaves, whether an option holds it back)
    schedule: dict[p.Action, tuple[Writer, str, bool]] = {
        p.REHASH: (rehash, LINKED, False), p.CREATE: (create, LINKED, opts.no_create),
        p.ADOPT: (update, LINKED, opts.no_update), p.UPDATE: (update, LINKED, opts.no_update),
        p.REACTIVATE: (update, LINKED, opts.no_update), p.SUSPEND_ROW: (update, SUSPENDED, opts.no_update),
        p.SUSPEND: (suspend, SUSPENDED, opts.no_delete), p.DELETE: (delete, REMOVED, opts.no_delete),
        p.REPAIR: (update, LINKED, opts.no_update),
        p.SKIP: (refused, ERROR, False), p.REJECT: (refused, ERROR, False), p.DISPUTED: (refused, ERROR, False)}

    def run(action: p.Action) -> None:
        write, state, held = schedule[action]
        steps = groups.get(action, [])
        for start in range(0, len(steps), CHUNK):
            if opts.stop is not None and opts.stop.is_set():
                raise Interrupted(f"{mapping.name}: stopped on request after the batch in hand")
            chunk = steps[start:start + CHUNK]
            if held:  # --no-create / --no-update / --no-delete: left for a later run, nothing recorded
                results.extend(p.Result(s.key, s.action, p.Status.HELD) for s in chunk)
                continue
            done = list(zip(chunk, write(chunk), strict=True))
            results.extend(_store(ctx, mapping, table, builder, done, state, entries))

    for action in (p.REHASH, p.CREATE, p.ADOPT, p.UPDATE, p.REACTIVATE):
        run(action)
    _waves(ctx, mapping, plan, entries, builder, run, groups)
    suspends = groups.get(p.SUSPEND, [])  # a row still there that says inactive: suspended by an update
    groups[p.SUSPEND_ROW] = [s for s in suspends if s.desired is not None]
    groups[p.SUSPEND] = [s for s in suspends if s.desired is None]
    for action in (p.SUSPEND_ROW, p.SUSPEND, p.DELETE, p.REPAIR, p.SKIP, p.REJECT, p.DISPUTED):
        run(action)
    if plan.writeback_only:
        _restore_writeback(ctx, mapping, table, plan.writeback_only, entries)
    return results


def _waves(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry], builder: RecordBuilder,
           run: Callable[[p.Action], None], groups: dict[p.Action, list[p.Step]]) -> None:
    """Records that point at a parent in the same table (a department's parent), parents first: each wave
    is planned once its parents have ids, and applied before the next."""
    waiting = list(plan.waiting)
    cache = ctx.remote_ids.setdefault(mapping.name, {})
    while waiting:
        ready, later = [], []
        for desired, entry in waiting:
            for target, (other, value) in desired.lookups.items():
                if other == mapping.name and value is not None and desired.resolved.get(target) is None:
                    desired.resolved[target] = cache.get(str(value))
            if all(desired.resolved.get(t) is not None or v is None for t, (o, v) in desired.lookups.items()):
                ready.append((desired, entry))
            else:
                later.append((desired, entry))
        if not ready:
            for desired, _ in later:
                step = p.Step(p.REJECT, desired.key, desired, reason=unreachable_parent(mapping, desired, later))
                groups.setdefault(p.REJECT, []).append(step)
            break
        wave = p.MappingPlan(mapping.name)
        for desired, entry in ready:
            classify_one(ctx, mapping, wave, builder, desired, entry)
        correlate(ctx, mapping, wave)
        prevalidate(ctx, mapping, wave)
        plan.unchanged += wave.unchanged
        now = (p.REHASH, p.CREATE, p.ADOPT, p.UPDATE, p.REACTIVATE)
        for action in now:
            groups[action] = [step for step in wave.steps if step.action == action]
            run(action)
        for step in wave.steps:  # suspensions and refusals go with the plan's own, after the waves
            if step.action not in now:
                groups.setdefault(step.action, []).append(step)
        waiting = later
    plan.waiting = []


def _grouped(ctx: Context, mapping: Mapping, builder: RecordBuilder, steps: list[p.Step],
             entries: dict[str, Entry]) -> list[Outcome]:
    """Writes of a grouped mapping: each touched group goes to the adapter whole, its other rows (here and in
    the mappings it shares records with) as the ledger has them now."""
    sync = mapping.flow
    by_group: dict[tuple[str, ...], list[p.Step]] = {}
    for step in steps:
        values = step.desired.key_values if step.desired is not None else json.loads(step.key)
        by_group.setdefault(sync.group_of(values), []).append(step)
    peers = group_peers(ctx, mapping, list(by_group), {s.key for s in steps})
    groups: list[list[Member]] = []
    for group, group_steps in by_group.items():
        members = []
        for step in group_steps:
            # a repair sends the whole wanted state: what Moodle holds is not what the ledger says
            before = None if step.action == p.REPAIR else view_of(entries.get(step.key))
            after: dict[str, Any] | None
            if step.desired is not None:
                after = builder.applied_view(step.desired)
            elif step.action == p.SUSPEND:
                after = None if before is None else {**before, "@active": False}
            else:
                after = None
            members.append(Member(step.key, before, after))
        groups.append(members + peers[group])
    outcomes = ctx.adapter_for(mapping).apply_groups(groups)
    by_key = {m.key: o for members, o in zip(groups, outcomes, strict=True) for m in members}
    return [by_key[s.key] for s in steps]


def _store(ctx: Context, mapping: Mapping, table: sa.Table, builder: RecordBuilder,
           done: list[tuple[p.Step, Outcome]], state: str, entries: dict[str, Entry]) -> list[p.Result]:
    """Record a batch: its ledger entries and the rows' sync_* columns in one transaction."""
    remote_cache = ctx.remote_ids.setdefault(mapping.name, {})
    error_cache = ctx.errors.setdefault(mapping.name, {})
    now = now_utc()
    ledger_entries: list[Entry] = []
    statuses: list[writeback.Status] = []
    results: list[p.Result] = []
    known = {step.key for step, _ in done if step.key in entries}
    for step, outcome in done:
        previous = entries.get(step.key)
        left = state
        if step.action in (p.CREATE, p.UPDATE, p.ADOPT, p.REACTIVATE, p.REPAIR, p.REHASH) \
                and step.desired is not None \
                and not step.desired.active:
            left = SUSPENDED
        remote_id: RemoteId | None
        if outcome.ok:
            remote_id = outcome.remote_id or (step.existing.remote_id if step.existing else None)
            # a record suspended or removed because its row vanished must be re-applied when the row returns
            applied = builder.applied_view(step.desired) if step.desired else vanished_view(previous, left)
            content_hash = step.desired.content_hash if step.desired else None
            entry = Entry(step.key, remote_id, content_hash, left, outcome.warning, 0, applied)
            if remote_id is not None and left != REMOVED:
                remote_cache[step.key] = remote_id
            error_cache.pop(step.key, None)
            status = p.Status.WARNING if outcome.warning else p.Status.OK
            reason = outcome.warning
        else:
            remote_id = step.existing.remote_id if step.existing else (previous.remote_id if previous else None)
            keep_state = previous.state if previous and previous.state in (LINKED, SUSPENDED) else ERROR
            if step.desired is not None and keep_state != ERROR and step.action in (
                    p.UPDATE, p.REACTIVATE, p.SUSPEND_ROW, p.REPAIR):
                keep_state = ERROR
            entry = Entry(step.key, remote_id,
                          step.desired.content_hash if step.desired and step.desired.content_hash else None,
                          keep_state, outcome.error, (previous.attempts if previous else 0) + 1,
                          previous.applied if previous else None)
            error_cache[step.key] = outcome.error or ""
            status = p.Status.SKIPPED if step.action == p.SKIP else p.Status.ERROR
            reason = outcome.error or outcome.code or "error"
        ledger_entries.append(entry)
        if step.key in entries:
            entries[step.key] = entry  # keys new to the ledger are not kept: memory stays flat
        results.append(p.Result(step.key, step.action, status, reason))
        if step.desired is not None:
            written_id = remote_id if status in (p.Status.OK, p.Status.WARNING) else step.desired.writeback[2]
            error = outcome.warning if outcome.ok else outcome.error
            statuses.append(writeback.Status(step.desired.key_values, status.value, error, written_id, now))
    if not ctx.options.dry_run:
        with ctx.engine.begin() as conn:
            ctx.ledger.save(conn, mapping.name, ledger_entries, known=known)
            writeback.write(conn, table, mapping, statuses)
    return results


def _restore_writeback(ctx: Context, mapping: Mapping, table: sa.Table, items: list[Desired],
                       entries: dict[str, Entry]) -> None:
    if ctx.options.dry_run:
        return
    now = now_utc()
    statuses = []
    for desired in items:
        entry = entries[desired.key]
        if entry.state == ERROR:
            status = p.Status.SKIPPED if _waits_on_a_failure(ctx, desired) else p.Status.ERROR
            statuses.append(writeback.Status(desired.key_values, status.value, entry.last_error, desired.writeback[2],
                                             now))
        else:
            written, error = written_status(entry)
            statuses.append(writeback.Status(desired.key_values, written, error, entry.remote_id, now))
    for start in range(0, len(statuses), CHUNK):
        with ctx.engine.begin() as conn:
            writeback.write(conn, table, mapping, statuses[start:start + CHUNK])


def _waits_on_a_failure(ctx: Context, desired: Desired) -> bool:
    """A row that failed because a record it points at failed (skipped), not by itself (error)."""
    return any(value is not None and str(value) in ctx.errors.get(other, {})
               for other, value in desired.lookups.values())
