"""open_sheet on CSV files made byte by byte as 1C and Russian Excel write them: the encoding, the separator,
the header and the line numbers a text editor shows; whole-file problems as FileProblem texts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bufsync.files.read import FileProblem, Sheet, open_sheet
from bufsync.files.values import parse_cell
from bufsync.mapping.types import parse_type

HEADER = ["Фамилия", "Имя", "Логин", "Почта"]
PEOPLE = [["Иванов", "Иван", "ivanov", "ivanov@college.ru"],
          ["Ёлкина", "Алёна", "elkina", "elkina@college.ru"],
          ["Щукин", "Пётр", "shchukin", "shchukin@college.ru"]]


def knows(*names: str) -> Callable[[list[str]], bool]:
    """An is_header as the import command makes one: the row names every column of the mapping."""
    return lambda cells: set(names) <= set(cells)


def write(path: Path, text: str, encoding: str) -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def rows(sheet: Sheet) -> list[tuple[int, list[object]]]:
    return list(sheet.rows())


def excel_text(rows: list[list[str]], sep: str = ";", end: str = "\r\n") -> str:
    return "".join(sep.join(row) + end for row in rows)


def test_cp1251_from_russian_excel(tmp_path: Path) -> None:
    """Excel's «CSV (разделители — запятые)» in a Russian Windows: cp1251, ';', CRLF, no quotes."""
    path = write(tmp_path / "students.csv", excel_text([HEADER, *PEOPLE]), "cp1251")
    sheet = open_sheet(path)
    assert (sheet.format, sheet.encoding, sheet.delimiter) == ("csv", "cp1251", ";")
    assert (sheet.header, sheet.header_line) == (HEADER, 1)
    assert rows(sheet) == [(2, PEOPLE[0]), (3, PEOPLE[1]), (4, PEOPLE[2])]
    assert rows(sheet) == rows(sheet)   # rows() reads the file anew each time


def test_utf8_with_bom(tmp_path: Path) -> None:
    """Excel's «CSV UTF-8»: a BOM, which is not part of the first header cell."""
    path = write(tmp_path / "students.csv", excel_text([HEADER, *PEOPLE]), "utf-8-sig")
    sheet = open_sheet(path)
    assert (sheet.encoding, sheet.delimiter, sheet.header[0]) == ("utf-8-sig", ";", "Фамилия")
    assert [cells for _, cells in sheet.rows()] == PEOPLE


def test_comma_separated_utf8_without_bom_with_lf(tmp_path: Path) -> None:
    """What a script or LibreOffice writes: ',', LF, quotes around values holding a comma."""
    text = ('Фамилия,Имя,Логин,Почта\n'
            '"Иванов, мл.",Иван,ivanov,ivanov@college.ru\n'
            'Ёлкина,Алёна,elkina,elkina@college.ru\n')
    sheet = open_sheet(write(tmp_path / "export.csv", text, "utf-8"))
    assert (sheet.encoding, sheet.delimiter, sheet.header) == ("utf-8", ",", HEADER)
    assert rows(sheet) == [(2, ["Иванов, мл.", "Иван", "ivanov", "ivanov@college.ru"]),
                           (3, PEOPLE[1])]


@pytest.mark.parametrize("name", ["students.tsv", "students.txt"])
def test_tab_separated(tmp_path: Path, name: str) -> None:
    """Excel's «Текст (разделители — табуляция)» saves a .txt in cp1251."""
    sheet = open_sheet(write(tmp_path / name, excel_text([HEADER, *PEOPLE], sep="\t"), "cp1251"))
    assert (sheet.encoding, sheet.delimiter, sheet.header) == ("cp1251", "\t", HEADER)
    assert [cells for _, cells in sheet.rows()] == PEOPLE


