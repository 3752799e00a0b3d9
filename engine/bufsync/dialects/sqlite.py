"""SQLite: no stored comments, so descriptions become SQL comment lines in the script."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from bufsync.dialects.base import BufferDialect, LockHeld, on_conflict_upsert


def _lock_path(database: str, name: str) -> str:
    """Beside a database file; an in-memory database (one per process) locks in a per-user temporary folder."""
    if database and database != ":memory:" and not database.startswith("file::memory:"):
        return f"{database}.{name}.lock"
    import tempfile
    folder = os.path.join(tempfile.gettempdir(), f"bufsync-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"memory-{os.getpid()}.{name}.lock")


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

    @contextmanager
    def lock(self, engine: sa.Engine, name: str) -> Iterator[None]:
        """flock on a file beside the database (`bufsync.db.run.lock`): released by the kernel if the holder dies.

        The holder removes the file when it lets go, so none is left beside the buffer (nor in the working
        directory). Removing a lock file is safe only because a taker checks, once it holds the lock, that
        the file it locked is still the one at the path; if a leaving holder removed it, it tries again."""
        path = _lock_path(engine.url.database or "", name)
        while True:
            handle = open(path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise LockHeld(name) from None
            try:
                current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            handle.close()  # locked a file its holder had just removed: take the one at the path now
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
        finally:
            try:
                os.unlink(path)  # still held: whoever opens the path now gets a new file, and checks it
            except FileNotFoundError:
                pass
            handle.close()

    def insert_ignoring(self, table: sa.Table, rows: list[dict[str, Any]], conflict: list[str]) -> sa.Executable:
        return sqlite.insert(table).values(rows).on_conflict_do_nothing(index_elements=conflict)

    def upsert(self, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> sa.Executable:
        return on_conflict_upsert(sqlite.insert(table).values(rows), rows, key)

    def claim(self, conn: sa.Connection, table: sa.Table, ready: sa.ColumnElement[Any],
              order: list[sa.ColumnElement[Any]], limit: int, values: dict[str, Any]) -> list[sa.Row[Any]]:
        """One UPDATE ... RETURNING: SQLite takes the write lock for the statement (as BEGIN IMMEDIATE
        would), so two dispatchers can never both take a row."""
        chosen = sa.select(table.c.id).where(ready).order_by(*order).limit(limit)
        statement = table.update().where(table.c.id.in_(chosen.scalar_subquery())).values(values)
        return list(conn.execute(statement.returning(*table.c)))

    def read_for_update(self, conn: sa.Connection, statement: sa.Select[Any], table: sa.Table) -> sa.Result[Any]:
        """BEGIN IMMEDIATE, then the read: SQLite has no row locks; the write lock taken at BEGIN serialises every
        writer of the database until this transaction ends (pysqlite would open none for a SELECT, and a deferred
        transaction that read first could not later write after another writer's commit)."""
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        return conn.execute(statement)

    def snapshot(self, conn: sa.Connection) -> sa.Connection:
        """One read transaction: pysqlite opens none for a SELECT, so each would read the database anew."""
        conn.exec_driver_sql("BEGIN")
        return conn

    def md5(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.bufsync_md5(text)  # registered on each connection by bufsync.db

    def aggregate(self, expression: sa.ColumnElement[Any], order: sa.ColumnElement[Any],
                  group: list[sa.ColumnElement[Any]], separator: str) -> sa.Subquery:
        ordered = sa.select(*group, expression.label("part")).order_by(*group, order).subquery()
        keys = [ordered.c[c.name] for c in group]
        return sa.select(*keys, sa.func.group_concat(ordered.c.part, separator).label("agg")).group_by(
            *keys).subquery()
