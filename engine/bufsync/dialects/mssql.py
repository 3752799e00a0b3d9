"""MS SQL Server: nvarchar/bit/datetime2 (from the portable types), MS_Description properties."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement, SetColumnComment, SetTableComment
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from bufsync.dialects.base import BufferDialect

# sp_getapplock returns >= 0 when granted; session-owned, so it ends with the connection
GET_APPLOCK = sa.text("DECLARE @r int; EXEC @r = sp_getapplock @Resource = :resource, @LockMode = 'Exclusive', "
                      "@LockOwner = 'Session', @LockTimeout = 0; SELECT @r")
RELEASE_APPLOCK = sa.text("EXEC sp_releaseapplock @Resource = :resource, @LockOwner = 'Session'")

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

    def lock(self, engine: sa.Engine, name: str) -> AbstractContextManager[None]:
        resource = {"resource": f"bufsync:{name}"}
        return self._session_lock(engine, name, lambda conn: conn.execute(GET_APPLOCK, resource).scalar_one() >= 0,
                                  lambda conn: conn.execute(RELEASE_APPLOCK, resource))

    max_params = 2000  # the server takes 2100 parameters per statement

    def upsert(self, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> sa.Executable:
        return Merge(table, rows, key)

    def claim(self, conn: sa.Connection, table: sa.Table, ready: sa.ColumnElement[Any],
              order: list[sa.ColumnElement[Any]], limit: int, values: dict[str, Any]) -> list[sa.Row[Any]]:
        """UPDATE ... OUTPUT inserted.* WHERE id IN (SELECT TOP n ... WITH (UPDLOCK, READPAST, ROWLOCK))."""
        chosen = (sa.select(table.c.id).with_hint(table, "WITH (UPDLOCK, READPAST, ROWLOCK)", "mssql")
                  .where(ready).order_by(*order).limit(limit))
        statement = table.update().where(table.c.id.in_(chosen.scalar_subquery())).values(values)
        return list(conn.execute(statement.returning(*table.c)))

    def read_for_update(self, conn: sa.Connection, statement: sa.Select[Any], table: sa.Table) -> sa.Result[Any]:
        """SELECT ... FROM t WITH (UPDLOCK, ROWLOCK): an update lock on the row until the transaction ends, so
        a second reader-to-update waits (a plain shared lock would let both read, then deadlock on the update)."""
        return conn.execute(statement.with_hint(table, "WITH (UPDLOCK, ROWLOCK)", "mssql"))

    def md5(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """CONVERT(varchar(32), HASHBYTES('MD5', text), 2): lower-cased to match the other dialects."""
        return sa.func.lower(sa.func.convert(sa.literal_column("varchar(32)"),
                                             sa.func.hashbytes("MD5", text), 2))

    def json_field(self, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
        return sa.func.JSON_VALUE(column, f"$.{key}")

    def text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(column, mssql.NVARCHAR(None))

    def aggregate(self, expression: sa.ColumnElement[Any], order: sa.ColumnElement[Any],
                  group: list[sa.ColumnElement[Any]], separator: str) -> sa.Subquery:
        return sa.select(*group, sa.func.string_agg(expression, separator).within_group(order).label("agg")
                         ).group_by(*group).subquery()


class Merge(Executable, ClauseElement):
    """MERGE INTO t WITH (HOLDLOCK) USING (VALUES ...) AS source ON the key WHEN MATCHED THEN UPDATE
    WHEN NOT MATCHED THEN INSERT: SQLAlchemy has no MERGE construct, so it is compiled here from its parts
    (the table, a VALUES clause and the key comparison are SQLAlchemy's own). HOLDLOCK keeps the key range
    locked from the match to the insert, else two writers could both insert one key."""

    inherit_cache = False

    def __init__(self, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> None:
        self.table, self.rows, self.key = table, rows, key


@compiles(Merge, "mssql")
def _compile_merge(element: Merge, compiler: SQLCompiler, **kw: Any) -> str:
    table, names = element.table, list(element.rows[0])
    source = sa.values(*(sa.column(name, table.c[name].type) for name in names), name="source").data(
        [tuple(row[name] for name in names) for row in element.rows])
    target = table.alias("target")
    quote = compiler.preparer.quote
    on = compiler.process(sa.and_(*(target.c[name] == source.c[name] for name in element.key)), **kw)
    changed = [name for name in names if name not in element.key]
    text = (f"MERGE INTO {compiler.preparer.format_table(table)} WITH (HOLDLOCK) AS target "
            f"USING {compiler.process(source, asfrom=True, **kw)} ON {on}")
    if changed:
        text += " WHEN MATCHED THEN UPDATE SET " + ", ".join(
            f"{quote(name)} = {compiler.process(source.c[name], **kw)}" for name in changed)
    inserted = ", ".join(compiler.process(source.c[name], **kw) for name in names)
    return text + f" WHEN NOT MATCHED THEN INSERT ({', '.join(quote(n) for n in names)}) VALUES ({inserted});"
