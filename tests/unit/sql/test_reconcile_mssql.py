"""Every statement the engine sends, compiled for MS SQL Server (no server here; live tests run
when BUFSYNC_TEST_MSSQL_URL or Docker is available)."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.buffer import writeback
from bufsync.dialects.mssql import GET_APPLOCK, RELEASE_APPLOCK, MssqlDialect
from bufsync.mapping import load_mappings
from bufsync.paths import shipped_mappings_dir
from bufsync.schema import build_metadata

DIALECT = MssqlDialect().sqlalchemy_dialect()
MAPPINGS = load_mappings(shipped_mappings_dir())
TABLES = build_metadata(MAPPINGS).tables


def compiled(statement) -> str:
    return str(statement.compile(dialect=DIALECT))


def test_stream_orders_by_the_key() -> None:
    users = TABLES["buf_subscriptions"]
    text = compiled(sa.select(users).order_by(users.c.user_external_id, users.c.course_external_id, users.c.role))
    assert "FROM buf_subscriptions ORDER BY buf_subscriptions.user_external_id" in text


def test_writeback_updates_only_engine_columns() -> None:
    mapping = MAPPINGS["users"]
    table = TABLES["buf_users"]
    captured = []

    class Conn:
        def execute(self, statement, params):
            captured.append((compiled(statement), params))

    writeback.write(Conn(), table, mapping, [writeback.Status(("P1",), "ok", None, 5, None)])
    text, params = captured[0]
    assert text.startswith("UPDATE buf_users SET sync_status=:w_status, sync_error=:w_error, "
                           "synced_at=:w_synced_at, lms_id=:w_remote_id WHERE buf_users.external_id = :k_0")
    assert params == [{"k_0": "P1", "w_status": "ok", "w_error": None, "w_synced_at": None, "w_remote_id": 5}]


def test_ledger_statements() -> None:
    ledger = TABLES["sync_ledger"]
    insert = compiled(ledger.insert())
    assert insert.startswith("INSERT INTO sync_ledger (mapping_name, record_key, remote_id, remote_key, "
                             "content_hash, state")
    update = compiled(ledger.update().where(ledger.c.mapping_name == sa.bindparam("m")).values(
        state=sa.bindparam("state"), applied_at=sa.case((sa.bindparam("is_applied") == 1, sa.bindparam("now")),
                                                        else_=ledger.c.applied_at)))
    assert "CASE WHEN (:is_applied = :param_1) THEN :now ELSE sync_ledger.applied_at END" in update


def test_runs_insert_returns_the_identity() -> None:
    runs = TABLES["sync_runs"]
    assert "OUTPUT inserted.id" in compiled(runs.insert().values(kind="sync"))
    assert "id BIGINT NOT NULL IDENTITY" in str(sa.schema.CreateTable(runs).compile(dialect=DIALECT))


def test_applock_statements() -> None:
    get = str(GET_APPLOCK.compile(dialect=DIALECT))
    assert "EXEC @r = sp_getapplock @Resource = :resource, @LockMode = 'Exclusive', @LockOwner = 'Session', " \
           "@LockTimeout = 0" in get
    assert "sp_releaseapplock @Resource = :resource" in str(RELEASE_APPLOCK.compile(dialect=DIALECT))


def test_counts_and_markers() -> None:
    batches = TABLES["buf_batches"]
    text = compiled(sa.select(batches.c.batch_id, batches.c.status, batches.c.rows_expected).where(
        batches.c.entity == "users").order_by(batches.c.batch_id.desc()))
    assert "WHERE buf_batches.entity = :entity_1 ORDER BY buf_batches.batch_id DESC" in text
    assert "count(*)" in compiled(sa.select(sa.func.count()).select_from(TABLES["buf_users"]))


def test_scan_query_computes_fingerprints_in_sql_server() -> None:
    from bufsync.reconcile import fingerprint
    from bufsync.reconcile.records import RecordBuilder
    dialect = MssqlDialect()
    mapping = MAPPINGS["users"]
    columns = RecordBuilder(mapping, "UTC").hash_columns
    text = compiled(fingerprint.scan_query(dialect, MAPPINGS, dict(TABLES), TABLES["sync_ledger"], mapping, columns,
                                           full=False))
    assert "lower(convert(varchar(32), hashbytes(:hashbytes_1, " in text
    assert "string_agg(" in text and "WITHIN GROUP (ORDER BY buf_user_fields.field)" in text
    assert "LEFT OUTER JOIN sync_ledger AS own ON own.mapping_name = :mapping_name_1" in text
    assert "CAST(buf_users.external_id AS NVARCHAR(max))" in text
    subs = MAPPINGS["subscriptions"]
    text = compiled(fingerprint.scan_query(dialect, MAPPINGS, dict(TABLES), TABLES["sync_ledger"], subs,
                                           RecordBuilder(subs, "UTC").hash_columns, full=False))
    assert "LEFT OUTER JOIN sync_ledger AS lookup_0" in text and "LEFT OUTER JOIN sync_ledger AS lookup_1" in text
    missing = compiled(fingerprint.missing_query(dialect, dict(TABLES), TABLES["sync_ledger"], subs))
    assert "NOT (EXISTS (SELECT" in missing


def test_outbound_rows_are_merged_under_holdlock() -> None:
    """Grades back to 1C: one MERGE per batch, the key range held from the match to the insert, the
    parameters within the server's 2100."""
    from datetime import datetime
    from decimal import Decimal

    table = TABLES["buf_grades"]
    row = {"user_external_id": "P1", "course_external_id": "C1", "item": "course", "grade": Decimal("4.5"),
           "grade_max": Decimal("5"), "percent": None, "grade_text": "хорошо", "passed": True,
           "completed_at": None, "graded_at": datetime(2026, 12, 1), "updated_at": datetime(2026, 12, 2)}
    dialect = MssqlDialect()
    statements = list(dialect.upserts(table, [row] * 400, ["user_external_id", "course_external_id", "item"]))
    assert len(statements) == 3  # 11 columns a row: 180 rows a statement
    compiled_merge = statements[0].compile(dialect=DIALECT)
    assert len(compiled_merge.params) <= 2000
    text = str(compiled_merge)
    assert text.startswith("MERGE INTO buf_grades WITH (HOLDLOCK) AS target USING (VALUES (")
    assert ("AS source (user_external_id, course_external_id, item, grade, grade_max, [percent], grade_text, passed, "
            "completed_at, graded_at, updated_at) ON target.user_external_id = source.user_external_id AND "
            "target.course_external_id = source.course_external_id AND target.item = source.item ") in text
    assert ("WHEN MATCHED THEN UPDATE SET grade = source.grade, grade_max = source.grade_max, "
            "[percent] = source.[percent], grade_text = source.grade_text, passed = source.passed, "
            "completed_at = source.completed_at, "
            "graded_at = source.graded_at, updated_at = source.updated_at WHEN NOT MATCHED THEN INSERT "
            "(user_external_id, course_external_id, item, grade") in text
    assert text.endswith("source.graded_at, source.updated_at);")


