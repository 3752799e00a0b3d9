"""SQLite: no stored comments, so descriptions become SQL comment lines in the script."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from bufsync.dialects.base import BufferDialect


class SqliteDialect(BufferDialect):
    name = "sqlite"
    title = "SQLite"

    def sqlalchemy_dialect(self) -> Dialect:
        return sqlite.pysqlite.dialect()

    def comment_lines(self, table: sa.Table) -> list[str]:
        lines = [f"{table.name}: {table.comment}"] if table.comment else []
        width = max((len(c.name) for c in table.columns), default=0)
        lines += [f"  {c.name.ljust(width)}  {c.comment}" for c in table.columns if c.comment]
        return lines
