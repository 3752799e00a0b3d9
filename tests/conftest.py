"""Fixtures over real parts: an empty PostgreSQL database per test (a fresh one, or an upgraded one emptied
after the test before), a SQLite file per test."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bufsync.config import LoadedSettings, load_settings
from bufsync.migrations import VERSION_TABLE

REPO = Path(__file__).resolve().parent.parent
# the real peers of the Университет 2035 clients (ralph's LRS, moto's S3) as fixtures: ralph_lrs, moto_s3
pytest_plugins = ("tests.peers",)
PG_ADMIN_URL = os.environ.get("BUFSYNC_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MSSQL_URL = os.environ.get("BUFSYNC_TEST_MSSQL_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own BUFSYNC_* settings or ./bufsync.yaml."""
    for name in list(os.environ):
        if name.startswith("BUFSYNC_") and not name.startswith("BUFSYNC_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _one_buffer_engine_per_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The commands a test runs in its own process (bufsync.commands, the CLI through CliRunner, a portal's run)
    share one buffer engine per URL for the test: each command still opens its connections and closes them when
    it ends (connect_buffer disposes the engine's pool), but SQLAlchemy compiles a statement once per test
    instead of once per command (its compiled cache is the engine's): a fifth of the CPU of the in-process
    runs. The engine is made as bufsync makes it (bufsync.db.create_buffer_engine), so its settings are those
    of a real run; the tests' own engines and other processes' are their own."""
    from bufsync import db
    made: dict[str, sa.Engine] = {}
    making = threading.Lock()  # a test's threads (two dispatchers) may start commands at once
    create = db.create_buffer_engine

    def once_per_url(url: str) -> sa.Engine:
        with making:
            if url not in made:
                made[url] = create(url)
            return made[url]

    monkeypatch.setattr(db, "create_buffer_engine", once_per_url)
    yield
    for engine in made.values():
        engine.dispose()


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


def _create_database(admin: sa.Engine, template: str) -> str:
    name = f"bufsync_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    return name


def _pg_database_url(name: str) -> str:
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class _Dropper:
    """Drops each test's database on a thread of its own while the next test runs: DROP DATABASE waits on
    the server's disk (0.1-2.5 s each on the 2-core CI machine) and nothing of the next test needs it gone.
    At most a few drops wait at a time, and the session waits for the last of them."""

    BEHIND = 4

    def __init__(self, admin: sa.Engine) -> None:
        self.admin = admin
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-drop")
        self.pending: deque[Future[None]] = deque()

    def drop(self, name: str) -> None:
        self.pending.append(self.pool.submit(_drop_database, self.admin, name))
        while self.pending and (self.pending[0].done() or len(self.pending) > self.BEHIND):
            self.pending.popleft().result()  # a failed drop fails the test that queued one after it

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()


@pytest.fixture(scope="session")
def _pg_dropper(pg_admin: sa.Engine) -> Iterator[_Dropper]:
    dropper = _Dropper(pg_admin)
    yield dropper
    dropper.close()


def _upgrade(url: str) -> None:
    from bufsync import migrations
    from bufsync.mapping import load_mappings
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url})
    migrations.upgrade(loaded, load_mappings(loaded.mappings_dir))


@pytest.fixture
def pg_url(pg_admin: sa.Engine, _pg_dropper: _Dropper) -> Iterator[str]:
    """A new empty database for this test, dropped afterwards."""
    name = _create_database(pg_admin, "template0")
    yield _pg_database_url(name)
    _pg_dropper.drop(name)


@pytest.fixture(scope="session")
def _pg_upgraded_template(pg_admin: sa.Engine) -> Iterator[str]:
    """Once per worker: a database upgraded to the heads of the shipped migrations, the template of
    `_pg_upgraded_url` (cloning it costs a fraction of creating a database and running every migration)."""
    name = _create_database(pg_admin, "template0")
    try:
        _upgrade(_pg_database_url(name))  # its engine is disposed: nobody stays connected to the template
        yield name
    finally:
        _drop_database(pg_admin, name)


class _Shape:
    """What an upgraded database holds besides rows: its tables, views and revision. A database that still has
    the template's shape after a test is emptied and used again; one a test changed (a table made or dropped,
    a downgrade) is dropped and cloned anew."""

    def __init__(self, url: str) -> None:
        self.tables, self.views, self.revision = _shape(url)

    def matches(self, url: str) -> bool:
        return _shape(url) == (self.tables, self.views, self.revision)


def _shape(url: str) -> tuple[frozenset[str], frozenset[str], str | None]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = frozenset(inspector.get_table_names())
            revision = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() \
                if VERSION_TABLE in tables else None
            return tables, frozenset(inspector.get_view_names()), revision
    finally:
        engine.dispose()


def _empty(admin: sa.Engine, name: str, tables: frozenset[str]) -> None:
    """Every row of every table but the migrations' version table gone, sequences back at their start: what
    TRUNCATE ... RESTART IDENTITY of them all leaves. Whatever a test left connected (a daemon it started, an
    engine it did not dispose) is disconnected first, as DROP DATABASE ... FORCE does.

    Only the tables holding a row are truncated (a test fills a handful of them): TRUNCATE makes new files for
    each table it names, 40-100 ms for all of them on the 2-core CI machine, about a quarter of that for the few
    a test wrote. A sequence a test moved without leaving a row (an insert rolled back) is set back too."""
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
    engine = sa.create_engine(_pg_database_url(name), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            held = sorted(tables - {VERSION_TABLE})
            written = [f'"{t}"' for (t,) in conn.execute(sa.text(" UNION ALL ".join(
                f"SELECT '{t}' WHERE EXISTS (SELECT FROM \"{t}\")" for t in held)))]
            if written:
                conn.execute(sa.text(f"TRUNCATE {', '.join(written)} RESTART IDENTITY CASCADE"))
            conn.execute(sa.text("SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false) "
                                 "FROM pg_sequences WHERE last_value IS NOT NULL"))
    finally:
        engine.dispose()


class _Reused:
    """One upgraded database per worker, emptied after each test instead of cloned for it: cloning costs
    0.15-0.4 s a test on the 2-core CI machine, emptying about a tenth of that."""

    def __init__(self, admin: sa.Engine, template: str, dropper: _Dropper) -> None:
        self.admin, self.template, self.dropper = admin, template, dropper
        self.name = _create_database(admin, template)
        self.shape = _Shape(_pg_database_url(self.name))

    def after_test(self) -> None:
        url = _pg_database_url(self.name)
        try:
            same = self.shape.matches(url)
        except sa.exc.SQLAlchemyError:
            same = False
        if same:
            _empty(self.admin, self.name, self.shape.tables)
            return
        self.dropper.drop(self.name)  # a test changed its schema: the next one gets a fresh clone
        self.name = _create_database(self.admin, self.template)


@pytest.fixture(scope="session")
def _pg_reused(pg_admin: sa.Engine, _pg_upgraded_template: str, _pg_dropper: _Dropper) -> Iterator[_Reused]:
    reused = _Reused(pg_admin, _pg_upgraded_template, _pg_dropper)
    yield reused
    _pg_dropper.drop(reused.name)


@pytest.fixture
def _pg_upgraded_url(_pg_reused: _Reused) -> Iterator[str]:
    """A database for this test, upgraded as `bufsync db upgrade` leaves it and holding no row."""
    yield _pg_database_url(_pg_reused.name)
    _pg_reused.after_test()


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


@pytest.fixture(scope="session")
def _sqlite_upgraded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Once per worker: a SQLite buffer upgraded to the heads of the shipped migrations."""
    path = tmp_path_factory.mktemp("upgraded") / "buffer.db"
    _upgrade(f"sqlite:///{path.as_posix()}")
    assert not path.with_name("buffer.db-wal").exists() and not path.with_name("buffer.db-journal").exists()
    return path


@pytest.fixture
def _upgraded_buffer() -> None:
    """Asked for by fixtures that upgrade the buffer before the test (world, queue, ...): `buffer_url` then
    hands them a copy of a buffer upgraded once per worker, and their own upgrade finds nothing to do.
    Tests that upgrade, downgrade or inspect a fresh buffer themselves (test_migrations, the CLI's
    `db upgrade`) do not ask for it and still get an empty one."""


# fixtures outside the folders this conftest's owners edit that upgrade the buffer before their test
UPGRADING_FIXTURES = {"_upgraded_buffer", "scos_world"}


@pytest.fixture(params=["sqlite", "postgresql"])
def buffer_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both embedded and server databases."""
    upgraded = not UPGRADING_FIXTURES.isdisjoint(request.fixturenames)
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        if upgraded:
            shutil.copyfile(request.getfixturevalue("_sqlite_upgraded_template"), tmp_path / "buffer.db")
        return url
    return request.getfixturevalue("_pg_upgraded_url" if upgraded else "pg_url")


@pytest.fixture
def queue(_upgraded_buffer: None, buffer_url: str):
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


QUICK_BACKOFF = 0.02


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Moodle and VK clients made without an explicit `backoff` (the runs', the portals') wait 0.02 s before
    their first retry instead of 0.5 s, growing as before: tests against the sandboxes count retries and check
    what they leave, and a wait of seconds for a sandbox that answers at once is time nobody uses. How long the
    waits are is test_retry's and test_sferum_client's part (with their own backoff)."""
    from bufsync.adapters.moodle import retry
    from bufsync.portals.sferum import client
    monkeypatch.setattr(retry, "BACKOFF", QUICK_BACKOFF)
    monkeypatch.setattr(client, "BACKOFF", QUICK_BACKOFF)


@pytest.fixture
def settings_for(tmp_path: Path):
    def make(buffer_url: str, **env: str) -> LoadedSettings:
        environ = {"BUFSYNC_BUFFER_URL": buffer_url, **env}
        return load_settings(None, environ)
    return make


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject.toml): one worker more than the cores. A worker spends much of a test waiting (on
    PostgreSQL, on a sandbox's answer, on a `bufsync` process it started, on a daemon's next due time): with one
    worker per core, the 2-core CI machine's cores stood idle about half of the suite's time.
    PYTEST_XDIST_AUTO_NUM_WORKERS still sets the number (xdist's own reading of it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) + 1


# The tests that take the longest (measured with --durations), started first: with --maxschedchunk=1
# (pyproject.toml) xdist gives each worker the next test in this order when it frees up, so the long ones run
# side by side from the start and the short ones fill in at the end, instead of one long test being picked up
# last and keeping a single worker busy while the other is done. Only the order changes.
SLOW_FIRST = (
    "tests/integration/reconcile/test_full.py::test_full_reads_each_course_once_not_once_per_chunk",
    "tests/integration/portals/test_scos_dispatch.py::test_four_dispatchers",
    "tests/integration/reconcile/test_model.py",
    "tests/integration/portals/test_scos_cli.py::test_the_daemon_runs_scenarios_and_dispatch_unattended",
    "tests/integration/test_demo.py",
    "tests/integration/files/test_streaming.py",   # rows under tracemalloc
    "tests/integration/scheduler/test_daemon.py::test_sigterm_lets_the_batch_finish",
    "tests/integration/scheduler/test_daemon.py::test_two_daemons",
    "tests/integration/portals/test_sferum.py::test_the_rate_limit_is_shared_by_two_dispatchers",
    "tests/integration/state/test_runs_died.py::test_a_killed_scheduled_sync",
    "tests/integration/queue/test_outbox.py::test_concurrent_dispatchers",
    "tests/integration/portals/test_sferum.py::test_the_jobs_run_under_bufsync_schedule",
    "tests/integration/scheduler/test_daemon.py",
    "tests/integration/test_cli.py::test_check_against_the_sandbox",
    "tests/integration/portals/test_registry.py::test_a_new_portal_folder",
    "tests/integration/reconcile/test_cli_run.py",
    "tests/unit/files/test_columnar.py::test_any_file_the_fast_path_takes",
    "tests/integration/portals/test_scos_refusals.py",
    "tests/integration/reconcile/test_full.py::test_full_finds_drift_after_a_quiet_full",
    "tests/integration/reconcile/test_lock_files.py",
    "tests/integration/portals/test_scos_scenarios.py::test_enrol_those_with_an_esia_id",
    "tests/integration/portals/test_scos_scenarios.py::test_results_per_grade_item",
    "tests/integration/portals/test_scos_dispatch_safety.py",
    "tests/integration/portals/test_scos_cli.py::test_commands_and_jobs",
    "tests/integration/state/test_runs_died.py",
)


def _slow_rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(SLOW_FIRST)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_slow_rank)  # stable: every other test keeps its place
