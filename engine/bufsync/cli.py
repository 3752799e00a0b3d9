"""The `bufsync` command line: parse, call one function in commands.py, set the exit code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bufsync import __version__, commands
from bufsync.errors import EXIT_REJECTED, BufsyncError, ConfigError
from bufsync.log import setup_logging

if TYPE_CHECKING:  # config imports pydantic and SQLAlchemy: only commands that read it pay for them
    from datetime import datetime

    from bufsync.config import LoadedSettings


class _Group(click.Group):
    """Reports bufsync's own errors as one clear message and their exit code, no traceback.

    With `--log-format json` (or `log_format: json`) a fatal error is one JSON line on stderr too, so a
    log collector that parses every line never meets a bare text line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_portal_groups()) | {"sandbox"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """A portal's own commands (`bufsync scos ...`), and `sandbox` with each portal's options, come from the
        portals' folders, loaded only when asked for."""
        command = super().get_command(ctx, name)
        if command is None and name == "sandbox":
            return _sandbox_command()
        return command if command is not None else _portal_groups().get(name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BufsyncError as exc:
            if _log_format(ctx) == "json":
                problems = [p.render() for p in exc.problems] if isinstance(exc, ConfigError) else []
                message = f"configuration error: {'; '.join(problems)}" if problems else str(exc)
                _json_fatal(message, exc.exit_code, problems=problems)
            elif isinstance(exc, ConfigError):
                click.echo("bufsync: configuration error:", err=True)
                for problem in exc.problems:
                    click.echo(f"  {problem.render()}", err=True)
            else:
                click.echo(f"bufsync: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug: JSON with the traceback when asked for, else Python's own report
            if _log_format(ctx) != "json":
                raise
            import traceback

            from bufsync.secrets import redact
            _json_fatal(redact(f"{type(exc).__name__}: {exc}"), 1,
                        exception=redact("".join(traceback.format_exception(exc))))
            ctx.exit(1)


def _portal_groups() -> dict[str, click.Command]:
    from bufsync.portals import portals
    groups = {name: portal.cli_group() for name, portal in portals().items()}
    return {name: group for name, group in groups.items() if group is not None}


def _log_format(ctx: click.Context) -> str:
    """--log-format, else the loaded config's log_format, else BUFSYNC_LOG_FORMAT (the config may be what failed)."""
    import os
    state = ctx.find_object(_State)
    if state is not None and state.log_format:
        return state.log_format
    if state is not None and state._loaded is not None:
        return state._loaded.settings.log_format
    return os.environ.get("BUFSYNC_LOG_FORMAT", "text")


def _json_fatal(message: str, exit_code: int, **extra: object) -> None:
    import json
    from datetime import UTC, datetime
    entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": "critical",
             "logger": "bufsync", "message": message, "exit_code": exit_code}
    entry.update({k: v for k, v in extra.items() if v})
    click.echo(json.dumps(entry, ensure_ascii=False, default=str), err=True)


class _State:
    def __init__(self, config: Path | None, log_format: str | None) -> None:
        self.config_path = config
        self.log_format = log_format
        self._loaded: LoadedSettings | None = None

    @property
    def loaded(self) -> LoadedSettings:
        if self._loaded is None:
            from bufsync.config import load_settings
            self._loaded = load_settings(self.config_path)
            setup_logging(self.log_format or self._loaded.settings.log_format)
        return self._loaded


pass_state = click.make_pass_decorator(_State)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: $BUFSYNC_CONFIG, else ./bufsync.yaml if present).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log line format (stderr).")
@click.version_option(__version__, prog_name="bufsync")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_format: str | None) -> None:
    """bufsync: 1C buffer tables <-> Moodle and the state portals.

    Exit codes: 0 ok, 1 finished with rejected rows (or a check found a difference),
    2 bad configuration or usage, 3 refused by a guard, 4 a remote unavailable.
    """
    ctx.obj = _State(config, log_format)


@cli.command()
@pass_state
def check(state: _State) -> None:
    """Validate config and mappings and try each connection."""
    items = commands.check(state.loaded)
    failed = False
    for item in items:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[item.ok]
        click.echo(f"{mark}  {item.name:<10} {item.detail}")
        failed |= item.ok is False
    if failed:
        sys.exit(EXIT_REJECTED)


