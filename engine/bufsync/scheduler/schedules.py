"""Schedule strings an administrator writes, and the due instants they define.

Accepted forms (case-insensitive):
  every 30 seconds | every minute | every 15 minutes | every hour | every 2 hours
  daily at 02:00 | every day at 02:00 | weekdays at 07:30 | mon,wed,fri at 18:00 | sunday at 03:00

Interval schedules are aligned to the Unix epoch, so every daemon on every host computes the
same due instants; `at` schedules use the site's time zone. Written by hand rather than with the
`schedule` package, which only runs callbacks in one process and cannot say which due instant a
run belongs to — the thing that makes a job run exactly once per due time across hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

ACCEPTED = ("every N seconds|minutes|hours, every minute, every hour, daily at HH:MM, "
            "weekdays at HH:MM, mon,wed,fri at HH:MM")
_UNITS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}
_DAYS = {"mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2, "thu": 3, "thursday": 3,
         "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6}


@dataclass(frozen=True)
class Schedule:
    text: str
    interval: int | None = None          # seconds, for "every ..."
    days: frozenset[int] = frozenset()   # weekdays, for "... at HH:MM"
    hour: int = 0
    minute: int = 0
    zone: str = "UTC"

    def previous_due(self, now: datetime) -> datetime:
        """The latest due instant at or before now (UTC, aware)."""
        now = now.astimezone(UTC)
        if self.interval:
            seconds = int(now.timestamp()) // self.interval * self.interval
            return datetime.fromtimestamp(seconds, UTC)
        local = now.astimezone(ZoneInfo(self.zone))
        for back in range(0, 8):
            day = local - timedelta(days=back)
            candidate = day.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
            if candidate.weekday() in self.days and candidate <= local:
                return candidate.astimezone(UTC)
        raise AssertionError("a weekly schedule is due within 8 days")

    def next_due(self, now: datetime) -> datetime:
        now = now.astimezone(UTC)
        if self.interval:
            return self.previous_due(now) + timedelta(seconds=self.interval)
        local = now.astimezone(ZoneInfo(self.zone))
        for ahead in range(0, 8):
            day = local + timedelta(days=ahead)
            candidate = day.replace(hour=self.hour, minute=self.minute, second=0, microsecond=0)
            if candidate.weekday() in self.days and candidate > local:
                return candidate.astimezone(UTC)
        raise AssertionError("a weekly schedule is due within 8 days")


def parse(text: str, zone: str = "UTC") -> Schedule:
    raw = " ".join(str(text).lower().split())
    match = re.fullmatch(r"every (?:(\d+) )?(seconds?|minutes?|hours?)", raw)
    if match:
        count = int(match.group(1) or 1)
        unit = match.group(2)
        if match.group(1) is None and unit.endswith("s"):
            raise ValueError(f"'{text}': say how many, e.g. 'every 15 {unit}'")
        if count <= 0:
            raise ValueError(f"'{text}': the interval must be positive")
        seconds = count * _UNITS[unit]
        return Schedule(raw, interval=seconds, zone=zone)
    match = re.fullmatch(r"(daily|every day|weekdays|[a-z,]+) at (\d{1,2}):(\d{2})", raw)
    if match:
        what, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
        if hour > 23 or minute > 59:
            raise ValueError(f"'{text}': {hour:02d}:{minute:02d} is not a time of day")
        if what in ("daily", "every day"):
            days = frozenset(range(7))
        elif what == "weekdays":
            days = frozenset(range(5))
        else:
            names = [d for d in what.split(",") if d]
            unknown = [d for d in names if d not in _DAYS]
            if unknown:
                raise ValueError(f"'{text}': unknown day {unknown[0]!r}; days are mon, tue, wed, thu, fri, sat, sun")
            days = frozenset(_DAYS[d] for d in names)
        return Schedule(raw, days=days, hour=hour, minute=minute, zone=zone)
    raise ValueError(f"'{text}' is not a schedule; accepted forms: {ACCEPTED}")
