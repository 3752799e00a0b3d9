"""The core's second direction (remote -> buffer), on SQLite and PostgreSQL: a remote entity held in memory
(bufsync.adapters.memory) read back into a real buffer table. Each test reads back what the table and the
ledger hold, not only the counts."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync.adapters.memory import MemorySource
from bufsync.config import load_settings
from bufsync.db import connect_buffer
from bufsync.mapping import load_mappings
from bufsync.reconcile import pull
from bufsync.reconcile.context import Context, Interrupted, Options
from bufsync.reconcile.guards import GuardRefused
from bufsync.report import MappingReport
from bufsync.schema import build_metadata
from bufsync.state.ledger import Ledger

MARKS = """\
format: 1
name: marks
description: Оценки из LMS для 1С (тестовый маппинг)
table:
  name: buf_marks
  description: Оценки (пишет движок)
  columns:
    - {name: person, type: string(64), key: true, description: Человек}
    - {name: course, type: string(100), key: true, description: Курс}
    - {name: grade, type: "decimal(10,5)", description: Оценка}
    - {name: grade_max, type: "decimal(10,5)", nullable: false, description: Максимум}
    - {name: grade_text, type: string(10), description: Оценка словами}
    - {name: passed, type: boolean, description: Зачтено}
    - {name: graded_at, type: datetime, description: Когда оценено}
    - {name: changed_at, type: datetime, nullable: false, description: Когда движок изменил строку}
    - {name: removed_at, type: datetime, description: Когда оценка исчезла из LMS}
  stamps: {changed_at: changed_at, removed_at: removed_at}
sync:
  source: {system: moodle, entity: mark}
  target: {system: buffer}
  key: [person, course]
  fields:
    person: userid
    course: course
    grade: graderaw
    grade_max: grademax
    grade_text: {source: gradetext, transform: [trim]}
    passed: passed
    graded_at: gradedategraded
  on_missing: {on_missing}
  guards: {refuse_empty: true, max_remove_ratio: 0.5, min_removals: 1}
