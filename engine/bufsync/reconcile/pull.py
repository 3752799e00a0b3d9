"""The second direction: a remote entity read back into a buffer table the engine writes (an outbound
mapping: grades and completion for 1C).

Read the remote in pages; build each record's row and its fingerprint; compare with the ledger (what the
engine last wrote for that key; with --full, with the table itself); upsert only the rows that changed, in
one statement per batch (PostgreSQL and SQLite ON CONFLICT, MS SQL MERGE WITH HOLDLOCK), with the ledger in
the same transaction; then remove what the remote no longer holds (delete the row, or mark it: values
cleared, `removed_at` set), only where a page covered it, and only within the mapping's guards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.mapping.model import FieldMap, Mapping
from bufsync.mapping.types import PortableType
from bufsync.reconcile.adapter import SourceAdapter
from bufsync.reconcile.context import CHUNK, Context, Interrupted, dialect_of
from bufsync.reconcile.guards import GuardRefused, Weighed, removal_refusal
from bufsync.reconcile.plan import Action
from bufsync.report import MappingReport
from bufsync.state import cursors
from bufsync.state.ledger import LINKED, REMOVED, Entry, RemoteId, now_utc, record_key


class BadValue(ValueError):
    """A remote value the column cannot hold; the text is the row's reason (Russian, ends with a code)."""


@dataclass(frozen=True)
class Column:
    name: str
    spec: FieldMap
    type: PortableType
    nullable: bool
    key: bool


