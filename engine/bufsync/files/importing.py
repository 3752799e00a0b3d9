"""`bufsync import`: a CSV or .xlsx file into a mapping's buffer table, as 1C would have written it.

Every row is checked against the mapping (types, lengths, required columns, closed value sets, duplicate keys)
before anything is written; the bad ones are listed by line, column and reason in an errors file beside the
input. The good rows are staged in a temporary table (PostgreSQL: COPY), then set-based statements change the
buffer table in one transaction: insert the new keys, update the rows whose values changed (an unchanged row is
not touched), and with `replace` (the file is the whole list) delete the rows the file left out, within the
mapping's removal guards and under a buf_batches marker, so a run never sees half a file. A bad row whose key
is readable keeps its buffer row as it was (a typo never removes a person). The ordinary run takes it from there.
"""

from __future__ import annotations

import csv
import io
import logging
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import BufsyncError, ConfigError
from bufsync.files import columnar
from bufsync.files.read import FileProblem, Sheet, open_sheet
from bufsync.files.values import BadCell, parse_cell
from bufsync.files.write import write_sheet
from bufsync.mapping.loader import MappingSet, load_mappings
from bufsync.mapping.model import Column, Mapping, heading_key
from bufsync.reconcile.guards import GuardRefused, Weighed, removal_refusal
from bufsync.report import ERRORS_KEPT, FileRun
from bufsync.schema import build_metadata
from bufsync.state import runs
from bufsync.state.ledger import record_key

Mode = Literal["replace", "upsert"]
STAGE = "bufsync_import"
KEEP = "bufsync_keep"  # a staged key whose file row was bad: its buffer row stays as it is
ERROR_HEADER = ["Строка", "Колонка", "Значение", "Причина"]
log = logging.getLogger("bufsync.files")
# a clean CSV of text columns is taken whole on PostgreSQL (files/columnar.py); False: every file row by row (the
# default of import_file's `fast`, for running the import tests the row path's way)
FAST = True


class FileRejected(BufsyncError):
    """The file as a whole cannot be loaded (its headings, its encoding): nothing was written."""

    exit_code = 2


@dataclass
class _Problem:
    line: int
    column: str
    value: str
    reason: str


