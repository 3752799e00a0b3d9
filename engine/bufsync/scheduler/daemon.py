"""`bufsync schedule`: run due jobs, each in its own process with a time limit, until SIGTERM.

Any number of daemons may run on any number of hosts against one buffer: a job's run takes the
job's database lock and claims its due time in sync_heartbeat, so each due time runs once.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import ConfigError
from bufsync.portals.runs import purge_queue
from bufsync.scheduler import heartbeat
from bufsync.scheduler.jobs import registry
from bufsync.state.ledger import now_utc
from bufsync.state.tables import add_state_tables

log = logging.getLogger("bufsync.schedule")
GRACE_SECONDS = 30  # after SIGTERM at the time limit, before SIGKILL


@dataclass
class Child:
    process: subprocess.Popen
    due: datetime
    deadline: float
    terminated_at: float | None = None
    overrun: bool = False


def _spawn(name: str, due: datetime, config: Path | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "bufsync.cli"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["jobs", "run", name, "--due", due.isoformat(), "--trigger", "schedule"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None)


def serve(loaded: LoadedSettings, config: Path | None = None, tick: float = 1.0,
          stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    """`clock` measures the jobs' time limits (the test's to drive)."""
    jobs = registry(loaded)
    if not jobs:
        raise ConfigError("no jobs to schedule: add a `jobs:` section to bufsync.yaml "
                          "(see the README's operations part)")
    tables = add_state_tables(sa.MetaData())
    beats, runs = tables["sync_heartbeat"], tables["sync_runs"]
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    children: dict[str, Child] = {}
    with connect_buffer(loaded) as engine:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            for name, (_, schedule) in jobs.items():  # a new job first runs at its next due time
                heartbeat.ensure(conn, beats, name, heartbeat.naive(schedule.previous_due(now)),
                                 heartbeat.naive(schedule.next_due(now)))
            cutoff = now_utc() - timedelta(days=loaded.settings.retention_days)
            removed = conn.execute(runs.delete().where(runs.c.started_at < cutoff)).rowcount
        has_queue = sa.inspect(engine).has_table("sync_queue")
        purged = purge_queue(engine, loaded.settings.retention_days) if has_queue else 0
        log.info("scheduling %d job(s): %s; %d old run(s) and %d finished queue item(s) removed", len(jobs),
                 ", ".join(f"{n} ({s.text})" for n, (_, s) in jobs.items()), removed or 0, purged)
        while not stop.is_set():
            now = datetime.now(UTC)
            state = heartbeat.rows(engine, beats)
            for name, (job, schedule) in jobs.items():
                if name in children:
                    continue
                due = schedule.previous_due(now)
                last = state.get(name, {}).get("last_due")
                if last is None or last < heartbeat.naive(due):
                    children[name] = Child(_spawn(name, due, config), due, clock() + job.time_limit)
                    log.info("job %s: due %s, started pid %d", name, due.isoformat(), children[name].process.pid)
            _reap(engine, beats, runs, jobs, children, clock)
            stop.wait(tick)
        log.info("stopping: no new jobs; waiting for %d running job(s) to finish their batch", len(children))
        for child in children.values():
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        while children:
            _reap(engine, beats, runs, jobs, children, clock)
            time.sleep(0.2)
    return 0


def _reap(engine: sa.Engine, beats: sa.Table, runs: sa.Table, jobs: dict, children: dict[str, Child],
          clock: Callable[[], float]) -> None:
    for name, child in list(children.items()):
        code = child.process.poll()
        if code is not None:
            del children[name]
            if child.overrun:
                _record_timeout(engine, beats, runs, name, jobs[name][0].time_limit)
            log.info("job %s: finished with exit code %d%s", name, code, " (stopped at its time limit)"
                     if child.overrun else "")
            continue
        now = clock()
        if now > child.deadline and child.terminated_at is None:
            log.warning("job %s: over its time limit of %d s; asking it to stop", name, jobs[name][0].time_limit)
            child.overrun = True
            child.terminated_at = now
            child.process.send_signal(signal.SIGTERM)
        elif child.terminated_at is not None and now > child.terminated_at + GRACE_SECONDS:
            log.error("job %s: still running %d s after SIGTERM; killing it", name, GRACE_SECONDS)
            child.process.kill()


def _record_timeout(engine: sa.Engine, beats: sa.Table, runs: sa.Table, name: str, limit: int) -> None:
    text = f"stopped: over the job's time limit of {limit} s"
    with engine.begin() as conn:
        row = conn.execute(sa.select(beats.c.run_id).where(beats.c.job == name)).first()
        if row is not None and row.run_id is not None:
            conn.execute(runs.update().where(runs.c.id == row.run_id).values(
                outcome="timeout", finished_at=now_utc(), error=text))
        conn.execute(beats.update().where(beats.c.job == name).values(state="timeout", last_error=text))
