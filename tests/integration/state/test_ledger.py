"""The ledger keeps numeric remote ids in remote_id and text ids (UUIDs, object keys) in remote_key, on
SQLite and PostgreSQL, and gives each back as it was given."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.schema import build_metadata
from bufsync.state.ledger import LINKED, REMOVED, Entry, Ledger

UUID = "6f1d6d2e-3b8a-4c51-9a43-0c1e7f7a2b10"


def test_text_and_numeric_remote_ids(_upgraded_buffer: None, buffer_url: str) -> None:
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    table = build_metadata(mappings).tables["sync_ledger"]
    ledger = Ledger(table)
    engine = sa.create_engine(buffer_url)
    try:
        with engine.begin() as conn:
            ledger.save(conn, "statements", [Entry("a", UUID, "h1", LINKED), Entry("b", 42, "h2", LINKED),
                                             Entry("c", "s3/key/1.pdf", None, REMOVED)], known=set())
        with engine.connect() as conn:
            entries = ledger.get_many(conn, "statements", ["a", "b", "c"])
            got = (entries["a"].remote_id, entries["b"].remote_id, entries["c"].remote_id)
            assert got == (UUID, 42, "s3/key/1.pdf")
            assert ledger.remote_ids(conn, "statements") == {"a": UUID, "b": 42}  # a removed record links nothing
            assert ledger.owners(conn, "statements", [UUID, 42, "s3/key/1.pdf"]) == {UUID: "a", 42: "b"}
            stored = {r.record_key: (r.remote_id, r.remote_key) for r in conn.execute(sa.select(table))}
        assert stored == {"a": (None, UUID), "b": (42, None), "c": (None, "s3/key/1.pdf")}
        with engine.begin() as conn:  # an id that changes kind moves column
            ledger.save(conn, "statements", [Entry("a", 7, "h1", LINKED)], known={"a"})
        with engine.connect() as conn:
            row = conn.execute(sa.select(table.c.remote_id, table.c.remote_key).where(table.c.record_key == "a")).one()
        assert tuple(row) == (7, None)
    finally:
        engine.dispose()
