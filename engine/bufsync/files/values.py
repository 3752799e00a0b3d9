"""File cells as the values of the buffer's portable types, and those values as the text a Russian user reads.

A cell comes from a CSV (always text, as 1C or Russian Excel wrote it) or from an .xlsx (what openpyxl gives:
str, int, float, bool, datetime, time, None). parse_cell turns it into what the column holds or says in
Russian, ending with a code as sync_error texts do, what was found and what is accepted.

Decisions (the texts below tell the user the same):
- a date with a two-digit year (31.12.26) is refused: 1926 or 2026 cannot be told apart, and 1C and Excel
  both write four digits unless someone typed two;
- day-first with dots (31.12.2026) and ISO (2026-12-31) only; slashes (12/31/2026 or 31/12/2026) are
  refused, the order of day and month is not knowable;
- a datetime is naive (the buffer holds 1C's local times): a text with an offset or Z is refused, as it
  cannot be converted without knowing the buffer's zone; files hold seconds (a fraction in ISO text is kept);
- a date column takes a datetime at midnight (1C writes dates as "31.12.2026 0:00:00"), not another time;
- decimals take a comma or a point as the decimal separator and only spaces (also no-break ones) as
  thousands separators: "1,234" is 1.234 in a Russian file, never 1234;
- surrounding whitespace is not data: it is stripped, and a blank cell is None (as is "").
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bufsync.mapping.types import PortableType

INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
TRUE_WORDS = frozenset({"да", "д", "1", "true", "yes", "истина"})
FALSE_WORDS = frozenset({"нет", "н", "0", "false", "no", "ложь"})
BOOLEAN_ACCEPTED = "да/нет, д/н, 1/0, истина/ложь, true/false, yes/no"
DATE_ACCEPTED = "дата в виде 31.12.2026 или 2026-12-31"
DATETIME_ACCEPTED = ("31.12.2026 10:30, 31.12.2026 10:30:15, 2026-12-31T10:30:00 или 2026-12-31 10:30 "
                     "(дата без времени — полночь)")

# Thousands separators Russian Windows and Excel put in numbers shown as text: space, no-break space and
# narrow no-break space (Windows 10+ uses the latter for the Russian locale).
_SPACES = " \u00a0\u202f"
_GROUPED = rf"\d{{1,3}}(?:[{_SPACES}]\d{{3}})+"
# re.ASCII: \d would take any script's digits (Arabic-Indic ١٢ is a match without it)
_INTEGER = re.compile(rf"^([+-]?)({_GROUPED}|\d+)(?:[.,]0+)?$", re.ASCII)
_DECIMAL = re.compile(rf"^([+-]?)({_GROUPED}|\d+|(?=[.,]\d))(?:[.,](\d+))?(?:[eE]([+-]?\d+))?$", re.ASCII)
_RU_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$", re.ASCII)
_RU_SHORT_YEAR = re.compile(r"^\d{1,2}\.\d{1,2}\.\d{2}(?:\s|$)", re.ASCII)
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
                  r"(Z|[+-]\d{2}(?::?\d{2})?)?$", re.IGNORECASE | re.ASCII)


class BadCell(ValueError):
    """The text (Russian, ending with a code in parentheses as bufsync's sync_error texts do, e.g. "(notdate)")
    names what was found and what is accepted; `code` is that code alone, for callers that count by kind."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(f"{reason} ({code})")
        self.code = code


def format_number(value: int | float | Decimal) -> str:
    """A number as Russian Excel shows it: a decimal comma, no thousands separator, no exponent, no ".0"
    on a whole float (an Excel cell 12345 read as 12345.0 is "12345")."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer():
            return str(int(value))
        # 15 significant digits: what Excel keeps and shows (0.1+0.2 is 0,3 there, not 0,30000000000000004)
        value = Decimal(f"{value:.15g}")
    if not value.is_finite():
        return str(value)
    return format(value, "f").replace(".", ",")


def format_date(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def format_datetime(value: datetime) -> str:
    return value.strftime("%d.%m.%Y %H:%M:%S")


def as_text(raw: Any) -> str:
    """Any cell as the text the user sees in Russian Excel (a header cell, a string column's value):
    numbers with a decimal comma, dates 31.12.2026, datetimes with the time only when there is one."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (bool, int, float, Decimal)):
        return format_number(raw)
    if isinstance(raw, datetime):
        return format_date(raw) if raw.time() == time() else format_datetime(raw)
    if isinstance(raw, date):
        return format_date(raw)
    if isinstance(raw, time):
        return raw.strftime("%H:%M:%S")
    return str(raw)


def _shown(raw: Any) -> str:
    """The found value inside a message: quoted, cut when long (a text column may be kilobytes)."""
    text = as_text(raw) if not isinstance(raw, str) else raw.strip()
    if len(text) > 60:
        text = text[:57] + "…"
    return f"«{text}»"


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_cell(raw: Any, kind: PortableType) -> Any:
    """A file cell as the Python value the column holds (kind: bufsync.mapping.types.PortableType: string(n), text,
    integer, bigint, decimal(p,s), boolean, date, datetime). None for an empty cell ("" or whitespace or None).
    Raises BadCell (toolong, notinteger, notnumber, outofrange, notboolean, notdate, notdatetime); the module's
    docstring lists the decisions on ambiguous forms."""
    if _blank(raw):
        return None
    if kind.name in ("string", "text"):
        return _string(raw, kind)
    if kind.name in INT_RANGES:
        return _integer(raw, kind)
    if kind.name == "decimal":
        return _decimal(raw, kind)
    if kind.name == "boolean":
        return _boolean(raw)
    if kind.name == "date":
        return _date(raw)
    if kind.name == "datetime":
        return _datetime(raw)
    raise ValueError(f"unknown portable type {kind}")


def _string(raw: Any, kind: PortableType) -> str:
    text = as_text(raw).strip()
    if kind.length is not None and len(text) > kind.length:
        raise BadCell(f"Значение {_shown(text)} длиннее допустимого: {len(text)} симв., в колонке {kind} "
                      f"помещается не больше {kind.length}", "toolong")
    return text


def _integer(raw: Any, kind: PortableType) -> int:
    low, high = INT_RANGES[kind.name]
    accepted = "ожидается целое число, например 12, 1 234 или -5"
    value: int
    if isinstance(raw, bool):
        raise BadCell(f"Логическое значение {_shown(raw)} вместо числа: {accepted}", "notinteger")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, (float, Decimal)):
        if not (raw.is_integer() if isinstance(raw, float) else raw.is_finite() and raw == raw.to_integral_value()):
            raise BadCell(f"{_shown(raw)} — не целое число: {accepted}", "notinteger")
        value = int(raw)
    elif isinstance(raw, str):
        match = _INTEGER.match(raw.strip())
        if not match:
            raise BadCell(f"{_shown(raw)} — не целое число: {accepted} (пробелы допустимы только между "
                          "разрядами)", "notinteger")
        value = int(match[1] + re.sub(f"[{_SPACES}]", "", match[2]))
    else:
        raise BadCell(f"{_shown(raw)} — не целое число: {accepted}", "notinteger")
    if not low <= value <= high:
        raise BadCell(f"Число {value} вне диапазона колонки {kind}: допустимо от {low} до {high}", "outofrange")
    return value


def _decimal(raw: Any, kind: PortableType) -> Decimal:
    accepted = "ожидается число с запятой или точкой, например 3,5 или 1 234,50"
    if isinstance(raw, bool):
        raise BadCell(f"Логическое значение {_shown(raw)} вместо числа: {accepted}", "notnumber")
    number: Decimal
    if isinstance(raw, int):
        number = Decimal(raw)
    elif isinstance(raw, float):
        # repr: the shortest text that is this float (Decimal(3.3) would be 3.2999999999999998223...)
        number = Decimal(repr(raw))
    elif isinstance(raw, Decimal):
        number = raw
    elif isinstance(raw, str):
        match = _DECIMAL.match(raw.strip())
        if not match or not (match[2] or match[3]):
            raise BadCell(f"{_shown(raw)} — не число: {accepted} (пробелы допустимы только между разрядами)",
                          "notnumber")
        sign, whole, fraction, exponent = match[1], re.sub(f"[{_SPACES}]", "", match[2]), match[3], match[4]
        number = Decimal(f"{sign}{whole or '0'}.{fraction or '0'}e{exponent or '0'}")
    else:
        raise BadCell(f"{_shown(raw)} — не число: {accepted}", "notnumber")
    if not number.is_finite():
        raise BadCell(f"{_shown(raw)} — не число: {accepted}", "notnumber")
    precision, scale = kind.length or 38, kind.scale or 0
    limit = Decimal(10) ** (precision - scale)
    try:
        # half away from zero, as PostgreSQL and MS SQL round a numeric on insert
        quantized = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than the context holds: far out of any column's range
        quantized = limit
    if abs(quantized) >= limit:
        raise BadCell(f"Число {_shown(raw)} не помещается в колонку {kind}: допустимо по модулю меньше "
                      f"{format_number(limit)} (не больше {precision - scale} цифр до запятой)", "outofrange")
    return quantized


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, float, Decimal)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise BadCell(f"{_shown(raw)} — не логическое значение: ожидается {BOOLEAN_ACCEPTED} (регистр букв не "
                  "важен)", "notboolean")