class RowBuilder:
    """A remote record as the buffer row the mapping describes, in the column's own type."""

    def __init__(self, mapping: Mapping, timezone_name: str) -> None:
        self.mapping = mapping
        self.zone = ZoneInfo(timezone_name)
        self.columns = [_column(mapping, name, spec) for name, spec in mapping.flow.fields.items()]
        self.key = mapping.flow.key

    def build(self, record: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column in self.columns:
            value = record.get(column.spec.source) if column.spec.source is not None else column.spec.value
            value = self._transform(value, column.spec)
            try:
                value = coerce(value, column.type, self.zone)
            except BadValue as exc:
                raise BadValue(f"Поле {column.spec.source} → колонка {column.name}: {exc}") from None
            if value is None and not column.nullable:
                raise BadValue(f"Поле {column.spec.source} пусто, а колонка {column.name} обязательна (required)")
            row[column.name] = value
        return row

    @staticmethod
    def _transform(value: Any, spec: FieldMap) -> Any:
        for step in spec.transform:
            if isinstance(value, str) and step in ("trim", "lower", "upper"):
                value = {"trim": value.strip, "lower": value.lower, "upper": value.upper}[step]()
            elif step == "null_if_empty" and value == "":
                value = None
        if value in (None, "") and spec.default is not None:
            value = spec.default
        return value

    def key_of(self, row: dict[str, Any]) -> str:
        return record_key(tuple(row[name] for name in self.key))

    def fingerprint(self, row: dict[str, Any]) -> str:
        """md5 over the row's values in column order, each in its normal text form (the same for a value
        read from the remote and the value the table gives back)."""
        parts = [_normal(row.get(column.name), column.type) for column in self.columns]
        return hashlib.md5(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def _column(mapping: Mapping, name: str, spec: FieldMap) -> Column:
    column = mapping.table.column(name)
    assert column is not None  # the loader checks that an outbound sync's fields are columns of its table
    return Column(name, spec, column.portable, column.is_nullable, column.key)


def coerce(value: Any, kind: PortableType, zone: ZoneInfo) -> Any:
    """A value in the Python type the column holds, or BadValue saying why it cannot be."""
    if value is None or (value == "" and kind.name not in ("string", "text")):
        return None
    name = kind.name
    if name in ("string", "text"):
        text = str(value)
        if kind.length is not None and len(text) > kind.length:
            raise BadValue(f"значение длиннее {kind.length} символов ({len(text)}) (toolong)")
        return text
    if name in ("integer", "bigint"):
        if isinstance(value, bool):
            return int(value)
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise BadValue(f"«{value}» — не целое число (notinteger)") from None
        if number != number.to_integral_value():
            raise BadValue(f"«{value}» — не целое число (notinteger)")
        return int(number)
    if name == "decimal":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise BadValue(f"«{value}» — не число (notnumber)") from None
        scale, precision = kind.scale or 0, kind.length or 38
        number = number.quantize(Decimal(1).scaleb(-scale))
        if abs(number) >= Decimal(10) ** (precision - scale):
            raise BadValue(f"{value} не помещается в decimal({precision},{scale}) (outofrange)")
        return number
    if name == "boolean":
        if value in (True, 1, "1", "true", "t", "yes"):
            return True
        if value in (False, 0, "0", "false", "f", "no"):
            return False
        raise BadValue(f"«{value}» — не логическое значение (notboolean)")
    moment = _moment(value, zone)
    if moment is None:
        raise BadValue(f"«{value}» — не дата и время (notdate)")
    return moment.date() if name == "date" else moment


def _moment(value: Any, zone: ZoneInfo) -> datetime | None:
    """A naive datetime in the site's time zone (how the buffer holds them) from what a remote gives:
    Unix time, an aware or naive datetime, a date, ISO text."""
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).astimezone(zone).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return _moment(datetime.fromisoformat(value), zone)
        except ValueError:
            return None
    return None


def _normal(value: Any, kind: PortableType) -> str | None:
    if value is None:
        return None
    if kind.name == "decimal":
        return format(Decimal(str(value)).quantize(Decimal(1).scaleb(-(kind.scale or 0))), "f")
    if kind.name == "boolean":
        return "1" if value else "0"
    if kind.name == "datetime" and isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return str(value)


@dataclass
class _RunScope:
    """What a reader may ask of the run (reconcile.adapter.Scope), from the ledger."""

    ctx: Context
    mapping: Mapping
    builder: RowBuilder
    report: MappingReport
    position: str | None = None
    stopped: bool = False

    def linked(self, entity: str) -> list[RemoteId]:
        ids: set[RemoteId] = set()
        with self.ctx.engine.connect() as conn:
            for mapping in self.ctx.mappings.synced():
                if mapping.flow.inbound and mapping.flow.target.entity == entity:
                    ids |= set(self.ctx.ledger.remote_ids(conn, mapping.name).values())
        return sorted(ids, key=str)

    def held(self) -> list[dict[str, str]]:
        return [_key_values(self.builder, key) for key in _written_keys(self.ctx, self.mapping, None)]

    def resume_at(self) -> str | None:
        with self.ctx.engine.connect() as conn:
            return cursors.get(conn, self.ctx.tables["sync_cursors"], self.mapping.name)

    def stopped_at(self, position: str | None) -> None:
        self.position, self.stopped = position, True

    def note(self, text: str) -> None:
        self.report.note = f"{self.report.note}; {text}" if self.report.note else text

    def keep(self) -> None:
        """The position the read stopped at, for the next run (not on a dry run: it changes nothing)."""
        if self.stopped and not self.ctx.options.dry_run:
            with self.ctx.engine.begin() as conn:
                cursors.put(conn, self.ctx.tables["sync_cursors"], self.mapping.name, self.position)


@dataclass
class _Item:
    key: str
    row: dict[str, Any]
    fingerprint: str


def run(ctx: Context, mapping: Mapping, report: MappingReport) -> None:
    """Bring the mapping's table in step with the remote entity; what happened is counted in `report`."""
    adapter: SourceAdapter = ctx.adapter_for(mapping)
    builder = RowBuilder(mapping, ctx.timezone)
    table = ctx.tables[mapping.table.name]
    linked_before = _linked(ctx, mapping)
    in_table = _table_fingerprints(ctx, mapping, builder) if ctx.options.full else None
    seen: set[str] = set()
    covers: list[dict[str, Any]] = []
    pending: list[_Item] = []
    scope = _RunScope(ctx, mapping, builder, report)
    for page in adapter.read(scope):
        for record in page.records:
            try:
                row = builder.build(record)
            except BadValue as exc:
                _reject(report, _record_key(builder, record), str(exc))
                continue
            key = builder.key_of(row)
            if key in seen:
                _reject(report, key, f"В {mapping.flow.remote.entity} две записи с ключом «{key}»; записана первая "
                                     "(duplicatekey)")
                continue
            seen.add(key)
            pending.append(_Item(key, row, builder.fingerprint(row)))
            if len(pending) >= CHUNK:
                _write(ctx, mapping, table, pending, in_table, report)
                pending = []
        if page.covers is not None:
            covers.append(page.covers)
        if ctx.options.stop is not None and ctx.options.stop.is_set():
            _write(ctx, mapping, table, pending, in_table, report)
            raise Interrupted(f"{mapping.name}: stopped on request after the page in hand")
    _write(ctx, mapping, table, pending, in_table, report)
    report.source_rows = len(seen)
    scope.keep()
    if mapping.flow.on_missing == "keep":
        return
    gone = [key for key in _written_keys(ctx, mapping, in_table) if key not in seen and _covered(builder, key, covers)]
    refusal = removal_refusal(mapping, Weighed(len(seen), linked_before, len(gone)), ctx.options.allow_removals)
    if refusal:
        raise GuardRefused(refusal)
    for start in range(0, len(gone), CHUNK):
        _remove(ctx, mapping, table, builder, gone[start:start + CHUNK], report)


def _record_key(builder: RowBuilder, record: dict[str, Any]) -> str:
    """The key of a record that could not be built, as far as it can be told (for the report)."""
    fields = {column.name: column.spec.source for column in builder.columns}
    return record_key(tuple(record.get(fields.get(name) or "") for name in builder.key))


def _reject(report: MappingReport, key: str, reason: str) -> None:
    report.add(Action.REJECT)
    report.error(key, "error", reason)


def _linked(ctx: Context, mapping: Mapping) -> int:
    t = ctx.ledger.table
    with ctx.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(
            t.c.mapping_name == mapping.name, t.c.state == LINKED)).scalar_one())


