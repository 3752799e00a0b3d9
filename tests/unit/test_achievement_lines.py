"""How one achievement reads in a person's profile field (Russian, plain text, one line each)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from bufsync.adapters.moodle.entities.achievements import achievement_line, achievement_list


@pytest.mark.parametrize(("points", "text"), [
    ("1", "1 балл"), ("2", "2 балла"), ("4.00", "4 балла"), ("5", "5 баллов"), ("11", "11 баллов"),
    ("12", "12 баллов"), ("21", "21 балл"), ("22", "22 балла"), ("111", "111 баллов"), ("0", "0 баллов"),
    ("2.50", "2,5 балла"), ("0.25", "0,25 балла")])
def test_points_agree_with_the_number(points: str, text: str) -> None:
    assert achievement_line({"title": "Т", "points": Decimal(points)}) == f"Т ({text})"
    assert achievement_line({"title": "Т", "points": points}) == f"Т ({text})"  # as the ledger gives it back


def test_a_line_from_the_row_and_from_the_ledger_reads_the_same() -> None:
    row = {"title": "Победитель олимпиады по математике", "achieved_on": date(2026, 5, 12), "level": "региональный",
           "document": "диплом №123", "points": Decimal("10.00")}
    ledger = {"title": row["title"], "achieved_on": "2026-05-12", "level": "региональный", "document": "диплом №123",
              "points": "10.00"}
    text = "2026-05-12 — Победитель олимпиады по математике (региональный уровень, 10 баллов), диплом №123"
    assert achievement_line(row) == achievement_line(ledger) == text
    assert achievement_line({"title": "  Сдал\r\nГТО ", "level": "Всероссийский уровень"}) == \
        "Сдал ГТО (Всероссийский уровень)"
    assert achievement_line({"title": "", "cohort_name": "Олимпиады"}) == "Олимпиады"


def test_the_list_holds_the_active_ones_by_date_then_title() -> None:
    views = [{"title": "Б", "achieved_on": "2026-01-02"}, {"title": "А", "achieved_on": "2026-01-02", "level": "х"},
             {"title": "В"}, {"title": "Г", "achieved_on": "2025-01-01", "@active": False}, None,
             {"title": "Д", "achieved_on": "2020-01-01"}, {"title": "А", "achieved_on": "2026-01-02"}]
    text = "2020-01-01 — Д\n2026-01-02 — А\n2026-01-02 — А (х уровень)\n2026-01-02 — Б\nВ"
    assert achievement_list(views) == achievement_list(reversed(views)) == text  # whatever the rows' order
    assert achievement_list([{"title": "Г", "@active": False}]) == ""
