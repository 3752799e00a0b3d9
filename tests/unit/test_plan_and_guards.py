"""The core's decisions as plain functions: a key's situation against the ledger, the removal guards,
and the read-back's values in their column types. No database, no server."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bufsync.mapping import load_mappings
from bufsync.mapping.types import parse_type
from bufsync.paths import shipped_mappings_dir
from bufsync.reconcile.guards import Weighed, removal_refusal
from bufsync.reconcile.plan import Situation, applied_of, classify, written_status
from bufsync.reconcile.pull import BadValue, RowBuilder, coerce
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import ERROR, LINKED, REMOVED, SUSPENDED, Entry

MAPPINGS = load_mappings(shipped_mappings_dir())
MOSCOW = ZoneInfo("Europe/Moscow")


def desired(content_hash: str = "h1") -> Desired:
    return Desired("P1", ("P1",), {"firstname": "Анна"}, {}, content_hash=content_hash)


@pytest.mark.parametrize(("entry", "full", "situation"), [
    (None, False, Situation.UNMATCHED),
    (Entry("P1", 5, "h1", REMOVED), False, Situation.UNMATCHED),              # removed: create or adopt again
    (Entry("P1", None, "h0", ERROR), False, Situation.UNMATCHED),             # failed before it had an id
    (Entry("P1", 5, "h1", LINKED), False, Situation.UNCHANGED),
    (Entry("P1", 5, "h1", SUSPENDED), False, Situation.UNCHANGED),
    (Entry("P1", 5, "h0", LINKED), False, Situation.LINKED_CHANGED),
    (Entry("P1", 5, "h1", ERROR), False, Situation.KEEP_ERROR),               # failed, unchanged: not retried
    (Entry("P1", 5, "h1", ERROR), True, Situation.LINKED_CHANGED),            # ... except by --full
])
def test_situations(entry: Entry | None, full: bool, situation: Situation) -> None:
    assert classify(desired(), entry, full) == situation


def test_a_suspended_entry_reads_inactive_and_a_warning_stays_a_warning() -> None:
    old = Entry("P1", 5, "h", SUSPENDED, applied_json={"firstname": "Анна", "@active": True})
    assert applied_of(old) == {"firstname": "Анна", "@active": False}
    assert written_status(Entry("P1", 5, "h", LINKED, "поле не сохранено (warning)", 0)) == \
        ("warning", "поле не сохранено (warning)")
    assert written_status(Entry("P1", 5, "h", LINKED)) == ("ok", None)


@pytest.mark.parametrize(("weighed", "allow", "refused"), [
    (Weighed(100, 100, 10), None, None),                           # 10% of 100 is allowed
    (Weighed(100, 100, 11), None, "11 of 100 linked records would be suspended (11%); the limit is 10"),
    (Weighed(100, 100, 11), 11, None),                             # --allow-removals 11
    (Weighed(7, 7, 2), None, None),                                # the floor: a leaver or two on a small table
    (Weighed(7, 7, 3), None, "the limit is 2 (max_remove_ratio 10% of 7 = 0, min_removals 2)"),
    (Weighed(0, 7, 7), None, "the source is empty and 7 records would be removed (guard refuse_empty)"),
    (Weighed(0, 0, 0), None, None),                                # nothing synced yet: nothing to guard
])
def test_the_removal_guards(weighed: Weighed, allow: int | None, refused: str | None) -> None:
    said = removal_refusal(MAPPINGS["users"], weighed, allow)
    assert (said is None) == (refused is None) and (refused is None or refused in said), said


@pytest.mark.parametrize(("text", "value", "expected"), [
    ("decimal(10,5)", "4.5", Decimal("4.50000")),
    ("decimal(10,5)", 3, Decimal("3.00000")),
    ("integer", "12", 12),
    ("boolean", 1, True),
    ("boolean", "false", False),
    ("datetime", 1764547200, datetime(2025, 12, 1, 3, 0)),        # Unix time in the site's zone
    ("datetime", "2025-12-01T00:00:00+00:00", datetime(2025, 12, 1, 3, 0)),
    ("date", "2025-12-01", date(2025, 12, 1)),
    ("string(10)", 42, "42"),
    ("string(10)", "", ""),
    ("integer", "", None),
])
def test_remote_values_in_column_types(text: str, value: object, expected: object) -> None:
    assert coerce(value, parse_type(text), MOSCOW) == expected


@pytest.mark.parametrize(("text", "value", "code"), [
    ("string(3)", "abcd", "(toolong)"),
    ("integer", "1.5", "(notinteger)"),
    ("decimal(4,2)", "123.4", "(outofrange)"),
    ("decimal(4,2)", "x", "(notnumber)"),
    ("boolean", "maybe", "(notboolean)"),
    ("datetime", "yesterday", "(notdate)"),
])
def test_values_a_column_cannot_hold(text: str, value: object, code: str) -> None:
    with pytest.raises(BadValue, match=code.replace("(", r"\(").replace(")", r"\)")):
        coerce(value, parse_type(text), MOSCOW)


def test_a_grade_row_and_its_fingerprint() -> None:
    builder = RowBuilder(MAPPINGS["grades"], "Europe/Moscow")
    record = {"user_idnumber": "P1", "course_idnumber": "C1", "item_idnumber": "course", "graderaw": "4.5",
              "grademax": 5, "percentage": "90", "gradeformatted": "хорошо", "passed": 1,
              "timecompleted": None, "gradedategraded": 1764547200}
    row = builder.build(record)
    assert row["grade"] == Decimal("4.50000") and row["passed"] is True and row["completed_at"] is None
    assert builder.key_of(row) == '["P1", "C1", "course"]'
    same = builder.build(record | {"graderaw": Decimal("4.50")})   # the same value, written another way
    assert builder.fingerprint(same) == builder.fingerprint(row)
    assert builder.fingerprint(builder.build(record | {"graderaw": "5"})) != builder.fingerprint(row)
