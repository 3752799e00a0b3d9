"""One inbound mapping: stream the buffer once, diff against the ledger, plan, apply, record."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bufsync.buffer import reader, writeback
from bufsync.mapping.model import Mapping
from bufsync.reconcile import fingerprint
from bufsync.reconcile import plan as p
from bufsync.reconcile.adapter import HELD, Candidate, Existing, Member, Outcome, TargetAdapter
from bufsync.reconcile.context import CHUNK, Context, Interrupted, dialect_of
from bufsync.reconcile.records import Desired, RecordBuilder
from bufsync.state.ledger import ERROR, LINKED, REMOVED, SUSPENDED, Entry, now_utc

log = logging.getLogger("bufsync.reconcile")
FEW_CHANGED = 10000  # up to this many changed keys (and a quarter of the table), pass two asks for them by key


def _lookup_reason(ctx: Context, mapping_name: str, value: Any) -> tuple[str, str]:
    """(sync_status, text) for a record whose referenced record is not in the LMS."""
    other = ctx.mappings[mapping_name]
    failed = ctx.errors.get(mapping_name, {}).get(str(value))
    what = {"users": "Пользователь", "courses": "Курс", "departments": "Подразделение"}.get(mapping_name, "Запись")
    if failed:
        return "skipped", f"{what} «{value}» не применён(а) в LMS: {failed}"
    return "error", (f"{what} «{value}» не найден(а) ни в LMS, ни в таблице {other.table.name}; "
                     f"добавьте строку в {other.table.name} или проверьте идентификатор (notfound)")


def _resolve(ctx: Context, mapping: Mapping, batch: list[Desired]) -> None:
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


@dataclass
class Removals:
    """What the removal guards weigh, counted without reading the changed rows (vetted before any write)."""

    source_rows: int
    linked_before: int
    removals: int


def removals(ctx: Context, mapping: Mapping) -> Removals:
    on_missing = mapping.sync.on_missing
    with ctx.engine.connect() as conn:
        rows, linked, entries = counts(ctx, conn, mapping)
        if on_missing == "keep" or entries == 0:
            return Removals(rows, linked, 0)
        gone = fingerprint.missing_query(dialect_of(ctx), ctx.tables, ctx.ledger.table, mapping).subquery()
        query = sa.select(sa.func.count()).select_from(gone).where(
            sa.or_(gone.c.remote_id.is_not(None), gone.c.applied.is_not(None)))
        if on_missing == "suspend":
            query = query.where(gone.c.state == LINKED)
        return Removals(rows, linked, conn.execute(query).scalar_one())


def scan(ctx: Context, mapping: Mapping) -> Scan:
    builder = RecordBuilder(mapping, ctx.timezone)
    dialect = dialect_of(ctx)
    ledger = ctx.ledger.table
    result = Scan()
    with ctx.engine.connect() as conn:
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
            if mapping.sync.group_by:
                vanished.setdefault(mapping.sync.group_of(json.loads(entry.key)), set()).add(entry.key)
            if entry.remote_id is None and not entry.applied:
                continue  # (an enrolment has no id of its own: what was applied says which one)
            existing = Existing(entry.key, entry.remote_id, entry.applied)
            if mapping.sync.on_missing == "delete":
                result.missing.append(p.Step(p.DELETE, entry.key, None, existing))
            elif mapping.sync.on_missing == "suspend" and entry.state == LINKED:
                result.missing.append(p.Step(p.SUSPEND, entry.key, None, existing))
    return result


def _present(ctx: Context, mapping: Mapping, keys: list[str]) -> set[str]:
    """Which of these keys the source table holds (for parents in the same table)."""
    table = ctx.tables[mapping.table.name]
    expression = fingerprint.key_expression(dialect_of(ctx), table, mapping)
    found: set[str] = set()
    with ctx.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found |= {r[0] for r in conn.execute(sa.select(expression).where(expression.in_(chunk)))}
    return found


def _changed_rows(ctx: Context, conn: sa.Connection, mapping: Mapping, builder: RecordBuilder,
                  found: Scan) -> Iterator[sa.Row]:
    """The changed rows with their fingerprints: asked for by key when they are few, else one streamed
    pass over the table (an initial load) keeping only them."""
    def query(keys: list[str] | None = None) -> sa.Select:
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


def execute(ctx: Context, mapping: Mapping, found: Scan, on_chunk: Callable[[p.MappingPlan], None]) -> None:
    """Pass two, only over changed keys: plan and hand over CHUNK records at a time, then removals.

    Memory stays flat: a chunk's records are dropped once applied.
    """
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

            def flush() -> None:
                chunk = p.MappingPlan(mapping.name)
                with ctx.engine.connect() as other:  # the stream's connection has a cursor open
                    entries.update(ctx.ledger.get_many(other, mapping.name, [d.key for d in pending]))
                _resolve(ctx, mapping, pending)
                for desired in pending:
                    _classify_one(ctx, mapping, chunk, builder, desired, entries.get(desired.key))
                pending.clear()
                waiting.extend(chunk.waiting)
                chunk.waiting = []
                _correlate(ctx, mapping, chunk)
                _prevalidate(ctx, mapping, chunk)
                if ctx.options.full:
                    _drift(ctx, mapping, chunk, entries)
                on_chunk(chunk)
                for step in chunk.steps:  # applied: the chunk's entries are not needed any more
                    entries.pop(step.key, None)

            for row in _changed_rows(ctx, conn, mapping, builder, found):
                desired = builder.build(row, attached)
                desired.key = row._key
                desired.content_hash = row._fingerprint
                desired.writeback = writeback.current(row, mapping)
                pending.append(desired)
                if len(pending) >= CHUNK:
                    flush()
            if pending:
                flush()
    last = p.MappingPlan(mapping.name)
    parents = [str(v) for d, _ in waiting for t, (o, v) in d.lookups.items()
               if o == mapping.name and v is not None and d.resolved.get(t) is None]
    present = _present(ctx, mapping, sorted(set(parents))) if parents else set()
    for desired, entry in waiting:
        missing = [v for t, (o, v) in desired.lookups.items()
                   if o == mapping.name and v is not None and desired.resolved.get(t) is None
                   and str(v) not in present]
        if missing:
            status, text = _lookup_reason(ctx, mapping.name, missing[0])
            last.steps.append(p.Step(p.SKIP if status == "skipped" else p.REJECT, desired.key, desired, reason=text))
        else:
            last.waiting.append((desired, entry))
    last.steps.extend(found.missing)
    if last.steps or last.waiting:
        on_chunk(last)


def _classify_one(ctx: Context, mapping: Mapping, plan: p.MappingPlan, builder: RecordBuilder,
                  desired: Desired, entry: Entry | None) -> None:
    if desired.invalid is not None:
        plan.steps.append(p.Step(p.REJECT, desired.key, desired, reason=desired.invalid))
        return
    for target, (other, value) in desired.lookups.items():
        if value is not None and desired.resolved.get(target) is None and other == mapping.name:
            plan.waiting.append((desired, entry))  # its parent may be created in this run: decided later
            return
        if value is not None and desired.resolved.get(target) is None:
            status, text = _lookup_reason(ctx, other, value)
            plan.steps.append(p.Step(p.SKIP if status == "skipped" else p.REJECT, desired.key, desired,
                                     reason=text))
            return
    situation = p.classify(desired, entry, ctx.options.full)
    if situation == p.Situation.UNCHANGED and ctx.options.full and entry is not None:
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
    if situation == p.Situation.UNMATCHED:
        plan.steps.append(p.Step(p.CREATE, desired.key, desired))  # may become ADOPT after correlation
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


def _correlate(ctx: Context, mapping: Mapping, plan: p.MappingPlan) -> None:
    """Unlinked keys: adopt a remote record only when nothing contradicts it, else `disputed`, no write.

    A record is not adopted when the ledger links it to another key, when a stronger rule's field
    (the idnumber, before the login) holds another value, when another key of this plan claims it,
    or when several records fit.
    """
    creates = [s for s in plan.steps if s.action == p.CREATE]
    if not creates or not mapping.sync.correlation:
        return
    adapter = ctx.adapter_for(mapping)
    rules = mapping.sync.correlation
    for start in range(0, len(creates), CHUNK):
        chunk = creates[start:start + CHUNK]
        found = adapter.correlate([s.desired for s in chunk], rules)
        with ctx.engine.connect() as conn:
            owners = ctx.ledger.owners(conn, mapping.name, [c.remote_id for cs in found.values() for c in cs])
        claimed: dict[int, list[p.Step]] = {}
        for step in chunk:
            candidates = found.get(step.key, [])
            if len(candidates) > 1:
                step.action = p.DISPUTED
                step.candidates = [c.remote_id for c in candidates]
                step.reason = (f"В LMS несколько записей подходят к строке «{step.key}» "
                               f"(id {', '.join(map(str, step.candidates))}); оставьте одну или задайте idnumber "
                               "вручную (disputed)")
            elif candidates:
                reason = _contradiction(step, candidates[0], owners.get(candidates[0].remote_id), rules)
                step.candidates = [candidates[0].remote_id]
                if reason:
                    step.action, step.reason = p.DISPUTED, reason
                else:
                    step.action = p.ADOPT
                    step.existing = Existing(step.key, candidates[0].remote_id, None)
                    claimed.setdefault(candidates[0].remote_id, []).append(step)
        for remote_id, steps in claimed.items():
            if len(steps) > 1:
                keys = ", ".join(f"«{s.key}»" for s in steps)
                for step in steps:
                    step.action, step.existing = p.DISPUTED, None
                    step.reason = (f"Запись LMS id {remote_id} подходит сразу к строкам {keys}; ни одна не "
                                   "привязана, чтобы не отдать чужую запись; исправьте идентификаторы (disputed)")


CHECKED = (p.CREATE, p.ADOPT, p.UPDATE, p.REACTIVATE, p.SUSPEND)


def _prevalidate(ctx: Context, mapping: Mapping, plan: p.MappingPlan) -> None:
    """What the remote would refuse is rejected here, alone and with its reason, in a dry run as in a real one."""
    adapter = ctx.adapter_for(mapping)
    for step in plan.steps:
        if step.action in CHECKED and step.desired is not None:
            reason = adapter.prevalidate(step.desired, step.existing)
            if reason:
                step.action, step.reason = p.REJECT, reason


def _contradiction(step: p.Step, candidate: Candidate, owner: str | None, rules: list[Any]) -> str | None:
    """Why adopting this record would take over someone else's, or None when nothing contradicts it."""
    if owner is not None and owner != step.key:
        return (f"Запись LMS id {candidate.remote_id} уже связана со строкой «{owner}»; строка «{step.key}» к ней "
                f"не привязана, чтобы не перезаписать чужую запись. Проверьте {rules[candidate.rule].source} "
                "(у двух строк одинаковое значение) (disputed)")
    desired = step.desired
    for index, rule in enumerate(rules[:candidate.rule]):
        have = candidate.values.get(rule.remote)
        want = desired.correlation[index] if desired is not None else None
        if have not in (None, "") and str(have) != str(want if want is not None else ""):
            by = rules[candidate.rule]
            found = desired.correlation[candidate.rule]
            return (f"Запись LMS id {candidate.remote_id} найдена по {by.remote} «{found}», "
                    f"но её {rule.remote} = «{have}», а у строки «{step.key}» — «{want or ''}»: это другая запись, она "
                    f"не привязана и не изменена. Исправьте {by.source} в 1С или {rule.remote} в LMS (disputed)")
    return None


