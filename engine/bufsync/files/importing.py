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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import BufsyncError, ConfigError
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


class FileRejected(BufsyncError):
    """The file as a whole cannot be loaded (its headings, its encoding): nothing was written."""

    exit_code = 2


@dataclass
class _Problem:
    line: int
    column: str
    value: str
    reason: str


@dataclass
class _Plan:
    """What the file says, checked: the columns it carries, the good rows, the keys of bad rows kept."""

    columns: list[Column]
    rows: list[dict[str, Any]]
    kept: list[dict[str, Any]]
    problems: list[_Problem]
    lines: int


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
                on_commit: Callable[[sa.Connection, int], None] | None = None) -> FileRun:
    """What `bufsync import` and a folder job do with one file; recorded in sync_runs (kind import).
    `on_commit(conn, run_id)` runs inside the load's transaction (a folder job records the file's checksum
    there, so a file is loaded and recorded together or not at all)."""
    mappings = load_mappings(loaded.mappings_dir)
    mapping = importable(mappings, mapping_name)
    metadata = build_metadata(mappings)
    table = metadata.tables[mapping.table.name]
    report = FileRun(kind="import", mapping=mapping.name, file=str(path), mode=mode, dry_run=dry_run)
    started = time.perf_counter()
    with connect_buffer(loaded) as engine:
        if not sa.inspect(engine).has_table(table.name):
            raise ConfigError(f"the buffer has no {table.name} table: run `bufsync db upgrade` first")
        run_table = metadata.tables["sync_runs"]
        report.run_id = runs.start(engine, run_table, "import", {"mapping": mapping.name, "file": str(path),
                                                                 "mode": mode}, dry_run, job=job, trigger=trigger)
        try:
            try:
                sheet = open_sheet(path, encoding, _header_test(mapping))
            except FileProblem as exc:
                readable = path.is_file() and path.stat().st_size > 0  # not found or empty: the headings are moot
                raise FileRejected(f"{exc}" + (f"; колонки {table.name}: {_accepted(mapping)}" if readable else "")
                                   ) from None
            try:
                plan = _check(sheet, mapping, report)
            except FileProblem as exc:
                raise FileRejected(str(exc)) from None
            report.errors_file = _errors_file(path, sheet, plan.problems)
            hook = (lambda conn: on_commit(conn, report.run_id or 0)) if on_commit is not None else None
            counts = _load(engine, mappings, metadata, mapping, table, plan, mode, dry_run, allow_removals, hook)
            report.counts = {"rows": plan.lines, **counts, "rejected": len(plan.problems and
                                                                          {p.line for p in plan.problems})}
            report.outcome = "rejected" if plan.problems else "ok"
        except GuardRefused as exc:
            report.outcome, report.refused = "refused", str(exc)
            raise
        except BufsyncError as exc:
            report.outcome, report.error = "failed", str(exc)
            raise
        except Exception as exc:
            report.outcome, report.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            report.seconds = time.perf_counter() - started
            runs.finish(engine, run_table, report.run_id, report.outcome, report.stored_counts(),
                        report.refused or report.error)
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


def _check(sheet: Sheet, mapping: Mapping, report: FileRun) -> _Plan:
    columns = _columns(sheet, mapping)
    present = [c for c in columns if c is not None]
    closed = _closed_sets(mapping)
    required = {c.name for c in _required(mapping)}
    defaults = {c.name: c.default for c in present if c.default is not None}
    key = mapping.table.key
    kinds = [(i, c, c.portable) for i, c in enumerate(columns) if c is not None]
    rows: list[dict[str, Any]] = []
    kept: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    problems: list[_Problem] = []
    lines = 0
    for line, cells in sheet.rows():
        lines += 1
        row: dict[str, Any] = {}
        bad: list[_Problem] = []
        for index, column, kind in kinds:
            raw = cells[index]
            try:
                value = parse_cell(raw, kind)
            except BadCell as exc:
                bad.append(_Problem(line, column.name, _shown(raw), str(exc)))
                continue
            if value is None and column.name in defaults:
                value = _default(defaults[column.name])
            if value is None and column.name in required:
                bad.append(_Problem(line, column.name, "", f"Пустое значение в обязательной колонке {column.name} "
                                                           "(required)"))
            elif column.name in closed and value not in closed[column.name]:
                bad.append(_Problem(line, column.name, _shown(raw), f"Недопустимое значение «{value}» в колонке "
                                    f"{column.name}; допустимо: {', '.join(closed[column.name])} (badvalue)"))
            row[column.name] = value
        key_values = tuple(row.get(k) for k in key)
        readable = all(v is not None for v in key_values) and not any(p.column in key for p in bad)
        if readable:
            text = record_key(key_values)
            if text in first_line:
                bad.append(_Problem(line, ", ".join(key), " / ".join(str(v) for v in key_values),
                                    f"Ключ уже был в строке {first_line[text]}; взята та строка (duplicatekey)"))
            else:
                first_line[text] = line
        if bad:
            problems += bad
            if readable and record_key(key_values) not in kept and first_line.get(record_key(key_values)) == line:
                kept[record_key(key_values)] = {k: row[k] for k in key}
            continue
        rows.append(row)
    for problem in problems[:ERRORS_KEPT]:
        report.problems.append({"line": str(problem.line), "column": problem.column, "value": problem.value,
                                "reason": problem.reason})
    return _Plan(present, rows, list(kept.values()), problems, lines)


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
def _stage_table(engine: sa.Engine, table: sa.Table, columns: list[Column], key: list[str]) -> sa.Table:
    mssql = engine.dialect.name == "mssql"
    cols = [sa.Column(c.name, table.c[c.name].type, nullable=True) for c in columns]
    return sa.Table(f"#{STAGE}" if mssql else STAGE, sa.MetaData(), *cols,
                    sa.Column(KEEP, sa.Boolean(), nullable=False), sa.PrimaryKeyConstraint(*key),
                    prefixes=[] if mssql else ["TEMPORARY"])


