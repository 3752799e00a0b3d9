"""Who should be in which Сферум chat, read from the buffer: an academic group's studying students, a department's
working staff, a learning process's students and teacher, and the chats a site declares in buf_chat_members.

A person is in a chat by their VK ID (buf_users.vk_id); one without a usable one is kept in the chat's list all the
same (counted, noted for 1C), and joins by themselves on the first run after 1C fills the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa

from bufsync.mapping.loader import MappingSet
from bufsync.mapping.model import Mapping
from bufsync.portals.sferum.settings import SferumSettings

# what 1C may write for a VK ID: 12345, id12345, vk.com/id12345 (a short name cannot be told from here)
VK_ID = re.compile(r"^(?:(?:https?://)?(?:m\.)?vk\.(?:com|ru)/)?(?:id)?(\d{1,15})/?$", re.IGNORECASE)
STUDYING, WORKING = ["studying"], ["working"]


@dataclass
class Person:
    external_id: str
    vk_id: int | None
    name: str
    vk_problem: str | None = None  # why the VK ID is not usable (empty, or not a number)


@dataclass
class Wanted:
    """One chat as the buffer wants it."""

    key: str
    kind: str
    title: str
    members: dict[str, Person] = field(default_factory=dict)  # by person external id

    @property
    def vk_ids(self) -> dict[int, Person]:
        return {p.vk_id: p for p in self.members.values() if p.vk_id is not None}


@dataclass
class Contingent:
    chats: dict[str, Wanted]
    # kind -> the source table's row count, and whether each source may be trusted for removals
    source_rows: dict[str, int]
    tables: dict[str, sa.Table]
    people: dict[str, Person] = field(default_factory=dict)  # everyone in buf_users, by external id


def parse_vk_id(raw: Any) -> tuple[int | None, str | None]:
    """(the VK id, or why there is none)."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None, "нет VK ID (buf_users.vk_id)"
    found = VK_ID.match(text)
    if found is None or int(found.group(1)) <= 0:
        return None, (f"VK ID «{text[:40]}» не число: нужен числовой id профиля (например 123456789 или "
                      "https://vk.com/id123456789)")
    return int(found.group(1)), None


def _table(metadata: sa.MetaData, name: str) -> sa.Table | None:
    return metadata.tables.get(name)


def _active(mappings: MappingSet, table: str, default: list[str]) -> list[str]:
    """The status values the mapping of this table counts as active (studying, working)."""
    found: Mapping | None = next((m for m in mappings if m.table.name == table), None)
    if found is None or found.sync is None or found.flow.status is None:
        return default
    return list(found.flow.status.active)


