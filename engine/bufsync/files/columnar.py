"""The import's fast path: a clean CSV of text columns read, checked and written out for PostgreSQL's COPY a column
at a time with pyarrow, instead of a row at a time in Python (about 5 µs a row: csv, strip, lengths, keys, csv).

It only answers yes or no. Yes: every row of the file is good, and here they are (the rows, values and counts the
row path would give). No, with the reason (a bad row, a ragged row, a quote Python's csv module would refuse, a
file too big to hold whole): the caller reads the file row by row as before, which names every bad row by its line,
column and reason. Nothing is written before the answer, so a no costs only the time spent here (a read of the
file, well under the row path's).

The file is read as read.py's csv.reader(strict=True) reads it, and where pyarrow would read it otherwise the
answer is no before pyarrow reads it:
- the text: the file's bytes as UTF-8 (cp1251 decoded and encoded again; a BOM dropped), from the line after the
  header record on (a title row and the header are skipped by physical line, the way read.py counts lines);
- records: every one as wide as the header record (pyarrow refuses any other, and so does this path); a line
  that holds nothing (pyarrow skips it) is what csv reads as an empty record, which the row path skips too;
- quotes (checked only when the body has any): a field quoted at its start ends with a quote followed by the
  separator, a line break or the end, doubled quotes and line breaks inside; a quote anywhere else in a field is
  a character, as in csv. A quote csv(strict) refuses (the row path fails the file with its line) is a no;
- values: utf8_trim_whitespace strips what str.strip strips (the same for every code point: compared one by
  one), an empty value is None, lengths are counted in code points as len() counts them.
The file is held whole (its text, the table, the COPY text: about five times its size), so a file over
MAX_BYTES goes the row path, which streams. pyarrow is imported at the first file taken this way (0.3 s: not
for every command that imports the file layer).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bufsync.files.read import Sheet, _header_cells

MAX_BYTES = 64 * 1024 * 1024   # larger files stream through the row path (this one holds the file whole)
HEADER_BYTES = 1024 * 1024      # the header record is parsed from this much text after its line
COPY_ROWS = 20_000              # rows a COPY chunk holds
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Rule:
    """What the file's column under one heading must hold (all text: the fast path takes text columns only)."""

    name: str
    length: int | None              # code points, None: any
    required: bool                  # an empty cell fails the row (the key, a non-null column without a default)
    allowed: frozenset[str] | None  # a closed set (the status column), None: any value
    default: str | None             # an empty cell takes it (only when every row is new), None: stays empty


@dataclass
class Clean:
    """Every row of the file good: `table` holds the mapped columns in the rules' order (None for an empty cell,
    defaults filled), `lines` counts the file's non-empty records after the header (each a row of the table)."""

    table: Any   # pyarrow.Table
    lines: int


def read_clean(sheet: Sheet, rules: list[Rule | None], key: list[str]) -> Clean | str:
    """The file's rows when every one is good, else why this path does not take the file (a short English
    reason, for the log). `rules`: one per header cell (None: an empty heading, its cells not loaded); `key`: the
    names whose values together must not repeat (none: any may)."""
    if sheet.format != "csv" or sheet.encoding is None or sheet.delimiter is None:
        return "not a CSV"
    if len(rules) != len(sheet.header):
        return "the rules do not match the header"
    size = sheet.path.stat().st_size
    if size > MAX_BYTES:
        return f"{size:,} bytes: over {MAX_BYTES:,}, streamed instead"
    import pyarrow as pa
    import pyarrow.csv as pcsv
    data = _utf8(sheet.path.read_bytes(), sheet.encoding)
    if isinstance(data, str):
        return data
    body = _body(data, sheet)
    if isinstance(body, str):
        return body
    start, width = body
    if data.find(b'"', start) >= 0 and not _quotes(sheet.delimiter).fullmatch(data, start):
        return "a quote csv reads otherwise"
    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(data).slice(start)),
            read_options=pcsv.ReadOptions(column_names=[f"f{i}" for i in range(width)],
                                          autogenerate_column_names=False, skip_rows=0),
            parse_options=pcsv.ParseOptions(delimiter=sheet.delimiter, quote_char='"', double_quote=True,
                                            escape_char=False, newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(width)},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowException as exc:   # a ragged row, mostly
        return f"pyarrow: {str(exc).splitlines()[0][:200]}"
    return _checked(table, rules, key)


def _utf8(raw: bytes, encoding: str) -> bytes | str:
    """The bytes as UTF-8 text as read.py decodes them (a BOM is not data under utf-8-sig); a str: why not."""
    if encoding == "utf-8":
        return raw
    if encoding == "utf-8-sig":
        return raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return raw.decode(encoding).encode("utf-8")
    except UnicodeError:   # open_sheet checked the encoding; a file changed since
        return f"not {encoding}"


