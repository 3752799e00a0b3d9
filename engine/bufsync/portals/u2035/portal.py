"""Университет 2035 as the core sees it: settings, state tables, the footprint run, the queue handler, the check,
the sandbox (an LRS and an S3 store) and its commands: connect, status, disable, run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bufsync.portals import Emulator, Portal

if TYPE_CHECKING:  # imported where used: listing the CLI's commands loads this module and nothing heavy
    import click
    import sqlalchemy as sa

    from bufsync.config import LoadedSettings
    from bufsync.portals.u2035.settings import U2035Settings
    from bufsync.report import PortalRun

TABLES = ("sync_u2035_connection", "sync_u2035_statements", "sync_u2035_files")


class U2035Portal(Portal):
    name: ClassVar[str] = "u2035"
    title: ClassVar[str] = "Университет 2035"
    required: ClassVar[tuple[str, ...]] = ("lrs_url", "key", "secret")
    scenario_tables: ClassVar[tuple[str, ...]] = TABLES + ("sync_queue",)
    view_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("fact_key", "fact_key"), ("statement_id", "statement_id"), ("unti_id", "unti_id"), ("verb", "verb"),
        ("course_id", "moodle_course_id"), ("user_id", "moodle_user_id"))

    def settings_class(self) -> type[U2035Settings]:
        from bufsync.portals.u2035.settings import U2035Settings
        return U2035Settings

    def add_tables(self, metadata: sa.MetaData) -> dict[str, sa.Table]:
        from bufsync.portals.u2035 import tables
        return tables.add_tables(metadata)

    def pending_keys(self, state: dict[str, sa.Table]) -> list[sa.Select[Any]]:
        import sqlalchemy as sa
        t = state["sync_u2035_statements"]
        return [sa.select(t.c.pending_key).where(t.c.pending_key.is_not(None))]

    def handler(self, loaded: LoadedSettings) -> tuple[Any, Callable[[], None]]:
        import sqlalchemy as sa

        from bufsync.adapters.moodle.client import MoodleClient
        from bufsync.db import create_buffer_engine
        from bufsync.portals.u2035 import connection
        from bufsync.portals.u2035.dispatch import U2035Handler
        from bufsync.state.tables import add_state_tables
        settings = self.configured(loaded)
        engine = create_buffer_engine(loaded.buffer_url)
        tables = add_state_tables(sa.MetaData())
        lrs = connection.lrs_for(settings)
        clients: list[Any] = []

        def moodle() -> Any:
            if not clients:
                clients.append(MoodleClient.configured(loaded.moodle))
            return clients[0]

        def blocked() -> str | None:
            return connection.frozen_problem(settings, connection.read(engine, tables["sync_u2035_connection"]))

        store = connection.store_for(settings) if settings.s3_endpoint else None
        handler = U2035Handler(settings, engine, tables, lrs, store, moodle, blocked)

        def close() -> None:
            handler.close()
            for client in clients:
                client.close()
            engine.dispose()
        return handler, close

    def run(self, loaded: LoadedSettings, job: str | None = None, trigger: str = "manual",
            on_start: Callable[[int], None] | None = None) -> PortalRun:
        """The footprint once: facts read from Moodle, new and changed ones queued as statements."""
        from bufsync.adapters.moodle.client import MoodleClient
        from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable
        from bufsync.errors import ConfigError, Problem, UnavailableError
        from bufsync.portals.runs import recorded
        from bufsync.portals.u2035.connection import section
        settings = section(loaded)

        def work(engine: sa.Engine, state: dict[str, sa.Table], report: PortalRun) -> None:
            from bufsync.portals.u2035.scenario import run_footprint
            client = MoodleClient.configured(loaded.moodle)
            try:
                result = run_footprint(engine, state, loaded, settings, client, unti_ids(loaded, engine, settings),
                                       managed_courses(loaded, engine))
            except MoodleUnavailable as exc:
                raise UnavailableError(f"Moodle is unavailable: {exc}") from None
            except MoodleError as exc:
                if exc.is_config_error:
                    raise ConfigError(Problem(None, "moodle.token", exc.fix())) from None
                if exc.is_access_error:
                    raise UnavailableError(f"Moodle is unavailable: {exc.fix()}") from None
                raise
            finally:
                report.counts["moodle_calls"] = client.transport.stats.calls
                client.close()
            report.counts.update(result.counts)
            report.problems = result.problems
            report.outcome = "ok"

        return recorded(loaded, self.name, self.name, self.scenario_tables,
                        {"facts": settings.facts, "courses": settings.courses}, work, job, trigger, on_start)

    def check(self, loaded: LoadedSettings) -> tuple[bool | None, str]:
        """The connection's status and, once active, the production LRS and S3 tried (nothing is written to the
        LRS: a GET; S3: the small object written and deleted)."""
        from bufsync.errors import BufsyncError
        from bufsync.portals.u2035 import connection
        settings = connection.section(loaded)
        try:
            state = connection.status(loaded)
        except BufsyncError as exc:
            return False, str(exc)
        if state.status == connection.NOT_STARTED:
            return None, "not connected (bufsync u2035 connect)"
        if state.active and connection.frozen_problem(settings, state) is not None:
            return False, connection.describe(settings, state)
        if not state.active:
            return (None if state.status != connection.DATA_ERROR else False), \
                f"«{state.text}»" + (f": {state.last_error}" if state.last_error else "")
        from bufsync.portals.u2035.lrs import LrsError
        with connection.lrs_for(settings) as lrs:
            try:
                lrs.recent(limit=1)
            except LrsError as exc:  # refused, unavailable, or an address that leads to no LRS (404)
                return False, f"«{state.text}», but the LRS {settings.lrs_url}: {exc}"
        s3 = connection.check_s3(settings)
        if s3 is not None:
            return False, f"«{state.text}», but {s3}"
        return True, f"«{state.text}»: LRS {settings.lrs_url} and S3 {settings.s3_endpoint}/{settings.s3_bucket} answer"

    def status_line(self, loaded: LoadedSettings) -> str | None:
        """What `bufsync status` says of it: the connection's status, «Не выполнен» included, for a site that has a
        `portals.u2035` section or began a connection (a site that never touched the portal hears nothing of it)."""
        from bufsync.errors import BufsyncError
        from bufsync.portals.u2035 import connection
        settings = connection.section(loaded)
        try:
            state = connection.status(loaded)
        except BufsyncError:
            return None
        if state.status == connection.NOT_STARTED and not settings.model_fields_set:
            return None
        return connection.describe(settings, state)

    def sandbox_options(self) -> list[click.Option]:
        import click
        return [
            click.Option(["--lrs-port"], default=18084, show_default=True,
                         help="Port of the sandbox LRS of Университет 2035 (0: any free port)."),
            click.Option(["--s3-port"], default=18085, show_default=True,
                         help="Port of the sandbox S3 store of Университет 2035 (0: any free port)."),
            click.Option(["--no-u2035"], is_flag=True, help="No sandbox LRS and S3."),
        ]

    def sandbox_ports(self, options: dict[str, Any]) -> list[tuple[int, str, str]]:
        if "lrs_port" not in options or options.get("no_u2035"):
            return []
        return [(int(options["lrs_port"]), "sandbox LRS", "--lrs-port"),
                (int(options.get("s3_port") or 0), "sandbox S3", "--s3-port")]

    def start_sandbox(self, options: dict[str, Any], data: Path | None) -> Emulator:
        from bufsync.portals.u2035.sandbox import start_both
        return start_both(options, data)

    def cli_group(self) -> click.Group:
        from bufsync.portals.u2035.commands import group
        return group(self)


def unti_ids(loaded: LoadedSettings, engine: sa.Engine, settings: U2035Settings) -> dict[str, str]:
    """buf_users: external_id (the Moodle idnumber) -> unti_id, for actor.source: buffer."""
    import sqlalchemy as sa

    from bufsync.errors import ConfigError
    from bufsync.mapping.loader import load_mappings
    from bufsync.schema import build_metadata
    if settings.actor.source != "buffer":
        return {}
    users = build_metadata(load_mappings(loaded.mappings_dir)).tables.get("buf_users")
    if users is None or not {"external_id", "unti_id"} <= set(users.c.keys()):
        raise ConfigError("portals.u2035.actor.source is buffer, but the mappings have no buf_users table with "
                          "external_id and unti_id columns; add them or set portals.u2035.actor.source: profile_field")
    with engine.connect() as conn:
        return {str(e): str(u).strip() for e, u in conn.execute(
            sa.select(users.c.external_id, users.c.unti_id).where(users.c.unti_id.is_not(None))) if str(u).strip()}


def managed_courses(loaded: LoadedSettings, engine: sa.Engine) -> set[int]:
    """The Moodle ids of the courses the inbound course mappings linked (the ledger, as a grade reader's scope)."""
    import sqlalchemy as sa

    from bufsync.mapping.loader import load_mappings
    from bufsync.state.ledger import Ledger
    from bufsync.state.tables import add_state_tables
    names = [m.name for m in load_mappings(loaded.mappings_dir).synced()
             if m.flow.inbound and m.flow.target.entity == "course"]
    table = add_state_tables(sa.MetaData())["sync_ledger"]
    if not names or not sa.inspect(engine).has_table(table.name):
        return set()
    ledger = Ledger(table)
    with engine.connect() as conn:
        return {int(remote) for name in names for remote in ledger.remote_ids(conn, name).values()}