def read(engine: sa.Engine, metadata: sa.MetaData, mappings: MappingSet, settings: SferumSettings,
         today: date) -> Contingent:
    """Every wanted chat with its members; a kind whose tables the buffer lacks is left out."""
    present = set(sa.inspect(engine).get_table_names())
    tables: dict[str, sa.Table] = {name: t for name in ("buf_users", "buf_students", "buf_staff", "buf_departments",
                                   "buf_learning_processes", "buf_courses", "buf_chat_members")
              if (t := _table(metadata, name)) is not None and name in present}
    chats: dict[str, Wanted] = {}
    rows: dict[str, int] = {}
    if "buf_users" not in tables:
        return Contingent(chats, rows, tables)
    titles = settings.titles
    with engine.connect() as conn:
        people = _people(conn, tables["buf_users"])
        students = tables.get("buf_students")
        groups: dict[str, tuple[str, list[str]]] = {}  # group code -> (its name, its studying students)
        if students is not None:
            active = _active(mappings, "buf_students", STUDYING)
            rows["groups"] = rows["processes"] = int(conn.execute(
                sa.select(sa.func.count()).select_from(students)).scalar_one())
            for code, name, person in conn.execute(
                    sa.select(students.c.group_code, students.c.group_name, students.c.person_external_id)
                    .where(students.c.status.in_(active))
                    .order_by(students.c.group_code, students.c.person_external_id)):
                group = groups.setdefault(code.strip(), ((name or code).strip(), []))
                group[1].append(person)
        if "groups" in settings.chats:
            for code, (name, members) in groups.items():
                chat = Wanted(f"group:{code}", "groups", _title(titles.groups, group_code=code, group_name=name))
                _add(chat, members, people)
                chats[chat.key] = chat
        staff = tables.get("buf_staff")
        if "departments" in settings.chats and staff is not None:
            rows["departments"] = int(conn.execute(sa.select(sa.func.count()).select_from(staff)).scalar_one())
            names = _names(conn, tables.get("buf_departments"))
            active = _active(mappings, "buf_staff", WORKING)
            for code, person in conn.execute(
                    sa.select(staff.c.department_external_id, staff.c.person_external_id)
                    .where(staff.c.status.in_(active)).distinct()
                    .order_by(staff.c.department_external_id, staff.c.person_external_id)):
                key = f"department:{code.strip()}"
                if key not in chats:
                    chats[key] = Wanted(key, "departments", _title(
                        titles.departments, department_code=code.strip(), department_name=names.get(code, code)))
                _add(chats[key], [person], people)
        processes = tables.get("buf_learning_processes")
        if "processes" in settings.chats and processes is not None:
            courses = _names(conn, tables.get("buf_courses"), "fullname")
            for row in conn.execute(sa.select(processes).where(processes.c.end_date >= today)
                                    .order_by(processes.c.external_id)):
                code = row.group_code.strip()
                group_name, members = groups.get(code, (code, []))
                teacher = people.get(row.teacher_external_id) if row.teacher_external_id else None
                key = f"process:{row.external_id}"
                chats[key] = Wanted(key, "processes", _title(
                    titles.processes, process_id=row.external_id, group_code=code, group_name=group_name,
                    course_code=row.course_external_id,
                    course_name=courses.get(row.course_external_id, row.course_external_id),
                    teacher_name=teacher.name if teacher else ""))
                _add(chats[key], ([row.teacher_external_id] if row.teacher_external_id else []) + members, people)
        declared = tables.get("buf_chat_members")
        if "adhoc" in settings.chats and declared is not None:
            rows["adhoc"] = int(conn.execute(sa.select(sa.func.count()).select_from(declared)).scalar_one())
            for code, title, person in conn.execute(
                    sa.select(declared.c.chat_code, declared.c.chat_title, declared.c.person_external_id)
                    .order_by(declared.c.chat_code, declared.c.chat_title, declared.c.person_external_id)):
                key = f"adhoc:{code.strip()}"
                if key not in chats:
                    chats[key] = Wanted(key, "adhoc", _title(titles.adhoc, chat_code=code.strip(), title=title.strip()))
                _add(chats[key], [person], people)
    return Contingent(chats, rows, tables, people)


def _people(conn: sa.Connection, users: sa.Table) -> dict[str, Person]:
    out: dict[str, Person] = {}
    has_vk = "vk_id" in users.c
    columns = [users.c.external_id, users.c.last_name, users.c.first_name]
    for row in conn.execute(sa.select(*columns, *([users.c.vk_id] if has_vk else []))):
        vk_id, problem = parse_vk_id(row.vk_id if has_vk else None)
        out[row.external_id] = Person(row.external_id, vk_id, f"{row.last_name} {row.first_name}".strip(), problem)
    return out


def _names(conn: sa.Connection, table: sa.Table | None, column: str = "name") -> dict[str, str]:
    if table is None:
        return {}
    return {key: (name or key).strip() for key, name in conn.execute(sa.select(table.c.external_id, table.c[column]))}


def _add(chat: Wanted, persons: Iterable[str], people: dict[str, Person]) -> None:
    for external_id in persons:
        person = people.get(external_id)
        chat.members[external_id] = person if person is not None else Person(
            external_id, None, external_id, "нет в buf_users")


def _title(template: str, **values: str) -> str:
    """The template filled; an unknown placeholder is kept as written (a typo shows in the chat's title, never
    stops the run)."""

    class Keep(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"
    return " ".join(template.format_map(Keep(values)).split())[:255] or "?"
