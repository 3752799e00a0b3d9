"""Views for DBAs: over sync_queue, one per portal, the JSON payload unpacked into columns; and a portal's own
views over its state tables.

CREATE VIEW is not in SQLAlchemy's DDL set; this is the compiler-extension recipe from the
SQLAlchemy docs, so the SELECT is still a Core construct compiled by each dialect.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement

from bufsync.dialects import dialect_named


class CreateView(DDLElement):
    def __init__(self, name: str, selectable: sa.Select[Any]) -> None:
        self.name = name
        self.selectable = selectable


class DropView(DDLElement):
    def __init__(self, name: str) -> None:
        self.name = name


@compiles(CreateView)
def _create_view(element: CreateView, compiler: Any, **kw: Any) -> str:
    body = compiler.sql_compiler.process(element.selectable, literal_binds=True)
    return f"CREATE VIEW {compiler.preparer.quote(element.name)} AS {body}"


@compiles(DropView)
def _drop_view(element: DropView, compiler: Any, **kw: Any) -> str:
    return f"DROP VIEW {compiler.preparer.quote(element.name)}"


def view_name(portal: str) -> str:
    return f"v_queue_{portal}"


def queue_view(queue: sa.Table, portal: str, fields: tuple[tuple[str, str], ...], dialect_name: str) -> CreateView:
    """v_queue_<portal>: the queue row's own columns, then one column per payload key."""
    dialect = dialect_named(dialect_name)
    unpacked = [dialect.json_field(queue.c.payload, key).label(label) for key, label in fields]
    select = (sa.select(queue.c.id, queue.c.operation, queue.c.status, queue.c.attempts, queue.c.max_attempts,
                        queue.c.available_at, queue.c.created_at, queue.c.completed_at, queue.c.last_error,
                        queue.c.idempotency_key, *unpacked)
              .where(queue.c.portal == sa.literal(portal)))
    return CreateView(view_name(portal), select)


def queue_views(queue: sa.Table, dialect_name: str) -> list[CreateView]:
    from bufsync.portals import portals
    return [queue_view(queue, name, portal.view_fields, dialect_name) for name, portal in portals().items()
            if portal.view_fields]


def state_views(metadata: sa.MetaData) -> list[tuple[CreateView, str]]:
    """Each portal's views over its state tables (only those whose tables the metadata holds), with what each shows."""
    from bufsync.portals import portals
    tables = dict(metadata.tables)
    out = []
    for portal in portals().values():
        for name, select, what in portal.views(tables):
            out.append((CreateView(name, select), what))
    return out
