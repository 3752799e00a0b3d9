"""The portals: one folder each under bufsync/portals, which registers itself here.

A folder's `__init__.py` calls `register(SomePortal())`; the registry finds the folders by listing this
package (as alembic finds its dialects by their `__dialect__` name, and dlt its destinations by folder). The
core (config, runs, jobs, CLI, checks, state tables, DBA views) asks the registry and never names a portal: a
new portal is a new folder. A folder keeps its module-level imports light (its settings model, table
definitions): heavy clients load when a run needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bufsync.registry import Registry

if TYPE_CHECKING:  # `bufsync --help` lists the portals' commands: the registry itself imports no heavy library
    import click
    import sqlalchemy as sa

    from bufsync.config import LoadedSettings
    from bufsync.portals.settings import PortalSettings
    from bufsync.report import PortalRun


def __getattr__(name: str) -> Any:
    if name == "PortalSettings":  # the base of every portal's settings, loaded with pydantic when asked for
        from bufsync.portals.settings import PortalSettings
        return PortalSettings
    raise AttributeError(name)


class Portal:
    """What a portal folder provides; subclass it and register one instance."""

    name: ClassVar[str]                         # config key (`portals.<name>`), queue `portal` column, job kind
    title: ClassVar[str]                        # for people: «ГИС СЦОС»
    settings_model: ClassVar[type[PortalSettings] | None] = None  # or settings_class() importing it when asked
    required: ClassVar[tuple[str, ...]] = ()    # settings without which the portal is not configured
    scenario_tables: ClassVar[tuple[str, ...]] = ()  # state tables its scenario run needs
    view_fields: ClassVar[tuple[tuple[str, str], ...]] = ()  # payload key -> column of v_queue_<name>

    def settings_class(self) -> type[PortalSettings]:
        """Its settings model (`portals.<name>`); a folder may import it here, so listing commands stays light."""
        assert self.settings_model is not None, f"portal {self.name} names no settings model"
        return self.settings_model

    def settings(self, loaded: LoadedSettings) -> Any:
        return getattr(loaded.settings.portals, self.name)

    def configured(self, loaded: LoadedSettings) -> Any:
        """Its settings, or a ConfigError naming the first missing key and its environment variable."""
        from bufsync.errors import ConfigError
        settings = self.settings(loaded)
        missing = [key for key in self.required if getattr(settings, key) is None]
        if missing:
            keys = ", ".join(f"portals.{self.name}.{k}" for k in self.required)
            envs = ", ".join(f"BUFSYNC_{self.name.upper()}_{k.upper()}" for k in self.required)
            raise ConfigError(f"{loaded.file or 'bufsync.yaml'}: portals.{self.name}.{missing[0]} is not set; "
                              f"{self.title} needs {keys} (or {envs})")
        return settings

    def is_configured(self, loaded: LoadedSettings) -> bool:
        settings = self.settings(loaded)
        return all(getattr(settings, key) is not None for key in self.required)

    def add_tables(self, metadata: sa.MetaData) -> dict[str, sa.Table]:
        """Its own state tables (migrations create them with the engine's)."""
        return {}

    def views(self, tables: dict[str, sa.Table]) -> list[tuple[str, sa.Select[Any], str]]:
        """Its DBA views over its own state tables: (name, the SELECT, what it shows)."""
        return []

    def pending_keys(self, tables: dict[str, sa.Table]) -> list[sa.Select[Any]]:
        """Queue idempotency keys its state rows still wait for: finished items with these are never purged."""
        return []

    def handler(self, loaded: LoadedSettings) -> tuple[Any, Callable[[], None]]:
        """The batch handler that delivers its queue items, and how to close it."""
        raise NotImplementedError

    def run(self, loaded: LoadedSettings, job: str | None = None, trigger: str = "manual",
            on_start: Callable[[int], None] | None = None) -> PortalRun:
        """Its scenario run (job kind = its name): read Moodle and the buffer, queue what the portal must hear."""
        raise NotImplementedError

    def check(self, loaded: LoadedSettings) -> tuple[bool | None, str]:
        """For `bufsync check`: (None: not configured | ok | not, what was found)."""
        return None, "no check"

    def status_line(self, loaded: LoadedSettings) -> str | None:
        """A line for `bufsync status` about the portal itself (a connection's state), or None."""
        return None

    def sandbox_options(self) -> list[click.Option]:
        """Options of `bufsync sandbox` for its emulator, named after it (--<name>-port, --no-<name>, ...)."""
        return []

    def sandbox_ports(self, options: dict[str, Any]) -> list[tuple[int, str, str]]:
        """(port, what, option) of each server its emulator will bind with these options; none: not started."""
        return []

    def start_sandbox(self, options: dict[str, Any], data: Path | None) -> Emulator:
        """Start its emulator in a background thread (OSError when the port is taken)."""
        raise NotImplementedError

    def cli_group(self) -> click.Group | None:
        """Its own CLI commands, as a group named after it (`bufsync <name> ...`), or None."""
        return None


@dataclass
class Emulator:
    """A portal's sandbox as `bufsync sandbox` runs it: the server, what to export, where its state lives."""

    server: Any                      # has shutdown() and server_close()
    title: str                       # «СЦОС», for the line the sandbox prints
    variables: dict[str, str]        # BUFSYNC_* lines that point bufsync at it
    state: str = "in memory"

    def shutdown(self) -> None:
        self.server.shutdown()

    def server_close(self) -> None:
        self.server.server_close()


_registry: Registry[Portal] = Registry(__name__, packages_only=True)


def register(portal: Portal) -> Portal:
    if portal.name in ("sync", "dispatch", "import", "export"):
        raise ValueError(f"a portal may not be called {portal.name!r}: it is a job kind")
    return _registry.add(portal.name, portal)


def portals() -> dict[str, Portal]:
    """Every registered portal, by name; the folders of this package are imported (and so register) once."""
    return _registry.all()


def portal(name: str) -> Portal:
    from bufsync.errors import ConfigError
    known = portals()
    if name not in known:
        raise ConfigError(f"unknown portal '{name}'; known: {', '.join(known) or 'none'}")
    return known[name]


def run_command(portal: Portal, help: str) -> click.Command:
    """`bufsync <portal> run`: the portal's scenario run once, its report printed, its exit code."""
    import sys

    import click

    from bufsync.cli import pass_state

    @click.command("run", help=help)
    @click.option("--json", "as_json", is_flag=True)
    @pass_state
    def run(state: Any, as_json: bool) -> None:
        from bufsync import commands
        report = commands.portal_run(state.loaded, portal.name)
        click.echo(report.to_json() if as_json else report.render())
        sys.exit(report.exit_code)
    return run


def with_section(settings: Any, name: str, section: Any) -> Any:
    """These settings with portal `name`'s section replaced (the demo and tests configure a sandbox portal)."""
    return settings.model_copy(update={"portals": settings.portals.model_copy(update={name: section})})
