"""Reading CSV and .xlsx files as a header and streamed rows, the way 1C and Russian Excel write them.

Nothing here knows a mapping: the caller says which row is the header (is_header) and turns cells into
values (values.parse_cell). Files may hold 100,000+ rows, so rows are streamed: a CSV is read record by
record (it is also decoded once up front, in chunks, to choose and check the encoding), an .xlsx through
openpyxl's read-only mode. What openpyxl still holds grows with the file, slowly: the workbook's shared
string table (its distinct texts) and an emptied XML element per row read (about 80 bytes: 8 MB for 100,000
rows). Formulas are read as the values Excel saved with them (data_only).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from bufsync.files.values import as_text

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
ACCEPTED = "CSV (.csv, .txt, .tsv) или книга Excel (.xlsx, .xlsm)"
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "cp1251": "cp1251"}   # codecs' names -> Sheet.encoding
DELIMITERS = (";", ",", "\t")
DELIMITER_NAMES = {";": "точка с запятой", ",": "запятая", "\t": "табуляция"}
HEADER_WITHIN = 20          # non-empty rows searched for the header
SAMPLE_CHARS = 64 * 1024    # text the separator is chosen on
CHUNK = 1024 * 1024         # bytes decoded at a time when the encoding is checked
_BLANK_TEXT = " \t\r\n\xa0;,"    # what a row holding nothing but separators and spaces is made of

_SEP_HINT = re.compile(r"^sep=([;,\t])\r?\n?$")
_SIGNATURES = {
    b"PK\x03\x04": "книга Excel .xlsx (или другой zip-архив)",
    b"\xd0\xcf\x11\xe0": "книга Excel старого формата .xls (или книга, защищённая паролем)",
    b"\xff\xfe": "текст в кодировке UTF-16 («Текст Юникод» в Excel)",
    b"\xfe\xff": "текст в кодировке UTF-16",
}


class FileProblem(ValueError):
    """The file as a whole cannot be read: the text says why, in Russian, for a 1C developer or an operator
    (the file name, what was found, what is accepted)."""


Records = Callable[[], Generator[tuple[int, list[Any]], None, None]]


@dataclass
class Sheet:
    """One table of a file: its header and a way to stream its rows (rows() reopens the file each time)."""

    path: Path
    format: str            # "csv" | "xlsx"
    encoding: str | None   # csv: "utf-8-sig" | "utf-8" | "cp1251"; xlsx: None
    delimiter: str | None  # csv: ";" | "," | "\t"; xlsx: None
    header: list[str]      # the header row's cells as text, stripped ("" for an empty cell; trailing ones dropped)
    header_line: int       # 1-based line (csv: physical line) or row number (xlsx) of the header
    worksheet: str | None = None  # xlsx: the title of the worksheet read; csv: None
    _records: Records | None = field(default=None, repr=False, compare=False)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        """Each data row after the header: (its 1-based line/row number as the user sees it in a text editor or
        Excel; for csv the physical line where the record starts, quoted fields with line breaks included, its
        cells padded/truncated to len(header)). csv cells are str ("" for empty); xlsx cells are what openpyxl
        gives (str, int, float, bool, datetime, None). Wholly empty rows are skipped."""
        if self._records is None:
            raise ValueError("a Sheet made by open_sheet reads rows; this one has no file behind it")
        width = len(self.header)
        pad: Any = "" if self.format == "csv" else None
        header_line = self.header_line
        for line, cells in self._records():
            if line <= header_line:
                continue
            if len(cells) == width:  # the usual record: no copy
                yield line, cells
            elif len(cells) < width:
                yield line, cells + [pad] * (width - len(cells))
            else:
                yield line, cells[:width]


def open_sheet(path: Path, encoding: str | None = None, is_header: Callable[[list[str]], bool] | None = None) -> Sheet:
    """Streaming (never the whole file in memory: 100,000+ rows; openpyxl read_only for xlsx). `encoding` forces
    one for a CSV (the CLI's --encoding: utf-8, utf-8-sig or cp1251, any spelling Python knows; an .xlsx has
    none); else: a UTF-8 BOM -> utf-8-sig; the bytes decode as UTF-8 -> utf-8; else cp1251. The separator is
    the one a first line "sep=;" names (Excel's hint, not data), else found among ';', ',', tab (the one that
    splits the rows into the same number of fields most consistently; csv.Sniffer breaks ties).
    The header row: the first row (within the first 20 non-empty ones) for which is_header(cells) is true
    (cells stripped, trailing empty ones dropped); default: the first non-empty row. If is_header finds no
    header with the likeliest separator, the others are tried. xlsx: the active worksheet (the one the operator
    saw when saving), then the others in order, the first with a header row; a merged range's value belongs to
    its top-left cell, the rest read empty; empty trailing rows and columns are ignored.
    Raises FileProblem for: no such file, an empty file, an .xls, an unknown extension, no header row found,
    bytes that neither UTF-8 nor cp1251 decode (or not the forced encoding), a broken quote, a file that is
    something else under a CSV name (an .xlsx, an .xls, UTF-16 text)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise FileProblem(f"Файл «{path.name}» — книга Excel старого формата (.xls), bufsync её не читает: откройте "
                          "её в Excel и сохраните как «Книга Excel (*.xlsx)» или «CSV (разделители — запятые)»")
    if suffix not in CSV_SUFFIXES + XLSX_SUFFIXES:
        raise FileProblem(f"Файл «{path.name}»: расширение «{path.suffix or '(нет)'}» не поддерживается; "
                          f"принимаются {ACCEPTED}")
    if not path.exists():
        raise FileProblem(f"Файл «{path}» не найден")
    if not path.is_file():
        raise FileProblem(f"«{path}» — не файл (папка или устройство); укажите файл: {ACCEPTED}")
    try:
        path.open("rb").close()
    except PermissionError:
        raise FileProblem(f"Файл «{path}» не открывается: нет прав на чтение или он занят другой программой "
                          "(закройте его в Excel)") from None
    if path.stat().st_size == 0:
        raise FileProblem(f"Файл «{path.name}» пуст (0 байт): в нём нет ни строки заголовка, ни данных")
    if suffix in XLSX_SUFFIXES:
        return _open_xlsx(path, is_header)
    return _open_csv(path, encoding, is_header)


