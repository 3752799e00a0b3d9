"""parse_cell: file cells (CSV text, openpyxl's typed cells) as the values of each portable type, and the
BadCell texts: Russian, what was found, what is accepted, a code at the end."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bufsync.files.values import BadCell, as_text, format_number, parse_cell
from bufsync.mapping.types import PortableType, parse_type


def t(text: str) -> PortableType:
    return parse_type(text)


@pytest.mark.parametrize("kind", ["string(10)", "text", "integer", "bigint", "decimal(10,2)", "boolean", "date",
                                  "datetime"])
@pytest.mark.parametrize("raw", [None, "", "   ", "\t\r\n", "\xa0"])
def test_empty_cells_are_none(raw: Any, kind: str) -> None:
    assert parse_cell(raw, t(kind)) is None


@pytest.mark.parametrize("raw, expected", [
    ("  Иванов ", "Иванов"),
    ("007", "007"),                       # an idnumber typed as text keeps its zeros
    (12345.0, "12345"),                   # an Excel number cell read as a float: no ".0"
    (12345, "12345"),
    (3.5, "3,5"),                         # as Russian Excel shows it
    (0.1 + 0.2, "0,3"),                   # Excel's 15 digits, not the float's noise
    (Decimal("1.50"), "1,50"),
    (True, "1"),
    (datetime(2026, 12, 31), "31.12.2026"),
    (datetime(2026, 12, 31, 10, 30, 15), "31.12.2026 10:30:15"),
    (date(2026, 1, 2), "02.01.2026"),
    ("строка\nвторая", "строка\nвторая"),
])
def test_strings(raw: Any, expected: str) -> None:
    assert parse_cell(raw, t("text")) == expected


def test_string_length_counts_characters_not_bytes() -> None:
    assert parse_cell("Ёлкина", t("string(6)")) == "Ёлкина"
    assert parse_cell("  Ёлкина  ", t("string(6)")) == "Ёлкина"   # stripped before it is measured
    with pytest.raises(BadCell) as caught:
        parse_cell("Ёлкина-Палкина", t("string(6)"))
    assert caught.value.code == "toolong"
    assert str(caught.value) == ("Значение «Ёлкина-Палкина» длиннее допустимого: 14 симв., в колонке string(6) "
                                 "помещается не больше 6 (toolong)")


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(BadCell, match=r"«x{57}…» длиннее допустимого: 5000 симв\.") as caught:
        parse_cell("x" * 5000, t("string(100)"))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("raw, expected", [
    ("12", 12), (" -12 ", -12), ("+7", 7), ("007", 7), ("12.0", 12), ("12,00", 12),
    ("1 234", 1234), ("1\xa0234", 1234), ("1\u202f234\u202f567", 1234567), ("-1 234", -1234),
    (12, 12), (12.0, 12), (Decimal("12.000"), 12),
])
def test_integers(raw: Any, expected: int) -> None:
    value = parse_cell(raw, t("integer"))
    assert value == expected and type(value) is int


@pytest.mark.parametrize("raw", ["12.5", "12,5", "abc", "12 34", "1 2345", "1e3", "0x10", "12-", "--1", 12.5,
                                 True, Decimal("1.5"), datetime(2026, 1, 1), "١٢"])
def test_not_integers(raw: Any) -> None:
    with pytest.raises(BadCell, match=r"целое число.*\(notinteger\)$") as caught:
        parse_cell(raw, t("integer"))
    assert caught.value.code == "notinteger"


def test_integer_ranges() -> None:
    assert parse_cell("2147483647", t("integer")) == 2**31 - 1
    assert parse_cell("-2 147 483 648", t("integer")) == -(2**31)
    with pytest.raises(BadCell, match=r"^Число 2147483648 вне диапазона колонки integer: допустимо от -2147483648 "
                                      r"до 2147483647 \(outofrange\)$"):
        parse_cell("2147483648", t("integer"))
    assert parse_cell("9223372036854775807", t("bigint")) == 2**63 - 1
    assert parse_cell(" 9 007 199 254 740 993 ", t("bigint")) == 9007199254740993   # beyond a float's precision
    with pytest.raises(BadCell, match=r"\(outofrange\)$"):
        parse_cell(str(2**63), t("bigint"))


@pytest.mark.parametrize("raw, kind, expected", [
    ("3,5", "decimal(5,2)", "3.50"), ("3.5", "decimal(5,2)", "3.50"), ("1 234,50", "decimal(8,2)", "1234.50"),
    ("1\xa0234.5", "decimal(8,2)", "1234.50"), ("-0,25", "decimal(5,2)", "-0.25"), (",5", "decimal(5,2)", "0.50"),
    ("1,234", "decimal(8,3)", "1.234"),          # a comma is a decimal separator, never thousands
    ("2,345", "decimal(5,2)", "2.35"), ("-2,345", "decimal(5,2)", "-2.35"),   # half away from zero
    ("1E-05", "decimal(10,5)", "0.00001"), ("12", "decimal(5,0)", "12"),
    (3.3, "decimal(5,2)", "3.30"), (0.1 + 0.2, "decimal(5,2)", "0.30"), (42, "decimal(5,2)", "42.00"),
    (Decimal("1.005"), "decimal(5,2)", "1.01"), ("999,994", "decimal(5,2)", "999.99"),
])
def test_decimals(raw: Any, kind: str, expected: str) -> None:
    value = parse_cell(raw, t(kind))
    assert isinstance(value, Decimal)
    assert str(value) == expected   # the column's scale, digit for digit


@pytest.mark.parametrize("raw", ["abc", "3,5,1", "1,234.5", "1.234,5", "3.", "+", "1 23,4", "NaN", "inf", True,
                                 float("nan"), datetime(2026, 1, 1), "3,5 руб."])
def test_not_numbers(raw: Any) -> None:
    with pytest.raises(BadCell, match=r"число.*\(notnumber\)$") as caught:
        parse_cell(raw, t("decimal(10,2)"))
    assert caught.value.code == "notnumber"


@pytest.mark.parametrize("raw", ["1000", "999,995", "-1000,00", 1e300, "1E+400"])
def test_decimals_out_of_range(raw: Any) -> None:
    with pytest.raises(BadCell, match=r"не помещается в колонку decimal\(5,2\): допустимо по модулю меньше 1000 "
                                      r"\(не больше 3 цифр до запятой\) \(outofrange\)$"):
        parse_cell(raw, t("decimal(5,2)"))


@pytest.mark.parametrize("raw, expected", [
    ("да", True), ("Нет", False), ("Д", True), ("н", False), ("1", True), ("0", False), ("TRUE", True),
    ("false", False), ("Yes", True), ("no", False), ("ИСТИНА", True), ("Ложь", False), (" да ", True),
    (True, True), (False, False), (1, True), (0, False), (1.0, True), (0.0, False),
])
def test_booleans(raw: Any, expected: bool) -> None:
    assert parse_cell(raw, t("boolean")) is expected


@pytest.mark.parametrize("raw", ["может быть", "2", "y", "+", 2, 0.5])
def test_not_booleans(raw: Any) -> None:
    with pytest.raises(BadCell, match=r"не логическое значение: ожидается да/нет, д/н, 1/0, истина/ложь, true/false, "
                                      r"yes/no \(регистр букв не важен\) \(notboolean\)$"):
        parse_cell(raw, t("boolean"))


@pytest.mark.parametrize("raw, expected", [
    ("31.12.2026", date(2026, 12, 31)), ("1.2.2026", date(2026, 2, 1)), ("2026-12-31", date(2026, 12, 31)),
    ("31.12.2026 0:00:00", date(2026, 12, 31)),       # how 1C writes a date
    ("2026-12-31T00:00:00", date(2026, 12, 31)),
    (datetime(2026, 12, 31), date(2026, 12, 31)),      # an Excel date cell, as openpyxl gives it
    (date(2026, 12, 31), date(2026, 12, 31)),
])
def test_dates(raw: Any, expected: date) -> None:
    value = parse_cell(raw, t("date"))
    assert value == expected and type(value) is date


@pytest.mark.parametrize("raw, why", [
    ("31.12.26", "год указан двумя цифрами"),
    ("31/12/2026", "не значение даты: ожидается дата в виде 31.12.2026 или 2026-12-31"),
    ("12/31/2026", "не значение даты"),
    ("31 декабря 2026", "не значение даты"),
    ("32.12.2026", "такой даты или времени нет в календаре"),
    ("29.02.2026", "такой даты или времени нет в календаре"),
    ("2026-13-01", "такой даты или времени нет в календаре"),
    ("31.12.2026 10:30", "в значении есть время 10:30:00"),
    (datetime(2026, 12, 31, 10, 30), "в значении есть время 10:30:00"),
    (46387, "похоже на дату Excel без формата даты"),
    (46387.0, "похоже на дату Excel без формата даты"),
    (time(10, 30), "не значение даты"),
    (True, "не значение даты"),
    ("2026-12-31T00:00:00+03:00", "с часовым поясом"),
])
def test_not_dates(raw: Any, why: str) -> None:
    with pytest.raises(BadCell, match=r"\(notdate\)$") as caught:
        parse_cell(raw, t("date"))
    assert why in str(caught.value)
    assert caught.value.code == "notdate"


@pytest.mark.parametrize("raw, expected", [
    ("31.12.2026 10:30", datetime(2026, 12, 31, 10, 30)),
    ("31.12.2026 10:30:15", datetime(2026, 12, 31, 10, 30, 15)),
    ("31.12.2026  9:05:00", datetime(2026, 12, 31, 9, 5)),
    ("2026-12-31T10:30:00", datetime(2026, 12, 31, 10, 30)),
    ("2026-12-31 10:30", datetime(2026, 12, 31, 10, 30)),
    ("2026-12-31 10:30:15.1234567", datetime(2026, 12, 31, 10, 30, 15, 123456)),   # MS SQL's datetime2 text
    ("31.12.2026", datetime(2026, 12, 31)),          # a date alone is midnight
    ("2026-12-31", datetime(2026, 12, 31)),
    (datetime(2026, 12, 31, 10, 30, 15), datetime(2026, 12, 31, 10, 30, 15)),
    (date(2026, 12, 31), datetime(2026, 12, 31)),
])
def test_datetimes(raw: Any, expected: datetime) -> None:
    value = parse_cell(raw, t("datetime"))
    assert value == expected and value.tzinfo is None


@pytest.mark.parametrize("raw, why", [
    ("2026-12-31T10:30:00+03:00", "время с часовым поясом (+03:00); буфер хранит местное время 1С без пояса"),
    ("2026-12-31T10:30:00Z", "время с часовым поясом (Z)"),
    (datetime(2026, 12, 31, tzinfo=UTC), "время с часовым поясом"),
    ("31.12.26 10:30", "год указан двумя цифрами"),
    ("31.12.2026 25:00", "такой даты или времени нет в календаре"),
    ("31.12.2026 10", "не значение даты и времени: ожидается 31.12.2026 10:30"),
    ("вчера", "не значение даты и времени"),
    (46387.4375, "похоже на дату Excel без формата даты"),
    (time(10, 30), "не значение даты и времени"),
    (timedelta(hours=1), "не значение даты и времени"),
])
def test_not_datetimes(raw: Any, why: str) -> None:
    with pytest.raises(BadCell, match=r"\(notdatetime\)$") as caught:
        parse_cell(raw, t("datetime"))
    assert why in str(caught.value)


def test_every_bad_cell_text_ends_with_its_code() -> None:
    samples = {"toolong": ("abcdef", "string(3)"), "notinteger": ("x", "integer"), "notnumber": ("x", "decimal(5,2)"),
               "outofrange": ("1000", "decimal(5,2)"), "notboolean": ("x", "boolean"), "notdate": ("x", "date"),
               "notdatetime": ("x", "datetime")}
    for code, (raw, kind) in samples.items():
        with pytest.raises(BadCell) as caught:
            parse_cell(raw, t(kind))
        assert caught.value.code == code
        assert str(caught.value).endswith(f" ({code})")
        assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value, text", [
    (12, "12"), (-3, "-3"), (12.0, "12"), (1.5, "1,5"), (1e-7, "0,0000001"), (1e20, "100000000000000000000"),
    (Decimal("1234.50"), "1234,50"), (Decimal("1E+3"), "1000"), (True, "1"), (False, "0"),
])
def test_numbers_as_russian_excel_shows_them(value: Any, text: str) -> None:
    assert format_number(value) == text
    assert as_text(value) == text
