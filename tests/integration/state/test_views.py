"""v_queue_<portal>: compiled per dialect (MS SQL included), and read live on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.config import load_settings
from bufsync.dialects import DIALECTS
from bufsync.queue import outbox
from bufsync.state.tables import add_state_tables
from bufsync.state.views import DropView, queue_views


def compiled(dialect: str) -> str:
    queue = add_state_tables(sa.MetaData())["sync_queue"]
    [view] = [v for v in queue_views(queue, dialect) if v.name == "v_queue_scos"]
    return str(view.compile(dialect=DIALECTS[dialect].sqlalchemy_dialect()))


def test_each_dialect_unpacks_json_with_its_own_function() -> None:
    mssql = compiled("mssql")
    assert mssql.startswith("CREATE VIEW v_queue_scos AS SELECT sync_queue.id")
    assert "JSON_VALUE(sync_queue.payload, '$._moodle_course_id') AS moodle_course_id" in mssql
    assert "JSON_VALUE(sync_queue.payload, '$.status') AS new_status" in mssql
    assert "WHERE sync_queue.portal = 'scos'" in mssql
    assert "CAST(sync_queue.payload AS JSONB) ->> 'user_id' AS user_id" in compiled("postgresql")
    assert "json_extract(sync_queue.payload, '$.rating') AS rating" in compiled("sqlite")
    assert str(DropView("v_queue_scos").compile(dialect=DIALECTS["mssql"].sqlalchemy_dialect())) == \
        "DROP VIEW v_queue_scos"


def test_the_migrated_view_shows_payload_columns_and_only_its_portal(queue) -> None:
    engine, table = queue
    outbox.enqueue(engine, table, [
        outbox.Item("scos", "result", {"course_id": "c-1", "user_id": "u-1", "session_id": "s", "rating": 87.5,
                                       "checkpoint_name": "Эссе", "_moodle_course_id": 5, "_moodle_user_id": 42},
                    "k1"),
        outbox.Item("sferum", "chat_create", {"course_id": "other"}, "k2")])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT operation, status, course_id, user_id, rating, checkpoint_name, "
                                    "moodle_course_id, moodle_user_id FROM v_queue_scos")).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.operation, row.status, row.course_id, row.user_id, row.checkpoint_name) == (
        "result", "pending", "c-1", "u-1", "Эссе")
    assert float(row.rating) == 87.5 and str(row.moodle_course_id) == "5" and str(row.moodle_user_id) == "42"


def test_downgrade_drops_the_view_and_upgrade_brings_it_back(buffer_url: str) -> None:
    from bufsync import migrations
    from bufsync.mapping import load_mappings
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    assert "v_queue_scos" in sa.inspect(engine).get_view_names()
    migrations.downgrade(loaded, mappings, "0003")
    assert "v_queue_scos" not in sa.inspect(engine).get_view_names()
    assert not sa.inspect(engine).has_table("sync_scos_courses")
    migrations.upgrade(loaded, mappings)
    assert "v_queue_scos" in sa.inspect(engine).get_view_names()
    engine.dispose()
