"""Writing a header and streamed rows as a file Russian Excel opens right, atomically.

CSV: ';' (Russian Excel's list separator), CRLF, quoted as needed by the csv module, UTF-8 with a BOM (without
it Excel reads UTF-8 as cp1251) or cp1251. Values are written so that read.open_sheet + values.parse_cell give
them back: None as empty, booleans 1/0, numbers with a decimal comma and no thousands separator, dates
31.12.2026, datetimes 31.12.2026 10:30:15 (seconds: 1C's precision). What does not come back: surrounding
spaces (parse_cell strips them), "" (read as None) and a row of nothing but empty values (skipped on reading).
.xlsx: typed cells (texts always texts, never formulas), dates and datetimes with Russian formats, the header
bold and frozen with a filter; a line break inside a text is LF there (CR LF reads back as LF). Integers of
16+ digits and decimals of 16+ significant digits are written as text: Excel keeps 15 digits of a number and
would change the rest on the next save.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from bufsync.files.read import FileProblem
from bufsync.files.values import format_date, format_datetime, format_number

ENCODINGS = {"utf-8-sig": "utf-8-sig", "cp1251": "cp1251"}   # codecs' names; plain UTF-8 Excel shows as cp1251
DATE_FORMAT = "dd.mm.yyyy"
DATETIME_FORMAT = "dd.mm.yyyy hh:mm:ss"
EXCEL_DIGITS = 15
_SHEET_TITLE_BAD = re.compile(r"[\\/*?:\[\]]")


def write_sheet(path: Path, header: list[str], rows: Iterable[Sequence[Any]], encoding: str = "utf-8-sig",
                sheet_title: str = "bufsync") -> int:
    """Writes a file Russian Excel opens right, by the suffix: .csv (`;`, CRLF, encoding "utf-8-sig" or "cp1251";
    a character cp1251 lacks raises FileProblem naming the row, the column and the character) or .xlsx
    (write-only workbook, typed cells, the header bold and frozen; `encoding` is not used). Atomic: written to a
    temporary file in the same folder, then os.replace; nothing is left behind on an error. Streams the rows.
    Returns the rows written (the header not counted). A row must have as many values as the header."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise FileProblem(f"Файл «{path.name}»: bufsync записывает только .csv и .xlsx, а не "
                          f"«{path.suffix or '(без расширения)'}»")
    header = [str(name) for name in header]
    checked = _checked(rows, len(header))
    with _atomic(path) as stream:
        if suffix == ".csv":
            return _write_csv(stream, path, header, checked, _csv_encoding(encoding))
        return _write_xlsx(stream, path, header, checked, sheet_title)


def _csv_encoding(encoding: str) -> str:
    try:
        name = ENCODINGS.get(codecs.lookup(encoding).name, "")
    except LookupError:
        name = ""
    if not name:
        raise ValueError(f"encoding for a CSV must be utf-8-sig or cp1251, not {encoding!r}")
    return name


def _checked(rows: Iterable[Sequence[Any]], width: int) -> Iterator[Sequence[Any]]:
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"row {number} has {len(row)} values for {width} header columns")
        yield row