def _header_cells(cells: list[Any]) -> list[str]:
    texts = [as_text(cell).strip() for cell in cells]
    while texts and not texts[-1]:
        texts.pop()
    return texts


def _empty(cells: list[Any]) -> bool:
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in cells)


def _find_header(records: Records, is_header: Callable[[list[str]], bool] | None) -> tuple[int, list[str]] | None:
    """(line, header) of the first of the first HEADER_WITHIN non-empty records is_header accepts."""
    with closing(records()) as stream:   # closed at once: the file is not left open until the GC
        for line, cells in islice(stream, HEADER_WITHIN):
            texts = _header_cells(cells)
            if is_header is None or is_header(texts):
                return line, texts
    return None


def _first_row(records: Records) -> list[str] | None:
    """The first non-empty row as text, for a message saying what was found instead of a header."""
    with closing(records()) as stream:
        return next((_header_cells(cells) for _, cells in stream), None)


def _no_header(path: Path, first: list[str] | None, where: str = "") -> FileProblem:
    if first is None:
        return FileProblem(f"Файл «{path.name}»{where}: нет ни одной непустой строки — ни заголовка, ни данных")
    shown = "; ".join(first)[:200]
    return FileProblem(f"Файл «{path.name}»{where}: среди первых {HEADER_WITHIN} непустых строк не найдена строка "
                       f"заголовка с названиями колонок. Первая непустая строка: «{shown}». Первой строкой таблицы "
                       "должны идти названия колонок (как в описании выгрузки)")


# ---------------------------------------------------------------- csv


