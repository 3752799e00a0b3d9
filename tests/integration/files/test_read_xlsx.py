"""open_sheet on .xlsx workbooks made with openpyxl (normal mode, as a user's Excel file would be): merged
title and header cells, typed cells, styled empty rows and columns, several worksheets, a wrong stored
dimension, files that are not workbooks."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from openpyxl.styles import Border, Font, PatternFill, Side

from bufsync.files.read import FileProblem, open_sheet
from bufsync.files.values import parse_cell
from bufsync.mapping.types import parse_type

HEADER = ["ФИО", "", "Логин", "Дата рождения", "Балл", "Идентификатор"]
FILL = PatternFill("solid", start_color="FFFF00")
THIN = Side(style="thin")
BORDER = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)


def knows(*names: str) -> Callable[[list[str]], bool]:
    return lambda cells: set(names) <= set(cells)


def college_workbook(path: Path) -> Path:
    """A list as an operator keeps it: a title merged across the table, a header with "ФИО" over two columns and
    the other header cells merged over two rows, typed dates and numbers, an idnumber typed as text, a row
    left out, and a styled tail (filled and bordered rows and columns with no values, which Excel keeps)."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Студенты"
    ws["A1"] = "Список студентов группы ИС-21 на 01.09.2026"
    ws["A1"].font = Font(bold=True, size=14)
    ws.merge_cells("A1:F1")
    ws["A3"] = "ФИО"
    ws.merge_cells("A3:B3")
    for column, title in zip("CDEF", HEADER[2:], strict=True):
        ws[f"{column}3"] = title
        ws.merge_cells(f"{column}3:{column}4")
    ws.append([])   # row 4 is under the merged header cells
    ws.append(["Иванов", "Иван", "ivanov", date(2001, 2, 3), 4.5, "007"])
    ws.append(["Ёлкина", "Алёна", "elkina", datetime(2002, 12, 31), 5, "0042"])
    ws.append([])   # row 7: nothing
    ws.append(["Щукин", "Пётр", "shchukin", None, 3.75, 12345.0])
    for row in (5, 6):
        ws.cell(row, 4).number_format = "DD.MM.YYYY"
    for row in range(5, 40):   # the styled tail: rows 9-39 and columns G-J hold only formatting
        for column in range(1, 11):
            if row > 8 or column > 6:
                ws.cell(row, column).fill = FILL
                ws.cell(row, column).border = BORDER
    wb.save(path)
    return path


def test_merged_title_and_header_typed_cells_styled_tail(tmp_path: Path) -> None:
    sheet = open_sheet(college_workbook(tmp_path / "students.xlsx"), is_header=knows("Логин", "Идентификатор"))
    assert (sheet.format, sheet.encoding, sheet.delimiter, sheet.worksheet) == ("xlsx", None, None, "Студенты")
    assert (sheet.header, sheet.header_line) == (HEADER, 3)
    assert list(sheet.rows()) == [
        (5, ["Иванов", "Иван", "ivanov", datetime(2001, 2, 3), 4.5, "007"]),
        (6, ["Ёлкина", "Алёна", "elkina", datetime(2002, 12, 31), 5, "0042"]),
        (8, ["Щукин", "Пётр", "shchukin", None, 3.75, 12345]),
    ]
    kinds = [parse_type(k) for k in ("string(50)", "string(50)", "string(100)", "date", "decimal(4,2)",
                                     "string(100)")]
    parsed = [[parse_cell(raw, kind) for raw, kind in zip(cells, kinds, strict=True)] for _, cells in sheet.rows()]
    assert [row[3] for row in parsed] == [date(2001, 2, 3), date(2002, 12, 31), None]
    assert [str(row[4]) for row in parsed] == ["4.50", "5.00", "3.75"]
    assert [row[5] for row in parsed] == ["007", "0042", "12345"]   # text stays text; a number has no ".0"


def test_without_is_header_the_title_is_the_header(tmp_path: Path) -> None:
    """The default is the first non-empty row: the merged title. Only its top-left cell holds the text."""
    sheet = open_sheet(college_workbook(tmp_path / "students.xlsx"))
    assert (sheet.header, sheet.header_line) == (["Список студентов группы ИС-21 на 01.09.2026"], 1)
    assert [line for line, _ in sheet.rows()] == [3, 5, 6, 8]
    assert next(sheet.rows())[1] == ["ФИО"]   # cut to the header's width