def _drift(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry]) -> None:
    """--full: unchanged keys whose LMS record was edited or removed by hand are applied again. A key that
    only gets a new fingerprint (rehash: nothing to send by the ledger, e.g. a department whose parent was
    created in the same run) is checked too, else the first --full after a load would not look at it."""
    adapter = ctx.adapter_for(mapping)
    rehashed = {s.key: s for s in plan.steps if s.action == p.REHASH and s.desired is not None
                and s.existing is not None}
    check = plan.full_check + [(s.desired, s.existing) for s in rehashed.values()]
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


def apply_plan(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry]) -> None:
    """Apply in batches; each chunk's ledger entries and write-back are stored in one transaction."""
    opts = ctx.options
    adapter = ctx.adapter_for(mapping)
    builder = RecordBuilder(mapping, ctx.timezone)
    table = ctx.tables[mapping.table.name]
    remote_cache = ctx.remote_ids.setdefault(mapping.name, {})
    error_cache = ctx.errors.setdefault(mapping.name, {})
    groups: dict[str, list[p.Step]] = {}
    for step in plan.steps:
        groups.setdefault(step.action, []).append(step)
    results: list[tuple[p.Step, Outcome, str]] = []  # step, outcome, ledger state if ok

    def run(action: str, call: Callable[[list[p.Step]], list[Outcome]], state: str, blocked: bool) -> None:
        steps = groups.get(action, [])
        for start in range(0, len(steps), CHUNK):
            if opts.stop is not None and opts.stop.is_set():
                raise Interrupted(f"{mapping.name}: stopped on request after the batch in hand")
            chunk = steps[start:start + CHUNK]
            if blocked:
                outcomes = [Outcome(False, None, None, HELD) for _ in chunk]
            else:
                outcomes = call(chunk)
            results.extend((s, o, state) for s, o in zip(chunk, outcomes))
            _store(ctx, mapping, table, builder, results, entries, remote_cache, error_cache)
            results.clear()

    writers: dict[str, Callable[[list[p.Step]], list[Outcome]]] = {
        "create": lambda c: _create(adapter, c),
        "update": lambda c: adapter.update([(s.desired, s.existing) for s in c]),
        "suspend": lambda c: adapter.suspend([s.existing for s in c]),
        "delete": lambda c: adapter.delete([s.existing for s in c])}
    if mapping.sync.group_by:  # several rows are one remote record: every write goes through the group
        writers = dict.fromkeys(writers, lambda c: _grouped(ctx, mapping, builder, c, entries))
    create, update, suspend, delete = (writers[k] for k in ("create", "update", "suspend", "delete"))
    run(p.REHASH, lambda c: [Outcome(True, s.existing.remote_id) for s in c], LINKED, False)
    run(p.CREATE, create, LINKED, opts.no_create)
    run(p.ADOPT, update, LINKED, opts.no_update)
    for action in (p.UPDATE, p.REACTIVATE):
        run(action, update, LINKED, opts.no_update)
    _waves(ctx, mapping, plan, entries, builder, run, groups)
    suspends_with_row = [s for s in groups.get(p.SUSPEND, []) if s.desired is not None]
    groups[p.SUSPEND] = [s for s in groups.get(p.SUSPEND, []) if s.desired is None]
    groups[p.SUSPEND_ROW] = suspends_with_row
    run(p.SUSPEND_ROW, update, SUSPENDED, opts.no_update)
    run(p.SUSPEND, suspend, SUSPENDED, opts.no_delete)
    run(p.DELETE, delete, REMOVED, opts.no_delete)
    run(p.REPAIR, update, LINKED, opts.no_update)
    for action in (p.SKIP, p.REJECT, p.DISPUTED):
        run(action, lambda c: [Outcome(False, None, s.reason, action) for s in c], ERROR, False)
    if plan.writeback_only:
        _restore_writeback(ctx, mapping, table, plan.writeback_only, entries)


