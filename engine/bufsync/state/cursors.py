"""Where a read cut short by its time budget stopped, per mapping: the next run resumes there."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.state.ledger import now_utc


def get(conn: sa.Connection, table: sa.Table, mapping: str) -> str | None:
    found = conn.execute(sa.select(table.c.position).where(table.c.mapping_name == mapping)).scalar_one_or_none()
    return None if found is None else str(found)


def put(conn: sa.Connection, table: sa.Table, mapping: str, position: str | None) -> None:
    """Upsert by update-then-insert: one writer per mapping at a time (the run lock), so no race to guard."""
    values = {"position": position, "updated_at": now_utc()}
    if conn.execute(table.update().where(table.c.mapping_name == mapping).values(values)).rowcount == 0:
        conn.execute(table.insert().values(mapping_name=mapping, **values))
