"""Moodle's userdate() text read back as a moment: what a report builder report gives for a date column.

Moodle 4.5's web services give report builder columns only as the user would see them: `userdate($time)` in the
reading user's language and time zone, to the minute ("Saturday, 6 September 2025, 1:00 AM" in English,
"суббота, 6 сентября 2025, 01:00" in Russian). No library reads Moodle's own strftime output in both languages
with month names in either case, so this is written here: a day, a month name, a year and a time, in any order
the language strings put them; weekday names are ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

# month by the first letters of its name: English, Russian nominative and genitive (янв, фев, ..., мая / май)
_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
    "янв": 1, "фев": 2, "мар": 3, "апр": 4, "мая": 5, "май": 5, "июн": 6, "июл": 7, "авг": 8, "сен": 9,
    "окт": 10, "ноя": 11, "дек": 12,
}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "пон", "вто", "сре", "чет", "пят", "суб", "вос")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?:\s*([ap])\.?\s*m\.?)?", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+")
_NUMBER = re.compile(r"\d+")
LANGUAGES = ("en", "ru")  # the languages whose date texts are read (a site's own language pack of these too)


class UnreadableDate(ValueError):
    """The text is not a Moodle date of a known language."""


def parse(text: str, zone: ZoneInfo) -> datetime:
    """The moment `text` names, in `zone` (the reader's time zone in Moodle), as an aware datetime."""
    rest = text.strip()
    found = _TIME.search(rest)
    if found is None:
        raise UnreadableDate(text)
    hour, minute, half = int(found.group(1)), int(found.group(2)), (found.group(3) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            raise UnreadableDate(text)
        hour = hour % 12 + (12 if half == "p" else 0)
    rest = rest[:found.start()] + " " + rest[found.end():]
    months = [_MONTHS[w[:3]] for w in (m.lower() for m in _WORD.findall(rest))
              if w[:3] in _MONTHS and w[:3] not in _WEEKDAYS]
    numbers = [int(n) for n in _NUMBER.findall(rest)]
    years = [n for n in numbers if n >= 1000]
    days = [n for n in numbers if 1 <= n <= 31]
    if len(months) != 1 or len(years) != 1 or len(days) != 1:
        raise UnreadableDate(text)
    try:
        return datetime(years[0], months[0], days[0], hour, minute, tzinfo=zone)
    except ValueError:
        raise UnreadableDate(text) from None
