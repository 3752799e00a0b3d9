"""Migrations on real databases: from empty, down, up twice; the head matches the mappings."""

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.paths import shipped_mappings_dir
from bufsync.schema import VERSION_TABLE, build_metadata


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_twice(buffer_url: str, settings_for) -> None:
    loaded = settings_for(buffer_url)
    ms = load_mappings(loaded.mappings_dir)
    expected = set(build_metadata(ms).tables)
    assert tables(buffer_url) == set()
    migrations.upgrade(loaded, ms)
    assert tables(buffer_url) == expected | {VERSION_TABLE}
    assert migrations.current_revisions(loaded) == migrations.head_revisions(loaded, ms)
    migrations.downgrade(loaded, ms, "base")
    assert tables(buffer_url) == {VERSION_TABLE}
    assert migrations.current_revisions(loaded) == []
    migrations.upgrade(loaded, ms)
    migrations.upgrade(loaded, ms)  # a second upgrade is a no-op
    assert tables(buffer_url) == expected | {VERSION_TABLE}


def test_shipped_head_matches_shipped_mappings(buffer_url: str, settings_for) -> None:
    """Autogenerate finds no difference between the head and the mappings (types, comments, indexes)."""
    loaded = settings_for(buffer_url)
    ms = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, ms)
    assert migrations.pending_changes(loaded, ms) == []


def test_comments_are_stored_in_postgresql(pg_url: str, settings_for) -> None:
    loaded = settings_for(pg_url)
    migrations.upgrade(loaded, load_mappings(loaded.mappings_dir))
    engine = sa.create_engine(pg_url)
    try:
        inspector = sa.inspect(engine)
        columns = {c["name"]: c for c in inspector.get_columns("buf_users")}
        assert columns["external_id"]["comment"].startswith("Идентификатор человека в 1С")
        assert inspector.get_table_comment("buf_users")["text"].startswith("Люди")
    finally:
        engine.dispose()


def test_foreign_tables_in_the_buffer_are_left_alone(buffer_url: str, settings_for) -> None:
    """1C keeps its own tables in the same database: autogenerate must not propose dropping them."""
    loaded = settings_for(buffer_url)
    ms = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, ms)
    engine = sa.create_engine(buffer_url)
    meta = sa.MetaData()
    sa.Table("onec_private", meta, sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(engine)
    engine.dispose()
    assert migrations.pending_changes(loaded, ms) == []


def test_a_site_edits_a_mapping_then_revision_and_upgrade(buffer_url: str, tmp_path: Path) -> None:
    site_maps = tmp_path / "maps"
    shutil.copytree(shipped_mappings_dir(), site_maps)
    users = site_maps / "users.yaml"
    data = yaml.safe_load(users.read_text(encoding="utf-8"))
    data["table"]["columns"].append({"name": "birth_date", "type": "date", "description": "Дата рождения"})
    users.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MAPPINGS_DIR": str(site_maps),
                                  "BUFSYNC_MIGRATIONS_DIR": str(tmp_path / "site-migrations")})
    ms = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, ms)  # shipped head: no birth_date yet
    assert len(migrations.pending_changes(loaded, ms)) == 1
    written = migrations.revision(loaded, ms, "add birth date")
    assert len(written) == 1 and written[0].parent == tmp_path / "site-migrations"
    assert "birth_date" in written[0].read_text(encoding="utf-8")
    migrations.upgrade(loaded, ms)
    assert migrations.pending_changes(loaded, ms) == []
    engine = sa.create_engine(buffer_url)
    try:
        assert "birth_date" in {c["name"] for c in sa.inspect(engine).get_columns("buf_users")}
    finally:
        engine.dispose()
    shipped_head = migrations.head_revisions(load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url}),
                                             load_mappings(shipped_mappings_dir()))
    migrations.downgrade(loaded, ms, "-1")
    assert migrations.current_revisions(loaded) == shipped_head


def test_offline_sql_for_a_dba(pg_url: str, settings_for, capsys: pytest.CaptureFixture) -> None:
    loaded = settings_for(pg_url)
    migrations.upgrade(loaded, load_mappings(loaded.mappings_dir), sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE buf_users" in out and "COMMENT ON COLUMN buf_users.external_id" in out
    assert tables(pg_url) == set()  # printed, not run


def test_0005_keeps_queued_items_and_the_scos_view(buffer_url: str, settings_for) -> None:
    """in_doubt/resends arrive on existing queue rows as false/0 and leave again; v_queue_scos survives both
    (SQLite rebuilds the table to drop a column)."""
    loaded = settings_for(buffer_url)
    ms = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, ms, "0004")
    engine = sa.create_engine(buffer_url)
    queue = sa.table("sync_queue", *(sa.column(c) for c in (
        "portal", "operation", "payload", "idempotency_key", "status", "attempts", "max_attempts", "available_at",
        "created_at")))
    doubt = sa.table("sync_queue", sa.column("in_doubt"), sa.column("resends"), sa.column("status"))
    view = sa.table("v_queue_scos", sa.column("user_id"), sa.column("status"))
    from datetime import datetime
    try:
        with engine.begin() as conn:
            conn.execute(queue.insert().values(portal="scos", operation="participation_add",
                                               payload='{"user_id": "u1"}', idempotency_key="enrol:1", status="dead",
                                               attempts=8, max_attempts=8, available_at=datetime(2026, 11, 1),
                                               created_at=datetime(2026, 11, 1)))
        migrations.upgrade(loaded, ms)
        with engine.connect() as conn:
            row = conn.execute(sa.select(doubt.c.in_doubt, doubt.c.resends, doubt.c.status)).one()
            assert (bool(row.in_doubt), row.resends, row.status) == (False, 0, "dead")
            assert conn.execute(sa.select(view.c.user_id)).scalar_one() == "u1"
        migrations.downgrade(loaded, ms, "0004")
        with engine.connect() as conn:
            assert "in_doubt" not in {c["name"] for c in sa.inspect(conn).get_columns("sync_queue")}
            assert tuple(conn.execute(sa.select(view.c.user_id, view.c.status)).one()) == ("u1", "dead")
    finally:
        engine.dispose()