@cli.command("mappings")
@pass_state
def mappings_cmd(state: _State) -> None:
    """List the mappings in the order a run takes them."""
    ms = commands.mappings_list(state.loaded)
    for mapping in ms:
        role = "table only"
        if mapping.sync:
            s = mapping.sync
            src = s.source.entity or mapping.table.name
            dst = s.target.entity or mapping.table.name
            role = f"{s.source.system}:{src} -> {s.target.system}:{dst}, on_missing={s.on_missing}"
        elif mapping.attach:
            role = f"attached to {mapping.attach.mapping} as {mapping.attach.into}"
        elif mapping.load_markers:
            role = "load markers"
        click.echo(f"{mapping.name:<20} {mapping.table.name:<24} {role}")


@cli.group()
def sql() -> None:
    """DDL scripts for DBAs (sql/*.sql)."""


@sql.command("render")
@click.option("--dir", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("sql"),
              show_default=True, help="Folder of the scripts.")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if a file differs.")
@pass_state
def sql_render(state: _State, out_dir: Path, check_only: bool) -> None:
    """Render sql/postgresql.sql, sql/mssql.sql and sql/sqlite.sql from the mappings."""
    results = commands.sql_render(state.loaded, out_dir, check_only)
    changed = [r for r in results if r.changed]
    for result in results:
        if not result.changed:
            click.echo(f"up to date  {result.path}")
        elif check_only:
            click.echo(f"DIFFERS     {result.path}")
            click.echo(result.diff, nl=False)
        else:
            click.echo(f"written     {result.path}")
    if check_only and changed:
        click.echo("run `bufsync sql render` and commit the result", err=True)
        sys.exit(EXIT_REJECTED)


@cli.group()
def db() -> None:
    """Migrations of the buffer and engine tables (alembic)."""


@db.command("upgrade")
@click.argument("revision", default="heads")
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_state
def db_upgrade(state: _State, revision: str, as_sql: bool) -> None:
    """Create or upgrade the tables to REVISION (default: the newest)."""
    commands.db_upgrade(state.loaded, revision, sql=as_sql)
    if not as_sql:
        current, _ = commands.db_current(state.loaded)
        click.echo(f"database at {', '.join(current) or 'base'} ({state.loaded.buffer_url_display})")


@db.command("downgrade")
@click.argument("revision")
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_state
def db_downgrade(state: _State, revision: str, as_sql: bool) -> None:
    """Downgrade to REVISION (`base` drops every bufsync table: data is lost)."""
    commands.db_downgrade(state.loaded, revision, sql=as_sql)
    if not as_sql:
        current, _ = commands.db_current(state.loaded)
        click.echo(f"database at {', '.join(current) or 'base'} ({state.loaded.buffer_url_display})")


@db.command("current")
@pass_state
def db_current(state: _State) -> None:
    """Show the database's revision and the newest known one."""
    current, heads = commands.db_current(state.loaded)
    click.echo(f"database: {', '.join(current) or 'base (no bufsync tables)'}")
    click.echo(f"head:     {', '.join(heads)}")
    if sorted(current) != sorted(heads):
        click.echo("the database is behind; run `bufsync db upgrade`")
        sys.exit(EXIT_REJECTED)


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the revision changes.")
@click.option("--empty", is_flag=True, help="An empty revision to fill by hand (no autogenerate).")
@pass_state
def db_revision(state: _State, message: str, empty: bool) -> None:
    """Write a migration for a site's edited mappings into migrations_dir."""
    for path in commands.db_revision(state.loaded, message, autogenerate=not empty):
        click.echo(f"written {path}")


