"""Portal runs as commands and jobs see them: a portal's scenario run, and dispatching its queue.

Each is one row in sync_runs (kind: the portal's name, or `dispatch`) with its counts, like a sync run. What
differs per portal comes from its folder, through the registry (bufsync.portals).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.selectable import NamedFromClause

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.errors import EXIT_UNAVAILABLE, BufsyncError, ConfigError
from bufsync.portals import portal as portal_named
from bufsync.portals import portals
from bufsync.report import PortalRun
from bufsync.state import runs
from bufsync.state.tables import add_state_tables


class PortalBusy(BufsyncError):
    exit_code = EXIT_UNAVAILABLE


def state_tables(engine: sa.Engine, names: tuple[str, ...]) -> dict[str, sa.Table]:
    tables = add_state_tables(sa.MetaData())
    missing = [n for n in names if not sa.inspect(engine).has_table(n)]
    if missing:
        raise ConfigError(f"the buffer has no {', '.join(missing)} table: run `bufsync db upgrade` first")
    return tables


def recorded(loaded: LoadedSettings, kind: str, lock: str | None, needs: tuple[str, ...], options: dict[str, Any],
              work: Callable[[sa.Engine, dict[str, sa.Table], PortalRun], None], job: str | None, trigger: str,
              on_start: Callable[[int], None] | None) -> PortalRun:
    report = PortalRun(kind=kind, portal=options.get("portal", kind))
    with connect_buffer(loaded) as engine:
        tables = state_tables(engine, needs + ("sync_runs",))
        try:
            with dialect_named(engine.dialect.name).lock(engine, lock) if lock else nullcontext(), \
                    runs.recorded(engine, tables["sync_runs"], report, options, job=job, trigger=trigger,
                                  on_start=on_start):
                work(engine, tables, report)
        except LockHeld:
            raise PortalBusy(f"another process runs {kind} for this buffer now; try again when it has finished"
                             ) from None
    return report


def only_portal(loaded: LoadedSettings) -> str:
    """The portal a command or a dispatch job means when none is named: the only one configured (or the only one
    there is)."""
    known = list(portals())
    if len(known) == 1:
        return known[0]
    configured = [name for name, each in portals().items() if each.is_configured(loaded)]
    if len(configured) != 1:
        raise ConfigError(f"name the portal (--portal, or portal: in the dispatch job): one of {', '.join(known)}"
                          + (f"; configured: {', '.join(configured)}" if configured else "; none is configured"))
    return configured[0]


def run_portal(loaded: LoadedSettings, name: str, job: str | None = None, trigger: str = "manual",
               on_start: Callable[[int], None] | None = None) -> PortalRun:
    """What `bufsync <portal> run` and a job of that kind do: the portal's scenario run."""
    return portal_named(name).run(loaded, job=job, trigger=trigger, on_start=on_start)


def run_dispatch(loaded: LoadedSettings, portal: str, *, until_empty: bool = True,
                 stop: threading.Event | None = None, job: str | None = None, trigger: str = "manual",
                 on_start: Callable[[int], None] | None = None) -> PortalRun:
    """What `bufsync queue dispatch` does: deliver the portal's due items (until none is due, or until stopped).

    Any number of dispatchers may run at once, on any hosts: claims never overlap.
    """
    from dataclasses import asdict

    from bufsync.queue.dispatcher import DispatchRefused, dispatch
    chosen = portal_named(portal)
    settings = chosen.configured(loaded)
    handler, close = chosen.handler(loaded)  # bad settings fail here, before anything is recorded

    def work(engine: sa.Engine, tables: dict[str, sa.Table], report: PortalRun) -> None:
        try:
            stats = dispatch(engine, tables["sync_queue"], portal, batch_handler=handler, batch=settings.batch,
                             lease_seconds=settings.lease_seconds, stop=stop, until_empty=until_empty)
        except DispatchRefused as exc:  # a wrong key: what was done before is still counted in sync_runs
            report.counts.update(asdict(exc.stats))
            raise
        # claimed, done, retried, dead, lost_lease; in_doubt, confirmed, resent (items a dead dispatcher left)
        report.counts.update(asdict(stats))
        report.outcome = "rejected" if stats.dead else "ok"

    try:  # no lock: dispatchers never take the same item, so any number may run at once
        return recorded(loaded, "dispatch", None, ("sync_queue",), {"portal": portal, "until_empty": until_empty},
                         work, job, trigger, on_start)
    finally:
        close()


def purge_queue(engine: sa.Engine, days: int) -> int:
    """Finished queue items older than `days`, except those a portal's state rows still wait for.

    Safe for the scenarios: what was sent is kept in their own tables, not in the queue.
    """
    from datetime import timedelta

    from bufsync.queue.outbox import purge
    from bufsync.state.ledger import now_utc
    tables = add_state_tables(sa.MetaData())
    present = set(sa.inspect(engine).get_table_names())
    # pending_keys() selects from state tables, which have names
    keep = [select for each in portals().values() for select in each.pending_keys(tables)
            if all(cast(NamedFromClause, t).name in present for t in select.get_final_froms())]
    return purge(engine, tables["sync_queue"], now_utc() - timedelta(days=days), keep)
