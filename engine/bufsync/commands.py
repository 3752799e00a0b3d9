"""One plain function per CLI command (after alembic's command.py): no click in here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

# Each command imports what it needs when it runs: `bufsync --version` and `--help` must not pay for
# SQLAlchemy's engine, alembic, pydantic and httpx (tests/test_cli_startup.py keeps it so).
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from typing import TextIO

    import sqlalchemy as sa

    from bufsync.check import CheckItem
    from bufsync.config import LoadedSettings
    from bufsync.mapping.loader import MappingSet
    from bufsync.report import FileRun, JobResult, PortalRun, RunReport
    from bufsync.scheduler.status import JobStatus
    from bufsync.sqlrender import RenderResult


def load(loaded: LoadedSettings) -> MappingSet:
    from bufsync.mapping.loader import load_mappings
    return load_mappings(loaded.mappings_dir)


def check(loaded: LoadedSettings) -> list[CheckItem]:
    from bufsync.check import run_checks
    return run_checks(loaded, load(loaded))


def sql_render(loaded: LoadedSettings, out_dir: Path, check_only: bool) -> list[RenderResult]:
    from bufsync import migrations
    from bufsync.schema import build_metadata
    from bufsync.sqlrender import render_all
    mappings = load(loaded)
    heads = migrations.head_revisions(loaded, mappings)
    return render_all(build_metadata(mappings), heads, out_dir, check_only)


def db_upgrade(loaded: LoadedSettings, revision: str = "heads", sql: bool = False,
               stdout: TextIO | None = None) -> None:
    from bufsync import migrations
    migrations.upgrade(loaded, load(loaded), revision, sql=sql, stdout=stdout)


def db_downgrade(loaded: LoadedSettings, revision: str, sql: bool = False, stdout: TextIO | None = None) -> None:
    from bufsync import migrations
    migrations.downgrade(loaded, load(loaded), revision, sql=sql, stdout=stdout)


def db_current(loaded: LoadedSettings) -> tuple[list[str], list[str]]:
    """(current revisions of the database, heads of the known migrations)."""
    from bufsync import migrations
    mappings = load(loaded)
    return migrations.current_revisions(loaded), migrations.head_revisions(loaded, mappings)


def db_revision(loaded: LoadedSettings, message: str, autogenerate: bool = True) -> list[Path]:
    from bufsync import migrations
    return migrations.revision(loaded, load(loaded), message, autogenerate=autogenerate)


def mappings_list(loaded: LoadedSettings) -> MappingSet:
    return load(loaded)


def sandbox(port: int, data: Path | None, token: str | None, debug: bool, max_input_vars: int,
            faults: list[str], env_file: Path | None = None, portal_options: dict[str, Any] | None = None) -> None:
    from bufsync.sandbox.faults import parse_fault
    from bufsync.sandbox.moodle.run import serve
    serve(port, data, token, debug, max_input_vars, [parse_fault(f) for f in faults], env_file=env_file,
          portal_options=portal_options or {})


def run(loaded: LoadedSettings, names: list[str], dry_run: bool = False, full: bool = False,
        no_create: bool = False, no_update: bool = False, no_delete: bool = False,
        allow_removals: int | None = None, progress: Callable[[str], None] | None = None) -> RunReport:
    """`bufsync run`: the mappings named (or every runnable one) once, now."""
    from bufsync.reconcile.context import Options
    from bufsync.runner import run as run_sync
    return run_sync(loaded, names, Options(dry_run, full, no_create, no_update, no_delete, allow_removals),
                    progress)


def runs_list(loaded: LoadedSettings, last: int = 20, job: str | None = None) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from bufsync.db import connect_buffer
    from bufsync.state import runs
    from bufsync.state.tables import add_state_tables
    tables = add_state_tables(sa.MetaData())
    with connect_buffer(loaded) as engine:
        return runs.recent(engine, tables["sync_runs"], last, job)


def demo(directory: Path, people: int = 300, echo: Callable[[str], None] = print) -> tuple[RunReport, RunReport]:
    from bufsync.demo import demo as run_demo
    return run_demo(directory, people, echo)


def job_run(loaded: LoadedSettings, name: str, due: datetime | None = None, trigger: str = "manual") -> JobResult:
    from bufsync.scheduler.jobs import run_job
    return run_job(loaded, name, due, trigger)


def schedule(loaded: LoadedSettings, config: Path | None, tick: float = 1.0) -> int:
    from bufsync.scheduler.daemon import serve
    return serve(loaded, config or loaded.file, tick)


def status(loaded: LoadedSettings) -> list[JobStatus]:
    from bufsync.scheduler.status import collect
    return collect(loaded)


def portal_status_lines(loaded: LoadedSettings) -> list[str]:
    """What each portal says of itself in `bufsync status` (a connection's state)."""
    from bufsync.portals import portals
    return [f"portal {portal.title}: {line}" for portal in portals().values()
            if (line := portal.status_line(loaded)) is not None]


def portal_run(loaded: LoadedSettings, name: str) -> PortalRun:
    from bufsync.portals.runs import run_portal
    return run_portal(loaded, name)


def queue_dispatch(loaded: LoadedSettings, portal: str | None, forever: bool) -> PortalRun:
    import signal
    import threading

    from bufsync.portals.runs import only_portal, run_dispatch
    portal = portal or only_portal(loaded)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the batch in hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    return run_dispatch(loaded, portal, until_empty=not forever, stop=stop)


def _queue() -> sa.Table:
    import sqlalchemy as sa

    from bufsync.state.tables import add_state_tables
    return add_state_tables(sa.MetaData())["sync_queue"]


def queue_list(loaded: LoadedSettings, portal: str | None, status: str | None, limit: int = 50
               ) -> list[dict[str, Any]]:
    """Newest items first."""
    from bufsync.db import connect_buffer
    from bufsync.queue import outbox
    with connect_buffer(loaded) as engine:
        return outbox.listing(engine, _queue(), portal, status, limit)


def queue_show(loaded: LoadedSettings, item_id: int) -> dict[str, Any] | None:
    import sqlalchemy as sa

    from bufsync.db import connect_buffer
    table = _queue()
    with connect_buffer(loaded) as engine, engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.id == item_id)).first()
    return dict(row._mapping) if row else None


