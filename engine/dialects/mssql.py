"""MS SQL Server: nvarchar/bit/datetime2 (from the portable types), MS_Description properties."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import DDLElement, SetColumnComment, SetTableComment

from bufsync.dialects.base import BufferDialect

DEFAULT_SCHEMA = "dbo"


class MssqlDialect(BufferDialect):
    name = "mssql"
    title = "Microsoft SQL Server"
    batch_separator = "GO"

    def sqlalchemy_dialect(self) -> Dialect:
        dialect = mssql.pymssql.dialect()
        # comments are sp_addextendedproperty calls that name the schema; offline there is no
        # connection to ask, so state the default one
        dialect.default_schema_name = DEFAULT_SCHEMA
        return dialect

    def comment_statements(self, table: sa.Table) -> list[DDLElement]:
        statements: list[DDLElement] = []
        if table.comment:
            statements.append(SetTableComment(table))
        statements += [SetColumnComment(c) for c in table.columns if c.comment]
        return statements