class _Checked:
    """The file's rows checked one by one as they stream past (never all in memory): `rows()` yields the good
    ones as lists in `names` order, while the bad ones are collected as problems, with the keys of those whose key
    is readable (`kept`: their buffer rows stay as they are). The counts are complete once `rows()` is exhausted.
    `clean()` is the fast path: the whole file at once when every row is good (see columnar), else None."""

    def __init__(self, sheet: Sheet, mapping: Mapping, fast: bool = True) -> None:
        self.sheet = sheet
        self.fast = fast
        columns = _columns(sheet, mapping)
        self._headings = columns
        self.columns = [c for c in columns if c is not None]
        self.names = [c.name for c in self.columns]
        # a column as the file heads it, for the people who read the errors: «Фамилия (last_name)»
        self.shown_as = {c.name: c.name if heading_key(cell) == heading_key(c.name) else f"{cell} ({c.name})"
                         for cell, c in zip(sheet.header, columns, strict=False) if c is not None}
        self._cells = [i for i, c in enumerate(columns) if c is not None]
        self._convert = [_converter(c) for c in self.columns]
        required = {c.name for c in _required(mapping)}
        self._required = [i for i, c in enumerate(self.columns) if c.name in required]
        # an empty cell of a column with a default: the default for a new row, the row's own value for one the
        # table holds (a blank status never reactivates a suspended person); applied here only when every row is
        # new (an empty table), else by the statements (Statements.defaults)
        self.defaults = {c.name: c.default for c in self.columns if c.default is not None}
        self._defaults = [(i, c.default) for i, c in enumerate(self.columns) if c.default is not None]
        closed = _closed_sets(mapping)
        self._closed = [(i, c.name, closed[c.name]) for i, c in enumerate(self.columns) if c.name in closed]
        key = mapping.table.key
        self._key = [self.names.index(k) for k in key]
        self.key_names = key
        self.problems: list[_Problem] = []
        self.kept: dict[str, list[Any]] = {}
        self.lines = 0
        self.good = 0
        self.way = "rows"   # how the rows were read: "rows" (one by one) or "columns" (clean(): pyarrow)
        self._apply_defaults = False
        self._first_line: dict[tuple[Any, ...], int] = {}
        picks = self._key
        self._key_of: Callable[[list[Any]], tuple[Any, ...]] = (
            (lambda row: (row[picks[0]],)) if len(picks) == 1 else (lambda row: tuple(row[i] for i in picks)))
        self._rules_apply = bool(self._defaults or self._required or self._closed)
        required_at = self._required
        self._required_of: Callable[[list[Any]], tuple[Any, ...]] = (
            (lambda row: tuple(row[i] for i in required_at)) if len(required_at) < 2
            else operator.itemgetter(*required_at))

    def every_row_new(self) -> None:
        """The table is empty: a column's default fills its empty cells here (the rows go straight in)."""
        self._apply_defaults = True

    def clean(self) -> columnar.Clean | None:
        """The whole file read, checked and held a column at a time (pyarrow) when it is a CSV of text columns
        and every row is good, the counts set as rows() would set them. None, the reason logged, when any of
        that is not so: then rows() reads it (and names each bad row)."""
        why = self._not_fast()
        clean = columnar.read_clean(self.sheet, self._column_rules(), self.key_names) if why is None else why
        if isinstance(clean, str):
            log.debug("%s: read row by row (%s)", self.sheet.path.name, clean)
            return None
        self.lines = self.good = clean.lines
        self.way = "columns"
        log.debug("%s: read column by column (pyarrow), %d rows", self.sheet.path.name, clean.lines)
        return clean

    def _not_fast(self) -> str | None:
        if not self.fast:
            return "asked for"
        if self.sheet.format != "csv":
            return "not a CSV"
        if any(c.portable.name not in ("string", "text") for c in self.columns):
            return "a column that is not text"
        if self._apply_defaults and any(not isinstance(d, str) or d == "now" for _, d in self._defaults):
            return "a default that is not text"
        return None

    def _column_rules(self) -> list[columnar.Rule | None]:
        """What rows() checks, as columnar's rules: one per heading (None: an empty one)."""
        required = {self.names[i] for i in self._required}
        closed = {name: frozenset(allowed) for _, name, allowed in self._closed}
        defaults = {name: str(d) for name, d in self.defaults.items()} if self._apply_defaults else {}
        return [None if c is None else columnar.Rule(c.name, c.portable.length or None, c.name in required,
                                                     closed.get(c.name), defaults.get(c.name))
                for c in self._headings]
    def rows(self) -> Iterator[list[Any]]:
        cells_at, convert, names = self._cells, self._convert, self.names
        pairs = list(zip(cells_at, convert, strict=True))
        kinds = [c.portable for c in self.columns]
        # every column text: a row of plain strings within their lengths needs no conversion at all (the usual
        # CSV: checked with C-level loops, a third of the per-cell way's time)
        limits = [k.length or 1 << 62 for k in kinds] if all(k.name in ("string", "text") for k in kinds) else None
        every_cell = cells_at == list(range(len(self.sheet.header)))  # each heading a column, in order
        key_of, first_line = self._key_of, self._first_line
        defaults = self._defaults if self._apply_defaults else []
        for line, cells in self.sheet.rows():
            self.lines += 1
            bad: list[_Problem] = []
            if limits is not None:
                try:
                    values = list(map(str.strip, cells)) if every_cell else [
                        cells[index].strip() for index in cells_at]
                except (AttributeError, TypeError):  # a typed cell (xlsx): the per-cell way below
                    values = None
                if values is not None and all(map(operator.le, map(len, values), limits)):
                    row = [value or None for value in values]
                    for index, default in defaults:
                        if row[index] is None:
                            row[index] = _default(default)
                    if self._plain(row):  # required filled, closed sets kept, key new: the usual row, inline
                        key = key_of(row)
                        if key not in first_line:
                            first_line[key] = line
                            self.good += 1
                            yield row
                            continue
                    self._rules(line, row, cells, bad)
                    if self._accept(line, row, bad):
                        yield row
                    continue
            try:  # the usual row: every cell converts
                row = [conv(cells[index]) for index, conv in pairs]
            except BadCell:  # then cell by cell, to name each bad one
                row = [None] * len(names)
                for position, (index, conv) in enumerate(pairs):
                    try:
                        row[position] = conv(cells[index])
                    except BadCell as exc:
                        bad.append(_Problem(line, names[position], _shown(cells[index]), str(exc)))
            if self._rules_apply:
                self._rules(line, row, cells, bad)
            if self._accept(line, row, bad):
                yield row

    def _plain(self, row: list[Any]) -> bool:
        """Nothing for _rules to say: the required columns filled (the key among them), the closed sets kept."""
        if None in self._required_of(row):
            return False
        for index, _, allowed in self._closed:
            if row[index] is not None and row[index] not in allowed:
                return False
        return True

    def _accept(self, line: int, row: list[Any], bad: list[_Problem]) -> bool:
        """The key checked (readable, not seen before); a bad row is counted, its readable key kept."""
        key = self._key_of(row)
        readable = None not in key and not (bad and any(p.column in self.key_names for p in bad))
        if readable:
            seen = self._first_line.get(key)
            if seen is not None:
                # the first line may itself have been rejected (its key kept): then neither line is loaded
                taken = ("та строка тоже не загружена (в ней ошибка): исправьте её и оставьте одну из двух"
                         if record_key(key) in self.kept else "взята та строка")
                bad.append(_Problem(line, ", ".join(self.key_names), " / ".join(str(v) for v in key),
                                    f"Ключ уже был в строке {seen}; {taken} (duplicatekey)"))
            else:
                self._first_line[key] = line
        if bad:
            self.problems += bad
            if readable and self._first_line.get(key) == line:
                self.kept[record_key(key)] = [row[i] if i in self._key else None for i in range(len(row))]
            return False
        self.good += 1
        return True

    def _rules(self, line: int, row: list[Any], cells: list[Any], bad: list[_Problem]) -> None:
        for index, default in self._defaults if self._apply_defaults else []:
            if row[index] is None:
                row[index] = _default(default)
        for index in self._required:
            if row[index] is None and not (bad and any(p.column == self.names[index] for p in bad)):
                bad.append(_Problem(line, self.names[index], "", f"Пустое значение в обязательной колонке "
                                                                  f"{self.names[index]} (required)"))
        for index, name, allowed in self._closed:
            value = row[index]
            if value is not None and value not in allowed:
                bad.append(_Problem(line, name, str(value), f"Недопустимое значение «{value}» в колонке {name}; "
                                                            f"допустимо: {', '.join(allowed)} (badvalue)"))