def queue_retry(loaded: LoadedSettings, ids: list[int] | None, portal: str | None, status: str | None) -> int:
    """How many items went back to pending."""
    from bufsync.db import connect_buffer
    from bufsync.queue import outbox
    with connect_buffer(loaded) as engine:
        return outbox.retry(engine, _queue(), ids, portal, status)


def queue_cancel(loaded: LoadedSettings, ids: list[int] | None, portal: str | None, status: str | None) -> int:
    """How many items were cancelled."""
    from bufsync.db import connect_buffer
    from bufsync.queue import outbox
    with connect_buffer(loaded) as engine:
        return outbox.cancel(engine, _queue(), ids, portal, status)


def queue_purge(loaded: LoadedSettings, days: int | None) -> int:
    """How many finished items were deleted (default: the retention the config gives)."""
    from bufsync.db import connect_buffer
    from bufsync.portals.runs import purge_queue
    with connect_buffer(loaded) as engine:
        return purge_queue(engine, days or loaded.settings.retention_days)


def queue_stats(loaded: LoadedSettings, portal: str | None) -> list[dict[str, Any]]:
    from bufsync.db import connect_buffer
    from bufsync.queue import outbox
    with connect_buffer(loaded) as engine:
        return outbox.stats(engine, _queue(), portal)


def import_file(loaded: LoadedSettings, mapping: str, path: Path, mode: str = "upsert", dry_run: bool = False,
                encoding: str | None = None, allow_removals: int | None = None) -> FileRun:
    from bufsync.files.importing import import_file as load_file
    return load_file(loaded, mapping, path, mode="replace" if mode == "replace" else "upsert", dry_run=dry_run,
                     encoding=encoding, allow_removals=allow_removals)


def export_table(loaded: LoadedSettings, mapping: str, path: Path, since: datetime | None = None,
                 titles: bool = False, encoding: str = "utf-8-sig") -> FileRun:
    from bufsync.files.exporting import export_table as write_table
    return write_table(loaded, mapping, path, since=since, titles=titles, encoding=encoding)
