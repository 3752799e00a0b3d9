"""The checked-in sql/ scripts: in sync with the mappings, runnable, dialect-correct."""

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg2
import sqlalchemy as sa

from bufsync import migrations
from bufsync.dialects import DIALECTS
from bufsync.mapping import load_mappings
from bufsync.paths import shipped_mappings_dir
from bufsync.portals import portals
from bufsync.schema import build_metadata
from bufsync.sqlrender import render
from bufsync.state.views import state_views
from tests.conftest import REPO

SQL = REPO / "sql"


def metadata() -> sa.MetaData:
    return build_metadata(load_mappings(shipped_mappings_dir()))


def test_checked_in_scripts_match_the_mappings() -> None:
    """`bufsync sql render --check` as a user runs it, in a real process."""
    result = subprocess.run([sys.executable, "-m", "bufsync.cli", "sql", "render", "--check", "--dir", str(SQL)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("up to date") == 3


def test_check_reports_a_difference_with_exit_1(tmp_path: Path) -> None:
    for name in ("postgresql", "mssql", "sqlite"):
        (tmp_path / f"{name}.sql").write_text((SQL / f"{name}.sql").read_text(encoding="utf-8") + "-- edited\n")
    result = subprocess.run([sys.executable, "-m", "bufsync.cli", "sql", "render", "--check", "--dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert "DIFFERS" in result.stdout and "-- edited" in result.stdout


def test_sqlite_script_runs_and_lands_at_head(tmp_path: Path, settings_for) -> None:
    db = tmp_path / "dba.db"
    with sqlite3.connect(db) as conn:
        conn.executescript((SQL / "sqlite.sql").read_text(encoding="utf-8"))
    loaded = settings_for(f"sqlite:///{db}")
    ms = load_mappings(loaded.mappings_dir)
    assert migrations.current_revisions(loaded) == migrations.head_revisions(loaded, ms)
    assert migrations.pending_changes(loaded, ms) == []


def test_postgresql_script_runs_and_lands_at_head(pg_url: str, settings_for) -> None:
    dsn = sa.engine.make_url(pg_url)
    conn = psycopg2.connect(host=dsn.host, port=dsn.port, user=dsn.username, dbname=dsn.database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute((SQL / "postgresql.sql").read_text(encoding="utf-8"))
    finally:
        conn.close()
    loaded = settings_for(pg_url)
    ms = load_mappings(loaded.mappings_dir)
    assert migrations.current_revisions(loaded) == migrations.head_revisions(loaded, ms)
    assert migrations.pending_changes(loaded, ms) == []


def test_mssql_script_uses_unicode_types_and_extended_properties() -> None:
    """Compiled-SQL test of every MS SQL specific statement (no server here)."""
    text = render(metadata(), DIALECTS["mssql"], ["0001"])
    assert " VARCHAR(" not in text.replace("VARCHAR(32) NOT NULL, \n\tCONSTRAINT pk_sync_schema_version", "")
    assert "external_id NVARCHAR(64) NOT NULL" in text
    assert "visible BIT NULL DEFAULT 1" in text
    assert "synced_at DATETIME2 NULL" in text
    assert "start_date DATE NULL" in text
    assert "options NVARCHAR(max) NULL" in text
    assert "id BIGINT NOT NULL IDENTITY" in text
    assert "[percent] NUMERIC(6, 2) NULL" in text  # reserved on MS SQL: quoted by SQLAlchemy
    for table in metadata().tables.values():
        assert (f"execute sp_addextendedproperty 'MS_Description', N'{table.comment}', "
                f"'schema', dbo, 'table', {table.name};") in text
        for column in table.columns:
            name = f"[{column.name}]" if column.name == "percent" else column.name
            comment = column.comment.replace("'", "''")
            assert (f"execute sp_addextendedproperty 'MS_Description', N'{comment}', 'schema', dbo, "
                    f"'table', {table.name}, 'column', {name};") in text, (table.name, column.name)
    views = len([p for p in portals().values() if p.view_fields]) + len(state_views(metadata()))
    assert text.count("\nGO\n") == len(metadata().tables) + views + 1  # a view is alone in its batch
    assert "INSERT INTO sync_schema_version (version_num) VALUES ('0001');" in text


def test_postgresql_script_comments_every_column() -> None:
    text = render(metadata(), DIALECTS["postgresql"], ["0001"])
    for table in metadata().tables.values():
        assert f"COMMENT ON TABLE {table.name} IS '" in text
        for column in table.columns:
            assert re.search(rf"COMMENT ON COLUMN {table.name}\.\"?{column.name}\"? IS '", text), column


def test_sqlite_script_carries_descriptions_as_comments() -> None:
    text = render(metadata(), DIALECTS["sqlite"], ["0001"])
    assert "-- buf_users: Люди" in text
    assert re.search(r"--   external_id +Идентификатор человека в 1С", text)