def _waves(ctx: Context, mapping: Mapping, plan: p.MappingPlan, entries: dict[str, Entry], builder: RecordBuilder,
           run: Callable[..., None], groups: dict[str, list[p.Step]]) -> None:
    """Records that point at a parent in the same table (a department's parent), parents first."""
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
                plan.steps.append(step)  # counted and printed like every rejected row
            break
        wave = p.MappingPlan(mapping.name)
        for desired, entry in ready:
            _classify_one(ctx, mapping, wave, builder, desired, entry)
        _correlate(ctx, mapping, wave)
        _prevalidate(ctx, mapping, wave)
        plan.steps.extend(wave.steps)
        plan.unchanged += wave.unchanged
        for action in (p.CREATE, p.ADOPT, p.UPDATE):
            groups[action] = [step for step in wave.steps if step.action == action]
        run(p.CREATE, lambda c: _create(ctx.adapter_for(mapping), c), LINKED, ctx.options.no_create)
        for action in (p.ADOPT, p.UPDATE):
            run(action, lambda c: ctx.adapter_for(mapping).update([(s.desired, s.existing) for s in c]), LINKED,
                ctx.options.no_update)
        waiting = later
    plan.waiting = []


def _group_members(ctx: Context, mapping: Mapping, groups: list[tuple[str, ...]]) -> dict[tuple[str, ...], set[str]]:
    """Every key of these groups: the rows the buffer holds now, and those that vanished from it."""
    sync = mapping.sync
    table = ctx.tables[mapping.table.name]
    dialect = dialect_of(ctx)
    columns = [dialect.text(table.c[name]) for name in sync.group_by]
    key = fingerprint.key_expression(dialect, table, mapping)
    wanted = set(groups)
    out: dict[tuple[str, ...], set[str]] = {g: set(ctx.vanished.get(mapping.name, {}).get(g, ())) for g in groups}
    firsts = sorted({g[0] for g in groups})
    with ctx.engine.connect() as conn:
        for start in range(0, len(firsts), 500):
            query = sa.select(key, *columns).where(columns[0].in_(firsts[start:start + 500]))
            for row in conn.execute(query):
                group = tuple(str(v) for v in row[1:])
                if group in wanted:
                    out[group].add(row[0])
    return out