def test_the_refresh_of_a_derived_table() -> None:
    """buf_process_enrolments from buf_learning_processes x buf_students: LTRIM/RTRIM (TRIM needs SQL Server
    2017), a UNION of the students and the teachers, NOT EXISTS both ways, no IS DISTINCT FROM."""
    from bufsync.buffer.derived import statements
    delete, insert = statements(MAPPINGS, dict(TABLES), MAPPINGS["process_enrolments"])
    text = compiled(delete)
    assert text.startswith("DELETE FROM buf_process_enrolments WHERE NOT (EXISTS (SELECT *")
    assert "SELECT DISTINCT buf_students.person_external_id AS person_external_id, " \
           "rtrim(ltrim(buf_students.group_code)) AS group_code" in text
    assert "studies.group_code = rtrim(ltrim(buf_learning_processes.group_code))" in text
    assert " UNION ALL SELECT " in text and "DISTINCT FROM" not in text
    # not-null columns compared plainly (the database hashes on all of them)
    assert "wanted.time_end = buf_process_enrolments.time_end))" in text
    text = compiled(insert)
    assert text.startswith("INSERT INTO buf_process_enrolments (user_external_id, course_external_id, "
                           "process_external_id, role, time_start, time_end) SELECT wanted.user_external_id")
    assert "WHERE NOT (EXISTS (SELECT * \nFROM buf_process_enrolments \nWHERE buf_process_enrolments." \
           "user_external_id = wanted.user_external_id" in text
