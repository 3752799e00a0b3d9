"""The sandbox Moodle's state in SQLite: one connection, one transaction per web-service call.

Id sequences live outside the transaction, as PostgreSQL's do on the recorded site: a call
that inserts and then fails still consumes ids, so the sandbox hands out the same ids.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SCHEMAS: list[str] = []
LIMITS: dict[str, dict[str, int]] = {}


def schema(ddl: str) -> None:
    """Called by each function module at import: its tables (CREATE TABLE IF NOT EXISTS ...)."""
    SCHEMAS.append(ddl)


def column_limits(table: str, limits: dict[str, int]) -> None:
    """varchar(n) columns of a table, as the real Moodle database has them: SQLite would store anything, the
    real database refuses a longer value and Moodle answers dml_write_exception (store.insert/update check)."""
    LIMITS.setdefault(table, {}).update(limits)


def _too_long(table: str, row: dict[str, Any], sql: str) -> None:
    for column, limit in LIMITS.get(table, {}).items():
        value = row.get(column)
        if isinstance(value, str) and len(value) > limit:
            from bufsync.sandbox.moodle.errors import WsError
            params = "".join(f"  '{k}' => {v!r},\n" for k, v in row.items())
            raise WsError("dml_write_exception", "dmlwriteexception", "Error writing to database",
                          f"ERROR:  value too long for type character varying({limit})\n{sql}\n[array (\n{params})]")


schema("""
CREATE TABLE IF NOT EXISTS sandbox_sequence (name TEXT PRIMARY KEY, next_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_config (name TEXT PRIMARY KEY, value TEXT);
""")


class Store:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or ":memory:"
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.lock = threading.RLock()
        for ddl in SCHEMAS:
            self.conn.executescript(ddl)
        self._sequences: dict[str, int] = {
            row["name"]: row["next_id"] for row in self.conn.execute("SELECT name, next_id FROM sandbox_sequence")}
        self._dirty: set[str] = set()

    @property
    def fresh(self) -> bool:
        return self.one("SELECT value FROM sandbox_config WHERE name = 'installed'") is None

    def next_id(self, name: str, start: int = 1) -> int:
        value = self._sequences.get(name, start)
        self._sequences[name] = value + 1
        self._dirty.add(name)
        return value

    def peek_id(self, name: str, start: int = 1) -> int:
        return self._sequences.get(name, start)

    def set_sequence(self, name: str, next_id: int) -> None:
        self._sequences[name] = next_id
        self._dirty.add(name)

    def _flush_sequences(self) -> None:
        for name in self._dirty:
            self.conn.execute("INSERT INTO sandbox_sequence (name, next_id) VALUES (?, ?) "
                              "ON CONFLICT(name) DO UPDATE SET next_id = excluded.next_id",
                              (name, self._sequences[name]))
        self._dirty.clear()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing, like Moodle's delegated transaction around a web-service call."""
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                self.conn.execute("BEGIN")
                self._flush_sequences()  # ids consumed by the failed call stay consumed
                self.conn.execute("COMMIT")
                raise
            self._flush_sequences()
            self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit that can fail alone (per-item calls such as update_users)."""
        self.conn.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO item")
            self.conn.execute("RELEASE item")
            raise
        self.conn.execute("RELEASE item")

    def q(self, sql: str, params: tuple | list | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def row(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Row:
        """The row a query always finds (an aggregate, or a row this request knows exists)."""
        found = self.one(sql, params)
        if found is None:
            raise LookupError(f"no row for {sql!r} {params!r}")
        return found

    def x(self, sql: str, params: tuple | list | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def insert(self, table: str, row: dict[str, Any]) -> None:
        """Insert a row; table and column names come from the sandbox's own code, never a request."""
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        _too_long(table, row, f"INSERT INTO mdl_{table} ({','.join(row)}) VALUES("
                              f"{','.join(f'${i}' for i in range(1, len(row) + 1))}) RETURNING id")
        self.conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))

    def update(self, table: str, row_id: int, changes: dict[str, Any]) -> None:
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            assignments = ",".join(f"{k} = ${i}" for i, k in enumerate(changes, 1))
            _too_long(table, changes, f"UPDATE mdl_{table} SET {assignments} WHERE id = ${len(changes) + 1}")
            self.conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", (*changes.values(), row_id))

    def close(self) -> None:
        self.conn.close()
