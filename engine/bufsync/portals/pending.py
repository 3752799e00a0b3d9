"""What a portal's scenario run does with its own state rows and the queue items they wait for (shared by the
portal folders): the finished items read back by idempotency key, and many rows updated at once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa


def chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def queue_items(engine: sa.Engine, queue: sa.Table, portal: str, keys: list[str]) -> dict[str, Any]:
    """The portal's queue items with these idempotency keys: operation, status, payload, response, last_error."""
    found: dict[str, Any] = {}
    q = queue
    with engine.connect() as conn:
        for chunk in chunks(sorted(set(keys))):
            for row in conn.execute(sa.select(q.c.idempotency_key, q.c.operation, q.c.status, q.c.payload,
                                              q.c.response, q.c.last_error)
                                    .where(q.c.portal == portal, q.c.idempotency_key.in_(chunk))):
                found[row.idempotency_key] = row
    return found


def update_many(conn: sa.Connection, table: sa.Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """UPDATEs of many rows as one executemany per shape of values (thousands of rows settle at once).

    A key named `<column>_was` matches the column's current value (the row still waits for that item).
    """
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(sorted(k for k in row if k not in keys)), []).append(row)
    for columns, group in shapes.items():
        where = [table.c[k.removesuffix("_was")] == sa.bindparam(f"k_{k}") for k in keys]
        statement = table.update().where(*where).values({c: sa.bindparam(f"v_{c}") for c in columns})
        conn.execute(statement, [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}}
                                 for r in group])
