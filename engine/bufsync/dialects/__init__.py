"""One class per database: what differs between PostgreSQL, MS SQL Server and SQLite.

Each is imported when first asked for: a run on PostgreSQL does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from bufsync.dialects.base import BufferDialect

_CLASSES = {"postgresql": ("postgresql", "PostgresqlDialect"), "mssql": ("mssql", "MssqlDialect"),
            "sqlite": ("sqlite", "SqliteDialect")}
_made: dict[str, BufferDialect] = {}


def dialect_named(name: str) -> BufferDialect:
    if name not in _made:
        try:
            module, cls = _CLASSES[name]
        except KeyError:
            raise ValueError(f"unsupported database '{name}'; expected one of: {', '.join(_CLASSES)}") from None
        _made[name] = getattr(importlib.import_module(f"bufsync.dialects.{module}"), cls)()
    return _made[name]


def __getattr__(name: str) -> Any:
    if name == "DIALECTS":  # every dialect, by name (sql/ rendering, tests)
        return {key: dialect_named(key) for key in _CLASSES}
    raise AttributeError(name)


__all__ = ["DIALECTS", "BufferDialect", "dialect_named"]
