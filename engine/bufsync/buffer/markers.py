"""Load markers (buf_batches): is the entity's latest batch ready, with the promised row count?"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bufsync.mapping.model import Mapping


@dataclass
class BatchState:
    ready: bool
    batch_id: str | None
    rows_expected: int | None
    reason: str | None


def latest_ready(conn: Connection, markers: Mapping, table: sa.Table, entity: str, rows: int) -> BatchState:
    spec = markers.load_markers
    assert spec is not None  # `markers` is the mapping that declares load_markers
    c = table.c
    found = conn.execute(sa.select(c[spec.batch_id], c[spec.status], c[spec.rows_expected]).where(
        c[spec.entity] == entity).order_by(c[spec.batch_id].desc())).all()
    if not found:
        return BatchState(False, None, None, f"no load marker for '{entity}' in {table.name}")
    batch_id, status, expected = found[0]  # the latest batch (batch ids sort by time) is what the table holds
    if status != spec.ready_value:
        return BatchState(False, batch_id, expected,
                          f"the latest batch '{batch_id}' of '{entity}' is '{status}', not '{spec.ready_value}'")
    if expected is not None and expected != rows:
        return BatchState(False, batch_id, expected,
                          f"batch '{batch_id}' of '{entity}' promises {expected} rows, the table has {rows}")
    return BatchState(True, batch_id, expected, None)