def _body(data: bytes, sheet: Sheet) -> tuple[int, int] | str:
    """(the byte where the records after the header start, the header record's width in cells), or why not."""
    at = 0
    for _, match in zip(range(sheet.header_line - 1), _LINE_END.finditer(data), strict=False):
        at = match.end()
    # the header record from its line on, as csv reads it: how many physical lines it spans, how many cells
    window = data[at:at + HEADER_BYTES]
    text = codecs.getincrementaldecoder("utf-8")().decode(window, final=len(window) < HEADER_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sheet.delimiter or ";", quotechar='"',
                        doublequote=True, strict=True)
    try:
        cells = next(reader)
    except (StopIteration, csv.Error):
        return "the header record did not read again"
    if _header_cells(cells) != sheet.header:
        return "the header record reads otherwise"
    start = at
    for _, match in zip(range(reader.line_num), _LINE_END.finditer(data, at), strict=False):
        start = match.end()
    if start - at > len(window) or start == at:
        return "the header record is over a megabyte long, or the file ends with it"
    return start, len(cells)


_QUOTES: dict[str, re.Pattern[bytes]] = {}


def _quotes(delimiter: str) -> re.Pattern[bytes]:
    """The whole body, as fields csv(strict) and pyarrow both read the same way: quoted at the field's start
    (doubled quotes and line breaks inside, then the separator, a line break or the end), runs without quotes, or
    a quote inside a field (a character to both). Possessive throughout: no backtracking over a large file."""
    pattern = _QUOTES.get(delimiter)
    if pattern is None:
        d = re.escape(delimiter.encode())
        pattern = re.compile(rb'(?:(?<![^' + d + rb'\r\n])"[^"]*+(?:""[^"]*+)*+"(?=[' + d + rb'\r\n]|\Z)'
                             rb'|[^"]++|(?<=[^' + d + rb'\r\n])")*+')
        _QUOTES[delimiter] = pattern
    return pattern


def _checked(table: Any, rules: list[Rule | None], key: list[str]) -> Clean | str:
    """The row path's checks a column at a time; the first thing wrong is the answer."""
    import pyarrow as pa
    import pyarrow.compute as pc
    trimmed = [pc.utf8_trim_whitespace(column) for column in table.columns]
    # a record of blanks only (";;;" or spaces) is no row to the row path: there is none while every key is filled
    keys = [i for i, rule in enumerate(rules) if rule is not None and rule.name in key]
    if len(keys) != len(key):
        return "a key column is not in the file"
    if not keys or any(pc.any(pc.equal(trimmed[i], "")).as_py() for i in keys):
        filled = pc.not_equal(trimmed[0], "")
        for column in trimmed[1:]:
            filled = pc.or_(filled, pc.not_equal(column, ""))
        trimmed = [pc.filter(column, filled) for column in trimmed]
    rows = len(trimmed[0]) if trimmed else 0
    names: list[str] = []
    values: list[Any] = []
    for position, rule in enumerate(rules):
        if rule is None:
            continue
        value = trimmed[position]
        if rule.length is not None and rows and pc.max(pc.utf8_length(value)).as_py() > rule.length:
            return f"{rule.name}: a value longer than {rule.length}"
        empty = pc.equal(value, "")
        if pc.any(empty).as_py():
            value = (pc.if_else(empty, pa.scalar(rule.default, pa.string()), value) if rule.default is not None
                     else pc.if_else(empty, pa.scalar(None, pa.string()), value))
        if rule.required and value.null_count:
            return f"{rule.name}: an empty cell"
        if rule.allowed is not None:
            seen = {v for v in pc.unique(value).to_pylist() if v is not None}
            if not seen <= rule.allowed:
                return f"{rule.name}: a value outside {sorted(rule.allowed)}"
        names.append(rule.name)
        values.append(value)
    out = pa.table(values, names=names)
    if not key:
        distinct = rows
    elif len(key) == 1:
        distinct = pc.count_distinct(out.column(key[0])).as_py()
    else:
        distinct = out.group_by(key).aggregate([]).num_rows
    if distinct != rows:
        return "a key repeated"
    return Clean(out, rows)


def copy_chunks(clean: Clean, keep: bool | None, utf8: bool) -> Iterator[str | bytes]:
    """The rows as COPY ... (FORMAT csv) reads them, with the stage's keep flag unless None: every text quoted
    (quotes doubled; separators, line breaks and a "\\." inside it are data), None as an empty unquoted field
    (NULL to COPY; no value is an empty text). Bytes for a UTF-8 connection, else text for psycopg2 to encode."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    table = clean.table
    if keep is not None:
        table = table.append_column("keep", pc.fill_null(pa.nulls(table.num_rows, pa.bool_()), keep))
    options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in table.to_batches(max_chunksize=COPY_ROWS):
        sink = pa.BufferOutputStream()
        pcsv.write_csv(batch, sink, options)
        chunk = sink.getvalue().to_pybytes()
        yield chunk if utf8 else chunk.decode("utf-8")
