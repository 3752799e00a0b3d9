"""PostgreSQL: COMMENT ON for descriptions."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import DDLElement, SetColumnComment, SetTableComment

from bufsync.dialects.base import BufferDialect


class PostgresqlDialect(BufferDialect):
    name = "postgresql"
    title = "PostgreSQL"

    def sqlalchemy_dialect(self) -> Dialect:
        return postgresql.psycopg2.dialect()

    def comment_statements(self, table: sa.Table) -> list[DDLElement]:
        statements: list[DDLElement] = []
        if table.comment:
            statements.append(SetTableComment(table))
        statements += [SetColumnComment(c) for c in table.columns if c.comment]
        return statements