def _load(engine: sa.Engine, mappings: MappingSet, metadata: sa.MetaData, mapping: Mapping, table: sa.Table,
          plan: _Plan, mode: Mode, dry_run: bool, allow_removals: int | None,
          hook: Callable[[sa.Connection], None] | None = None) -> dict[str, int]:
    key = mapping.table.key
    stage = _stage_table(engine, table, plan.columns, key)
    names = [c.name for c in plan.columns]
    others = [n for n in names if n not in key]
    joined = sa.and_(*(table.c[k] == stage.c[k] for k in key))
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            stage.create(conn)
            _stage_rows(conn, stage, names, plan)
            before = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            deleted = 0
            if mode == "replace":
                gone = ~sa.exists().where(joined)
                deleted = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(gone)).scalar_one())
                refusal = removal_refusal(mapping, Weighed(len(plan.rows), before, deleted), allow_removals)
                if refusal:
                    raise GuardRefused(f"import replace {table.name}: the file leaves out {deleted} of {before} rows; "
                                       f"{refusal}")
                conn.execute(table.delete().where(gone))
            fresh = sa.and_(stage.c[KEEP] == sa.false(), ~sa.exists().where(joined))
            inserted = conn.execute(table.insert().from_select(
                names, sa.select(*(stage.c[n] for n in names)).where(fresh))).rowcount
            updated = 0
            if others:
                changed = sa.or_(*(table.c[n].is_distinct_from(stage.c[n]) for n in others))
                updated = conn.execute(table.update().where(joined, stage.c[KEEP] == sa.false(), changed)
                                       .values({n: stage.c[n] for n in others})).rowcount
            if mode == "replace":
                _mark_batch(conn, mappings, metadata, mapping, before - deleted + inserted)
            stage.drop(conn)
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
    counts = {"inserted": inserted, "updated": updated, "unchanged": len(plan.rows) - inserted - updated}
    if mode == "replace":
        counts["deleted"] = deleted
        counts["kept"] = len(plan.kept)
    return counts


def _stage_rows(conn: sa.Connection, stage: sa.Table, names: list[str], plan: _Plan) -> None:
    """The good rows (and the kept keys) into the stage: PostgreSQL by COPY, the others by executemany."""
    kept = [{**{n: None for n in names}, **row, KEEP: True} for row in plan.kept]
    if conn.dialect.name == "postgresql":
        _copy(conn, stage, [*names, KEEP], _csv_lines(plan.rows, names))
        if kept:
            conn.execute(stage.insert(), kept)
        return
    for start in range(0, len(plan.rows), 5000):
        conn.execute(stage.insert(), [{**row, KEEP: False} for row in plan.rows[start:start + 5000]])
    if kept:
        conn.execute(stage.insert(), kept)


def _csv_lines(rows: list[dict[str, Any]], names: list[str]) -> Iterator[str]:
    """Rows as COPY ... (FORMAT csv) reads them. csv.writer writes None as an empty unquoted field, which COPY
    reads as NULL; the rows carry no empty strings (an empty cell is None), so nothing else is empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    flag = "f"
    for start in range(0, len(rows), 10_000):
        for row in rows[start:start + 10_000]:
            writer.writerow([_copy_text(row.get(n)) for n in names] + [flag])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _copy_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (datetime, Decimal)):
        return str(value)
    return value


def _copy(conn: sa.Connection, stage: sa.Table, names: list[str], chunks: Iterator[str]) -> None:
    """COPY FROM STDIN: SQLAlchemy has no COPY, so psycopg2's; the statement is composed by psycopg2.sql, which
    quotes the identifiers (no SQL is built from strings)."""
    from psycopg2 import sql  # type: ignore[import-untyped]
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(n) for n in names))
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor: Any = raw.cursor()
    try:
        for chunk in chunks:
            if chunk:
                cursor.copy_expert(statement, io.StringIO(chunk))
    finally:
        cursor.close()


def _mark_batch(conn: sa.Connection, mappings: MappingSet, metadata: sa.MetaData, mapping: Mapping,
                rows: int) -> None:
    """A `ready` load marker for the whole list just written (mappings with guards.require_batch apply only
    such a batch), in the same transaction: a run sees the file whole or not at all."""
    markers = mappings.load_markers()
    if markers is None or markers.load_markers is None:
        return
    spec, table = markers.load_markers, metadata.tables[markers.table.name]
    guard = mapping.flow.guards.require_batch if mapping.sync is not None else None
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    values: dict[str, Any] = {spec.entity: guard or mapping.name, spec.batch_id: f"{now:%Y-%m-%d-%H%M%S}-import",
                              spec.status: spec.ready_value, spec.rows_expected: rows}
    for column in markers.table.columns:  # the marker's own times (created_at, ready_at): now
        if column.name not in values and column.portable.name == "datetime":
            values[column.name] = now
    conn.execute(table.insert().values(values))