def test_quoted_separator_quotes_and_line_breaks_keep_line_numbers(tmp_path: Path) -> None:
    """A cell with Alt+Enter: Excel quotes it and writes LF inside, CRLF between records. The rows after it are
    numbered by the physical line a text editor shows them on."""
    text = ('Фамилия;Имя;Логин;Комментарий\r\n'
            'Иванов;Иван;ivanov;"переведён; см. приказ ""№ 12"""\r\n'
            'Ёлкина;Алёна;elkina;"первая строка\nвторая строка\nтретья"\r\n'
            'Щукин;Пётр;shchukin;\r\n'
            '"Петров\r\nПетрович";Пётр;petrov;"a;b"\r\n'
            'Сидоров;Сидор;sidorov;ок\r\n')
    sheet = open_sheet(write(tmp_path / "notes.csv", text, "cp1251"))
    assert sheet.delimiter == ";"
    assert rows(sheet) == [
        (2, ["Иванов", "Иван", "ivanov", 'переведён; см. приказ "№ 12"']),
        (3, ["Ёлкина", "Алёна", "elkina", "первая строка\nвторая строка\nтретья"]),
        (6, ["Щукин", "Пётр", "shchukin", ""]),
        (7, ["Петров\r\nПетрович", "Пётр", "petrov", "a;b"]),
        (9, ["Сидоров", "Сидор", "sidorov", "ок"]),
    ]


def test_decimal_commas_do_not_make_it_comma_separated(tmp_path: Path) -> None:
    """Every data row holds a comma (a grade 4,5): csv.Sniffer alone prefers ','; the header decides."""
    text = excel_text([["Логин", "Балл", "Вес"], ["ivanov", "4,5", "0,25"], ["elkina", "3,75", "1,5"],
                       ["shchukin", "5,0", "2,0"]])
    sheet = open_sheet(write(tmp_path / "grades.csv", text, "cp1251"))
    assert (sheet.delimiter, sheet.header) == (";", ["Логин", "Балл", "Вес"])
    kind = parse_type("decimal(5,2)")
    assert [str(parse_cell(cells[1], kind)) for _, cells in sheet.rows()] == ["4.50", "3.75", "5.00"]


def test_the_sample_ends_inside_a_quoted_line_break(tmp_path: Path) -> None:
    """The separator is chosen on the first 64 KB, cut at a line break that here is inside a quoted value."""
    note = "\n".join(f"пункт {n}; подробности" for n in range(40))
    lines = [["Логин", "Заметки", "Почта"]] + [[f"user{n}", f'"{note}"', f"u{n}@x.ru"] for n in range(200)]
    path = write(tmp_path / "notes.csv", excel_text(lines), "utf-8")
    assert path.stat().st_size > 3 * 64 * 1024
    sheet = open_sheet(path)
    assert (sheet.delimiter, sheet.header) == (";", ["Логин", "Заметки", "Почта"])
    assert [line for line, _ in sheet.rows()][:3] == [2, 42, 82]


def test_a_single_column(tmp_path: Path) -> None:
    sheet = open_sheet(write(tmp_path / "logins.csv", "Логин\r\nivanov\r\nelkina\r\n", "cp1251"))
    assert (sheet.header, sheet.delimiter) == (["Логин"], ";")
    assert rows(sheet) == [(2, ["ivanov"]), (3, ["elkina"])]


def test_title_lines_above_the_header(tmp_path: Path) -> None:
    """1C reports often start with a title and a date; is_header finds the real header, and the lines above
    it are not data."""
    text = ("Список студентов группы ИС-21;;;\r\n"
            "Сформирован 01.09.2026;;;\r\n"
            ";;;\r\n"
            + excel_text([HEADER, *PEOPLE]))
    path = write(tmp_path / "report.csv", text, "cp1251")
    sheet = open_sheet(path, is_header=knows("Логин", "Почта"))
    assert (sheet.header, sheet.header_line, sheet.delimiter) == (HEADER, 4, ";")
    assert [line for line, _ in sheet.rows()] == [5, 6, 7]
    # without is_header the first non-empty row is the header
    assert open_sheet(path).header == ["Список студентов группы ИС-21"]


def test_is_header_tries_the_other_separators(tmp_path: Path) -> None:
    """A report whose title lines split evenly at ',' over a short ';' table: the likelier split is ',', but
    is_header recognises the header only at ';', and that wins."""
    title = [["Отчёт", " группа ИС-21", " 2026"]] * 5
    text = excel_text(title, sep=",") + excel_text([["Логин", "Балл"], ["ivanov", "4,5"], ["elkina", "3,5"]])
    path = write(tmp_path / "odd.csv", text, "utf-8")
    assert open_sheet(path).delimiter == ","
    sheet = open_sheet(path, is_header=knows("Логин", "Балл"))
    assert (sheet.delimiter, sheet.header, sheet.header_line) == (";", ["Логин", "Балл"], 6)
    assert rows(sheet) == [(7, ["ivanov", "4,5"]), (8, ["elkina", "3,5"])]