@cli.command("run")
@click.argument("mappings", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing anywhere.")
@click.option("--full", is_flag=True, help="Also read Moodle to find and repair drift; retry failed rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-create", is_flag=True, help="Create nothing.")
@click.option("--no-update", is_flag=True, help="Update nothing.")
@click.option("--no-delete", is_flag=True, help="Suspend or delete nothing.")
@click.option("--allow-removals", type=int, metavar="N",
              help="Allow up to N suspensions/removals above the guards (logged in the run).")
@pass_state
def run_cmd(state: _State, mappings: tuple[str, ...], dry_run: bool, full: bool, as_json: bool, no_create: bool,
            no_update: bool, no_delete: bool, allow_removals: int | None) -> None:
    """Synchronise the buffer with Moodle (all runnable mappings, or the ones named)."""
    loaded = state.loaded
    if sys.stderr.isatty() and not as_json and state.log_format != "json":
        from rich.console import Console
        with Console(stderr=True).status("starting") as status:  # a live line on a terminal
            report = commands.run(loaded, list(mappings), dry_run, full, no_create, no_update, no_delete,
                                  allow_removals, lambda text: status.update(text))
    else:  # plain log lines for cron, systemd and pipes
        report = commands.run(loaded, list(mappings), dry_run, full, no_create, no_update, no_delete,
                              allow_removals, None if as_json else logging.getLogger("bufsync.run").info)
    click.echo(report.to_json() if as_json else report.render())
    sys.exit(report.exit_code)


@cli.command("import")
@click.argument("mapping")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--mode", type=click.Choice(["upsert", "replace"]), default="upsert", show_default=True,
              help="upsert: add and change rows; replace: the file is the whole list (rows it leaves out go).")
@click.option("--dry-run", is_flag=True, help="Check the file and count what would change; write nothing.")
@click.option("--encoding", help="Force the CSV's encoding (utf-8, cp1251); default: found from the file.")
@click.option("--allow-removals", type=int, metavar="N",
              help="With replace: allow up to N rows to go above the guards.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def import_cmd(state: _State, mapping: str, file: Path, mode: str, dry_run: bool, encoding: str | None,
               allow_removals: int | None, as_json: bool) -> None:
    """Load a CSV or .xlsx FILE into MAPPING's buffer table (headed by column names or titles)."""
    report = commands.import_file(state.loaded, mapping, file, mode, dry_run, encoding, allow_removals)
    click.echo(report.to_json() if as_json else report.render())
    sys.exit(report.exit_code)


@cli.command("export")
@click.argument("mapping")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y",
                                               "%d.%m.%Y %H:%M:%S"]),
              help="Only rows changed since this time (UTC, as the engine stamps them).")
@click.option("--titles", is_flag=True, help="Head the columns with their Russian titles.")
@click.option("--encoding", type=click.Choice(["utf-8-sig", "cp1251"]), default="utf-8-sig", show_default=True,
              help="CSV encoding: UTF-8 with BOM, or cp1251 for an older Excel.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def export_cmd(state: _State, mapping: str, file: Path, since: datetime | None, titles: bool, encoding: str,
               as_json: bool) -> None:
    """Write MAPPING's buffer table to a CSV or .xlsx FILE that Russian Excel opens right."""
    report = commands.export_table(state.loaded, mapping, file, since, titles, encoding)
    click.echo(report.to_json() if as_json else report.render())
    sys.exit(report.exit_code)


@cli.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Where the demo's SQLite buffer (bufsync.db) is created.")
@click.option("--people", default=300, show_default=True, help="How many people 1C sends.")
def demo(directory: Path, people: int) -> None:
    """The main job in a minute: a 1C-like buffer, the sandbox Moodle, two syncs and their reports."""
    setup_logging("text", logging.WARNING)
    commands.demo(directory, people, click.echo)