def _table_fingerprints(ctx: Context, mapping: Mapping, builder: RowBuilder) -> dict[str, str]:
    """--full: what the table holds now, key -> fingerprint (rows edited or deleted by others are seen).
    A row marked removed holds nothing."""
    table = ctx.tables[mapping.table.name]
    columns = [table.c[c.name] for c in builder.columns]
    query = sa.select(*columns)
    stamps = mapping.table.stamps
    if stamps is not None and stamps.removed_at:
        query = query.where(table.c[stamps.removed_at].is_(None))
    out: dict[str, str] = {}
    with ctx.engine.connect() as conn:
        for found in conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query):
            row = {c.name: coerce(value, c.type, builder.zone) for c, value in zip(builder.columns, found, strict=True)}
            out[builder.key_of(row)] = builder.fingerprint(row)
    return out


def _write(ctx: Context, mapping: Mapping, table: sa.Table, items: list[_Item], in_table: dict[str, str] | None,
           report: MappingReport) -> None:
    """Upsert the rows that changed and record them in the ledger, in one transaction."""
    if not items:
        return
    with ctx.engine.connect() as conn:
        entries = ctx.ledger.get_many(conn, mapping.name, [item.key for item in items])
    changed: list[tuple[_Item, Action]] = []
    for item in items:
        entry = entries.get(item.key)
        written = entry is not None and entry.state == LINKED
        same = written and entry is not None and entry.content_hash == item.fingerprint
        action = Action.UPDATE if written else Action.CREATE
        if in_table is not None:  # --full: the table itself must hold it too (someone may have edited it)
            if same and in_table.get(item.key) != item.fingerprint:
                same, action = False, Action.REPAIR
            elif not written and item.key in in_table:
                action = Action.UPDATE
        if same:
            report.add(Action.UNCHANGED)
        else:
            changed.append((item, action))
    for _, action in changed:
        report.add(action)
    if ctx.options.dry_run:
        for item, action in changed:
            report.plan({"action": action, "key": item.key})
        return
    if not changed:
        return
    now = now_utc()
    stamps = mapping.table.stamps.columns() if mapping.table.stamps else {}
    extra = {name: (now if role == "changed_at" else None) for role, name in stamps.items()}
    rows = [item.row | extra for item, _ in changed]
    ledger_entries = [Entry(item.key, None, item.fingerprint, LINKED) for item, _ in changed]
    dialect = dialect_of(ctx)
    with ctx.engine.begin() as conn:
        for statement in dialect.upserts(table, rows, mapping.flow.key):
            conn.execute(statement)
        ctx.ledger.save(conn, mapping.name, ledger_entries, known=set(entries))


def _written_keys(ctx: Context, mapping: Mapping, in_table: dict[str, str] | None) -> Iterator[str]:
    """Keys the engine wrote and has not removed (with --full, also the table's own rows)."""
    t = ctx.ledger.table
    with ctx.engine.connect() as conn:
        keys = [r[0] for r in conn.execute(sa.select(t.c.record_key).where(
            t.c.mapping_name == mapping.name, t.c.state == LINKED).order_by(t.c.record_key))]
    yield from keys
    if in_table is not None:
        known = set(keys)
        yield from sorted(key for key in in_table if key not in known)


def _key_values(builder: RowBuilder, key: str) -> dict[str, str]:
    values = json.loads(key) if len(builder.key) > 1 else [key]
    return dict(zip(builder.key, (str(v) for v in values), strict=True))


def _covered(builder: RowBuilder, key: str, covers: list[dict[str, Any]]) -> bool:
    values = _key_values(builder, key)
    return any(all(values.get(column) == str(value) for column, value in cover.items()) for cover in covers)


def _remove(ctx: Context, mapping: Mapping, table: sa.Table, builder: RowBuilder, keys: list[str],
            report: MappingReport) -> None:
    """Delete the rows, or mark them: non-key values cleared where the column allows, removed_at set."""
    mark = mapping.flow.on_missing == "mark"
    action = Action.MARK if mark else Action.DELETE
    report.add(action, len(keys))
    if ctx.options.dry_run:
        for key in keys:
            report.plan({"action": action, "key": key})
        return
    where = sa.and_(*(table.c[name] == sa.bindparam(f"k_{name}") for name in builder.key))
    params = [{f"k_{name}": _typed(builder, name, value) for name, value in _key_values(builder, key).items()}
              for key in keys]
    statement: sa.Update | sa.Delete
    if mark:
        now = now_utc()
        assert mapping.table.stamps is not None  # the loader refuses 'mark' without stamps.removed_at
        stamps = mapping.table.stamps.columns()
        values: dict[str, Any] = {c.name: None for c in builder.columns if c.nullable and not c.key}
        values |= {name: now for name in stamps.values()}
        statement = table.update().where(where).values(values)
    else:
        statement = table.delete().where(where)
    with ctx.engine.begin() as conn:
        conn.execute(statement, params)
        ctx.ledger.save(conn, mapping.name, [Entry(key, None, None, REMOVED) for key in keys], known=set(keys))


def _typed(builder: RowBuilder, name: str, text: str) -> Any:
    """A key value from the ledger's text back in its column's type (an integer key compares as one)."""
    column = next(c for c in builder.columns if c.name == name)
    return coerce(text, column.type, builder.zone)