def _converter(column: Column) -> Callable[[Any], Any]:
    """A cell to the column's value: a plain text within its length takes the short way (most cells of a file),
    everything else parse_cell's."""
    kind = column.portable
    if kind.name in ("string", "text"):
        limit = kind.length

        def text(raw: Any) -> Any:
            if raw.__class__ is str:
                value = raw.strip()
                if not value:
                    return None
                if limit is None or len(value) <= limit:
                    return value
            return parse_cell(raw, kind)
        return text
    return lambda raw: parse_cell(raw, kind)


def importable(mappings: MappingSet, name: str) -> Mapping:
    """The mapping whose table a file may fill: one 1C writes (not one the engine writes or derives)."""
    if name not in mappings:
        raise ConfigError(f"no mapping {name!r}; mappings whose tables a file may fill: "
                          f"{', '.join(m.name for m in mappings if _writable(m))}")
    mapping = mappings[name]
    if not _writable(mapping):
        raise ConfigError(f"{mapping.table.name} ({name}) is written by bufsync itself, not by 1C: a file cannot "
                          "be imported into it (export it instead)")
    return mapping


def _writable(mapping: Mapping) -> bool:
    return mapping.table.derived is None and (mapping.sync is None or mapping.flow.inbound)


def import_file(loaded: LoadedSettings, mapping_name: str, path: Path, *, mode: Mode = "upsert",
                dry_run: bool = False, encoding: str | None = None, allow_removals: int | None = None,
                job: str | None = None, trigger: str = "manual",
                on_commit: Callable[[sa.Connection, int], None] | None = None, fast: bool | None = None) -> FileRun:
    """What `bufsync import` and a folder job do with one file; recorded in sync_runs (kind import).
    `on_commit(conn, run_id)` runs inside the load's transaction (a folder job records the file's checksum
    there, so a file is loaded and recorded together or not at all). `fast=False`: the rows are read one by one
    even where the whole file could be taken at once (the tests compare the two ways); None: FAST."""
    mappings = load_mappings(loaded.mappings_dir)
    mapping = importable(mappings, mapping_name)
    metadata = build_metadata(mappings)
    table = metadata.tables[mapping.table.name]
    report = FileRun(kind="import", mapping=mapping.name, file=str(path), mode=mode, dry_run=dry_run)
    with connect_buffer(loaded) as engine:
        if not sa.inspect(engine).has_table(table.name):
            raise ConfigError(f"the buffer has no {table.name} table: run `bufsync db upgrade` first")
        options = {"mapping": mapping.name, "file": str(path), "mode": mode}
        with runs.recorded(engine, metadata.tables["sync_runs"], report, options, dry_run=dry_run, job=job,
                           trigger=trigger):
            try:
                sheet = open_sheet(path, encoding, _header_test(mapping))
            except FileProblem as exc:
                readable = path.is_file() and path.stat().st_size > 0  # not found or empty: the headings are moot
                raise FileRejected(f"{exc}" + (f"; колонки {table.name}: {_accepted(mapping)}" if readable else "")
                                   ) from None
            try:
                checked = _Checked(sheet, mapping, FAST if fast is None else fast)
                hook = (lambda conn: on_commit(conn, report.run_id or 0)) if on_commit is not None else None
                counts = _load(engine, mappings, metadata, mapping, table, checked, mode, dry_run, allow_removals,
                               hook, report.run_id or 0)
            except FileProblem as exc:
                raise FileRejected(str(exc)) from None
            problems = [_Problem(p.line, checked.shown_as.get(p.column, p.column), p.value, p.reason)
                        for p in checked.problems]
            report.problems = [{"line": str(p.line), "column": p.column, "value": p.value, "reason": p.reason}
                               for p in problems[:ERRORS_KEPT]]
            try:  # after the commit: a file that cannot be written leaves the load what it is, and says why
                report.errors_file = _errors_file(path, sheet, problems)
            except (FileProblem, OSError) as exc:
                report.error = (f"the rows are loaded, but {path.stem}.errors.csv was not written: {exc}"
                                + ("; the first bad rows are in this report" if problems else ""))
            report.counts = {"rows": checked.lines, **counts, "rejected": len({p.line for p in problems})}
            report.outcome = "rejected" if problems else "ok"
    return report


