"""Write-back of the engine's own columns (sync_status, sync_error, synced_at, lms_id).

Only rows whose values change are written, in executemany batches; 1C's columns are never
touched, so 1C may rewrite or reload its rows at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bufsync.mapping.model import Mapping
from bufsync.state.ledger import RemoteId

ERROR_LIMIT = 2000


@dataclass
class Status:
    key_values: tuple[Any, ...]
    status: str
    error: str | None
    remote_id: RemoteId | None
    synced_at: datetime


def write(conn: Connection, table: sa.Table, mapping: Mapping, updates: list[Status]) -> int:
    wb = mapping.table.writeback
    if wb is None or not updates:
        return 0
    roles = wb.columns()
    values: dict[str, Any] = {}
    if "status" in roles:
        values[roles["status"]] = sa.bindparam("w_status")
    if "error" in roles:
        values[roles["error"]] = sa.bindparam("w_error")
    if "synced_at" in roles:
        values[roles["synced_at"]] = sa.bindparam("w_synced_at")
    if "remote_id" in roles:
        values[roles["remote_id"]] = sa.bindparam("w_remote_id")
    assert mapping.sync is not None  # only synced mappings have write-back
    where = [table.c[name] == sa.bindparam(f"k_{i}") for i, name in enumerate(mapping.sync.key)]
    statement = table.update().where(*where).values(values)
    params = []
    for u in updates:
        item = {f"k_{i}": v for i, v in enumerate(u.key_values)}
        item.update({"w_status": u.status, "w_error": (u.error or None) and u.error[:ERROR_LIMIT],
                     "w_synced_at": u.synced_at, "w_remote_id": u.remote_id})
        params.append(item)
    conn.execute(statement, params)
    return len(params)


def current(row: sa.Row, mapping: Mapping) -> tuple[Any, Any, Any]:
    """(status, error, remote_id) as the row holds them now, to skip writes that change nothing."""
    roles = mapping.table.writeback.columns() if mapping.table.writeback else {}
    get = row._mapping.get
    return (get(roles["status"]) if "status" in roles else None,
            get(roles["error"]) if "error" in roles else None,
            get(roles["remote_id"]) if "remote_id" in roles else None)
