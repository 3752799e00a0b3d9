"""Pass two, over the changed keys only: each key's step (create, adopt, update, suspend, ...) planned a
chunk at a time, with lookups resolved, correlation and the remote's own rules checked before any write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bufsync.buffer import reader, writeback
from bufsync.mapping.model import Mapping
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import Existing
from bufsync.reconcile.context import CHUNK, Context, dialect_of
from bufsync.reconcile.correlate import correlate
from bufsync.reconcile.groups import group_peers
from bufsync.reconcile.lookups import lookup_reason, resolve
from bufsync.reconcile.plan import applied_of, written_status
from bufsync.reconcile.records import Desired, RecordBuilder
from bufsync.reconcile.scan import Scan, changed_rows, present
from bufsync.state.ledger import LINKED, SUSPENDED, Entry


def plans(ctx: Context, mapping: Mapping, found: Scan) -> Iterator[p.MappingPlan]:
    """Pass two, only over changed keys: the plan of CHUNK records at a time, then the removals and the
    rows waiting for a parent in the same table. Each plan is to be applied before the next is asked for
    (memory stays flat: a chunk's entries are dropped once it is applied)."""
    if not found.changed and not found.missing:
        return
    builder = RecordBuilder(mapping, ctx.timezone)
    entries = found.entries
    waiting: list[tuple[Desired, Entry | None]] = []
    if found.changed:
        with ctx.engine.connect() as conn:
            dialect_of(ctx).prepare_stream(conn)
            attached = reader.attached(conn, ctx.mappings, ctx.tables, mapping)
            pending: list[Desired] = []
            rows = changed_rows(ctx, conn, mapping, builder, found)
            while True:
                for row in rows:
                    desired = builder.build(row, attached)
                    desired.key = row._key
                    desired.content_hash = row._fingerprint
                    desired.writeback = writeback.current(row, mapping)
                    pending.append(desired)
                    if len(pending) >= CHUNK:
                        break
                if not pending:
                    break
                chunk = _chunk(ctx, mapping, builder, pending, entries)
                pending = []
                waiting.extend(chunk.waiting)
                chunk.waiting = []
                yield chunk
                for step in chunk.steps:  # applied: the chunk's entries are not needed any more
                    entries.pop(step.key, None)
    last = p.MappingPlan(mapping.name)
    parents = [str(v) for d, _ in waiting for t, (o, v) in d.lookups.items()
               if o == mapping.name and v is not None and d.resolved.get(t) is None]
    held = present(ctx, mapping, sorted(set(parents))) if parents else set()
    for desired, entry in waiting:
        missing = [v for t, (o, v) in desired.lookups.items()
                   if o == mapping.name and v is not None and desired.resolved.get(t) is None
                   and str(v) not in held]
        if missing:
            status, text = lookup_reason(ctx, mapping.name, missing[0])
            last.steps.append(p.Step(p.SKIP if status == "skipped" else p.REJECT, desired.key, desired, reason=text))
        else:
            last.waiting.append((desired, entry))
    last.steps.extend(found.missing)
    if last.steps or last.waiting:
        yield last


def _chunk(ctx: Context, mapping: Mapping, builder: RecordBuilder, pending: list[Desired],
           entries: dict[str, Entry]) -> p.MappingPlan:
    chunk = p.MappingPlan(mapping.name)
    with ctx.engine.connect() as other:  # the stream's connection has a cursor open
        entries.update(ctx.ledger.get_many(other, mapping.name, [d.key for d in pending]))
    resolve(ctx, mapping, pending)
    for desired in pending:
        classify_one(ctx, mapping, chunk, builder, desired, entries.get(desired.key))
    correlate(ctx, mapping, chunk)
    prevalidate(ctx, mapping, chunk)
    if ctx.options.full:
        drift(ctx, mapping, chunk, entries)
    return chunk


def classify_one(ctx: Context, mapping: Mapping, plan: p.MappingPlan, builder: RecordBuilder,
                  desired: Desired, entry: Entry | None) -> None:
    if desired.invalid is not None:
        plan.steps.append(p.Step(p.REJECT, desired.key, desired, reason=desired.invalid))
        return
    for target, (other, value) in desired.lookups.items():
        if value is not None and desired.resolved.get(target) is None and other == mapping.name:
            plan.waiting.append((desired, entry))  # its parent may be created in this run: decided later
            return
        if value is not None and desired.resolved.get(target) is None:
            status, text = lookup_reason(ctx, other, value)
            plan.steps.append(p.Step(p.SKIP if status == "skipped" else p.REJECT, desired.key, desired,
                                     reason=text))
            return
    situation = p.classify(desired, entry, ctx.options.full)
    if situation == p.Situation.UNMATCHED or entry is None:  # (a key the ledger does not hold is unmatched)
        plan.steps.append(p.Step(p.CREATE, desired.key, desired))  # may become ADOPT after correlation
        return
    if situation == p.Situation.UNCHANGED and ctx.options.full:
        plan.full_check.append((desired, Existing(desired.key, entry.remote_id, entry.applied)))
    if situation == p.Situation.UNCHANGED:
        plan.unchanged += 1
        status, error = written_status(entry)
        if desired.writeback[0] != status or desired.writeback[1] != error or (
                mapping.table.writeback and mapping.table.writeback.remote_id
                and desired.writeback[2] != entry.remote_id):
            plan.writeback_only.append(desired)
        return
    if situation == p.Situation.KEEP_ERROR:
        plan.unchanged += 1
        if desired.writeback[0] not in ("error", "skipped") or desired.writeback[1] != entry.last_error:
            plan.writeback_only.append(desired)
        return
    existing = Existing(desired.key, entry.remote_id, applied_of(entry))
    if entry.state in (LINKED, SUSPENDED) and existing.applied is not None and \
            existing.applied == builder.applied_view(desired) and desired.writeback[0] in ("ok", "warning"):
        plan.steps.append(p.Step(p.REHASH, desired.key, desired, existing))  # nothing to send: new fingerprint only
        return
    action = p.UPDATE
    was_active = entry.state == LINKED
    if desired.active and not was_active:
        action = p.REACTIVATE
    elif not desired.active and was_active:
        action = p.SUSPEND
    plan.steps.append(p.Step(action, desired.key, desired, existing))


CHECKED = (p.CREATE, p.ADOPT, p.UPDATE, p.REACTIVATE, p.SUSPEND)


def prevalidate(ctx: Context, mapping: Mapping, plan: p.MappingPlan) -> None:
    """What the remote would refuse is rejected here, alone and with its reason, in a dry run as in a real one."""
    adapter = ctx.adapter_for(mapping)
    for step in plan.steps:
        if step.action in CHECKED and step.desired is not None:
            reason = adapter.prevalidate(step.desired, step.existing)
            if reason:
                step.action, step.reason = p.REJECT, reason


def drift(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry]) -> None:
    """--full: unchanged keys whose LMS record was edited or removed by hand are applied again. A key that
    only gets a new fingerprint (rehash: nothing to send by the ledger, e.g. a department whose parent was
    created in the same run) is checked too, else the first --full after a load would not look at it."""
    adapter = ctx.adapter_for(mapping)
    rehashed = {s.key: s for s in plan.steps if s.action == p.REHASH and s.desired is not None
                and s.existing is not None}
    check = plan.full_check + [(p.desired_of(s), p.existing_of(s)) for s in rehashed.values()]
    if mapping.flow.group_by and check:
        groups = {d.key: mapping.flow.group_of(d.key_values) for d, _ in check}
        peers = group_peers(ctx, mapping, sorted(set(groups.values())), set())
        for desired, existing in check:
            existing.peers = [m.before for m in peers[groups[desired.key]] if m.key != desired.key and m.before]
    for start in range(0, len(check), CHUNK):
        chunk = check[start:start + CHUNK]
        drifted = adapter.drifted(chunk)
        for desired, existing in chunk:
            if desired.key not in drifted:
                continue
            # applied=None: the adapter sends the whole wanted state, not a diff
            repair = Existing(existing.key, existing.remote_id, None)
            if desired.key in rehashed:
                rehashed[desired.key].action, rehashed[desired.key].existing = p.REPAIR, repair
            else:
                plan.unchanged -= 1
                plan.steps.append(p.Step(p.REPAIR, desired.key, desired, repair))
    plan.full_check.clear()


def unreachable_parent(mapping: Mapping, desired: Desired, stuck: list[tuple[Desired, Any]]) -> str:
    """A row whose parent chain never reaches the LMS: a cycle (named) or a parent that failed."""
    parent_of = {d.key: str(v) for d, _ in stuck for t, (o, v) in d.lookups.items() if o == mapping.name and v}
    chain, key = [desired.key], parent_of.get(desired.key)
    while key is not None and key not in chain:
        chain.append(key)
        key = parent_of.get(key)
    if key is not None:
        cycle = " → ".join(chain[chain.index(key):] + [key])
        return (f"Цикл в подчинённости: {cycle}; запись не создана в LMS. Исправьте вышестоящую запись одной из "
                "строк цикла (parentcycle)")
    return (f"Вышестоящая запись «{chain[-1]}» этой строки не создана в LMS (её ошибка — в её строке); "
            "строка будет применена, когда появится родитель (parentmissing)")