def _view(entry: Entry | None) -> dict[str, Any] | None:
    """What the remote holds for a row, by the ledger (an entry that failed keeps what was applied before)."""
    if entry is None or entry.state == REMOVED:
        return None
    return applied_of(entry)


def applied_of(entry: Entry) -> dict[str, Any] | None:
    """The ledger's applied view; a suspended entry is inactive whatever an older version wrote in it."""
    applied = entry.applied
    if applied is not None and entry.state == SUSPENDED and applied.get("@active", True):
        return {**applied, "@active": False}
    return applied


def _grouped(ctx: Context, mapping: Mapping, builder: RecordBuilder, steps: list[p.Step],
             entries: dict[str, Entry]) -> list[Outcome]:
    """Writes of a grouped mapping: each touched group goes to the adapter whole, its other rows as the
    ledger has them now (read afresh: earlier batches of this run may have changed them)."""
    sync = mapping.sync
    by_group: dict[tuple[str, ...], list[p.Step]] = {}
    for step in steps:
        values = step.desired.key_values if step.desired is not None else json.loads(step.key)
        by_group.setdefault(sync.group_of(values), []).append(step)
    members_of = _group_members(ctx, mapping, list(by_group))
    mine = {s.key for s in steps}
    with ctx.engine.connect() as conn:
        peers = ctx.ledger.get_many(conn, mapping.name, sorted({k for ks in members_of.values() for k in ks} - mine))
    groups: list[list[Member]] = []
    for group, group_steps in by_group.items():
        members = []
        for step in group_steps:
            before = _view(entries.get(step.key))
            if step.desired is not None:
                after = builder.applied_view(step.desired)
            elif step.action == p.SUSPEND:
                after = None if before is None else {**before, "@active": False}
            else:
                after = None
            members.append(Member(step.key, before, after))
        for key in sorted(members_of[group] - mine):
            view = _view(peers.get(key))
            members.append(Member(key, view, view))
        groups.append(members)
    outcomes = ctx.adapter_for(mapping).apply_groups(groups)
    by_key = {m.key: o for members, o in zip(groups, outcomes) for m in members}
    return [by_key[s.key] for s in steps]


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