@cli.command("runs")
@click.option("--last", default=20, show_default=True, help="How many runs.")
@click.option("--job", help="Only this job's runs.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@pass_state
def runs_cmd(state: _State, last: int, job: str | None, as_json: bool) -> None:
    """List recent runs (sync_runs)."""
    import json
    rows = commands.runs_list(state.loaded, last, job)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    if not rows:
        click.echo("no runs" + (f" of job {job}" if job else ""))
        return
    from bufsync.report import COLUMNS
    shown = [c for c in COLUMNS if c != "unchanged"]
    for row in rows:
        counts = row["counts"] or {}
        per_mapping = [v for v in counts.values() if isinstance(v, dict)]
        if per_mapping:  # a sync: its mappings' counts added up, and the Moodle calls they made
            total = {k: sum(v.get(k, 0) for v in per_mapping) for k in shown + ["moodle_calls"]}
        else:  # a dispatch or a portal run: flat counts
            total = {k: v for k, v in counts.items() if isinstance(v, int)}
        summary = " ".join(f"{k}={v}" for k, v in total.items() if v)
        click.echo(f"{row['id']:>5}  {row['started_at']}  {row['kind'] or '-':<8} {row['outcome']:<11} "
                   f"{'dry-run ' if row['dry_run'] else ''}"
                   f"{row['job'] or '(manual)':<16} {summary}  {row['error'] or ''}".rstrip())


@cli.group("jobs", invoke_without_command=True)
@click.pass_context
def jobs_group(ctx: click.Context) -> None:
    """The exchange tasks of the config (`jobs:`): list them, or run one now."""
    if ctx.invoked_subcommand is None:
        state = ctx.find_object(_State)
        assert state is not None  # the group's parent made it
        items = commands.status(state.loaded)
        if not items:
            click.echo("no jobs configured (`jobs:` in the config)")
        for item in items:
            click.echo(f"{item.job:<20} {item.schedule:<22} state={item.state:<11} "
                       f"last={item.last_run or '-'} ({item.last_outcome or '-'})  "
                       f"next={item.next_run:%Y-%m-%d %H:%M:%S}Z")


@jobs_group.command("run")
@click.argument("name")
@click.option("--due", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              help="The due time this run serves (the daemon passes it; each due time runs once).")
@click.option("--trigger", type=click.Choice(["manual", "schedule"]), default="manual", show_default=True)
@pass_state
def jobs_run(state: _State, name: str, due, trigger: str) -> None:
    """Run one job now, under its lock (exits at once if it is running elsewhere)."""
    from datetime import UTC
    if due is not None and due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    result = commands.job_run(state.loaded, name, due, trigger)
    click.echo(result.render())
    sys.exit(result.exit_code)


@cli.command()
@click.option("--tick", default=1.0, show_default=True, help="Seconds between looks at the schedule.")
@pass_state
def schedule(state: _State, tick: float) -> None:
    """The scheduler daemon: run due jobs until SIGTERM (then let running batches finish)."""
    sys.exit(commands.schedule(state.loaded, state.config_path, tick))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@pass_state
def status(state: _State, as_json: bool) -> None:
    """Each job with its lag and last error; exit 1 when one is late, failing or stale (for monitoring)."""
    import json
    items = commands.status(state.loaded)
    if as_json:
        click.echo(json.dumps([i.__dict__ for i in items], ensure_ascii=False, indent=2, default=str))
    elif not items:
        click.echo("no jobs configured (`jobs:` in the config)")
    else:
        for i in items:
            mark = "FAIL" if i.problem else "ok  "
            lag = "never ran" if i.lag_seconds is None else f"lag={i.lag_seconds}s"
            click.echo(f"{mark}  {i.job:<20} {i.state:<11} {lag} last={i.last_outcome or '-'} "
                       f"next={i.next_run:%H:%M:%S}Z" + (f"  {i.problem}" if i.problem else "")
                       + (f" — {i.last_error}" if i.problem and i.last_error else ""))
    if not as_json:
        for line in commands.portal_status_lines(state.loaded):
            click.echo(line)
    sys.exit(1 if any(i.problem for i in items) else 0)


@cli.group("queue")
def queue_group() -> None:
    """The portal outbox (sync_queue): what waits, what failed, retry or cancel."""


def _queue_filters(func):
    func = click.option("--portal", help="Only this portal's items.")(func)
    return click.option("--status", type=click.Choice(["pending", "running", "done", "failed", "dead", "cancelled"]),
                        help="Only items in this status.")(func)


def _filters_said(portal: str | None, status: str | None) -> str:
    said = [f"portal {portal}"] * bool(portal) + [f"status {status}"] * bool(status)
    return f" ({', '.join(said)})" if said else ""


@queue_group.command("list")
@_queue_filters
@click.option("--last", "limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def queue_list(state: _State, portal: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Newest items first."""
    import json
    rows = commands.queue_list(state.loaded, portal, status, limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    if not rows:
        click.echo("no queue items" + _filters_said(portal, status))
    for r in rows:
        click.echo(f"{r['id']:>7} {r['portal']:<7} {r['operation']:<22} {r['status']:<9} tries={r['attempts']}/"
                   f"{r['max_attempts']} {r['idempotency_key'][:40]:<40} {(r['last_error'] or '')[:80]}")


@queue_group.command("show")
@click.argument("item_id", type=int)
@pass_state
def queue_show(state: _State, item_id: int) -> None:
    """One item, whole."""
    import json
    row = commands.queue_show(state.loaded, item_id)
    if row is None:
        raise click.UsageError(f"no queue item {item_id}")
    click.echo(json.dumps(row, ensure_ascii=False, indent=2, default=str))


@queue_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@_queue_filters
@pass_state
def queue_retry(state: _State, ids: tuple[int, ...], portal: str | None, status: str | None) -> None:
    """Send failed, dead or cancelled items again (all of them, or the ids given); other statuses are refused."""
    count = commands.queue_retry(state.loaded, list(ids) or None, portal, status)
    click.echo(f"{count} item(s) back to pending")


@queue_group.command("cancel")
@click.argument("ids", nargs=-1, type=int)
@_queue_filters
@pass_state
def queue_cancel(state: _State, ids: tuple[int, ...], portal: str | None, status: str | None) -> None:
    """Cancel pending, failed or dead items (all of them, or the ids given); other statuses are refused."""
    count = commands.queue_cancel(state.loaded, list(ids) or None, portal, status)
    click.echo(f"{count} item(s) cancelled")


@queue_group.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=1), help="Days (default: retention_days, 90).")
@pass_state
def queue_purge(state: _State, days: int | None) -> None:
    """Delete done and cancelled items finished before then (the daemon does it at start); dead ones stay."""
    count = commands.queue_purge(state.loaded, days)
    click.echo(f"{count} finished item(s) deleted")


@queue_group.command("stats")
@click.option("--portal", help="Only this portal's items.")
@pass_state
def queue_stats(state: _State, portal: str | None) -> None:
    """Items per portal and status, with the oldest."""
    rows = commands.queue_stats(state.loaded, portal)
    if not rows:
        click.echo("no queue items" + _filters_said(portal, None))
    for r in rows:
        click.echo(f"{r['portal']:<7} {r['status']:<9} {r['items']:>8}  oldest {r['oldest']}")


@queue_group.command("dispatch")
@click.option("--portal", help="The portal whose queue to deliver (default: the only one there is).")
@click.option("--forever", is_flag=True, help="Keep polling for new items until SIGTERM (default: stop when "
                                              "nothing is due).")
@pass_state
def queue_dispatch(state: _State, portal: str | None, forever: bool) -> None:
    """Deliver the portal's due items; run as many dispatchers at once as you like."""
    report = commands.queue_dispatch(state.loaded, portal, forever)
    click.echo(report.render())
    sys.exit(report.exit_code)


def _sandbox_command() -> click.Command:
    """`bufsync sandbox`: the sandbox Moodle, plus each portal's emulator with the options its folder gives."""
    from bufsync.portals import portals

    def sandbox(port: int, data: Path | None, token: str | None, debug: bool, max_input_vars: int,
                faults: tuple[str, ...], env_file: Path | None, **portal_options: object) -> None:
        """Run the sandbox Moodle (Moodle 4.5's REST web services) and the portals' sandboxes on 127.0.0.1.

        Prints `export VAR=value` lines to paste into a shell where bufsync runs."""
        commands.sandbox(port, data, token, debug, max_input_vars, list(faults), env_file, portal_options)

    params: list[click.Parameter] = [
        click.Option(["--port"], default=18081, show_default=True, help="Port on 127.0.0.1 (0: any free port)."),
        click.Option(["--data"], type=click.Path(path_type=Path, file_okay=False),
                     help="Folder for the sandbox's SQLite state (default: in memory)."),
        click.Option(["--token"], help="Web-service token to accept (default: a random one, printed)."),
        click.Option(["--debug"], is_flag=True, help="Answer errors with debuginfo, like a site with debugging on."),
        click.Option(["--max-input-vars"], default=5000, show_default=True, help="PHP max_input_vars to emulate."),
        click.Option(["--fault", "faults"], multiple=True, metavar="KIND[:RATE[:SECONDS]]",
                     help="Inject faults: latency, http_500, http_503, drop, drop_after_write, timeout_after_write, "
                          "db_error (Moodle's dml_read_exception); e.g. --fault http_503:0.05 --fault latency:1:0.2"),
        click.Option(["--env-file"], type=click.Path(path_type=Path, dir_okay=False),
                     help="Also write VAR=value lines here (systemd EnvironmentFile=, docker --env-file)."),
    ]
    for portal in portals().values():
        params += portal.sandbox_options()
    return click.Command("sandbox", callback=sandbox, params=params, help=sandbox.__doc__)


def main() -> None:
    cli(prog_name="bufsync")


if __name__ == "__main__":
    main()
