"""The shared rate limit's statements as MS SQL Server receives them (compiled; no server runs here): the row read
under an update lock, the slot taken by an UPDATE, a missing row inserted plainly (no ON CONFLICT there) and a
duplicate from another sender let be; PostgreSQL's FOR UPDATE beside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from bufsync.dialects.mssql import MssqlDialect
from bufsync.dialects.postgresql import PostgresqlDialect
from bufsync.queue.limiter import SharedRateLimit
from bufsync.state.tables import add_state_tables

DIALECT = MssqlDialect().sqlalchemy_dialect()
LIMITS = add_state_tables(sa.MetaData())["sync_rate_limits"]
READ = sa.select(LIMITS.c.sent).where(LIMITS.c.limit_key == "vk:user")


def flat(sql: str) -> str:
    return " ".join(sql.split())


class Recorder:
    """An engine and its connection in one: compiles what it is given for a dialect, answers the limiter's read
    from `rows` (None: no row), raises `refuse` for an INSERT when given."""

    def __init__(self, dialect: Any = DIALECT, rows: list[str | None] | None = None,
                 refuse: Exception | None = None) -> None:
        self.compile_for = dialect
        self.dialect = SimpleNamespace(name=dialect.name)
        self.rows, self.refuse = list(rows or []), refuse
        self.sql: list[str] = []

    @contextmanager
    def connect(self) -> Iterator[Recorder]:
        yield self

    begin = connect

    def commit(self) -> None:
        self.sql.append("COMMIT")

    def rollback(self) -> None:
        self.sql.append("ROLLBACK")

    def execute(self, statement: Any, params: Any = None) -> Any:
        self.sql.append(flat(str(statement.compile(dialect=self.compile_for))))
        if isinstance(statement, sa.Insert) and self.refuse is not None:
            raise self.refuse
        sent = self.rows.pop(0) if isinstance(statement, sa.Select) else None
        return SimpleNamespace(first=lambda: None if sent is None else SimpleNamespace(sent=sent), rowcount=1)


def test_the_row_is_read_under_an_update_lock() -> None:
    recorder = Recorder(rows=["[]"])
    MssqlDialect().read_for_update(recorder, READ, LIMITS)  # type: ignore[arg-type]
    assert recorder.sql == ["SELECT sync_rate_limits.sent FROM sync_rate_limits WITH (UPDLOCK, ROWLOCK) "
                            "WHERE sync_rate_limits.limit_key = :limit_key_1"]


def test_postgresql_reads_for_update() -> None:
    recorder = Recorder(PostgresqlDialect().sqlalchemy_dialect(), rows=["[]"])
    PostgresqlDialect().read_for_update(recorder, READ, LIMITS)  # type: ignore[arg-type]
    assert recorder.sql == ["SELECT sync_rate_limits.sent FROM sync_rate_limits "
                            "WHERE sync_rate_limits.limit_key = %(limit_key_1)s FOR UPDATE"]


def limiter(recorder: Recorder, now: float = 100.0) -> SharedRateLimit:
    return SharedRateLimit(recorder, LIMITS, "vk:user", 3, clock=lambda: now,  # type: ignore[arg-type]
                           sleep=lambda seconds: None)


def test_a_send_on_a_new_key_makes_its_row_then_takes_a_slot() -> None:
    recorder = Recorder(rows=[None, "[]"])
    limiter(recorder).wait()
    locked = ("SELECT sync_rate_limits.sent FROM sync_rate_limits WITH (UPDLOCK, ROWLOCK) "
              "WHERE sync_rate_limits.limit_key = :limit_key_1")
    assert recorder.sql == [
        locked, "ROLLBACK",
        "INSERT INTO sync_rate_limits (limit_key, sent, updated_at) VALUES (:limit_key, :sent, :updated_at)",
        locked,
        "UPDATE sync_rate_limits SET sent=:sent, updated_at=:updated_at "
        "WHERE sync_rate_limits.limit_key = :limit_key_1", "COMMIT"]


def test_a_row_another_sender_made_first_is_let_be() -> None:
    duplicate = sa.exc.IntegrityError("INSERT", {}, Exception("Violation of PRIMARY KEY constraint"))
    recorder = Recorder(rows=[None, "[]"], refuse=duplicate)
    limiter(recorder).wait()
    assert recorder.sql[-2].startswith("UPDATE sync_rate_limits SET sent=") and recorder.sql[-1] == "COMMIT"


def test_a_full_window_commits_nothing() -> None:
    recorder = Recorder(rows=["[99.5, 99.75, 99.875]", "[99.5, 99.75, 99.875]"])
    limit = limiter(recorder)
    slept: list[float] = []
    limit.sleep = lambda seconds: (slept.append(seconds), setattr(limit, "clock", lambda: 101.0))  # type: ignore
    limit.wait()
    assert slept == [0.5]
    assert recorder.sql[1] == "ROLLBACK" and not recorder.sql[0].startswith("UPDATE")
    assert recorder.sql[-1] == "COMMIT" and recorder.sql[-2].startswith("UPDATE")
