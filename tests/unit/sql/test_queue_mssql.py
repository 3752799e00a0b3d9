"""The queue's statements as MS SQL Server receives them (compiled; live tests run where a server is given):
claims that mark items in doubt, the counted re-sends, items given back, the operator's retry and cancel."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from bufsync.dialects.mssql import MssqlDialect
from bufsync.queue import outbox
from bufsync.state.tables import add_state_tables

DIALECT = MssqlDialect().sqlalchemy_dialect()
QUEUE = add_state_tables(sa.MetaData())["sync_queue"]


class Recorder:
    """An engine that compiles what it is given for MS SQL and answers nothing."""

    def __init__(self) -> None:
        self.dialect = SimpleNamespace(name="mssql")
        self.sql: list[str] = []

    @contextmanager
    def begin(self):
        yield self

    def execute(self, statement: Any, params: Any = None) -> Any:
        self.sql.append(str(statement.compile(dialect=DIALECT)))
        return Answer()


class Answer(list):
    rowcount = 1

    def scalar_one(self) -> int:
        return 0


def test_a_claim_marks_what_it_takes_over_from_a_dead_holder() -> None:
    engine = Recorder()
    outbox.claim(engine, QUEUE, "scos", 50, 60, "host:1")  # type: ignore[arg-type]
    (sql,) = engine.sql
    assert sql.startswith("UPDATE sync_queue SET status=:status, attempts=(sync_queue.attempts + :attempts_1), "
                          "locked_by=:locked_by, locked_until=:locked_until, in_doubt=CASE WHEN "
                          "(sync_queue.status = :status_1) THEN :param_1 ELSE sync_queue.in_doubt END OUTPUT inserted.")
    assert "WITH (UPDLOCK, READPAST, ROWLOCK)" in sql


def test_resends_are_counted_and_doubt_cleared_on_done() -> None:
    engine = Recorder()
    outbox.complete_many(engine, QUEUE, [(1, {}, True)], "host:1")  # type: ignore[arg-type]
    assert "in_doubt=:in_doubt, resends=(sync_queue.resends + :resent)" in engine.sql[0]
    outbox.fail(engine, QUEUE, {"id": 1, "attempts": 1, "max_attempts": 8}, "host:1", "ReadTimeout",  # type: ignore
                permanent=False, in_doubt=True, resent=True)
    assert "in_doubt=:in_doubt, resends=(sync_queue.resends + :resends_1)" in engine.sql[-1]


def test_release_and_operator_actions() -> None:
    engine = Recorder()
    outbox.release(engine, QUEUE, [{"id": 1, "attempts": 2}], "host:1", "refused")  # type: ignore[arg-type]
    assert engine.sql[0].startswith("UPDATE sync_queue SET status=:back_to, attempts=:attempts_before")
    engine.sql.clear()
    outbox.retry(engine, QUEUE, status="dead")  # type: ignore[arg-type]
    assert "in_doubt=CASE WHEN (sync_queue.status = :status_1) THEN sync_queue.in_doubt ELSE :param_1 END" \
        in engine.sql[0] and "WHERE sync_queue.status IN (__[POSTCOMPILE_status_2])" in engine.sql[0]
