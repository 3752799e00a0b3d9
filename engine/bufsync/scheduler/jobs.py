"""One run of one job, in its own process: the job's lock, the due-time claim, the work, the pulse."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from bufsync.config import JobSettings, LoadedSettings
from bufsync.db import create_buffer_engine
from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.errors import BufsyncError, ConfigError
from bufsync.report import JobResult, Report
from bufsync.scheduler import heartbeat
from bufsync.scheduler.schedules import Schedule, parse
from bufsync.state.tables import add_state_tables


def registry(loaded: LoadedSettings) -> dict[str, tuple[JobSettings, Schedule]]:
    return {name: (job, parse(job.schedule, loaded.settings.timezone)) for name, job in loaded.settings.jobs.items()}


def job_settings(loaded: LoadedSettings, name: str) -> tuple[JobSettings, Schedule]:
    jobs = registry(loaded)
    if name not in jobs:
        known = ", ".join(jobs) or "none (add a `jobs:` section to bufsync.yaml)"
        raise ConfigError(f"unknown job '{name}'; jobs in the config: {known}")
    return jobs[name]


def run_job(loaded: LoadedSettings, name: str, due: datetime | None = None, trigger: str = "manual") -> JobResult:
    """What `bufsync jobs run NAME` does; the daemon starts it as a child process for each due time."""
    from bufsync.portals.runs import only_portal, run_dispatch, run_portal
    from bufsync.reconcile.context import Options
    from bufsync.runner import run as run_sync
    job, schedule = job_settings(loaded, name)
    table = add_state_tables(sa.MetaData())["sync_heartbeat"]
    engine = create_buffer_engine(loaded.buffer_url)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the batch in hand, then stop
    try:
        try:
            with dialect_named(engine.dialect.name).lock(engine, f"job:{name}"):
                next_run = heartbeat.naive(schedule.next_due(datetime.now(UTC)))
                if not heartbeat.claim(engine, table, name, due, next_run):
                    return JobResult(job=name, status="skipped", outcome="skipped",
                                     detail=f"due time {due:%Y-%m-%d %H:%M:%S} already run")
                with heartbeat.Pulse(engine, table, name, loaded.settings.heartbeat_seconds):
                    try:
                        on_start = lambda run_id: heartbeat.set_run(engine, table, name, run_id)  # noqa: E731
                        report: Report
                        if job.kind == "dispatch":
                            report = run_dispatch(loaded, job.portal or only_portal(loaded), until_empty=True,
                                                  stop=stop, job=name, trigger=trigger, on_start=on_start)
                        elif job.kind == "import":
                            from bufsync.files.folder import import_folder
                            report = import_folder(loaded, job, name, trigger, stop, on_start)
                        elif job.kind == "export":
                            from bufsync.files.folder import export_folder
                            report = export_folder(loaded, job, name, trigger)
                        elif job.kind != "sync":  # a portal's scenario run
                            report = run_portal(loaded, job.kind, job=name, trigger=trigger, on_start=on_start)
                        else:
                            options = Options(full=job.full, allow_removals=job.allow_removals, job=name,
                                              trigger=trigger, due=due.isoformat() if due is not None else None,
                                              stop=stop, on_start=on_start)
                            report = run_sync(loaded, job.mappings, options)
                    except BufsyncError as exc:
                        heartbeat.finish(engine, table, name, "failed", str(exc))
                        raise
                    except Exception as exc:
                        heartbeat.finish(engine, table, name, "failed", f"{type(exc).__name__}: {exc}")
                        raise
                state = {"ok": "idle", "rejected": "idle"}.get(report.outcome, report.outcome)
                heartbeat.finish(engine, table, name, state, report.error or report.refused)
                return JobResult(job=name, status="done", outcome=report.outcome, run_id=report.run_id)
        except LockHeld:
            return JobResult(job=name, status="held", outcome="held", detail="another process runs this job now")
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()