def set_dimension(path: Path, ref: str) -> None:
    """Rewrites the worksheet's stored <dimension>: some programs store a wrong one, and a sheet whose whole
    columns were formatted says A1:XFD1048576."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    name = "xl/worksheets/sheet1.xml"
    parts[name], count = re.subn(rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), parts[name])
    assert count == 1
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for part, data in parts.items():
            target.writestr(part, data)


@pytest.mark.parametrize("ref", ["A1:XFD1048576", "C3:D5"])
def test_a_wrong_stored_dimension(tmp_path: Path, ref: str) -> None:
    """openpyxl would pad every row to the dimension (16,384 columns, a million rows) or start at its corner
    (C3 would drop columns A and B and misnumber the rows)."""
    path = college_workbook(tmp_path / "students.xlsx")
    set_dimension(path, ref)
    sheet = open_sheet(path, is_header=knows("Логин"))
    assert (sheet.header, sheet.header_line) == (HEADER, 3)
    assert [(line, cells[0], cells[5]) for line, cells in sheet.rows()] == [
        (5, "Иванов", "007"), (6, "Ёлкина", "0042"), (8, "Щукин", 12345)]


def two_sheets(path: Path, active: int) -> Path:
    wb = Workbook()
    notes = wb.active
    assert notes is not None
    notes.title = "Инструкция"
    notes.append(["Заполните лист «Данные»: одна строка — один студент"])
    notes.append(["Логин — латиницей"])
    data = wb.create_sheet("Данные")
    data.append(["Фамилия", "Логин"])
    data.append(["Иванов", "ivanov"])
    wb.active = active
    wb.save(path)
    return path


def test_the_active_worksheet_first_then_the_others(tmp_path: Path) -> None:
    """The operator saves with the sheet they filled in open: that one is read. With is_header, a sheet
    without the header is passed over (an instructions sheet left active)."""
    sheet = open_sheet(two_sheets(tmp_path / "active_data.xlsx", active=1))
    assert (sheet.worksheet, sheet.header, list(sheet.rows())) == ("Данные", ["Фамилия", "Логин"],
                                                                   [(2, ["Иванов", "ivanov"])])
    path = two_sheets(tmp_path / "active_notes.xlsx", active=0)
    assert open_sheet(path).worksheet == "Инструкция"
    sheet = open_sheet(path, is_header=knows("Логин"))
    assert (sheet.worksheet, sheet.header_line, list(sheet.rows())) == ("Данные", 1, [(2, ["Иванов", "ivanov"])])
    with pytest.raises(FileProblem, match="не найдена строка заголовка"):
        open_sheet(path, is_header=knows("Почта"))


def test_xlsm_and_an_upper_case_suffix(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Логин"])
    ws.append(["ivanov"])
    for name in ("macro.xlsm", "LOUD.XLSX"):
        wb.save(tmp_path / name)
        assert list(open_sheet(tmp_path / name).rows()) == [(2, ["ivanov"])]


def test_only_a_header_and_an_empty_workbook(tmp_path: Path) -> None:
    wb = Workbook()
    wb.save(tmp_path / "empty.xlsx")
    with pytest.raises(FileProblem, match=r"^Файл «empty\.xlsx» \(лист «Sheet»\): нет ни одной непустой строки"):
        open_sheet(tmp_path / "empty.xlsx")
    ws = wb.active
    assert ws is not None
    ws.append(["Фамилия", "Логин"])
    ws.append([None, "  "])
    wb.save(tmp_path / "header.xlsx")
    sheet = open_sheet(tmp_path / "header.xlsx")
    assert (sheet.header, list(sheet.rows())) == (["Фамилия", "Логин"], [])


@pytest.mark.parametrize("content, why", [
    ("Фамилия;Логин\r\n".encode("cp1251"), "это не книга Excel .xlsx"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "книга защищена паролем или это книга старого формата .xls"),
])
def test_not_a_workbook(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "list.xlsx").write_bytes(content)
    with pytest.raises(FileProblem, match=f"^Файл «list.xlsx» не читается: {why}"):
        open_sheet(tmp_path / "list.xlsx")
