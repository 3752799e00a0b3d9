"""`bufsync run`: the mappings in dependency order, under one lock per buffer, recorded in sync_runs."""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import entity_adapters
from bufsync.adapters.moodle.errors import MoodleConfigError, MoodleError, MoodleUnavailable
from bufsync.adapters.moodle.rules import PasswordPolicy
from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.errors import EXIT_UNAVAILABLE, BufsyncError, ConfigError, Problem
from bufsync.mapping.loader import MappingSet, load_mappings
from bufsync.mapping.model import Mapping
from bufsync.reconcile import sequence
from bufsync.reconcile.context import Context, Interrupted, Options
from bufsync.reconcile.guards import GuardRefused
from bufsync.report import MappingReport, RunReport
from bufsync.schema import build_metadata
from bufsync.state import runs
from bufsync.state.ledger import Ledger

log = logging.getLogger("bufsync.run")
LOCK_NAME = "run"


class RunBusy(BufsyncError):
    exit_code = EXIT_UNAVAILABLE


def select_mappings(mappings: MappingSet, names: list[str]) -> tuple[list[Mapping], dict[str, str]]:
    """Syncs with Moodle that this version can execute (buffer -> Moodle by an entity's adapter, Moodle ->
    buffer by an entity that reads); with names, exactly those."""
    adapters = entity_adapters()
    skipped: dict[str, str] = {}
    chosen = []
    for mapping in mappings:
        sync = mapping.sync
        if sync is None or (names and mapping.name not in names):
            continue
        entity = sync.remote.entity
        if sync.remote.system != "moodle":
            reason = f"{sync.source.system} -> {sync.target.system} flows are run by their own jobs"
        elif entity not in adapters:
            reason = f"no Moodle adapter for entity '{entity}' in this version"
        elif not sync.inbound and not callable(getattr(adapters[entity], "read", None)):
            reason = f"the Moodle adapter for entity '{entity}' does not read it back in this version"
        else:
            chosen.append(mapping)
            continue
        if names:
            raise ConfigError(f"mapping '{mapping.name}' cannot be run: {reason}")
        skipped[mapping.name] = reason
    unknown = [n for n in names if n not in mappings]
    if unknown:
        raise ConfigError(f"unknown mapping(s): {', '.join(unknown)}; known: {', '.join(mappings.order)}")
    return chosen, skipped


def run(loaded: LoadedSettings, names: list[str], options: Options, progress: Any = None) -> RunReport:
    started = time.perf_counter()
    mappings = load_mappings(loaded.mappings_dir)
    chosen, skipped = select_mappings(mappings, names)
    metadata = build_metadata(mappings)
    report = RunReport(dry_run=options.dry_run)
    moodle = loaded.moodle
    if not moodle.url or moodle.token is None:
        raise ConfigError("BUFSYNC_MOODLE_URL and BUFSYNC_MOODLE_TOKEN (moodle.url, moodle.token) must be set to run")
    with connect_buffer(loaded) as engine:
        inspector = sa.inspect(engine)
        missing_tables = [t for t in ("sync_ledger", "sync_runs") if not inspector.has_table(t)]
        if missing_tables:
            raise ConfigError(f"the buffer has no {', '.join(missing_tables)} table: run `bufsync db upgrade` first")
        dialect = dialect_named(engine.dialect.name)
        try:
            with dialect.lock(engine, LOCK_NAME):
                return _locked(loaded, engine, mappings, metadata, chosen, skipped, options, report,
                               started, progress)
        except LockHeld:
            raise RunBusy("another bufsync run holds this buffer's lock; it runs one at a time — try again "
                          "when it has finished") from None


def _locked(loaded: LoadedSettings, engine: sa.Engine, mappings: MappingSet,
            metadata: sa.MetaData, chosen: list[Mapping], skipped: dict[str, str], options: Options,
            report: RunReport, started: float, progress: Any) -> RunReport:
    """loaded.moodle's URL and token: checked by run()."""
    runs_table = metadata.tables["sync_runs"]
    run_id = report.run_id = runs.start(engine, runs_table, "sync",
                                        options.record() | {"mappings": [m.name for m in chosen]},
                                        options.dry_run, job=options.job, trigger=options.trigger)
    if options.on_start is not None:
        options.on_start(run_id)
    moodle = loaded.moodle
    client = MoodleClient.configured(moodle, password_policy=PasswordPolicy() if moodle.password_policy else None)
    adapters: dict[str, Any] = {}
    classes = entity_adapters()

    def adapter_for(mapping: Mapping) -> Any:
        if mapping.name not in adapters:
            entity = mapping.flow.remote.entity
            assert entity is not None  # the remote side of a sync is a moodle endpoint, which names its entity
            adapters[mapping.name] = classes[entity](client, mapping, moodle)
        return adapters[mapping.name]

    ctx = Context(engine, mappings, {t.name: t for t in metadata.tables.values()},
                  Ledger(metadata.tables["sync_ledger"]), loaded.settings.timezone, adapter_for, options)
    try:
        client.check_access_first()
        sequence.sync_mappings(ctx, chosen, report, lambda: client.transport.stats.calls, progress)
        for name, reason in skipped.items():
            report.mappings.append(MappingReport(name, note=f"not run: {reason}"))
        report.outcome = "rejected" if report.rejected else "ok"
    except GuardRefused as refused:
        report.outcome = "refused"
        report.refused = str(refused)
        _close(engine, runs_table, run_id, report, client, started)
        raise
    except (MoodleUnavailable, MoodleError, MoodleConfigError) as exc:
        # a refused token, service or endpoint is the administrator's to fix (exit 2); an unreachable or
        # failing Moodle is worth another run later (exit 4); any other Moodle error is unexpected
        access = exc if isinstance(exc, MoodleError) and exc.is_access_error else None
        text = access.fix() if access is not None else str(exc)
        report.outcome = "failed"
        report.error = f"Moodle: {text}"
        _close(engine, runs_table, run_id, report, client, started)
        if isinstance(exc, MoodleConfigError) or (access is not None and access.is_config_error):
            raise ConfigError(Problem(None, "moodle.url" if isinstance(exc, MoodleConfigError) else "moodle.token",
                                      text)) from None
        if isinstance(exc, MoodleError) and not exc.is_unavailable:
            raise
        raise RunBusy(f"Moodle is unavailable: {text}; nothing was marked ok that did not happen") from None
    except Interrupted as exc:
        report.outcome = "interrupted"
        report.error = str(exc)
        _close(engine, runs_table, run_id, report, client, started)
        return report
    except BaseException as exc:
        report.outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        report.error = f"{type(exc).__name__}: {exc}"
        _close(engine, runs_table, run_id, report, client, started)
        raise
    _close(engine, runs_table, run_id, report, client, started)
    return report


def _close(engine: sa.Engine, table: sa.Table, run_id: int, report: RunReport, client: MoodleClient,
           started: float) -> None:
    report.seconds = time.perf_counter() - started
    report.moodle_calls = client.transport.stats.calls
    client.close()
    try:
        runs.finish(engine, table, run_id, report.outcome, report.stored_counts(), report.refused or report.error)
    except sa.exc.SQLAlchemyError as exc:  # the report still reaches the user
        log.error("could not record the run's end in sync_runs: %s", exc)