def _create(adapter: TargetAdapter, steps: list[p.Step]) -> list[Outcome]:
    return adapter.create([s.desired for s in steps])


def _store(ctx: Context, mapping: Mapping, table: sa.Table, builder: RecordBuilder,
           results: list[tuple[p.Step, Outcome, str]], entries: dict[str, Entry],
           remote_cache: dict[str, int], error_cache: dict[str, str]) -> None:
    now = now_utc()
    ledger_entries: list[Entry] = []
    statuses: list[writeback.Status] = []
    known = {step.key for step, _, _ in results if step.key in entries}
    for step, outcome, state in results:
        previous = entries.get(step.key)
        if outcome.code == HELD:
            step.held = True
            continue  # --no-create / --no-update / --no-delete: left for a later run
        if step.action == p.SUSPEND_ROW:
            state = SUSPENDED
        if step.action in (p.UPDATE, p.ADOPT, p.REACTIVATE, p.REPAIR, p.REHASH) and step.desired is not None and not step.desired.active:
            state = SUSPENDED
        if outcome.ok:
            remote_id = outcome.remote_id or (step.existing.remote_id if step.existing else None)
            applied = builder.applied_view(step.desired) if step.desired else _vanished(previous, state)
            # a record suspended or removed because its row vanished must be re-applied when the row returns
            content_hash = step.desired.content_hash if step.desired else None
            entry = Entry(step.key, remote_id, content_hash, state, outcome.warning, 0, applied)
            if remote_id is not None and state != REMOVED:
                remote_cache[step.key] = remote_id
            error_cache.pop(step.key, None)
            status, error = ("warning", outcome.warning) if outcome.warning else ("ok", None)
            step.warned = outcome.warning
        else:
            remote_id = step.existing.remote_id if step.existing else (previous.remote_id if previous else None)
            keep_state = previous.state if previous and previous.state in (LINKED, SUSPENDED) else ERROR
            if step.desired is not None and keep_state != ERROR:
                keep_state = ERROR if step.action in (p.UPDATE, p.REACTIVATE, p.SUSPEND_ROW, p.REPAIR) else keep_state
            entry = Entry(step.key, remote_id,
                          step.desired.content_hash if step.desired and step.desired.content_hash else None,
                          keep_state, outcome.error, (previous.attempts if previous else 0) + 1,
                          previous.applied if previous else None)
            error_cache[step.key] = outcome.error or ""
            status = "skipped" if outcome.code == p.SKIP else "error"
            error = outcome.error
        ledger_entries.append(entry)
        if step.key in entries:
            entries[step.key] = entry  # keys new to the ledger are not kept: memory stays flat
        step.failed = None if outcome.ok else (outcome.error or outcome.code or "error")
        if step.desired is not None:
            written_id = remote_id if status in ("ok", "warning") else step.desired.writeback[2]
            statuses.append(writeback.Status(step.desired.key_values, status, error, written_id, now))
    if ctx.options.dry_run:
        return
    with ctx.engine.begin() as conn:
        ctx.ledger.save(conn, mapping.name, ledger_entries, known=known)
        writeback.write(conn, table, mapping, statuses)


