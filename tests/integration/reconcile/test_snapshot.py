"""The scan reads one snapshot: a row 1C deletes between the scan's read of changed keys and its read of
vanished keys is not taken as changed and vanished at once; the next run removes it (on PostgreSQL:
REPEATABLE READ; on SQLite: one read transaction). Checked in Moodle, read back through Web Services."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from bufsync.reconcile import fingerprint
from tests.integration.reconcile.conftest import World, people


def counts(report: Any, mapping: str) -> dict[str, int]:
    return {k: v for k, v in next(m.counts for m in report.mappings if m.mapping == mapping).items() if v}


def test_a_row_deleted_during_the_scan_is_seen_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.insert("buf_users", people(5))
    world.run("users")
    world.update("buf_users", lambda t: t.c.external_id == "P00001", last_name="Новая")
    original = fingerprint.missing_query
    deleted, calls = [], []

    def delete_between(*args: Any, **kwargs: Any) -> Any:
        """1C deletes the changed row after the scan read the changed keys, before it reads the vanished ones
        (the first call is the guards' count, before the scan)."""
        calls.append(True)
        if len(calls) == 2:
            users = world.tables["buf_users"]
            with world.engine.begin() as conn:
                conn.execute(sa.delete(users).where(users.c.external_id == "P00001"))
            deleted.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(fingerprint, "missing_query", delete_between)
    report = world.run("users")
    assert deleted and report.outcome == "ok", report.render()
    # the snapshot saw the row changed, not gone: it is not suspended in this run (and its update finds no row
    # to read any more, so nothing is sent for it either)
    assert counts(report, "users") == {"unchanged": 4}
    user = world.ws_user(idnumber="P00001")
    assert user is not None and user["lastname"] == "Иванов1" and not user["suspended"]
    monkeypatch.setattr(fingerprint, "missing_query", original)
    assert counts(world.run("users"), "users") == {"suspended": 1, "unchanged": 4}  # the next run sees it gone
    assert world.ws_user(idnumber="P00001")["suspended"]