# --- the file checked ------------------------------------------------------------------------------------------
def _header_test(mapping: Mapping) -> Any:
    """A row is the heading when at least half of its cells name columns (by name or title): a title row above it
    is not, and a heading with an unknown or a missing column is still found, to be refused with the reason."""
    names = _headings(mapping)

    def is_header(cells: list[str]) -> bool:
        filled = [c for c in cells if c.strip()]
        known = sum(1 for c in filled if heading_key(c) in names)
        return known > 0 and 2 * known >= len(filled)
    return is_header


def _headings(mapping: Mapping) -> dict[str, Column]:
    out = {heading_key(c.name): c for c in mapping.table.columns}
    out.update({heading_key(c.title): c for c in mapping.table.columns if c.title})
    return out


def _accepted(mapping: Mapping) -> str:
    return ", ".join(f"{c.name} ({c.title})" if c.title else c.name for c in mapping.table.columns)


def _required(mapping: Mapping) -> list[Column]:
    """Columns a new row cannot be without: the key, and the non-nullable ones with no default."""
    return [c for c in mapping.table.columns if c.key or (not c.is_nullable and c.default is None)]


def _columns(sheet: Sheet, mapping: Mapping) -> list[Column | None]:
    """The heading's cells as the table's columns (None: an empty heading over an empty column); an unknown or
    repeated heading, or a required column missing, fails the file at once."""
    names = _headings(mapping)
    out: list[Column | None] = []
    for cell in sheet.header:
        if not cell.strip():
            out.append(None)
            continue
        column = names.get(heading_key(cell))
        if column is None:
            raise FileProblem(f"{sheet.path.name}: колонка «{cell}» (строка {sheet.header_line}) не из таблицы "
                              f"{mapping.table.name}; принимаются: {_accepted(mapping)}")
        if column in out:
            raise FileProblem(f"{sheet.path.name}: колонка {column.name} указана дважды (строка {sheet.header_line})")
        out.append(column)
    missing = [c for c in _required(mapping) if c not in out]
    if missing:
        raise FileProblem(f"{sheet.path.name}: нет обязательных колонок: "
                          f"{', '.join(f'{c.name} ({c.title})' if c.title else c.name for c in missing)}; "
                          f"принимаются: {_accepted(mapping)}")
    return out


