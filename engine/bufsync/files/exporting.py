"""`bufsync export`: a mapping's buffer table (buf_grades for 1C, or any table with its sync_* columns) to a CSV
or .xlsx file that Russian Excel opens right, optionally only the rows changed since a time.

Which time: the table's `stamps.changed_at` (buf_grades.updated_at: set when the engine changed the row), else its
`synced_at` write-back column (when the engine last applied the row), else a column named updated_at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import ConfigError
from bufsync.files.importing import FileRejected
from bufsync.files.read import FileProblem
from bufsync.files.write import write_sheet
from bufsync.mapping.loader import load_mappings
from bufsync.mapping.model import Mapping
from bufsync.report import FileRun
from bufsync.schema import build_metadata
from bufsync.state import runs

CHUNK = 5000


def since_column(mapping: Mapping) -> str | None:
    """The column --since compares with, or None when the table has none."""
    table = mapping.table
    if table.stamps is not None and table.stamps.changed_at:
        return table.stamps.changed_at
    if table.writeback is not None and table.writeback.synced_at:
        return table.writeback.synced_at
    return "updated_at" if table.column("updated_at") is not None else None


def headings(mapping: Mapping, table: sa.Table, titles: bool) -> list[str]:
    """Column names, or with `titles` each column's title where it has one (the engine's columns keep names)."""
    if not titles:
        return list(table.c.keys())
    return [(c.title if (c := mapping.table.column(name)) is not None and c.title else name) for name in table.c.keys()]


def export_table(loaded: LoadedSettings, mapping_name: str, path: Path, *, since: datetime | None = None,
                 titles: bool = False, encoding: str = "utf-8-sig", job: str | None = None,
                 trigger: str = "manual") -> FileRun:
    """What `bufsync export` and an export job do; recorded in sync_runs (kind export). `counts.latest` is the
    newest --since time among the rows written (what a job continues from)."""
    mappings = load_mappings(loaded.mappings_dir)
    if mapping_name not in mappings:
        raise ConfigError(f"no mapping {mapping_name!r}; mappings: {', '.join(m.name for m in mappings)}")
    mapping = mappings[mapping_name]
    metadata = build_metadata(mappings)
    table = metadata.tables[mapping.table.name]
    stamp = since_column(mapping)
    if since is not None and stamp is None:
        raise ConfigError(f"{table.name} has no time column to take --since from (stamps.changed_at, the synced_at "
                          "write-back column, or updated_at)")
    report = FileRun(kind="export", mapping=mapping.name, file=str(path))
    with connect_buffer(loaded) as engine:
        if not sa.inspect(engine).has_table(table.name):
            raise ConfigError(f"the buffer has no {table.name} table: run `bufsync db upgrade` first")
        options = {"mapping": mapping.name, "file": str(path), "since": since}
        with runs.recorded(engine, metadata.tables["sync_runs"], report, options, job=job, trigger=trigger):
            query = sa.select(table).order_by(*(table.c[k] for k in mapping.table.key))
            if since is not None and stamp is not None:
                query = query.where(table.c[stamp] >= since)
            latest: list[datetime] = []
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
                try:
                    written = write_sheet(path, headings(mapping, table, titles),
                                          _rows(result, list(table.c.keys()).index(stamp) if stamp else None, latest),
                                          encoding=encoding)
                except FileProblem as exc:  # a character cp1251 lacks, a file open in Excel: said, not a traceback
                    raise FileRejected(str(exc)) from None
            report.counts = {"rows": written}
            if latest:
                report.counts["latest"] = int(max(latest).replace(tzinfo=UTC).timestamp())  # stamps are naive UTC
    return report


def _rows(result: Any, stamp_index: int | None, latest: list[datetime]) -> Iterator[tuple[Any, ...]]:
    newest: datetime | None = None
    for row in result:
        if stamp_index is not None and row[stamp_index] is not None and (newest is None or row[stamp_index] > newest):
            newest = row[stamp_index]
        yield tuple(row)
    if newest is not None:
        latest.append(newest)
