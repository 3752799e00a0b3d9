"""moodle.grades.completion: report reads every completion of the site in one call; each course then takes its
own from them by a lookup, not by a pass over the whole site's completions (500 courses x 10,000 completions
would be 5 million steps a run, growing with the square of the site)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from bufsync.adapters.moodle import completion
from bufsync.adapters.moodle.entities.grades import GradeReader
from bufsync.config import load_settings
from bufsync.mapping import load_mappings

T = TypeVar("T")
R = TypeVar("R")


class Counted(dict[tuple[str, str], datetime]):
    passes = 0

    def items(self):  # type: ignore[override]
        Counted.passes += 1
        return super().items()

    def __iter__(self):  # type: ignore[override]
        Counted.passes += 1
        return super().__iter__()


class Client:
    concurrency = 1

    def grade_items(self, courseid: int, userid: int = 0) -> list[dict[str, Any]]:
        return [{"userid": u, "useridnumber": f"P{u}", "courseidnumber": f"C{courseid}",
                 "gradeitems": [{"id": 1, "itemtype": "course", "graderaw": 50, "grademax": 100}]} for u in (1, 2)]

    def parallel(self, items: Sequence[T], work: Callable[[T], R]) -> list[R]:
        return [work(item) for item in items]


class Scope:
    def linked(self, entity: str) -> list[int]:
        return [1, 2, 3]

    def resume_at(self) -> None:
        return None

    def held(self) -> list[dict[str, str]]:
        return []

    def stopped_at(self, position: str | None) -> None:
        pass


def test_each_course_takes_its_completions_by_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    done = datetime(2026, 6, 30, 11, 5, tzinfo=UTC)
    site = Counted({(f"C{c}", "P1"): done for c in (1, 2, 3)} | {("C9", "P1"): done})
    monkeypatch.setattr(completion, "report_completions", lambda client, reportid: site)
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": "sqlite://", "BUFSYNC_MOODLE_GRADES_COMPLETION": "report",
                                  "BUFSYNC_MOODLE_GRADES_COMPLETION_REPORT": "7"})
    reader = GradeReader(Client(), load_mappings(loaded.mappings_dir)["grades"], loaded.moodle)  # type: ignore[arg-type]
    Counted.passes = 0
    records = [r for page in reader.read(Scope()) for r in page.records]  # type: ignore[arg-type]
    assert {(r["course_idnumber"], r["user_idnumber"]): r["timecompleted"] for r in records} == {
        (f"C{c}", f"P{u}"): (done if u == 1 else None) for c in (1, 2, 3) for u in (1, 2)}
    assert Counted.passes <= 1  # the site's completions gone through once, not once a course
