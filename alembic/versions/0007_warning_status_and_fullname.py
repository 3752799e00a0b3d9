"""sync_status comments list the warning status (a row Moodle applied only in part) and sync_error says it also
holds what Moodle did not keep; buf_courses.fullname says Moodle keeps at most 254 characters (comments only)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _string(length: int) -> sa.types.TypeEngine:
    return sa.String(length=length).with_variant(sa.NVARCHAR(length=length), 'mssql')


# the inbound tables of the shipped mappings at this revision: each has engine-written sync_status and sync_error
WRITEBACK_TABLES = ('buf_courses', 'buf_departments', 'buf_learning_processes', 'buf_programs', 'buf_staff',
                    'buf_students', 'buf_subscriptions', 'buf_users')

# (table, column): (type length, nullable, comment before, comment after)
COMMENTS = {
    **{(table, 'sync_status'): (16, True, 'Движок: результат синхронизации строки — ok, error, skipped, pending',
                                'Движок: результат синхронизации строки — ok, warning, error, skipped, pending')
       for table in WRITEBACK_TABLES},
    **{(table, 'sync_error'): (2000, True,
                               'Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS',
                               'Движок: почему строка не применена (error, skipped) или что LMS не сохранила '
                               '(warning) — текст для разработчика 1С и код ошибки LMS')
       for table in WRITEBACK_TABLES},
    ('buf_courses', 'fullname'): (255, False, 'Полное название курса',
                                  'Полное название курса; Moodle хранит не больше 254 символов — длиннее строка '
                                  'получает ошибку'),
}


def _comments(forward: bool) -> None:
    context = op.get_context()
    # SQLite stores no comments (sql/sqlite.sql carries them as SQL comment lines)
    if context.dialect.name == 'sqlite':
        return
    # offline (`bufsync db upgrade --sql`) MS SQL knows no default schema, and alembic must name one in
    # sp_updateextendedproperty: dbo, as sql/mssql.sql does
    schema = 'dbo' if context.as_sql and context.dialect.name == 'mssql' else None
    for (table, column), (length, nullable, before, after) in COMMENTS.items():
        op.alter_column(table, column, existing_type=_string(length), existing_nullable=nullable, schema=schema,
                        comment=after if forward else before, existing_comment=before if forward else after)


def upgrade() -> None:
    _comments(True)


def downgrade() -> None:
    _comments(False)
