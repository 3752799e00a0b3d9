from datetime import UTC, datetime

import pytest

from bufsync.scheduler.schedules import parse

T = datetime(2026, 11, 24, 21, 7, 30, tzinfo=UTC)  # a Tuesday


def test_intervals_are_aligned_to_the_epoch() -> None:
    s = parse("every 15 minutes")
    assert s.previous_due(T) == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    assert s.next_due(T) == datetime(2026, 11, 24, 21, 15, tzinfo=UTC)
    assert parse("every minute").interval == 60 and parse("Every  2 Hours").interval == 7200


def test_daily_and_weekdays_in_the_site_zone() -> None:
    s = parse("daily at 02:00", "Europe/Moscow")
    assert s.previous_due(T) == datetime(2026, 11, 24, 23, 0, tzinfo=UTC).replace(day=23)
    assert s.next_due(T) == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    weekend = parse("sat,sun at 03:30", "UTC")
    assert weekend.next_due(T) == datetime(2026, 11, 28, 3, 30, tzinfo=UTC)
    assert parse("weekdays at 07:30").days == frozenset(range(5))


@pytest.mark.parametrize("text, message", [
    ("nightly", "accepted forms"), ("every minutes", "say how many"), ("daily at 25:00", "not a time of day"),
    ("mon,funday at 10:00", "unknown day 'funday'"), ("every 0 minutes", "positive"),
])
def test_bad_schedules(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)