def test_empty_rows_skipped_short_rows_padded_long_rows_cut(tmp_path: Path) -> None:
    text = ("Фамилия;Имя;Логин;;\r\n"          # trailing separators: Excel writes them when a row is wider
            "\r\n"
            "Иванов;Иван\r\n"
            ";;;;\r\n"
            "  ; ;\r\n"
            "Ёлкина;Алёна;elkina;лишнее;ещё\r\n"
            ";;\r\n")
    sheet = open_sheet(write(tmp_path / "ragged.csv", text, "cp1251"))
    assert sheet.header == ["Фамилия", "Имя", "Логин"]
    assert rows(sheet) == [(3, ["Иванов", "Иван", ""]), (6, ["Ёлкина", "Алёна", "elkina"])]


def test_header_cells_are_stripped_and_an_empty_one_keeps_its_place(tmp_path: Path) -> None:
    text = " Фамилия ;;\tЛогин\r\nИванов;Иван;ivanov\r\n"
    sheet = open_sheet(write(tmp_path / "gap.csv", text, "cp1251"))
    assert sheet.header == ["Фамилия", "", "Логин"]
    assert rows(sheet) == [(2, ["Иванов", "Иван", "ivanov"])]


def test_only_a_header(tmp_path: Path) -> None:
    sheet = open_sheet(write(tmp_path / "header.csv", excel_text([HEADER]), "cp1251"))
    assert (sheet.header, rows(sheet)) == (HEADER, [])


def test_latin_header_cyrillic_data_far_below(tmp_path: Path) -> None:
    """The encoding is chosen on the whole file, not its first lines: a Cyrillic name first appears on line
    3,002 of a cp1251 file."""
    lines = [["lastname", "username"]] + [[f"user{n}", f"u{n}"] for n in range(3000)] + [["Ёлкина", "elkina"]]
    path = write(tmp_path / "late.csv", excel_text(lines), "cp1251")
    sheet = open_sheet(path)
    assert sheet.encoding == "cp1251"
    assert list(sheet.rows())[-1] == (3002, ["Ёлкина", "elkina"])


def test_forced_encodings(tmp_path: Path) -> None:
    cp = write(tmp_path / "cp.csv", excel_text([HEADER, *PEOPLE]), "cp1251")
    assert open_sheet(cp, encoding="windows-1251").encoding == "cp1251"
    bom = write(tmp_path / "bom.csv", excel_text([HEADER, *PEOPLE]), "utf-8-sig")
    forced = open_sheet(bom, encoding="utf-8")
    assert (forced.encoding, forced.header[0]) == ("utf-8-sig", "Фамилия")   # a BOM is never data
    with pytest.raises(FileProblem, match="Кодировка «koi8-r» не поддерживается; допустимы utf-8"):
        open_sheet(cp, encoding="koi8-r")


def test_cp1251_forced_as_utf8(tmp_path: Path) -> None:
    text = excel_text([["Login", "Email"], ["ivanov", "i@x.ru"], ["Ёлкина", "e@x.ru"]])
    path = write(tmp_path / "from1c.csv", text, "cp1251")
    with pytest.raises(FileProblem) as caught:
        open_sheet(path, encoding="utf-8")
    assert str(caught.value) == ("Файл «from1c.csv» не в кодировке utf-8: в строке 3 байт 0xA8 не читается в этой "
                                 "кодировке. Файл, вероятно, в cp1251: укажите кодировку cp1251 или не указывайте "
                                 "её — bufsync определит UTF-8 или cp1251 сам")


def test_bytes_neither_utf8_nor_cp1251(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes("Фамилия;Имя\r\nИванов;Иван\r\n".encode("cp1251") + b"\x98\r\n")   # 0x98: no cp1251 letter
    with pytest.raises(FileProblem, match=r"не читается ни как UTF-8, ни как cp1251 \(windows-1251\): в строке 3 "
                                          r"байт 0x98"):
        open_sheet(path)


def test_a_bom_then_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "glued.csv"
    path.write_bytes("Фамилия;Имя\r\n".encode("utf-8-sig") + "Иванов;Иван\r\n".encode("cp1251"))
    with pytest.raises(FileProblem, match="начинается с метки UTF-8 \\(BOM\\), но в строке 2 байт 0xC8"):
        open_sheet(path)


@pytest.mark.parametrize("name", ["empty.csv", "empty.xlsx"])
def test_an_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileProblem, match=rf"^Файл «{name}» пуст \(0 байт\)"):
        open_sheet(tmp_path / name)


