"""sync_heartbeat rows: claimed due times, the running job's pulse, the next run."""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bufsync.state.ledger import now_utc


def naive(moment: datetime) -> datetime:
    """UTC without tzinfo, as the datetime columns store it."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r.job: dict(r._mapping) for r in conn.execute(sa.select(table))}


def ensure(conn: sa.Connection, table: sa.Table, job: str, last_due: datetime | None,
           next_run: datetime | None) -> None:
    """The job's row, created if missing; two daemons starting at once may both try: one wins."""
    if conn.execute(sa.select(table.c.job).where(table.c.job == job)).first() is None:
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(job=job, state="idle", last_due=last_due, next_run=next_run))
        except sa.exc.IntegrityError:
            pass  # another daemon (or job process) inserted it first


def claim(engine: sa.Engine, table: sa.Table, job: str, due: datetime | None, next_run: datetime | None) -> bool:
    """Take a due time for this process; False when it was taken already. Call under the job's lock."""
    with engine.begin() as conn:
        ensure(conn, table, job, None, next_run)
        row = conn.execute(sa.select(table.c.last_due).where(table.c.job == job)).one()  # ensure() made it
        if due is not None and row.last_due is not None and row.last_due >= naive(due):
            return False
        now = now_utc()
        conn.execute(table.update().where(table.c.job == job).values(
            state="running", host=socket.gethostname()[:255], pid=os.getpid(), started_at=now, last_beat=now,
            last_due=naive(due) if due is not None else row.last_due, next_run=next_run, run_id=None,
            last_error=None))
    return True


def set_run(engine: sa.Engine, table: sa.Table, job: str, run_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.job == job).values(run_id=run_id))


def finish(engine: sa.Engine, table: sa.Table, job: str, state: str, error: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.job == job).values(
            state=state, last_beat=now_utc(), last_error=(error or None) and error[:2000]))


class Pulse:
    """Keeps last_beat fresh from a thread while the job works."""

    def __init__(self, engine: sa.Engine, table: sa.Table, job: str, seconds: float) -> None:
        self.engine, self.table, self.job, self.seconds = engine, table, job, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job}", daemon=True)

    def __enter__(self) -> Pulse:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.seconds + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.table.update().where(self.table.c.job == self.job).values(last_beat=now_utc()))
            except sa.exc.SQLAlchemyError:
                pass  # the next beat tries again; status shows a stale beat if the database is gone
