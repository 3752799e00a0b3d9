"""One class per database: what differs between PostgreSQL, MS SQL Server and SQLite."""

from __future__ import annotations

from bufsync.dialects.base import BufferDialect
from bufsync.dialects.mssql import MssqlDialect
from bufsync.dialects.postgresql import PostgresqlDialect
from bufsync.dialects.sqlite import SqliteDialect

DIALECTS: dict[str, BufferDialect] = {d.name: d for d in (PostgresqlDialect(), MssqlDialect(), SqliteDialect())}


def dialect_named(name: str) -> BufferDialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unsupported database '{name}'; expected one of: {', '.join(DIALECTS)}") from None


__all__ = ["DIALECTS", "BufferDialect", "dialect_named"]
