"""The whole core of a run (guards, scan, plan, correlation, apply, write-back, ledger) against the remote
held in memory (bufsync.adapters.memory.MemoryTarget), on a SQLite buffer in a temporary folder: the
situations a real run meets, in a fraction of a second each. What the remote holds and what the buffer
row says are read back after every run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync.adapters.memory import MemoryTarget
from bufsync.db import create_buffer_engine
from bufsync.mapping import load_mappings
from bufsync.reconcile.context import Context, Options
from bufsync.reconcile.guards import GuardRefused
from bufsync.reconcile.sequence import sync_mappings
from bufsync.report import RunReport
from bufsync.schema import build_metadata
from bufsync.state.ledger import Ledger

PEOPLE = """\
format: 1
name: people
description: Люди (тестовый маппинг)
title: Человек
table:
  name: buf_people
  description: Люди
  columns:
    - {name: external_id, type: string(64), key: true, description: Код}
    - {name: login, type: string(100), nullable: false, description: Логин}
    - {name: name, type: string(100), description: Имя}
    - {name: status, type: string(16), nullable: false, default: active, description: Состояние}
  writeback: {status: sync_status, error: sync_error, synced_at: synced_at, remote_id: remote_id}
sync:
  source: {system: buffer}
  target: {system: moodle, entity: person}
  key: [external_id]
  correlation:
    - {remote: idnumber, source: external_id}
    - {remote: username, source: login, transform: [lower]}
  fields:
    idnumber: external_id
    username: {source: login, transform: [lower]}
    name: name
  status: {column: status, active: [active], suspended: [suspended]}
  on_missing: suspend
  guards: {refuse_empty: true, max_remove_ratio: 0.5, min_removals: 1}