def written_status(entry: Entry) -> tuple[str, str | None]:
    """sync_status and sync_error of an applied row: ok, or warning with what the remote did not keep."""
    warned = entry.last_error and not entry.attempts and entry.state in (LINKED, SUSPENDED)
    return ("warning", entry.last_error) if warned else ("ok", None)


def _vanished(previous: Entry | None, state: str) -> dict[str, Any] | None:
    """What the remote holds after its row vanished: suspended (so a return must reactivate), or nothing."""
    if previous is None or previous.applied is None or state == REMOVED:
        return None
    return {**previous.applied, "@active": False}


def _restore_writeback(ctx: Context, mapping: Mapping, table: sa.Table, items: list[Desired],
                       entries: dict[str, Entry]) -> None:
    if ctx.options.dry_run:
        return
    now = now_utc()
    statuses = []
    for desired in items:
        entry = entries[desired.key]
        if entry.state == ERROR:
            statuses.append(writeback.Status(desired.key_values, "skipped" if "не применён" in (entry.last_error or "")
                                             else "error", entry.last_error, desired.writeback[2], now))
        else:
            status, error = written_status(entry)
            statuses.append(writeback.Status(desired.key_values, status, error, entry.remote_id, now))
    for start in range(0, len(statuses), CHUNK):
        with ctx.engine.begin() as conn:
            writeback.write(conn, table, mapping, statuses[start:start + CHUNK])


def known_remote_ids(ctx: Context, mapping: Mapping) -> None:
    """Warm the lookup cache of a mapping from its ledger (one query)."""
    with ctx.engine.connect() as conn:
        ctx.remote_ids[mapping.name] = ctx.ledger.remote_ids(conn, mapping.name)
        t = ctx.ledger.table
        rows = conn.execute(sa.select(t.c.record_key, t.c.last_error).where(
            t.c.mapping_name == mapping.name, t.c.state == ERROR))
        ctx.errors[mapping.name] = {r.record_key: r.last_error or "" for r in rows}
