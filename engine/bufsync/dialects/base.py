"""What every database dialect must say for itself; one subclass per dialect."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

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

    def lock(self, engine: sa.Engine, name: str) -> AbstractContextManager[None]:
        """Hold a named lock across processes and hosts for the duration; LockHeld if taken.

        The lock lives in a database session (or an open file on SQLite): a crashed holder
        loses it with its connection.
        """
        raise NotImplementedError

    @contextmanager
    def _session_lock(self, engine: sa.Engine, name: str, acquire: Callable[[sa.Connection], bool],
                      release: Callable[[sa.Connection], object]) -> Iterator[None]:
        """A lock owned by one database session, taken at once or not at all; it ends with the session."""
        with engine.connect() as conn:
            if not acquire(conn):
                conn.rollback()
                raise LockHeld(name)
            conn.commit()
            try:
                yield
            finally:
                release(conn)
                conn.commit()

    def insert_ignoring(self, table: sa.Table, rows: list[dict[str, Any]], conflict: list[str]) -> sa.Executable | None:
        """INSERT that skips rows whose `conflict` columns already exist (None: the caller does it row by row)."""
        return None

    # bound parameters one statement may carry (MS SQL Server: 2100; the others allow far more)
    max_params: ClassVar[int] = 30000

    def upsert(self, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> sa.Executable:
        """Insert these rows, or update the row with the same `key` values: one statement, the row's own
        columns set from the given values (every row gives the same columns)."""
        raise NotImplementedError

    def upserts(self, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> Iterator[sa.Executable]:
        """`upsert` in as many statements as the dialect's parameter limit needs."""
        if not rows:
            return
        per = max(1, self.max_params // max(1, len(rows[0])) - 1)
        for start in range(0, len(rows), per):
            yield self.upsert(table, rows[start:start + per], key)

    def claim(self, conn: sa.Connection, table: sa.Table, ready: sa.ColumnElement[Any],
              order: list[sa.ColumnElement[Any]], limit: int, values: dict[str, Any]) -> list[sa.Row[Any]]:
        """Take up to `limit` ready rows for this worker without waiting for rows others hold."""
        raise NotImplementedError

    def read_for_update(self, conn: sa.Connection, statement: sa.Select[Any], table: sa.Table) -> sa.Result[Any]:
        """Run `statement` (a read of `table`) as the first statement of the connection's transaction, holding the
        rows it reads against other writers until that transaction ends: two processes doing read-then-update
        of one row take turns instead of both acting on the same read."""
        raise NotImplementedError

    def snapshot(self, conn: sa.Connection) -> sa.Connection:
        """The connection made to read one snapshot of the database until it ends: the scan's changed and
        vanished keys must agree (a row 1C deletes between the two reads is not both updated and removed)."""
        return conn

    def prepare_stream(self, conn: sa.Connection) -> None:
        """Session settings for a long streamed read (a server-side cursor)."""

    def prepare_bulk(self, conn: sa.Connection) -> None:
        """Transaction settings for set-based statements over whole tables."""

    def prepare_expendable(self, conn: sa.Connection) -> None:
        """Transaction settings for a write that may be lost in a crash of the database server (a rate limit's
        send stamps): COMMIT need not wait for the disk."""

    def md5(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """md5 of a text as 32 hex digits, computed by the database."""
        return sa.func.md5(text)

    def text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(column, sa.Text())

    def json_field(self, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
        """One top-level key of a JSON text column, as text (for the DBA views of the queue)."""
        return sa.func.json_extract(column, f"$.{key}")

    def aggregate(self, expression: sa.ColumnElement[Any], order: sa.ColumnElement[Any],
                  group: list[sa.ColumnElement[Any]], separator: str) -> sa.Subquery:
        """A derived table: the group columns and `agg`, the ordered concatenation of `expression`."""
        raise NotImplementedError

    @staticmethod
    def lock_key(name: str) -> int:
        return zlib.crc32(f"bufsync:{name}".encode()) - 2**31

    def create_statements(self, table: sa.Table) -> list[DDLElement]:
        statements: list[DDLElement] = [CreateTable(table)]
        statements += [CreateIndex(index) for index in sorted(table.indexes, key=lambda i: i.name or "")]
        return statements + self.comment_statements(table)


def on_conflict_upsert(statement: Any, rows: list[dict[str, Any]], key: list[str]) -> sa.Executable:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET each other column = excluded.column, from the insert
    construct of a dialect that has one (PostgreSQL's and SQLite's share this API)."""
    changed = [name for name in rows[0] if name not in key]
    if not changed:
        return statement.on_conflict_do_nothing(index_elements=key)  # type: ignore[no-any-return]
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=key, set_={name: statement.excluded[name] for name in changed})


class LockHeld(Exception):
    """Another process holds the named lock."""