def _closed_sets(mapping: Mapping) -> dict[str, list[str]]:
    """Column -> the values the mapping accepts there (its status column): anything else is refused, never taken
    for a default."""
    if mapping.sync is None or mapping.flow.status is None:
        return {}
    status = mapping.flow.status
    return {status.column: [*status.active, *status.suspended]}


def _default(value: Any) -> Any:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0) if value == "now" else value


def _shown(raw: Any) -> str:
    return "" if raw is None else str(raw)[:200]


def _errors_file(path: Path, sheet: Sheet, problems: list[_Problem]) -> str | None:
    """Every bad row beside the input, in its encoding (an .xlsx gets UTF-8 with BOM, which Excel opens); a
    previous import's errors file goes when this one has none."""
    target = path.with_name(f"{path.stem}.errors.csv")
    if not problems:
        target.unlink(missing_ok=True)
        return None
    encoding = sheet.encoding if sheet.encoding in ("cp1251", "utf-8-sig") else "utf-8-sig"
    write_sheet(target, ERROR_HEADER, ([p.line, p.column, p.value, p.reason] for p in problems), encoding=encoding)
    return str(target)


# --- the buffer changed ----------------------------------------------------------------------------------------
def stage_table(dialect: str, table: sa.Table, columns: list[Column], key: list[str]) -> sa.Table:
    """The staging table: a temporary table of the file's columns and the keep flag (#name on MS SQL)."""
    mssql = dialect == "mssql"
    cols = [sa.Column(c.name, table.c[c.name].type, nullable=True) for c in columns]
    return sa.Table(f"#{STAGE}" if mssql else STAGE, sa.MetaData(), *cols,
                    sa.Column(KEEP, sa.Boolean(), nullable=False), sa.PrimaryKeyConstraint(*key),
                    prefixes=[] if mssql else ["TEMPORARY"])


