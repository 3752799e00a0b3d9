"""Fixtures over real parts: a fresh PostgreSQL database per test, a SQLite file per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bufsync.config import LoadedSettings, load_settings

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BUFSYNC_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MSSQL_URL = os.environ.get("BUFSYNC_TEST_MSSQL_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own BUFSYNC_* settings or ./bufsync.yaml."""
    for name in list(os.environ):
        if name.startswith("BUFSYNC_") and not name.startswith("BUFSYNC_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {make_url(PG_ADMIN_URL).render_as_string()}: {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """A new empty database for this test, dropped afterwards."""
    name = f"bufsync_t_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with pg_admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _docker_running() -> bool:
    import shutil
    import subprocess
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def mssql_server_url() -> Iterator[str]:
    """BUFSYNC_TEST_MSSQL_URL, else a throwaway SQL Server from testcontainers, else skip."""
    if MSSQL_URL:
        yield MSSQL_URL
        return
    if not _docker_running():
        pytest.skip("no MS SQL Server: set BUFSYNC_TEST_MSSQL_URL=mssql+pymssql://user:password@host:1433/db, "
                    "or run a Docker engine for testcontainers (none runs here)")
    from testcontainers.mssql import SqlServerContainer
    with SqlServerContainer("mcr.microsoft.com/mssql/server:2022-latest", dialect="mssql+pymssql") as server:
        yield server.get_connection_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'buffer.db').as_posix()}"


@pytest.fixture(params=["sqlite", "postgresql"])
def buffer_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both embedded and server databases."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def queue(buffer_url: str):
    """An upgraded buffer and its sync_queue table (the outbox)."""
    from bufsync import migrations
    from bufsync.mapping import load_mappings
    from bufsync.schema import build_metadata
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    yield engine, build_metadata(mappings).tables["sync_queue"]
    engine.dispose()


@pytest.fixture
def settings_for(tmp_path: Path):
    def make(buffer_url: str, **env: str) -> LoadedSettings:
        environ = {"BUFSYNC_BUFFER_URL": buffer_url, **env}
        return load_settings(None, environ)
    return make