def _date(raw: Any) -> date:
    found = _moment(raw, "notdate", DATE_ACCEPTED, "даты")
    if isinstance(found, datetime):
        if found.time() != time():
            raise BadCell(f"{_shown(raw)}: в колонке только дата, а в значении есть время "
                          f"{found.strftime('%H:%M:%S')}: ожидается {DATE_ACCEPTED} (время 0:00:00 допустимо)",
                          "notdate")
        return found.date()
    return found


def _datetime(raw: Any) -> datetime:
    found = _moment(raw, "notdatetime", DATETIME_ACCEPTED, "даты и времени")
    if isinstance(found, datetime):
        return found
    return datetime.combine(found, time())


def _moment(raw: Any, code: str, accepted: str, what: str) -> date:
    """A date or a datetime from a date/datetime cell or a text in one of the accepted forms."""
    if isinstance(raw, datetime):
        if raw.tzinfo is not None:
            raise BadCell(f"{_shown(raw)}: время с часовым поясом; буфер хранит местное время 1С без пояса",
                          code)
        return raw
    if isinstance(raw, date):
        return raw
    if isinstance(raw, bool) or isinstance(raw, (time, timedelta)):
        raise BadCell(f"{_shown(raw)} — не значение {what}: ожидается {accepted}", code)
    if isinstance(raw, (int, float, Decimal)):
        raise BadCell(f"Число {_shown(raw)} вместо {what}: похоже на дату Excel без формата даты. Задайте ячейке "
                      f"формат «Дата» в Excel или укажите значение текстом: {accepted}", code)
    if not isinstance(raw, str):
        raise BadCell(f"{_shown(raw)} — не значение {what}: ожидается {accepted}", code)
    text = " ".join(raw.split())
    parts: tuple[int, int, int]
    clock: tuple[str | None, str | None, str | None, str | None]
    if match := _RU_DATE.match(text):
        day, month, year, hour, minute, second = match.groups()
        parts = (int(year), int(month), int(day))
        clock = (hour, minute, second, None)
    elif match := _ISO.match(text):
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        if offset:
            raise BadCell(f"{_shown(raw)}: время с часовым поясом ({offset}); буфер хранит местное время 1С без "
                          f"пояса, а перевести время без знания пояса нельзя. Укажите местное время без пояса: "
                          f"{accepted}", code)
        parts = (int(year), int(month), int(day))
        clock = (hour, minute, second, fraction)
    elif _RU_SHORT_YEAR.match(text):
        raise BadCell(f"{_shown(raw)}: год указан двумя цифрами, а 19.. или 20.. — не угадать; укажите год "
                      f"четырьмя цифрами: {accepted}", code)
    else:
        raise BadCell(f"{_shown(raw)} — не значение {what}: ожидается {accepted}", code)
    hour, minute, second, fraction = clock
    try:
        if hour is None or minute is None:   # the patterns give both or neither
            return date(*parts)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        return datetime(*parts, int(hour), int(minute), int(second or 0), micro)
    except ValueError:
        raise BadCell(f"{_shown(raw)}: такой даты или времени нет в календаре (день, месяц, часы или минуты вне "
                      f"допустимых): ожидается {accepted}", code) from None
