"""Portal runs as commands and jobs see them: the СЦОС scenarios, and dispatching a portal's queue.

Each is one row in sync_runs (kind `scos` or `dispatch`) with its counts, like a sync run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.config import LoadedSettings, ScosSettings
from bufsync.db import connect_buffer
from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.errors import EXIT_UNAVAILABLE, BufsyncError, ConfigError, UnavailableError
from bufsync.state import runs
from bufsync.state.tables import add_state_tables


class PortalBusy(BufsyncError):
    exit_code = EXIT_UNAVAILABLE


@dataclass
class PortalRun:
    kind: str
    run_id: int | None = None
    outcome: str = "ok"
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    refused: str | None = None  # runs of this kind have no guards; kept for the job runner's one shape


def scos_settings(loaded: LoadedSettings) -> ScosSettings:
    scos = loaded.settings.scos
    missing = [name for name in ("url", "key", "partner_id") if getattr(scos, name) is None]
    if missing:
        raise ConfigError(f"{loaded.file or 'bufsync.yaml'}: scos.{missing[0]} is not set; СЦОС needs scos.url, "
                          f"scos.key and scos.partner_id (or BUFSYNC_SCOS_URL, BUFSYNC_SCOS_KEY, "
                          f"BUFSYNC_SCOS_PARTNER_ID)")
    return scos


def scos_client(scos: ScosSettings) -> Any:
    from bufsync.portals.scos.client import ScosClient
    return ScosClient(scos.url, scos.key.get_secret_value(), timeout=scos.timeout)


def _state_tables(engine: sa.Engine, names: tuple[str, ...]) -> dict[str, sa.Table]:
    tables = add_state_tables(sa.MetaData())
    missing = [n for n in names if not sa.inspect(engine).has_table(n)]
    if missing:
        raise ConfigError(f"the buffer has no {', '.join(missing)} table: run `bufsync db upgrade` first")
    return tables


def _recorded(loaded: LoadedSettings, kind: str, lock: str | None, needs: tuple[str, ...], options: dict[str, Any],
              work: Callable[[sa.Engine, dict[str, sa.Table], PortalRun], None], job: str | None, trigger: str,
              on_start: Callable[[int], None] | None) -> PortalRun:
    report = PortalRun(kind)
    started = time.perf_counter()
    with connect_buffer(loaded) as engine:
        tables = _state_tables(engine, needs + ("sync_runs",))
        try:
            with dialect_named(engine.dialect.name).lock(engine, lock) if lock else nullcontext():
                report.run_id = runs.start(engine, tables["sync_runs"], kind, options, False, job=job,
                                           trigger=trigger)
                if on_start is not None:
                    on_start(report.run_id)
                try:
                    work(engine, tables, report)
                except BufsyncError as exc:
                    report.outcome, report.error = "failed", str(exc)
                    raise
                except Exception as exc:
                    report.outcome, report.error = "failed", f"{type(exc).__name__}: {exc}"
                    raise
                finally:
                    report.seconds = time.perf_counter() - started
                    runs.finish(engine, tables["sync_runs"], report.run_id, report.outcome,
                                dict(report.counts), report.error)
        except LockHeld:
            raise PortalBusy(f"another process runs {kind} for this buffer now; try again when it has finished"
                             ) from None
    return report


def run_scos(loaded: LoadedSettings, job: str | None = None, trigger: str = "manual",
             on_start: Callable[[int], None] | None = None) -> PortalRun:
    """What `bufsync scos run` does: the nine scenarios once, queueing what the portal must hear."""
    from bufsync.adapters.moodle.client import MoodleClient
    from bufsync.adapters.moodle.errors import MoodleUnavailable
    from bufsync.mapping.loader import load_mappings
    from bufsync.portals.scos.scenarios import Scenarios
    from bufsync.schema import build_metadata
    scos = scos_settings(loaded)
    moodle = loaded.moodle
    if not moodle.url or moodle.token is None:
        raise ConfigError("BUFSYNC_MOODLE_URL and BUFSYNC_MOODLE_TOKEN (moodle.url, moodle.token) must be set")
    users = build_metadata(load_mappings(loaded.mappings_dir)).tables.get("buf_users")
    if scos.identity == "esia_id" and (users is None or not {"lms_id", "esia_id"} <= set(users.c.keys())):
        raise ConfigError("scos.identity is esia_id, but the mappings have no buf_users table with lms_id and "
                          "esia_id columns; add them or set scos.identity: email")

    def work(engine: sa.Engine, tables: dict[str, sa.Table], report: PortalRun) -> None:
        client = MoodleClient.connect(moodle.url, moodle.token.get_secret_value(), timeout=moodle.timeout,
                                      verify=moodle.verify_tls, max_input_vars=moodle.max_input_vars,
                                      concurrency=moodle.concurrency, batch_items=moodle.batch_items)
        portal = scos_client(scos)
        try:
            result = Scenarios(engine, tables, client, portal, scos, moodle.url, ZoneInfo(loaded.settings.timezone),
                               users).run()
        except MoodleUnavailable as exc:
            raise UnavailableError(f"Moodle is unavailable: {exc}") from None
        finally:
            report.counts["moodle_calls"] = client.transport.stats.calls
            client.close()
            portal.close()
        report.counts.update(result.counts)
        report.problems = result.problems
        report.outcome = "rejected" if result.problems else "ok"

    return _recorded(loaded, "scos", "scos", ("sync_scos_courses", "sync_scos_learners", "sync_scos_results",
                                              "sync_queue"),
                     {"scenarios": scos.scenarios, "identity": scos.identity}, work, job, trigger, on_start)


def handler_for(loaded: LoadedSettings, portal: str) -> tuple[Any, Callable[[], None]]:
    """The batch handler that delivers `portal`'s queue items, and how to close it."""
    if portal == "scos":
        from bufsync.portals.scos.dispatch import ScosHandler
        scos = scos_settings(loaded)
        handler = ScosHandler(scos_client(scos), scos.partner_id, scos.parallel_calls)
        return handler, handler.close
    raise ConfigError(f"no dispatcher for portal '{portal}'; known: scos")


