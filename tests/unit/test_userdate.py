"""Moodle's userdate() text read back: English (12-hour clock) and Russian (month names in either case), in the
reader's time zone; anything else refused rather than guessed."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bufsync.adapters.moodle.userdate import UnreadableDate, parse

LONDON, MOSCOW = ZoneInfo("Europe/London"), ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(("text", "zone", "utc"), [
    ("Saturday, 6 September 2025, 1:00 AM", LONDON, datetime(2025, 9, 6, 0, 0, tzinfo=UTC)),  # the lab's answer, BST
    ("Monday, 1 December 2025, 12:30 PM", LONDON, datetime(2025, 12, 1, 12, 30, tzinfo=UTC)),
    ("Monday, 1 December 2025, 12:05 AM", LONDON, datetime(2025, 12, 1, 0, 5, tzinfo=UTC)),
    ("Wednesday, 31 December 2025, 11:59 PM", LONDON, datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
    ("суббота, 6 сентября 2025, 01:00", MOSCOW, datetime(2025, 9, 5, 22, 0, tzinfo=UTC)),
    ("вторник, 13 мая 2025, 23:59", MOSCOW, datetime(2025, 5, 13, 20, 59, tzinfo=UTC)),
    ("среда, 1 Январь 2025, 9:15", MOSCOW, datetime(2025, 1, 1, 6, 15, tzinfo=UTC)),
])
def test_a_moodle_date_reads_back(text: str, zone: ZoneInfo, utc: datetime) -> None:
    assert parse(text, zone).astimezone(UTC) == utc


@pytest.mark.parametrize("text", ["", "Yes", "6 September 2025", "Saturday, 2025, 1:00 AM",
                                  "Saturday, 31 February 2025, 1:00 AM", "6 Brumaire 2025, 13:00",
                                  "Saturday, 6 September 2025, 13:00 PM", "1 day 4 hours"])
def test_anything_else_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(UnreadableDate):
        parse(text, LONDON)
