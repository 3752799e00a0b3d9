"""sync_runs: one row per run, written at start (running) and at the end (outcome, counts).

A run that is killed never writes its end. So that its row does not say `running` forever, each run
holds a lock of its own, `run:<id>`, for its lifetime (PostgreSQL advisory lock, MS SQL
sp_getapplock; a session lock, lost with the process's connection), and `reap` — called by the next
run, `bufsync runs` and `bufsync status` — marks a running row `died` when its process is gone:
- on this host: the pid is not alive (or is a newer process that reused the number), and, where the
  database has session locks, the run's lock is free too (the server may take a moment to notice);
- on another host, whose pids cannot be seen from here: the run's lock is free. SQLite has no
  session locks (and its buffer is a local file), so its runs on another host are left alone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.errors import EXIT_GUARD, BufsyncError
from bufsync.report import Report
from bufsync.state.ledger import now_utc

log = logging.getLogger("bufsync.runs")
RUNNING, DIED = "running", "died"
SESSION_LOCKS = ("postgresql", "mssql")  # dialects whose locks live in a database session, seen from any host
# the run locks of this process, released by finish(): (database, run id) -> the held lock
_held: dict[tuple[str, int], ExitStack] = {}
_held_guard = threading.Lock()


def run_lock(run_id: int) -> str:
    return f"run:{run_id}"


def start(engine: sa.Engine, table: sa.Table, kind: str, options: dict[str, Any], dry_run: bool,
          job: str | None = None, trigger: str = "manual") -> int:
    """Record a run as running, holding its own lock until finish(); first mark the runs that died."""
    try:
        reap(engine, table)
    except sa.exc.SQLAlchemyError as exc:  # never a reason not to run
        log.warning("could not look for runs that died: %s", exc)
    with engine.begin() as conn:
        result = conn.execute(table.insert().values(
            job=job, kind=kind, triggered_by=trigger, host=_host(), pid=os.getpid(),
            started_at=now_utc(), outcome=RUNNING, dry_run=dry_run,
            options=json.dumps(options, ensure_ascii=False, default=str)))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row
        run_id = int(key[0])
        _hold(engine, run_id)  # before the commit: no one sees the row without its lock held
    return run_id


@contextmanager
def recorded(engine: sa.Engine, table: sa.Table, report: Report, options: dict[str, Any], *, dry_run: bool = False,
             job: str | None = None, trigger: str = "manual",
             on_start: Callable[[int], None] | None = None) -> Iterator[Report]:
    """A run's row around the work in the block: started (report.run_id set), then finished with the report's
    outcome and counts, whatever happens; a guard's refusal is `refused`, any other error `failed`."""
    started = time.perf_counter()
    report.run_id = start(engine, table, report.kind, options, dry_run, job=job, trigger=trigger)
    if on_start is not None:
        on_start(report.run_id)
    try:
        yield report
    except BufsyncError as exc:
        if exc.exit_code == EXIT_GUARD:
            report.outcome, report.refused = "refused", str(exc)
        else:
            report.outcome, report.error = "failed", str(exc)
        raise
    except BaseException as exc:  # Ctrl-C too: a run cut short is never left recorded as the report's default ok
        report.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        report.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.seconds = time.perf_counter() - started
        finish(engine, table, report.run_id, report.outcome, report.stored_counts(), report.refused or report.error)


def finish(engine: sa.Engine, table: sa.Table, run_id: int, outcome: str, counts: dict[str, Any],
           error: str | None = None) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == run_id).values(
                finished_at=now_utc(), outcome=outcome, counts=json.dumps(counts, ensure_ascii=False),
                error=(error or None) and error[:2000]))
    finally:
        _release(engine, run_id)


def recent(engine: sa.Engine, table: sa.Table, limit: int = 20, job: str | None = None) -> list[dict[str, Any]]:
    reap(engine, table)
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if job:
        query = query.where(table.c.job == job)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["counts"] = json.loads(row["counts"]) if row.get("counts") else {}
        row["options"] = json.loads(row["options"]) if row.get("options") else {}
    return rows


def reap(engine: sa.Engine, table: sa.Table) -> list[int]:
    """Mark running rows whose process is gone as `died` (see the module's docstring); returns their ids.

    A job whose run died is marked in sync_heartbeat too, when the table is in `table`'s metadata.
    """
    with engine.connect() as conn:
        running = conn.execute(sa.select(table.c.id, table.c.host, table.c.pid, table.c.started_at)
                               .where(table.c.outcome == RUNNING)).all()
    sessions = engine.dialect.name in SESSION_LOCKS
    here = _host()
    died = []
    for row in running:
        if row.host == here:
            gone = not _process_alive(row.pid, row.started_at) and (not sessions or _lock_free(engine, row.id))
        else:
            gone = sessions and _lock_free(engine, row.id)
        if gone:
            died.append(row)
    if not died:
        return []
    beats = table.metadata.tables.get("sync_heartbeat")
    with engine.begin() as conn:
        for row in died:
            text = (f"died: the process {row.host}:{row.pid} ended without recording the run's end "
                    f"(killed, or the machine stopped); its work stops where it was, the next run finishes it")
            conn.execute(table.update().where(table.c.id == row.id, table.c.outcome == RUNNING).values(
                outcome=DIED, finished_at=now_utc(), error=text))
            if beats is not None:
                conn.execute(beats.update().where(beats.c.run_id == row.id, beats.c.state == RUNNING).values(
                    state=DIED, last_error=text))
    for row in died:
        log.warning("run %d (%s:%d) died without recording its end; marked died", row.id, row.host, row.pid)
    return [row.id for row in died]


def _host() -> str:
    return socket.gethostname()[:255]


def _hold(engine: sa.Engine, run_id: int) -> None:
    if engine.dialect.name not in SESSION_LOCKS:
        return
    stack = ExitStack()
    try:
        stack.enter_context(dialect_named(engine.dialect.name).lock(engine, run_lock(run_id)))
    except LockHeld:  # another lock's name hashes to the same key: the run is then only ever thought alive
        log.warning("the lock of run %d is taken by another name; it cannot be watched from other hosts", run_id)
        return
    with _held_guard:
        _held[(str(engine.url), run_id)] = stack


def _release(engine: sa.Engine, run_id: int) -> None:
    with _held_guard:
        stack = _held.pop((str(engine.url), run_id), None)
    if stack is not None:
        stack.close()


def _lock_free(engine: sa.Engine, run_id: int) -> bool:
    """Whether no session holds the run's lock. Taking it for a moment disturbs no one: only its run ever
    wants it, and the run took it before its row could be seen."""
    with _held_guard:
        if (str(engine.url), run_id) in _held:
            return False
    try:
        with dialect_named(engine.dialect.name).lock(engine, run_lock(run_id)):
            return True
    except LockHeld:
        return False


def _process_alive(pid: int, since: datetime) -> bool:
    """Whether the process that started the run at `since` (UTC) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    started = _process_start(pid)
    if started is None:
        return True
    state, seconds = started
    if state in ("Z", "X"):  # a zombie: dead, its parent has not collected it yet
        return False
    # a process that began after the run did cannot be the run's own: the pid was reused
    return seconds <= since.replace(tzinfo=UTC).timestamp() + 5


def _process_start(pid: int) -> tuple[str, float] | None:
    """(state, start time as a UNIX time) from Linux's /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
