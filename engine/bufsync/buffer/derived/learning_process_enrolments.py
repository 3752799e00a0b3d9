"""A learning process (an academic group studies a discipline in a course with a teacher) as the enrolments it
asks for: each studying student of the group with the student role, and the teacher with the teacher role, for
the process's dates. A student who leaves the group, or stops studying, drops out of the table: the
enrolment mapping then suspends what this process asked for (never unenrols: that deletes grades)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import Field, model_validator

from bufsync.buffer.derived import register
from bufsync.mapping.model import Identifier
from bufsync.validation import StrictModel

if TYPE_CHECKING:
    from bufsync.mapping.loader import MappingSet
    from bufsync.mapping.model import Mapping


class Options(StrictModel):
    student_role: str = Field("student", min_length=1, description="role shortname of the group's students")
    teacher_role: str = Field("editingteacher", min_length=1, description="role shortname of the teacher")
    processes: Identifier = Field("learning_processes", description="the mapping of buf_learning_processes")
    students: Identifier = Field("students", description="the mapping of buf_students (its status.active says "
                                                         "who is studying)")


    @model_validator(mode="after")
    def _two_roles(self) -> Options:
        if self.teacher_role == self.student_role:  # a teacher's row would then be a student's row twice over
            raise ValueError(f"teacher_role and student_role are both '{self.student_role}'; they must differ")
        return self


def _sources(options: Options) -> dict[str, str]:
    return {"processes": options.processes, "students": options.students}


def _code(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A group code as 1C may pad it (fixed-length strings): trimmed on both sides (LTRIM/RTRIM exist in
    every supported dialect; TRIM needs SQL Server 2017)."""
    return sa.func.rtrim(sa.func.ltrim(column))


@register("learning_process_enrolments", Options, _sources)
def select(mapping: Mapping, mappings: MappingSet, tables: dict[str, sa.Table], options: Options) -> sa.CompoundSelect:
    process = tables[mappings[options.processes].table.name]
    student = tables[mappings[options.students].table.name]
    students = mappings[options.students].flow
    studying = students.status.active if students.status else ["studying"]
    role = sa.String(32)
    # who studies in which group, once per person and group (a person may hold two record books in one): the
    # distinct pairs are few, so the rows joined below are unique without sorting all of them again
    studies = (sa.select(student.c.person_external_id, _code(student.c.group_code).label("group_code"))
               .where(student.c.status.in_(studying)).distinct().subquery("studies"))
    of_students = (
        sa.select(studies.c.person_external_id.label("user_external_id"), process.c.course_external_id,
                  process.c.external_id.label("process_external_id"),
                  sa.literal(options.student_role, role).label("role"),
                  process.c.start_date.label("time_start"), process.c.end_date.label("time_end"))
        .join_from(process, studies, studies.c.group_code == _code(process.c.group_code)))
    of_teachers = (
        sa.select(process.c.teacher_external_id, process.c.course_external_id, process.c.external_id,
                  sa.literal(options.teacher_role, role), process.c.start_date, process.c.end_date)
        .where(process.c.teacher_external_id.is_not(None), process.c.teacher_external_id != ""))
    return sa.union_all(of_students, of_teachers)