def _load(engine: sa.Engine, mappings: MappingSet, metadata: sa.MetaData, mapping: Mapping, table: sa.Table,
          checked: _Checked, mode: Mode, dry_run: bool, allow_removals: int | None,
          hook: Callable[[sa.Connection], None] | None = None, run_id: int = 0) -> dict[str, int]:
    """One transaction. Into an empty table the checked rows stream straight in (PostgreSQL: COPY while the file
    is still being read and checked); otherwise into a staging table, then set-based statements."""
    key = mapping.table.key
    names = checked.names
    others = [n for n in names if n not in key]
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            before = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            deleted = updated = kept = 0
            if before == 0:  # nothing to update, keep or delete: every good row is new
                checked.every_row_new()
                _stream(conn, table, checked, None)
                inserted = checked.good
            else:
                stage = stage_table(engine.dialect.name, table, checked.columns, key)
                statements = Statements(table, stage, names, key, checked.defaults)
                stage.create(conn)
                _stream(conn, stage, checked, False)
                if checked.kept:
                    conn.execute(stage.insert(), [{**dict(zip(names, row, strict=True)), KEEP: True}
                                                  for row in checked.kept.values()])
                    kept = int(conn.execute(statements.count_kept()).scalar_one())  # rows the table holds
                if mode == "replace":
                    deleted = int(conn.execute(statements.count_gone()).scalar_one())
                    refusal = removal_refusal(mapping, Weighed(checked.good, before, deleted), allow_removals)
                    if refusal:
                        raise GuardRefused(f"import replace {table.name}: the file leaves out {deleted} of {before} "
                                           f"rows; {refusal}")
                    conn.execute(statements.delete_gone())
                inserted = conn.execute(statements.insert_new()).rowcount
                if others:
                    updated = conn.execute(statements.update_changed()).rowcount
                stage.drop(conn)
            if mode == "replace":
                _mark_batch(conn, mappings, metadata, mapping, before - deleted + inserted, run_id)
            if hook is not None and not dry_run:
                hook(conn)
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
    counts = {"inserted": inserted, "updated": updated, "unchanged": checked.good - inserted - updated}
    if mode == "replace":
        counts["deleted"] = deleted
        counts["kept"] = kept
    return counts


@dataclass
class Statements:
    """The set-based statements from the staging table, Core only and the same on every dialect (MS SQL renders
    the join as UPDATE ... FROM and IS DISTINCT FROM as NOT EXISTS (... INTERSECT ...))."""

    table: sa.Table
    stage: sa.Table
    names: list[str]
    key: list[str]
    defaults: dict[str, Any] = field(default_factory=dict)  # column -> its default, for an empty cell

    def _new(self, name: str) -> sa.ColumnElement[Any]:
        """A new row's value: the file's, or the column's default for an empty cell."""
        if name in self.defaults:
            return sa.func.coalesce(self.stage.c[name], sa.literal(_default(self.defaults[name]),
                                                                   self.table.c[name].type))
        return self.stage.c[name]

    def _kept(self, name: str) -> sa.ColumnElement[Any]:
        """A held row's value: the file's, or its own for an empty cell of a column with a default."""
        if name in self.defaults:
            return sa.func.coalesce(self.stage.c[name], self.table.c[name])
        return self.stage.c[name]

    def _joined(self) -> sa.ColumnElement[bool]:
        return sa.and_(*(self.table.c[k] == self.stage.c[k] for k in self.key))

    def _gone(self) -> sa.ColumnElement[bool]:
        return ~sa.exists().where(self._joined())

    def count_kept(self) -> sa.Select[Any]:
        """Rows of the table a bad line's key keeps as they are (a bad line of a new key keeps nothing)."""
        return sa.select(sa.func.count()).select_from(self.table).where(
            sa.exists().where(self._joined(), self.stage.c[KEEP] == sa.true()))

    def count_gone(self) -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(self.table).where(self._gone())

    def delete_gone(self) -> sa.Delete:
        return self.table.delete().where(self._gone())

    def insert_new(self) -> sa.Insert:
        fresh = sa.and_(self.stage.c[KEEP] == sa.false(), ~sa.exists().where(self._joined()))
        return self.table.insert().from_select(self.names, sa.select(*(self._new(n) for n in self.names))
                                               .where(fresh))

    def update_changed(self) -> sa.Update:
        others = [n for n in self.names if n not in self.key]
        changed = sa.or_(*(self.table.c[n].is_distinct_from(self._kept(n)) for n in others))
        return (self.table.update().where(self._joined(), self.stage.c[KEEP] == sa.false(), changed)
                .values({n: self._kept(n) for n in others}))