"""


def mark(person: str, course: str, grade: Any = "4.5", **extra: Any) -> dict[str, Any]:
    return {"userid": person, "course": course, "graderaw": grade, "grademax": 5, "gradetext": " хорошо ",
            "passed": 1, "gradedategraded": 1764547200} | extra  # 2025-12-01 00:00 UTC


class World:
    """A buffer with the marks table, a remote in memory, and one call per run."""

    def __init__(self, buffer_url: str, folder: Path, on_missing: str) -> None:
        (folder / "marks.yaml").write_text(MARKS.replace("{on_missing}", on_missing), encoding="utf-8")
        self.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MAPPINGS_DIR": str(folder),
                                           "BUFSYNC_TIMEZONE": "Europe/Moscow"})
        self.mappings = load_mappings(folder)
        metadata = build_metadata(self.mappings)
        self.tables = {t.name: t for t in metadata.tables.values()}
        self._connection = connect_buffer(self.loaded)
        self.engine = self._connection.__enter__()
        self.tables["buf_marks"].create(self.engine)  # a site's own mapping: its table is the site's to create
        self.mapping = self.mappings["marks"]
        self.remote = MemorySource(self.mapping, page_size=2)

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def run(self, **options: Any) -> MappingReport:
        ctx = Context(self.engine, self.mappings, self.tables, Ledger(self.tables["sync_ledger"]),
                      self.loaded.settings.timezone, lambda mapping: self.remote, Options(**options))
        report = MappingReport("marks")
        pull.run(ctx, self.mapping, report)
        return report

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.engine.connect() as conn:
            return {(r.person, r.course): dict(r._mapping) for r in conn.execute(sa.select(self.tables["buf_marks"]))}

    def ledger(self) -> dict[str, tuple[str, str | None]]:
        t = self.tables["sync_ledger"]
        with self.engine.connect() as conn:
            return {r.record_key: (r.state, r.content_hash) for r in conn.execute(
                sa.select(t.c.record_key, t.c.state, t.c.content_hash).where(t.c.mapping_name == "marks"))}

    def edit(self, person: str, course: str, **values: Any) -> None:
        t = self.tables["buf_marks"]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.person == person, t.c.course == course).values(**values))


@pytest.fixture
def world(_upgraded_buffer: None, buffer_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    made: list[World] = []

    def make(on_missing: str = "mark") -> World:
        folder = tmp_path / f"mappings-{len(made)}"
        folder.mkdir()
        made.append(World(buffer_url, folder, on_missing))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_first_export_writes_every_row_in_its_type(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1", grade=None), mark("p1", "C2", grade="3.25")]
    report = w.run()
    assert report.counts["created"] == 3 and report.source_rows == 3
    rows = w.rows()
    assert set(rows) == {("p1", "C1"), ("p2", "C1"), ("p1", "C2")}
    first = rows[("p1", "C1")]
    assert first["grade"] == Decimal("4.5") and first["grade_max"] == Decimal("5")
    assert first["grade_text"] == "хорошо" and first["passed"] is True
    assert first["graded_at"] == datetime(2025, 12, 1, 3, 0)  # Unix time in the site's zone (Moscow, +3)
    assert first["changed_at"] is not None and first["removed_at"] is None
    assert rows[("p2", "C1")]["grade"] is None
    assert {state for state, _ in w.ledger().values()} == {"linked"}
    assert w.remote.pages_read == 3  # 3 records, 2 a page, and the page that says the read was whole


def test_nothing_changed_writes_nothing(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1")]
    w.run()
    before, ledger_before = w.rows(), w.ledger()
    w.edit("p1", "C1", changed_at=datetime(2000, 1, 1))  # a write would move it
    report = w.run()
    assert report.counts["unchanged"] == 2
    assert sum(v for k, v in report.counts.items() if k != "unchanged") == 0
    after = w.rows()
    assert after[("p1", "C1")]["changed_at"] == datetime(2000, 1, 1)
    assert after[("p2", "C1")] == before[("p2", "C1")] and w.ledger() == ledger_before


def test_a_changed_value_rewrites_that_row_only(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1")]
    w.run()
    w.edit("p1", "C1", changed_at=datetime(2000, 1, 1))
    w.edit("p2", "C1", changed_at=datetime(2000, 1, 1))
    w.remote.records = [mark("p1", "C1", grade="5"), mark("p2", "C1")]
    report = w.run()
    assert (report.counts["updated"], report.counts["unchanged"]) == (1, 1)
    rows = w.rows()
    assert rows[("p1", "C1")]["grade"] == Decimal("5") and rows[("p1", "C1")]["changed_at"] > datetime(2000, 1, 1)
    assert rows[("p2", "C1")]["changed_at"] == datetime(2000, 1, 1)


def test_a_vanished_record_is_marked_and_comes_back(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1"), mark("p3", "C1")]
    w.run()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1")]
    report = w.run()
    assert report.counts["deleted"] == 1
    gone = w.rows()[("p3", "C1")]  # the row stays for 1C to see by its change time
    assert gone["removed_at"] is not None and gone["changed_at"] == gone["removed_at"]
    assert gone["grade"] is None and gone["passed"] is None and gone["grade_text"] is None
    assert gone["grade_max"] == Decimal("5")  # a required column keeps its value
    assert w.ledger()['["p3", "C1"]'] == ("removed", None)
    assert w.run().counts["deleted"] == 0  # removed once
    w.remote.records.append(mark("p3", "C1", grade="2"))
    assert w.run().counts["created"] == 1
    back = w.rows()[("p3", "C1")]
    assert back["removed_at"] is None and back["grade"] == Decimal("2")


def test_delete_mode_deletes_the_row(world) -> None:
    w = world("delete")
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1"), mark("p3", "C1")]
    w.run()
    w.remote.records = w.remote.records[:2]
    assert w.run().counts["deleted"] == 1
    assert set(w.rows()) == {("p1", "C1"), ("p2", "C1")}


def test_a_read_that_sees_nothing_is_refused_and_changes_nothing(world) -> None:
    """A misconfigured token sees no grades: the guard refuses, the buffer keeps every row."""
    w = world()
    w.remote.records = [mark(f"p{i}", "C1") for i in range(6)]
    w.run()
    before = w.rows()
    w.remote.records = []
    with pytest.raises(GuardRefused, match="the source is empty and 6 records would be removed"):
        w.run()
    assert w.rows() == before and {s for s, _ in w.ledger().values()} == {"linked"}
    w.remote.records = [mark("p0", "C1")]
    with pytest.raises(GuardRefused, match=r"5 of 6 linked records would be marked removed .*--allow-removals 5"):
        w.run()
    assert w.rows() == before
    assert w.run(allow_removals=5).counts["deleted"] == 5
    assert sum(1 for r in w.rows().values() if r["removed_at"] is not None) == 5


def test_only_what_a_page_covered_can_vanish(world) -> None:
    """A read cut short (a time budget) covers the courses it read; rows of the others stay."""
    w = world()
    w.remote.cover_by = ("course", "course")
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1"), mark("p1", "C2"), mark("p2", "C2")]
    w.run()
    w.remote.records = [mark("p1", "C1"), mark("p1", "C2")]  # p2 left both courses
    w.remote.groups_per_read = 1  # only C1 is read this time
    assert w.run().counts["deleted"] == 1
    rows = w.rows()
    assert rows[("p2", "C1")]["removed_at"] is not None and rows[("p2", "C2")]["removed_at"] is None
    w.remote.groups_per_read = None
    assert w.run().counts["deleted"] == 1
    assert w.rows()[("p2", "C2")]["removed_at"] is not None


def test_a_bad_record_is_rejected_alone(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1", gradetext="удовлетворительно"),
                        mark("p3", "C1", graderaw="abc"), mark("p4", "C1", grademax=None), mark("p1", "C1")]
    report = w.run()
    assert report.counts["created"] == 1 and report.counts["rejected"] == 4
    reasons = {e["key"]: e["reason"] for e in report.errors}
    assert "длиннее 10 символов (17) (toolong)" in reasons['["p2", "C1"]']
    assert "(notnumber)" in reasons['["p3", "C1"]']
    assert "колонка grade_max обязательна (required)" in reasons['["p4", "C1"]']
    assert "(duplicatekey)" in reasons['["p1", "C1"]']
    assert set(w.rows()) == {("p1", "C1")}


def test_a_dry_run_writes_nothing(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1")]
    report = w.run(dry_run=True)
    assert report.counts["created"] == 2 and [p["action"] for p in report.planned] == ["create", "create"]
    assert w.rows() == {} and w.ledger() == {}


def test_full_repairs_what_others_changed_in_the_table(world) -> None:
    w = world()
    w.remote.records = [mark("p1", "C1"), mark("p2", "C1"), mark("p3", "C1")]
    w.run()
    w.edit("p1", "C1", grade=Decimal("1"))
    t = w.tables["buf_marks"]
    with w.engine.begin() as conn:
        conn.execute(t.delete().where(t.c.person == "p2"))
        conn.execute(t.insert().values(person="p9", course="C1", grade_max=5, changed_at=datetime(2000, 1, 1)))
    assert w.run().counts["unchanged"] == 3  # an incremental run trusts its ledger
    report = w.run(full=True)
    assert report.counts["repaired"] == 2 and report.counts["unchanged"] == 1 and report.counts["deleted"] == 1
    rows = w.rows()
    assert rows[("p1", "C1")]["grade"] == Decimal("4.5") and ("p2", "C1") in rows
    assert rows[("p9", "C1")]["removed_at"] is not None


def test_a_stop_between_pages_keeps_what_was_written(world) -> None:
    w = world()
    w.remote.records = [mark(f"p{i}", "C1") for i in range(5)]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        w.run(stop=stop)
    assert set(w.rows()) == {("p0", "C1"), ("p1", "C1")}  # the first page, written before the stop
    assert w.run().counts["created"] == 3
