"""The file layer's public names and signatures, as the import/export commands and the folder job use them."""

from __future__ import annotations

import inspect

import bufsync.files as files
from bufsync.files import read, values, write


def test_public_names() -> None:
    assert sorted(files.__all__) == ["BadCell", "FileProblem", "Sheet", "open_sheet", "parse_cell", "write_sheet"]
    assert issubclass(files.FileProblem, ValueError) and issubclass(files.BadCell, ValueError)
    assert (files.open_sheet, files.parse_cell, files.write_sheet) == (read.open_sheet, values.parse_cell,
                                                                       write.write_sheet)


def test_signatures() -> None:
    assert str(inspect.signature(read.open_sheet)) == (
        "(path: 'Path', encoding: 'str | None' = None, is_header: 'Callable[[list[str]], bool] | None' = None)"
        " -> 'Sheet'")
    assert str(inspect.signature(values.parse_cell)) == "(raw: 'Any', kind: 'PortableType') -> 'Any'"
    assert str(inspect.signature(write.write_sheet)) == (
        "(path: 'Path', header: 'list[str]', rows: 'Iterable[Sequence[Any]]', encoding: 'str' = 'utf-8-sig', "
        "sheet_title: 'str' = 'bufsync') -> 'int'")
    assert [f for f in read.Sheet.__dataclass_fields__ if not f.startswith("_")] == [
        "path", "format", "encoding", "delimiter", "header", "header_line", "worksheet"]