@contextmanager
def _atomic(path: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside `path` that replaces it only when the body ends well. Created with os.open and
    0o666: the umask applies as to any new file (tempfile's 0600 would hide an export from the folder's other
    users, e.g. over a Samba share)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(temp, flags, 0o666)
    except FileNotFoundError:
        raise FileProblem(f"Не удалось записать «{path}»: нет папки «{path.parent}»") from None
    except PermissionError:
        raise FileProblem(f"Не удалось записать «{path}»: нет прав на запись в папку «{path.parent}»") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- csv


def csv_text(value: Any) -> str:
    """A value as a CSV cell's text (values.parse_cell reads it back to the same value)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, Decimal)):
        return format_number(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(f"a datetime with a zone cannot be written: {value!r} (the buffer's datetimes are naive)")
        return format_datetime(value)
    if isinstance(value, date):
        return format_date(value)
    return str(value)


def _write_csv(stream: IO[bytes], path: Path, header: list[str], rows: Iterable[Sequence[Any]],
               encoding: str) -> int:
    """Each record is formatted to text by the csv module, then encoded here (not by a text wrapper): an
    encoding error then belongs to one known row, whose cell and character the message names."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", quotechar='"', lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    if encoding == "utf-8-sig":
        stream.write(b"\xef\xbb\xbf")
    count = -1
    for count, cells in enumerate(_with_header(header, rows, csv_text)):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        try:
            stream.write(buffer.getvalue().encode(codec))
        except UnicodeEncodeError:
            raise _unencodable(path, header, count + 1, cells, codec) from None
    return count


def _with_header(header: list[str], rows: Iterable[Sequence[Any]], text: Any) -> Iterator[list[str]]:
    yield header
    for row in rows:
        yield [text(value) for value in row]


def _unencodable(path: Path, header: list[str], line: int, cells: list[str], codec: str) -> FileProblem:
    for column, cell in enumerate(cells):
        for char in cell:
            try:
                char.encode(codec)
            except UnicodeEncodeError:
                name = header[column] if line > 1 else f"№{column + 1}"
                return FileProblem(f"Файл «{path.name}» не записан: в строке {line} (строка 1 — заголовок), колонке "
                                   f"«{name}» символ «{char}» (U+{ord(char):04X}), которого нет в кодировке "
                                   f"{codec}. Выгрузите в UTF-8 (по умолчанию) или в .xlsx")
    return FileProblem(f"Файл «{path.name}» не записан: строка {line} не кодируется в {codec}")


# ---------------------------------------------------------------- xlsx


def _write_xlsx(stream: IO[bytes], path: Path, header: list[str], rows: Iterable[Sequence[Any]],
                title: str) -> int:
    workbook = Workbook(write_only=True)
    sheet: WriteOnlyWorksheet = workbook.create_sheet(_sheet_title(title))
    # types-openpyxl leaves column_dimensions and auto_filter out of WriteOnlyWorksheet; openpyxl sets both up
    # (Worksheet._setup) and writes them. Widths go before the rows in a write-only sheet.
    for index, name in enumerate(header, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = min(max(len(name) + 4, 12), 60)  # type: ignore[attr-defined]
    sheet.freeze_panes = "A2"
    bold = Font(name="Calibri", size=11, bold=True)   # a bare <b/> leaves Excel to guess the rest
    line = 1
    try:
        sheet.append([_text_cell(sheet, path, header, 1, index, name, bold) for index, name in enumerate(header)])
        for row in rows:
            line += 1
            sheet.append([_xlsx_cell(sheet, path, header, line, index, value) for index, value in enumerate(row)])
    except BaseException:
        _discard(sheet)
        raise
    if header:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{line}"  # type: ignore[attr-defined]
    workbook.save(stream)
    return line - 1


def _discard(sheet: WriteOnlyWorksheet) -> None:
    """openpyxl streams a write-only sheet into a temporary file of its own in the system's temp folder, which
    only a save (or the process's exit) removes: a failed export in a long-running process would leave one
    behind each time. The row stream is closed (it ends the XML), then the file removed."""
    rows, writer = getattr(sheet, "_rows", None), getattr(sheet, "_writer", None)
    with suppress(Exception):
        if rows is not None:
            rows.close()
    with suppress(Exception):
        if writer is not None:
            writer.close()
            writer.cleanup()


def _sheet_title(title: str) -> str:
    """Excel's rules for a sheet name: 1-31 characters, none of \\ / * ? : [ ]."""
    return _SHEET_TITLE_BAD.sub("_", title).strip("'")[:31] or "bufsync"


def _text_cell(sheet: WriteOnlyWorksheet, path: Path, header: list[str], line: int, index: int, text: str,
               font: Font | None = None) -> Cell:
    """A text cell that stays text: openpyxl would take "=..." for a formula (a name typed as =1+1, or worse)."""
    if ILLEGAL_CHARACTERS_RE.search(text):
        char = ILLEGAL_CHARACTERS_RE.search(text)[0]   # type: ignore[index]
        name = header[index] if line > 1 else f"№{index + 1}"
        raise FileProblem(f"Файл «{path.name}» не записан: в строке {line} (строка 1 — заголовок), колонке «{name}» "
                          f"управляющий символ U+{ord(char):04X}, который нельзя записать в .xlsx; уберите его в "
                          "источнике или выгрузите в CSV")
    cell = WriteOnlyCell(sheet, value=None)
    # a line break in a workbook is LF (Excel's Alt+Enter): XML readers turn a stored CR LF into LF anyway, so
    # it is written as it will be read
    cell.value = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    cell.data_type = "s"
    if font is not None:
        cell.font = font
    return cell


def _xlsx_cell(sheet: WriteOnlyWorksheet, path: Path, header: list[str], line: int, index: int, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return _text_cell(sheet, path, header, line, index, value) if value else None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**EXCEL_DIGITS else _text_cell(sheet, path, header, line, index, str(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return _text_cell(sheet, path, header, line, index, str(value))
        if len(value.as_tuple().digits) > EXCEL_DIGITS:
            return _text_cell(sheet, path, header, line, index, format_number(value))
        exponent = value.as_tuple().exponent
        cell = WriteOnlyCell(sheet)
        cell.value = value
        if isinstance(exponent, int) and exponent < 0:   # 3.50 shows as 3,50, not 3,5
            cell.number_format = "0." + "0" * -exponent
        return cell
    if isinstance(value, float):
        return value if math.isfinite(value) else _text_cell(sheet, path, header, line, index, str(value))
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(f"a datetime with a zone cannot be written: {value!r} (the buffer's datetimes are naive)")
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = DATETIME_FORMAT
        return cell
    if isinstance(value, date):
        cell = WriteOnlyCell(sheet)
        cell.value = value
        cell.number_format = DATE_FORMAT
        return cell
    return _text_cell(sheet, path, header, line, index, str(value))