def _decode_error(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte) of the first byte the encoding cannot decode, or None; decoded in chunks, not held."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    with path.open("rb") as stream:
        while True:
            chunk = stream.read(CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts within what the decoder held over from the last chunk plus this one;
                # a held-over tail is at most 3 bytes of one character, never a line break
                held = len(exc.object) - len(chunk)
                at = max(exc.start - held, 0)
                return lines + chunk.count(b"\n", 0, at), exc.object[exc.start]
            if not chunk:
                return None
            lines += chunk.count(b"\n")


def _choose_encoding(path: Path, forced: str | None) -> str:
    with path.open("rb") as stream:
        head = stream.read(4)
    bom = head.startswith(codecs.BOM_UTF8)
    if forced is not None:
        try:
            name = codecs.lookup(forced).name
        except LookupError:
            name = ""
        if name not in ENCODINGS:
            raise FileProblem(f"Кодировка «{forced}» не поддерживается; допустимы utf-8 (с BOM или без) и cp1251 "
                              "(windows-1251)")
        chosen = "utf-8-sig" if bom and name == "utf-8" else name   # a BOM is never data
        bad = _decode_error(path, chosen)
        if bad:
            line, byte = bad
            other = "cp1251" if chosen.startswith("utf-8") else "utf-8"
            raise FileProblem(f"Файл «{path.name}» не в кодировке {chosen}: в строке {line} байт 0x{byte:02X} не "
                              f"читается в этой кодировке. Файл, вероятно, в {other}: укажите кодировку {other} "
                              "или не указывайте её — bufsync определит UTF-8 или cp1251 сам")
        return chosen
    if bom:
        bad = _decode_error(path, "utf-8-sig")
        if bad:
            raise FileProblem(f"Файл «{path.name}» начинается с метки UTF-8 (BOM), но в строке {bad[0]} байт "
                              f"0x{bad[1]:02X} не читается как UTF-8: файл повреждён или склеен из файлов в разных "
                              "кодировках. Сохраните его заново в UTF-8 или cp1251 (windows-1251)")
        return "utf-8-sig"
    if _decode_error(path, "utf-8") is None:
        return "utf-8"
    bad = _decode_error(path, "cp1251")
    if bad:
        raise FileProblem(f"Файл «{path.name}» не читается ни как UTF-8, ни как cp1251 (windows-1251): в строке "
                          f"{bad[0]} байт 0x{bad[1]:02X} не бывает в тексте cp1251. Сохраните файл в UTF-8 или "
                          "cp1251 («CSV (разделители — запятые)» в Excel)")
    return "cp1251"


def _csv_records(path: Path, encoding: str, delimiter: str,
                 skip: int = 0) -> Generator[tuple[int, list[Any]], None, None]:
    """Every non-empty record (after the first `skip` lines) with the physical line it starts on. strict: a
    quote Excel would have doubled fails with the line instead of swallowing the lines after it."""
    with path.open(encoding=encoding, newline="") as stream:
        reader = csv.reader(stream, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _csv_problem(path, exc, start, reader.line_num, delimiter) from None
            # csv cells are all text: one join tells an empty record
            if start > skip and cells and "".join(cells).strip():
                yield start, cells
            start = reader.line_num + 1


def _csv_problem(path: Path, exc: csv.Error, start: int, line: int, delimiter: str) -> FileProblem:
    text = str(exc)
    if "unexpected end of data" in text:
        why = (f"значение в строке {start} открывается кавычкой, которая не закрыта до конца файла; кавычки "
               "внутри значения нужно удваивать (\"\"), как это делает Excel")
    elif "expected after" in text:
        why = (f"в строке {line} после закрывающей кавычки нет разделителя «{_show_delimiter(delimiter)}»: "
               "кавычки внутри значения, взятого в кавычки, нужно удваивать (\"ООО \"\"Ромашка\"\"\"), как это "
               "делает Excel")
    elif "field larger than field limit" in text:
        why = (f"значение, начатое в строке {start}, длиннее {csv.field_size_limit()} символов — вероятно, "
               "не закрыта кавычка")
    else:
        why = f"строка {line}: {text}"
    return FileProblem(f"Файл «{path.name}» не читается как CSV: {why}")


def _show_delimiter(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


def _sample(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's first SAMPLE_CHARS characters cut at a line break, and whether that is the whole file."""
    with path.open(encoding=encoding, newline="") as stream:
        text = stream.read(SAMPLE_CHARS + 1)
    if len(text) <= SAMPLE_CHARS:
        return text, True
    cut = max(text.rfind("\n", 0, SAMPLE_CHARS), text.rfind("\r", 0, SAMPLE_CHARS))
    return (text[:cut + 1] if cut > 0 else text[:SAMPLE_CHARS]), False


def _score(sample: str, whole: bool, delimiter: str) -> tuple[bool, float, int]:
    """(splits at all, share of rows with the usual field count, that count): the separator that splits the
    rows the same way is the file's. A decimal comma splits data rows but not the header, so ';' wins."""
    counts: list[int] = []
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=True)
    ended = whole
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # a quote this separator cannot place, or one the sample's end cuts: the rows before it count
            ended = True
            break
        # blank by its text, not by its cells: ";;;" is one non-empty cell when split at ','
        if "".join(cells).strip(_BLANK_TEXT):
            counts.append(len(cells))
    if not ended and len(counts) > 1:
        counts.pop()   # the sample may end inside a record
    if not counts:
        return False, 0.0, 0
    usual, seen = max(Counter(counts).items(), key=lambda item: (item[1], item[0]))
    return usual > 1, seen / len(counts), usual


def _delimiters(path: Path, encoding: str) -> list[str]:
    """The separators, likeliest first."""
    sample, whole = _sample(path, encoding)
    try:
        sniffed: str | None = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    default = "\t" if path.suffix.lower() == ".tsv" else ";"   # Russian Excel's list separator is ';'
    scores = {d: _score(sample, whole, d) for d in DELIMITERS}
    return sorted(DELIMITERS, key=lambda d: (scores[d], d == sniffed, d == default), reverse=True)


def _open_csv(path: Path, forced: str | None, is_header: Callable[[list[str]], bool] | None) -> Sheet:
    with path.open("rb") as stream:
        head = stream.read(4)
    for signature, what in _SIGNATURES.items():
        if head.startswith(signature):
            raise FileProblem(f"Файл «{path.name}» назван как CSV, но это {what}. Сохраните таблицу в Excel как "
                              "«CSV (разделители — запятые)» или «CSV UTF-8», либо как «Книга Excel (*.xlsx)» с "
                              "расширением .xlsx")
    encoding = _choose_encoding(path, forced)
    with path.open(encoding=encoding, newline="") as stream:
        hint = _SEP_HINT.match(stream.readline())
    # "sep=;" as the first line: Excel's own way of naming the separator (some 1C exports write it); that line
    # is not data, and the separator is not guessed
    candidates = [hint[1]] if hint else _delimiters(path, encoding)
    first: list[str] | None = None
    for delimiter in candidates:
        records = partial(_csv_records, path, encoding, delimiter, 1 if hint else 0)
        found = _find_header(records, is_header)
        if found:
            line, header = found
            return Sheet(path, "csv", encoding, delimiter, header, line, _records=records)
        if first is None:
            first = _first_row(records)
        if is_header is None:
            break
    raise _no_header(path, first)


# ---------------------------------------------------------------- xlsx


def _xlsx_records(path: Path, title: str) -> Generator[tuple[int, list[Any]], None, None]:
    """Every non-empty row of one worksheet with its Excel row number, the workbook opened for this read."""
    workbook = _load(path)
    try:
        yield from _worksheet_records(workbook, title)
    finally:
        workbook.close()


def _worksheet_records(workbook: Any, title: str) -> Generator[tuple[int, list[Any]], None, None]:
    worksheet = workbook[title]
    # the stored dimension may be wrong or huge (a whole column formatted: A1:XFD1048576) and openpyxl pads
    # every row to it: without it a row is as wide as its last stored cell
    worksheet.reset_dimensions()
    # min_row/min_col 1: openpyxl would start at the stored dimension's corner (B3 drops column A); it yields
    # every row from 1 on, filling the rows the file skips, so the count is the row number
    for number, values in enumerate(worksheet.iter_rows(min_row=1, min_col=1, values_only=True), start=1):
        cells = list(values)
        if cells and not _empty(cells):
            yield number, cells


def _load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            # openpyxl warns about parts it skips (data validation extensions, unknown styles): not the user's
            warnings.simplefilter("ignore", UserWarning)
            return load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        with path.open("rb") as stream:
            head = stream.read(4)
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            what = ("книга защищена паролем или это книга старого формата .xls под именем .xlsx: снимите пароль и "
                    "сохраните как «Книга Excel (*.xlsx)»")
        else:
            what = (f"это не книга Excel .xlsx ({type(exc).__name__}): откройте файл в Excel и сохраните как "
                    "«Книга Excel (*.xlsx)», или сохраните таблицу как CSV с расширением .csv")
        raise FileProblem(f"Файл «{path.name}» не читается: {what}") from None


def _open_xlsx(path: Path, is_header: Callable[[list[str]], bool] | None) -> Sheet:
    # one load for the header search: a workbook without a stored dimension (openpyxl's write-only files)
    # makes openpyxl read each worksheet through once per load just to find it missing
    workbook = _load(path)
    try:
        titles = [ws.title for ws in workbook.worksheets]   # worksheets, not chartsheets
        try:
            active_title = workbook.active.title
        except (IndexError, AttributeError):   # no sheets, or an active index past them
            active_title = None
        if active_title in titles:
            titles.remove(active_title)
            titles.insert(0, active_title)
        first: list[str] | None = None
        for title in titles:
            records = partial(_worksheet_records, workbook, title)
            found = _find_header(records, is_header)
            if found:
                line, header = found
                return Sheet(path, "xlsx", None, None, header, line, worksheet=title,
                             _records=partial(_xlsx_records, path, title))
            if first is None:
                first = _first_row(records)
            if is_header is None and first is not None:
                break
    finally:
        workbook.close()
    where = f" (лист «{titles[0]}»)" if len(titles) == 1 else ""
    raise _no_header(path, first, where)
