"""Live MS SQL Server tests: BUFSYNC_TEST_MSSQL_URL, or Docker + testcontainers; skipped otherwise."""

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.dialects import DIALECTS
from bufsync.mapping import load_mappings
from bufsync.schema import VERSION_TABLE, build_metadata
from bufsync.sqlrender import render

pytestmark = pytest.mark.mssql


def _drop_all(url: str) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    ours = [t for t in meta.sorted_tables if t.name.startswith(("buf_", "sync_"))]
    with engine.begin() as conn:
        for table in reversed(ours):
            table.drop(conn)
    engine.dispose()


@pytest.fixture
def mssql_url(mssql_server_url: str):
    _drop_all(mssql_server_url)
    yield mssql_server_url
    _drop_all(mssql_server_url)


def test_upgrade_matches_mappings_and_downgrades(mssql_url: str, settings_for) -> None:
    loaded = settings_for(mssql_url)
    ms = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, ms)
    assert migrations.pending_changes(loaded, ms) == []
    engine = sa.create_engine(mssql_url)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("buf_users")}
    engine.dispose()
    assert columns["external_id"]["comment"].startswith("Идентификатор человека в 1С")
    migrations.downgrade(loaded, ms, "base")
    migrations.upgrade(loaded, ms)


def test_rendered_script_runs(mssql_url: str, settings_for) -> None:
    ms = load_mappings(settings_for(mssql_url).mappings_dir)
    text = render(build_metadata(ms), DIALECTS["mssql"], ["0001"])
    engine = sa.create_engine(mssql_url)
    with engine.begin() as conn:
        for batch in text.split("\nGO\n"):
            if batch.strip():
                conn.exec_driver_sql(batch)
    assert VERSION_TABLE in sa.inspect(engine).get_table_names()
    engine.dispose()
