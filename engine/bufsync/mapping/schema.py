"""Mapping -> SQLAlchemy Table: the one place buffer DDL comes from."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bufsync.mapping.model import Column, Mapping
from bufsync.mapping.types import parse_type

# Engine-owned columns of an inbound table: fixed type and description per role.
WRITEBACK_COLUMNS: dict[str, tuple[str, str]] = {
    "status": ("string(16)", "Движок: результат синхронизации строки — ok, warning, error, skipped, pending"),
    "error": ("string(2000)", "Движок: почему строка не применена (error, skipped) или что LMS не сохранила "
                              "(warning) — текст для разработчика 1С и код ошибки LMS"),
    "synced_at": ("datetime", "Движок: когда строка последний раз применена или проверена"),
    "remote_id": ("bigint", "Движок: идентификатор записи в LMS (id в Moodle)"),
}


def _server_default(column: Column) -> sa.ColumnElement[Any] | str | None:
    value = column.default
    if value is None:
        return None
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, int):
        return sa.literal_column(str(int(value)))  # an int, not text from the file
    if value == "now" and column.portable.name in ("date", "datetime"):
        return sa.func.current_timestamp()
    return value  # a string: SQLAlchemy quotes it as a literal


def table_for(mapping: Mapping, metadata: sa.MetaData) -> sa.Table:
    spec = mapping.table
    columns = [
        sa.Column(c.name, c.portable.sqlalchemy(), primary_key=c.key, nullable=c.is_nullable,
                  server_default=_server_default(c), comment=c.description)
        for c in spec.columns
    ]
    if spec.writeback:
        for role, name in spec.writeback.columns().items():
            type_text, description = WRITEBACK_COLUMNS[role]
            columns.append(sa.Column(name, parse_type(type_text).sqlalchemy(), nullable=True, comment=description))
    table = sa.Table(spec.name, metadata, *columns, comment=spec.description)
    for index in spec.indexes:
        sa.Index(index.name, *(table.c[name] for name in index.columns), unique=index.unique)
    return table
