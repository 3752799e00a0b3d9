"""One plain function per CLI command (after alembic's command.py): no click in here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bufsync import migrations
from bufsync.check import CheckItem, run_checks
from bufsync.config import LoadedSettings
from bufsync.mapping.loader import MappingSet, load_mappings
from bufsync.schema import build_metadata
from bufsync.sqlrender import RenderResult, render_all


def load(loaded: LoadedSettings) -> MappingSet:
    return load_mappings(loaded.mappings_dir)


def check(loaded: LoadedSettings) -> list[CheckItem]:
    return run_checks(loaded, load(loaded))


def sql_render(loaded: LoadedSettings, out_dir: Path, check_only: bool) -> list[RenderResult]:
    mappings = load(loaded)
    heads = migrations.head_revisions(loaded, mappings)
    return render_all(build_metadata(mappings), heads, out_dir, check_only)


def db_upgrade(loaded: LoadedSettings, revision: str = "heads", sql: bool = False, stdout: Any = None) -> None:
    migrations.upgrade(loaded, load(loaded), revision, sql=sql, stdout=stdout)


def db_downgrade(loaded: LoadedSettings, revision: str, sql: bool = False, stdout: Any = None) -> None:
    migrations.downgrade(loaded, load(loaded), revision, sql=sql, stdout=stdout)


def db_current(loaded: LoadedSettings) -> tuple[list[str], list[str]]:
    """(current revisions of the database, heads of the known migrations)."""
    mappings = load(loaded)
    return migrations.current_revisions(loaded), migrations.head_revisions(loaded, mappings)


def db_revision(loaded: LoadedSettings, message: str, autogenerate: bool = True) -> list[Path]:
    return migrations.revision(loaded, load(loaded), message, autogenerate=autogenerate)


def mappings_list(loaded: LoadedSettings) -> MappingSet:
    return load(loaded)


def sandbox(port: int, data: Path | None, token: str | None, debug: bool, max_input_vars: int,
            faults: list[str]) -> None:
    from bufsync.sandbox.faults import parse_fault
    from bufsync.sandbox.moodle.run import serve
    serve(port, data, token, debug, max_input_vars, [parse_fault(f) for f in faults])