def run_dispatch(loaded: LoadedSettings, portal: str, *, until_empty: bool = True,
                 stop: threading.Event | None = None, job: str | None = None, trigger: str = "manual",
                 on_start: Callable[[int], None] | None = None) -> PortalRun:
    """What `bufsync queue dispatch` does: deliver the portal's due items (until none is due, or until stopped).

    Any number of dispatchers may run at once, on any hosts: claims never overlap.
    """
    from dataclasses import asdict

    from bufsync.queue.dispatcher import DispatchRefused, dispatch
    settings = loaded.settings.scos
    handler, close = handler_for(loaded, portal)  # bad settings fail here, before anything is recorded

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
        return _recorded(loaded, "dispatch", None, ("sync_queue",), {"portal": portal, "until_empty": until_empty},
                         work, job, trigger, on_start)
    finally:
        close()


def scos_courses(loaded: LoadedSettings) -> list[dict[str, Any]]:
    """What `bufsync scos courses` shows: each course's state on the portal and its learners by state."""
    with connect_buffer(loaded) as engine:
        tables = _state_tables(engine, ("sync_scos_courses", "sync_scos_learners"))
        courses, learners = tables["sync_scos_courses"], tables["sync_scos_learners"]
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(courses).order_by(courses.c.course_id))]
            counts = conn.execute(sa.select(learners.c.course_id, learners.c.state, sa.func.count())
                                  .group_by(learners.c.course_id, learners.c.state)).all()
    by_course: dict[int, dict[str, int]] = {}
    for course_id, state, n in counts:
        by_course.setdefault(course_id, {})[state] = n
    for row in rows:
        row["learners"] = by_course.get(row["course_id"], {})
    return rows


def purge_queue(engine: sa.Engine, days: int) -> int:
    """Finished queue items older than `days`, except those a portal's state rows still wait for.

    Safe for the scenarios: what was sent is kept in their own tables, not in the queue.
    """
    from datetime import timedelta

    from bufsync.queue.outbox import purge
    from bufsync.state.ledger import now_utc
    tables = add_state_tables(sa.MetaData())
    keep = [sa.select(tables[name].c.pending_key).where(tables[name].c.pending_key.is_not(None))
            for name in ("sync_scos_courses", "sync_scos_learners") if sa.inspect(engine).has_table(name)]
    return purge(engine, tables["sync_queue"], now_utc() - timedelta(days=days), keep)
