"""Alembic, driven by bufsync's config: the shipped revisions plus a site's own ones.

The shipped revisions live in the package (`alembic/versions`); a site that edits a mapping
writes its own revisions into `migrations_dir` with `bufsync db revision`, and both are
version locations of one history.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.mapping.loader import MappingSet
from bufsync.paths import shipped_migrations_dir
from bufsync.schema import VERSION_TABLE, build_metadata


def _escape(path: Path) -> str:
    return str(path).replace("%", "%%")  # Config is a ConfigParser: % interpolates


def alembic_config(loaded: LoadedSettings, mappings: MappingSet, stdout: Any = None) -> Config:
    shipped = shipped_migrations_dir()
    cfg = Config(stdout=stdout or io.StringIO())
    cfg.set_main_option("script_location", _escape(shipped))
    locations = [shipped / "versions"]
    site = loaded.migrations_dir
    if site.is_dir():
        locations.append(site)
    cfg.set_main_option("version_locations", " ".join(_escape(p) for p in locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["target_metadata"] = build_metadata(mappings)
    cfg.attributes["buffer_url"] = loaded.buffer_url
    return cfg


@contextmanager
def _online(cfg: Config, loaded: LoadedSettings) -> Iterator[None]:
    with connect_buffer(loaded) as engine, engine.begin() as connection:
        cfg.attributes["connection"] = connection
        try:
            yield
        finally:
            cfg.attributes.pop("connection", None)


def _include_object(metadata: sa.MetaData):
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # The buffer is shared with 1C's own tables: never propose to drop what bufsync
        # does not declare.
        if type_ == "table":
            return not (reflected and compare_to is None)
        table = getattr(obj, "table", None)
        if table is not None and table.name not in metadata.tables:
            return False
        return True
    return include


def configure_context(context: EnvironmentContext) -> None:
    """Body of alembic/env.py (kept here so it is typed, tested and importable)."""
    config = context.config
    metadata: sa.MetaData = config.attributes["target_metadata"]
    options: dict[str, Any] = dict(target_metadata=metadata, version_table=VERSION_TABLE,
                                   include_object=_include_object(metadata), compare_type=True)
    if context.is_offline_mode():
        context.configure(url=config.attributes["buffer_url"], literal_binds=True, **options)
    else:
        connection = config.attributes["connection"]
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite", **options)
    with context.begin_transaction():
        context.run_migrations()


def upgrade(loaded: LoadedSettings, mappings: MappingSet, revision: str = "heads", sql: bool = False,
            stdout: Any = None) -> None:
    cfg = alembic_config(loaded, mappings, stdout)
    if sql:
        command.upgrade(cfg, revision, sql=True)
        return
    with _online(cfg, loaded):
        command.upgrade(cfg, revision)


def downgrade(loaded: LoadedSettings, mappings: MappingSet, revision: str, sql: bool = False,
              stdout: Any = None) -> None:
    cfg = alembic_config(loaded, mappings, stdout)
    if sql:
        command.downgrade(cfg, revision, sql=True)
        return
    with _online(cfg, loaded):
        command.downgrade(cfg, revision)


def current_revisions(loaded: LoadedSettings) -> list[str]:
    with connect_buffer(loaded) as engine, engine.connect() as connection:
        ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return list(ctx.get_current_heads())


def head_revisions(loaded: LoadedSettings, mappings: MappingSet) -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config(loaded, mappings)).get_heads())


def revision(loaded: LoadedSettings, mappings: MappingSet, message: str, autogenerate: bool = True,
             rev_id: str | None = None) -> list[Path]:
    """Write a new revision into the site's migrations folder; returns the files written."""
    site = loaded.migrations_dir
    site.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(loaded, mappings)
    if autogenerate:
        with _online(cfg, loaded):
            scripts = command.revision(cfg, message=message, autogenerate=True, version_path=str(site),
                                       rev_id=rev_id)
    else:
        scripts = command.revision(cfg, message=message, version_path=str(site), rev_id=rev_id)
    items = scripts if isinstance(scripts, list) else [scripts]
    return [Path(s.path) for s in items if s is not None]


def pending_changes(loaded: LoadedSettings, mappings: MappingSet) -> list[Any]:
    """What autogenerate would write: empty when the database matches the mappings."""
    metadata = build_metadata(mappings)
    with connect_buffer(loaded) as engine, engine.connect() as connection:
        ctx = MigrationContext.configure(connection, opts={
            "target_metadata": metadata, "version_table": VERSION_TABLE, "compare_type": True,
            "include_object": _include_object(metadata)})
        return list(compare_metadata(ctx, metadata))