def _stream(conn: sa.Connection, target: sa.Table, checked: _Checked, keep: bool | None) -> None:
    """The good rows into `target` (with the stage's keep flag unless None): PostgreSQL by COPY, of the whole
    file at once when it is clean (checked.clean()), else as they are read and checked; the others by
    executemany in chunks."""
    names = checked.names
    columns = [*names, KEEP] if keep is not None else names
    if conn.dialect.name == "postgresql":
        clean = checked.clean()
        if clean is not None:
            raw: Any = conn.connection.dbapi_connection
            _copy(conn, target, columns, columnar.copy_chunks(clean, keep, raw.encoding in ("UTF8", "UNICODE")))
            return
        convert = [i for i, name in enumerate(names) if not isinstance(target.c[name].type, sa.String)]
        _copy(conn, target, columns, _csv_chunks(checked.rows(), keep, convert))
        return
    rows = checked.rows()
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(dict(zip(columns, [*row, keep] if keep is not None else row, strict=True)))
        if len(chunk) >= 5000:
            conn.execute(target.insert(), chunk)
            chunk = []
    if chunk:
        conn.execute(target.insert(), chunk)


def _csv_chunks(rows: Iterator[list[Any]], keep: bool | None, convert: list[int]) -> Iterator[str]:
    """Rows as COPY ... (FORMAT csv) reads them; `convert`: the positions of columns that are not text (their
    values need COPY's spelling). csv.writer writes None as an empty unquoted field, which COPY reads as NULL; the
    rows carry no empty strings (an empty cell is None), so nothing else is empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    tail = [] if keep is None else ["t" if keep else "f"]
    count = 0
    for row in rows:
        for i in convert:
            row[i] = _copy_text(row[i])
        writer.writerow(row + tail if tail else row)
        count += 1
        if count == 5000:
            count = 0
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _copy_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (datetime, Decimal)):
        return str(value)
    return value


class _Chunks:
    """A file psycopg2's copy_expert reads from, fed by a generator: the file is read and checked while the
    server takes the rows already sent (no whole-file buffer). copy_expert sends whatever read() returns, so a
    chunk goes whole (slicing a large text to the asked size would copy it over and over). An exception of the
    generator (a FileProblem: a quote broken further down the file) is kept in `error`: psycopg2 only cancels the
    COPY with its own error, which must not stand in for the file's reason."""

    def __init__(self, chunks: Iterator[str] | Iterator[str | bytes]) -> None:
        self._chunks = chunks
        self.error: BaseException | None = None

    def read(self, size: int | None = -1) -> str | bytes:
        try:
            for piece in self._chunks:
                if piece:
                    return piece
        except BaseException as exc:
            self.error = exc
            raise
        return ""


def _copy(conn: sa.Connection, stage: sa.Table, names: list[str], chunks: Iterator[str] | Iterator[str | bytes]
          ) -> None:
    """COPY FROM STDIN: SQLAlchemy has no COPY, so psycopg2's; the statement is composed by psycopg2.sql, which
    quotes the identifiers (no SQL is built from strings)."""
    from psycopg2 import sql  # type: ignore[import-untyped]
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(n) for n in names))
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor: Any = raw.cursor()
    source = _Chunks(chunks)
    try:
        cursor.copy_expert(statement, source, size=1 << 16)
    except Exception:
        if source.error is not None:  # the file's own reason, not "COPY from stdin failed: error in .read() call"
            raise source.error from None
        raise
    finally:
        cursor.close()


def _mark_batch(conn: sa.Connection, mappings: MappingSet, metadata: sa.MetaData, mapping: Mapping,
                rows: int, run_id: int) -> None:
    """A `ready` load marker for the whole list just written (mappings with guards.require_batch apply only
    such a batch), in the same transaction: a run sees the file whole or not at all. The batch id is the time and
    the import's run id (zero-padded: two loads in one second differ, and the later sorts last, as the guard's
    "latest batch" expects)."""
    markers = mappings.load_markers()
    if markers is None or markers.load_markers is None:
        return
    spec, table = markers.load_markers, metadata.tables[markers.table.name]
    guard = mapping.flow.guards.require_batch if mapping.sync is not None else None
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    values: dict[str, Any] = {spec.entity: guard or mapping.name,
                              spec.batch_id: f"{now:%Y-%m-%d-%H%M%S}-import-{run_id:012d}",
                              spec.status: spec.ready_value, spec.rows_expected: rows}
    for column in markers.table.columns:  # the marker's own times (created_at, ready_at): now
        if column.name not in values and column.portable.name == "datetime":
            values[column.name] = now
    conn.execute(table.insert().values(values))
