"""Reads of a mapping's table the reconcile core shares: row counts, attached rows, the stream batch size."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bufsync.mapping.loader import MappingSet
from bufsync.mapping.model import Mapping

BATCH_ROWS = 5000


def count(conn: Connection, table: sa.Table) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def attached(conn: Connection, mappings: MappingSet, tables: dict[str, sa.Table],
             parent: Mapping) -> dict[str, dict[tuple[Any, ...], list[tuple[str, Any]]]]:
    """Name/value rows of every mapping attached to `parent`, grouped by the parent's key."""
    out: dict[str, dict[tuple[Any, ...], list[tuple[str, Any]]]] = {}
    for child in mappings.attached_to(parent.name):
        spec = child.attach
        assert spec is not None and parent.sync is not None  # attached_to() gives attached children of a synced parent
        table = tables[child.table.name]
        join_columns = [table.c[col] for col, parent_col in spec.join.items()]
        order = [spec.join[col.name] for col in join_columns]
        groups: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
        query = sa.select(*join_columns, table.c[spec.name_column], table.c[spec.value_column]).order_by(
            *join_columns, table.c[spec.name_column])
        for row in conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query):
            parent_key = tuple(row[:len(join_columns)])
            # order the join values as the parent's key columns
            by_name = dict(zip(order, parent_key, strict=True))
            groups.setdefault(tuple(by_name[k] for k in parent.sync.key), []).append(
                (row[len(join_columns)], row[len(join_columns) + 1]))
        out[spec.into] = groups
    return out
