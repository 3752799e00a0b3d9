"""ГИС СЦОС as the core sees it: settings, state tables, its scenario run, its queue handler, check and CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from bufsync.portals import Emulator, Portal

if TYPE_CHECKING:  # imported where used: listing the CLI's commands loads this module and nothing heavy
    import click
    import sqlalchemy as sa

    from bufsync.config import LoadedSettings
    from bufsync.portals.scos.settings import ScosSettings
    from bufsync.report import PortalRun


def client_for(settings: ScosSettings) -> Any:
    from bufsync.portals.scos.client import ScosClient
    assert settings.url is not None and settings.key is not None
    return ScosClient(settings.url, settings.key.get_secret_value(), timeout=settings.timeout)


class ScosPortal(Portal):
    name: ClassVar[str] = "scos"
    title: ClassVar[str] = "ГИС СЦОС"
    required: ClassVar[tuple[str, ...]] = ("url", "key", "partner_id")
    scenario_tables: ClassVar[tuple[str, ...]] = ("sync_scos_courses", "sync_scos_learners", "sync_scos_results",
                                                  "sync_queue")
    # payload key -> column of v_queue_scos; keys starting with "_" are bufsync's own notes, never sent
    view_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("_moodle_course_id", "moodle_course_id"), ("_moodle_user_id", "moodle_user_id"), ("course_id", "course_id"),
        ("user_id", "user_id"), ("session_id", "session_id"), ("checkpoint_id", "checkpoint_id"),
        ("checkpoint_name", "checkpoint_name"), ("rating", "rating"), ("progress", "progress"), ("title", "title"),
        ("business_version", "business_version"), ("status", "new_status"))

    def settings_class(self) -> type[ScosSettings]:
        from bufsync.portals.scos.settings import ScosSettings
        return ScosSettings

    def add_tables(self, metadata: sa.MetaData) -> dict[str, sa.Table]:
        from bufsync.portals.scos import tables
        return tables.add_tables(metadata)

    def pending_keys(self, state: dict[str, sa.Table]) -> list[sa.Select[Any]]:
        import sqlalchemy as sa
        return [sa.select(state[name].c.pending_key).where(state[name].c.pending_key.is_not(None))
                for name in ("sync_scos_courses", "sync_scos_learners")]

    def handler(self, loaded: LoadedSettings) -> tuple[Any, Callable[[], None]]:
        from bufsync.portals.scos.dispatch import ScosHandler
        settings = self.configured(loaded)
        handler = ScosHandler(client_for(settings), settings.partner_id, settings.parallel_calls)
        return handler, handler.close

    def run(self, loaded: LoadedSettings, job: str | None = None, trigger: str = "manual",
            on_start: Callable[[int], None] | None = None) -> PortalRun:
        """The nine scenarios once, queueing what the portal must hear."""
        from bufsync.adapters.moodle.client import MoodleClient
        from bufsync.adapters.moodle.errors import MoodleUnavailable
        from bufsync.errors import ConfigError, UnavailableError
        from bufsync.mapping.loader import load_mappings
        from bufsync.portals.runs import recorded
        from bufsync.portals.scos.scenarios import Scenarios
        from bufsync.schema import build_metadata
        settings = self.configured(loaded)
        moodle = loaded.moodle
        if not moodle.url or moodle.token is None:
            raise ConfigError("BUFSYNC_MOODLE_URL and BUFSYNC_MOODLE_TOKEN (moodle.url, moodle.token) must be set")
        users = build_metadata(load_mappings(loaded.mappings_dir)).tables.get("buf_users")
        if settings.identity == "esia_id" and (users is None or not {"lms_id", "esia_id"} <= set(users.c.keys())):
            raise ConfigError("portals.scos.identity is esia_id, but the mappings have no buf_users table with lms_id "
                              "and esia_id columns; add them or set portals.scos.identity: email")

        url = moodle.url

        def work(engine: sa.Engine, state: dict[str, sa.Table], report: PortalRun) -> None:
            client = MoodleClient.configured(moodle)
            portal = client_for(settings)
            try:
                result = Scenarios(engine, state, client, portal, settings, url,
                                   ZoneInfo(loaded.settings.timezone), users).run()
            except MoodleUnavailable as exc:
                raise UnavailableError(f"Moodle is unavailable: {exc}") from None
            finally:
                report.counts["moodle_calls"] = client.transport.stats.calls
                client.close()
                portal.close()
            report.counts.update(result.counts)
            report.problems = result.problems
            report.outcome = "rejected" if result.problems else "ok"

        return recorded(loaded, self.name, self.name, self.scenario_tables,
                        {"scenarios": settings.scenarios, "identity": settings.identity}, work, job, trigger, on_start)

    def courses(self, loaded: LoadedSettings) -> list[dict[str, Any]]:
        """What `bufsync scos courses` shows: each course's state on the portal and its learners by state."""
        import sqlalchemy as sa

        from bufsync.db import connect_buffer
        from bufsync.portals.runs import state_tables
        with connect_buffer(loaded) as engine:
            state = state_tables(engine, ("sync_scos_courses", "sync_scos_learners"))
            courses, learners = state["sync_scos_courses"], state["sync_scos_learners"]
            with engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(sa.select(courses).order_by(courses.c.course_id))]
                counts = conn.execute(sa.select(learners.c.course_id, learners.c.state, sa.func.count())
                                      .group_by(learners.c.course_id, learners.c.state)).all()
        by_course: dict[int, dict[str, int]] = {}
        for course_id, learner_state, n in counts:
            by_course.setdefault(course_id, {})[learner_state] = n
        for row in rows:
            row["learners"] = by_course.get(row["course_id"], {})
        return rows

    def check(self, loaded: LoadedSettings) -> tuple[bool | None, str]:
        from bufsync.errors import BufsyncError
        from bufsync.portals.scos.client import ScosRejected, ScosUnavailable
        if self.settings(loaded).url is None:
            return None, "not configured (BUFSYNC_SCOS_URL)"
        try:
            settings = self.configured(loaded)
        except BufsyncError as exc:
            return False, str(exc)
        client = client_for(settings)
        try:
            client.check()
            client.find_course(settings.partner_id, "")  # refused unless the portal knows the partner id
        except ScosRejected as exc:
            return False, f"the portal refused: {exc} (check portals.scos.key and portals.scos.partner_id)"
        except ScosUnavailable as exc:
            return False, f"the portal is unavailable: {exc}"
        finally:
            client.close()
        return True, f"{settings.url}: the key and partner {settings.partner_id} are accepted"

    def sandbox_options(self) -> list[click.Option]:
        import click
        return [
            click.Option(["--scos-port"], default=18082, show_default=True,
                         help="Port of the sandbox СЦОС (0: any free port)."),
            click.Option(["--no-scos"], is_flag=True, help="No sandbox СЦОС."),
            click.Option(["--scos-moderation"], default=5.0, show_default=True,
                         help="Seconds a passport stays in moderation."),
            click.Option(["--scos-moderation-polls"], type=click.IntRange(min=0), metavar="N",
                         help="Instead of seconds: a passport answers in_progress to N moderation-status polls, then "
                              "its verdict (what tests use: moderation ends when the client asks again, not when the "
                              "clock says)."),
            click.Option(["--scos-fault", "scos_faults"], multiple=True, metavar="KIND[:RATE[:SECONDS]]",
                         help="Faults of the sandbox СЦОС, as --fault; e.g. --scos-fault latency:1:0.02 for a WAN "
                              "round trip."),
            click.Option(["--scos-validation-status"], type=click.Choice(["400", "422"]), default="400",
                         show_default=True, help="HTTP status of a rejected passport (the public sources do not say "
                                                 "which)."),
            click.Option(["--scos-duplicates-unsaved"], is_flag=True,
                         help="Answer a repeated enrolment with saved:false instead of saved:true.")]

    def sandbox_ports(self, options: dict[str, Any]) -> list[tuple[int, str, str]]:
        if "scos_port" not in options or options.get("no_scos"):
            return []
        return [(int(options["scos_port"]), "sandbox СЦОС", "--scos-port")]

    def start_sandbox(self, options: dict[str, Any], data: Path | None) -> Emulator:
        """The СЦОС beside the sandbox Moodle, as `bufsync scos run` expects to find it."""
        from bufsync.sandbox.faults import Faults, parse_fault
        from bufsync.sandbox.scos.portal import Portal as SandboxPortal
        from bufsync.sandbox.scos.portal import PortalServer, SandboxConfig
        config = SandboxConfig(moderation_seconds=options.get("scos_moderation", 5.0),
                               moderation_polls=options.get("scos_moderation_polls"),
                               validation_status=int(options.get("scos_validation_status") or 400),
                               duplicate_saved=not options.get("scos_duplicates_unsaved"))
        state = data / "scos.json" if data is not None else None
        server = PortalServer(SandboxPortal(config, str(state) if state else None), port=int(options["scos_port"]),
                              faults=Faults([parse_fault(f) for f in options.get("scos_faults") or ()]))
        server.serve_in_thread()
        held = server.portal.config
        return Emulator(server, "СЦОС", {"BUFSYNC_SCOS_URL": f"{server.url}/api/v2", "BUFSYNC_SCOS_KEY": held.key,
                                         "BUFSYNC_SCOS_PARTNER_ID": held.partner_id,
                                         "BUFSYNC_SCOS_INSTITUTION": "sandbox-institution"},
                        str(state) if state else "in memory")

    def cli_group(self) -> click.Group:
        import click

        from bufsync.cli import pass_state
        from bufsync.portals import run_command

        @click.group(self.name)
        def group() -> None:
            """ГИС СЦОС: the nine scenarios that fill the portal's queue."""

        group.add_command(run_command(self, "Publish, poll moderation, update, archive; enrol, unenrol; results, "
                                            "progress, certificates."))

        @group.command("courses")
        @click.option("--json", "as_json", is_flag=True)
        @pass_state
        def courses(state: Any, as_json: bool) -> None:
            """Each course bufsync publishes: its state on the portal, learners by state, the last error."""
            import json
            rows = self.courses(state.loaded)
            if as_json:
                click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
                return
            if not rows:
                click.echo("no courses published to СЦОС")
            for r in rows:
                learners = " ".join(f"{k}={v}" for k, v in sorted(r["learners"].items())) or "-"
                click.echo(f"{r['course_id']:>7} {(r['shortname'] or '')[:20]:<20} {r['state']:<11} "
                           f"v{r['business_version']} {r['scos_id'] or '-':<36} learners: {learners}"
                           + (f"\n        {r['last_error']}" if r["last_error"] else ""))

        return group