def test_a_file_of_empty_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.csv", "\r\n;;;\r\n  \r\n", "cp1251")
    with pytest.raises(FileProblem, match="нет ни одной непустой строки"):
        open_sheet(path)


def test_no_header_row_found(tmp_path: Path) -> None:
    path = write(tmp_path / "other.csv", excel_text([["Группа", "Куратор"], ["ИС-21", "Петрова"]]), "cp1251")
    with pytest.raises(FileProblem) as caught:
        open_sheet(path, is_header=knows("Логин"))
    assert str(caught.value) == ("Файл «other.csv»: среди первых 20 непустых строк не найдена строка заголовка с "
                                 "названиями колонок. Первая непустая строка: «Группа; Куратор». Первой строкой "
                                 "таблицы должны идти названия колонок (как в описании выгрузки)")


def test_the_header_is_searched_within_20_non_empty_rows(tmp_path: Path) -> None:
    lines = [[f"строка {n}"] for n in range(20)] + [HEADER]
    path = write(tmp_path / "deep.csv", excel_text(lines).replace("\r\n", "\r\n\r\n"), "cp1251")
    with pytest.raises(FileProblem, match="среди первых 20 непустых строк"):
        open_sheet(path, is_header=knows("Логин"))
    path = write(tmp_path / "deep19.csv", excel_text(lines[1:]).replace("\r\n", "\r\n\r\n"), "cp1251")
    assert open_sheet(path, is_header=knows("Логин")).header_line == 39


def test_the_file_names(tmp_path: Path) -> None:
    with pytest.raises(FileProblem, match=r"^Файл «.*missing\.csv» не найден$"):
        open_sheet(tmp_path / "missing.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    with pytest.raises(FileProblem, match=r"старого формата \(\.xls\).*сохраните как «Книга Excel \(\*\.xlsx\)» "
                                          r"или «CSV"):
        open_sheet(tmp_path / "old.xls")
    (tmp_path / "OLD.XLS").write_bytes(b"x")
    with pytest.raises(FileProblem, match=r"\(\.xls\)"):
        open_sheet(tmp_path / "OLD.XLS")
    (tmp_path / "table.ods").write_bytes(b"x")
    with pytest.raises(FileProblem, match=r"^Файл «table\.ods»: расширение «\.ods» не поддерживается; принимаются "
                                          r"CSV \(\.csv, \.txt, \.tsv\) или книга Excel \(\.xlsx, \.xlsm\)$"):
        open_sheet(tmp_path / "table.ods")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(FileProblem, match="не файл"):
        open_sheet(tmp_path / "folder.csv")


@pytest.mark.parametrize("head, what", [
    (b"PK\x03\x04" + bytes(40), "книга Excel .xlsx"),
    (b"\xd0\xcf\x11\xe0" + bytes(40), "книга Excel старого формата .xls"),
    ("Фамилия\tИмя\r\n".encode("utf-16"), "текст в кодировке UTF-16 («Текст Юникод» в Excel)"),
])
def test_something_else_under_a_csv_name(tmp_path: Path, head: bytes, what: str) -> None:
    (tmp_path / "data.csv").write_bytes(head)
    with pytest.raises(FileProblem, match=re.escape(f"назван как CSV, но это {what}")):
        open_sheet(tmp_path / "data.csv")


def test_a_quote_never_closed(tmp_path: Path) -> None:
    text = 'Фамилия;Комментарий\r\nИванов;ок\r\nЁлкина;"начало\r\nПетров;ок\r\n'
    sheet = open_sheet(write(tmp_path / "open.csv", text, "cp1251"))
    with pytest.raises(FileProblem, match="значение в строке 3 открывается кавычкой, которая не закрыта до конца "
                                          "файла"):
        rows(sheet)


def test_a_quote_not_doubled(tmp_path: Path) -> None:
    """A hand-made export: the quotes inside a quoted value not doubled. The line is named; nothing after it is
    swallowed into one value."""
    text = 'Организация;ИНН\r\n"ООО Ромашка";1\r\n"ООО "Лютик"";2\r\n'
    sheet = open_sheet(write(tmp_path / "orgs.csv", text, "utf-8"))
    with pytest.raises(FileProblem, match=r"в строке 3 после закрывающей кавычки нет разделителя «;»"):
        rows(sheet)
