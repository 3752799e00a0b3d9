"""`bufsync import`'s statements as MS SQL Server receives them (compiled; no server runs here): a #temporary
staging table, the new rows inserted where no key matches, the changed ones updated through UPDATE ... FROM with
a null-safe comparison SQL Server understands, and with replace the rows the file left out deleted."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from bufsync.dialects.mssql import MssqlDialect
from bufsync.files.importing import Statements, stage_table
from bufsync.mapping import load_mappings
from bufsync.paths import shipped_mappings_dir
from bufsync.schema import build_metadata

DIALECT = MssqlDialect().sqlalchemy_dialect()
MAPPINGS = load_mappings(shipped_mappings_dir())
USERS = build_metadata(MAPPINGS).tables["buf_users"]
COLUMNS = [c for c in MAPPINGS["users"].table.columns if c.name in ("external_id", "last_name", "status")]
NAMES = [c.name for c in COLUMNS]


def compiled(statement: sa.ClauseElement) -> str:
    return " ".join(str(statement.compile(dialect=DIALECT)).split())


def statements() -> Statements:
    return Statements(USERS, stage_table("mssql", USERS, COLUMNS, ["external_id"]), NAMES, ["external_id"])


def test_the_stage_is_a_session_temporary_table() -> None:
    stage = stage_table("mssql", USERS, COLUMNS, ["external_id"])
    ddl = compiled(CreateTable(stage))
    assert ddl.startswith("CREATE TABLE [#bufsync_import] (") and "TEMPORARY" not in ddl
    assert "external_id NVARCHAR(64) NOT NULL" in ddl and "bufsync_keep BIT NOT NULL" in ddl
    assert "PRIMARY KEY (external_id)" in ddl


def test_new_rows_go_in_where_no_key_matches() -> None:
    sql = compiled(statements().insert_new())
    assert sql.startswith("INSERT INTO buf_users (external_id, last_name, status) SELECT [#bufsync_import].external_id")
    assert ("WHERE [#bufsync_import].bufsync_keep = 0 AND NOT (EXISTS (SELECT * FROM buf_users WHERE "
            "buf_users.external_id = [#bufsync_import].external_id))") in sql


def test_changed_rows_are_updated_through_a_join_null_safely() -> None:
    sql = compiled(statements().update_changed())
    assert sql.startswith("UPDATE buf_users SET last_name=[#bufsync_import].last_name, "
                          "status=[#bufsync_import].status FROM buf_users, [#bufsync_import] WHERE")
    # IS DISTINCT FROM as SQL Server has it before 2022: NOT EXISTS (SELECT a INTERSECT SELECT b)
    assert ("NOT EXISTS (SELECT buf_users.last_name INTERSECT SELECT [#bufsync_import].last_name)" in sql)
    assert "[#bufsync_import].bufsync_keep = 0" in sql


def test_replace_deletes_and_counts_what_the_file_left_out() -> None:
    gone = ("NOT (EXISTS (SELECT * FROM [#bufsync_import] WHERE buf_users.external_id = "
            "[#bufsync_import].external_id))")
    assert compiled(statements().delete_gone()) == f"DELETE FROM buf_users WHERE {gone}"
    assert compiled(statements().count_gone()) == f"SELECT count(*) AS count_1 FROM buf_users WHERE {gone}"


def test_kept_counts_the_rows_a_bad_lines_key_holds() -> None:
    assert compiled(statements().count_kept()) == (
        "SELECT count(*) AS count_1 FROM buf_users WHERE EXISTS (SELECT * FROM [#bufsync_import] WHERE "
        "buf_users.external_id = [#bufsync_import].external_id AND [#bufsync_import].bufsync_keep = 1)")