"""


class World:
    def __init__(self, folder: Path) -> None:
        (folder / "people.yaml").write_text(PEOPLE, encoding="utf-8")
        self.mappings = load_mappings(folder)
        metadata = build_metadata(self.mappings)
        self.tables = {t.name: t for t in metadata.tables.values()}
        self.engine = create_buffer_engine(f"sqlite:///{(folder / 'buffer.db').as_posix()}")
        metadata.create_all(self.engine, tables=[self.tables["buf_people"], self.tables["sync_ledger"]])
        self.mapping = self.mappings["people"]
        self.remote = MemoryTarget(self.mapping)

    def run(self, **options: Any) -> RunReport:
        ctx = Context(self.engine, self.mappings, self.tables, Ledger(self.tables["sync_ledger"]), "Europe/Moscow",
                      lambda mapping: self.remote, Options(**options))
        report = RunReport()
        sync_mappings(ctx, [self.mapping], report, lambda: sum(self.remote.calls.values()))
        return report

    def write(self, *rows: dict[str, Any]) -> None:
        table = self.tables["buf_people"]
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(table.delete().where(table.c.external_id == row["external_id"]))
                conn.execute(table.insert().values({"status": "active", "name": None} | row))

    def delete(self, key: str) -> None:
        table = self.tables["buf_people"]
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.external_id == key))

    def rows(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.external_id: dict(r._mapping) for r in conn.execute(sa.select(self.tables["buf_people"]))}

    def remote_by(self, idnumber: str) -> dict[str, Any]:
        (record,) = [r for r in self.remote.records.values() if r.get("idnumber") == idnumber]
        return record


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.engine.dispose()


def counts(report: RunReport) -> dict[str, int]:
    return {k: v for k, v in report.mappings[0].counts.items() if v}


def test_create_then_nothing_then_one_change(world: World) -> None:
    world.write(*({"external_id": f"P{i}", "login": f"User{i}", "name": f"Имя {i}"} for i in range(3)))
    assert counts(world.run()) == {"created": 3}
    assert world.remote_by("P1") == {"idnumber": "P1", "username": "user1", "name": "Имя 1", "@active": True}
    row = world.rows()["P1"]
    assert row["sync_status"] == "ok" and row["sync_error"] is None and row["remote_id"] is not None
    calls = dict(world.remote.calls)
    assert counts(world.run()) == {"unchanged": 3} and world.remote.calls == calls  # nothing sent
    world.write({"external_id": "P1", "login": "User1", "name": "Анна"})
    assert counts(world.run()) == {"updated": 1, "unchanged": 2}
    assert world.remote_by("P1")["name"] == "Анна"


def test_a_vanished_row_suspends_and_its_return_reactivates(world: World) -> None:
    world.write(*({"external_id": f"P{i}", "login": f"u{i}"} for i in range(4)))
    world.run()
    world.delete("P3")
    assert counts(world.run()) == {"suspended": 1, "unchanged": 3}
    assert world.remote_by("P3")["@active"] is False
    world.write({"external_id": "P3", "login": "u3"})
    assert counts(world.run()) == {"reactivated": 1, "unchanged": 3}
    assert world.remote_by("P3")["@active"] is True and world.rows()["P3"]["sync_status"] == "ok"


def test_a_refused_row_fails_alone_and_is_not_hammered(world: World) -> None:
    world.write({"external_id": "P1", "login": "u1"}, {"external_id": "P2", "login": "u2"})
    world.remote.refuse["P2"] = "Логин занят (usernameexists)"
    assert counts(world.run()) == {"created": 1, "rejected": 1}
    row = world.rows()["P2"]
    assert row["sync_status"] == "error" and row["sync_error"] == "Логин занят (usernameexists)"
    creates = world.remote.calls["create"]
    assert counts(world.run()) == {"unchanged": 1, "failing": 1} and world.remote.calls["create"] == creates
    world.remote.refuse.clear()
    world.write({"external_id": "P2", "login": "u2b"})  # 1C fixed the row: tried again
    assert counts(world.run()) == {"created": 1, "unchanged": 1} and world.rows()["P2"]["sync_status"] == "ok"


def test_an_existing_record_is_adopted_unless_something_contradicts_it(world: World) -> None:
    world.remote.records = {
        7: {"idnumber": "P1", "username": "u1", "name": "старое", "@active": True},
        8: {"idnumber": "", "username": "u2", "@active": True},
        9: {"idnumber": "OTHER", "username": "u3", "@active": True},   # found by login, but someone else
    }
    world.remote.next_id = 10
    world.write({"external_id": "P1", "login": "u1", "name": "Новое"}, {"external_id": "P2", "login": "U2"},
                {"external_id": "P3", "login": "u3"})
    report = world.run()
    assert counts(report) == {"adopted": 2, "disputed": 1}
    assert world.remote.records[7]["name"] == "Новое" and world.remote.records[8]["idnumber"] == "P2"
    assert world.remote.records[9]["idnumber"] == "OTHER" and len(world.remote.records) == 3  # nothing created
    assert "(disputed)" in world.rows()["P3"]["sync_error"] and world.rows()["P1"]["remote_id"] == 7


def test_the_guards_refuse_before_anything_changes(world: World) -> None:
    world.write(*({"external_id": f"P{i}", "login": f"u{i}"} for i in range(4)))
    world.run()
    for key in ("P0", "P1", "P2"):
        world.delete(key)
    with pytest.raises(GuardRefused, match="3 of 4 linked records would be suspended"):
        world.run()
    assert all(r["@active"] for r in world.remote.records.values())
    for key in ("P3",):
        world.delete(key)
    with pytest.raises(GuardRefused, match="buf_people is empty but 4 records were synced before"):
        world.run()
    assert counts(world.run(allow_removals=4)) == {"suspended": 4}


def test_no_create_holds_new_rows_back(world: World) -> None:
    world.write({"external_id": "P1", "login": "u1"})
    assert counts(world.run(no_create=True)) == {}
    assert world.remote.records == {} and world.rows()["P1"]["sync_status"] is None
    assert counts(world.run()) == {"created": 1}


def test_a_dry_run_plans_and_writes_nothing(world: World) -> None:
    world.write({"external_id": "P1", "login": "u1"}, {"external_id": "P2", "login": "u2"})
    report = world.run(dry_run=True)
    assert counts(report) == {"created": 2} and [p["action"] for p in report.mappings[0].planned] == ["create"] * 2
    assert world.remote.records == {} and world.rows()["P1"]["sync_status"] is None


def test_full_repairs_what_was_changed_by_hand(world: World) -> None:
    world.write({"external_id": "P1", "login": "u1", "name": "Анна"})
    world.run()
    world.remote_by("P1")["name"] = "изменено вручную"
    assert counts(world.run()) == {"unchanged": 1}  # an incremental run trusts its ledger
    assert counts(world.run(full=True)) == {"repaired": 1}
    assert world.remote_by("P1")["name"] == "Анна"
