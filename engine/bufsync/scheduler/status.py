"""`bufsync status`: each job's state, lag and last error; unhealthy when late, failing or stale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.scheduler import heartbeat
from bufsync.scheduler.jobs import registry
from bufsync.state import runs as run_rows
from bufsync.state.tables import add_state_tables

FAILED = ("failed", "refused", "timeout", "interrupted", "died")


@dataclass
class JobStatus:
    job: str
    schedule: str
    state: str
    last_run: str | None
    last_outcome: str | None
    next_run: datetime
    lag_seconds: int | None  # None: the job never ran (no due time claimed, no run), so nothing lags yet
    problem: str | None
    last_error: str | None


def collect(loaded: LoadedSettings) -> list[JobStatus]:
    jobs = registry(loaded)
    tables = add_state_tables(sa.MetaData())
    beats, runs = tables["sync_heartbeat"], tables["sync_runs"]
    now = datetime.now(UTC)
    out = []
    with connect_buffer(loaded) as engine:
        run_rows.reap(engine, runs)  # a killed job's run would otherwise say `running` forever
        state = heartbeat.rows(engine, beats)
        with engine.connect() as conn:
            for name, (_job, schedule) in jobs.items():
                row = state.get(name, {})
                last = conn.execute(sa.select(runs.c.started_at, runs.c.outcome, runs.c.error).where(
                    runs.c.job == name).order_by(runs.c.id.desc()).limit(1)).first()
                due = heartbeat.naive(schedule.previous_due(now))
                claimed = row.get("last_due")
                if claimed is None and last is None:
                    lag = None  # a time since the last due time would read as a huge lag on a new job
                else:
                    lag = (0 if claimed is not None and claimed >= due
                           else int((heartbeat.naive(now) - due).total_seconds()))
                problem = None
                beat = row.get("last_beat")
                if row.get("state") == "running" and beat is not None and \
                        (heartbeat.naive(now) - beat).total_seconds() > 3 * loaded.settings.heartbeat_seconds + 5:
                    problem = f"stale: no heartbeat for {int((heartbeat.naive(now) - beat).total_seconds())} s"
                elif not row:
                    problem = "never scheduled: is `bufsync schedule` running?"
                elif lag is not None and lag > loaded.settings.late_after:
                    problem = f"late by {lag} s"
                elif last is not None and last.outcome in FAILED:
                    problem = f"last run {last.outcome}"
                out.append(JobStatus(name, schedule.text, row.get("state", "unknown"),
                                     last.started_at.isoformat(sep=" ") if last else None,
                                     last.outcome if last else None, schedule.next_due(now), lag, problem,
                                     row.get("last_error") or (last.error if last else None)))
    return out
