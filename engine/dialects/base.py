"""What every database dialect must say for itself; one subclass per dialect."""

from __future__ import annotations

from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable, DDLElement


class BufferDialect:
    """Dialect-specific behaviour of bufsync (DDL rendering now; locks and claims later)."""

    name: ClassVar[str]
    title: ClassVar[str]
    # text put after each statement in a rendered script
    terminator: ClassVar[str] = ";"
    # text put between tables (e.g. GO for sqlcmd)
    batch_separator: ClassVar[str | None] = None

    def sqlalchemy_dialect(self) -> Dialect:
        raise NotImplementedError

    def comment_statements(self, table: sa.Table) -> list[DDLElement]:
        """Statements that attach the Russian descriptions to a table and its columns."""
        return []

    def comment_lines(self, table: sa.Table) -> list[str]:
        """Descriptions as SQL comments, for dialects that cannot store them."""
        return []

    def create_statements(self, table: sa.Table) -> list[DDLElement]:
        statements: list[DDLElement] = [CreateTable(table)]
        statements += [CreateIndex(index) for index in sorted(table.indexes, key=lambda i: i.name or "")]
        return statements + self.comment_statements(table)
