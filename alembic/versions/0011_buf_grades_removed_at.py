"""buf_grades.removed_at: a grade gone from Moodle (an item deleted, a grade reset) is never deleted silently:
the row stays with its values cleared and removed_at set, and updated_at moves, so 1C sees it by its
"changed since" read

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UPDATED_BEFORE = 'Когда движок последний раз изменил строку'
UPDATED_AFTER = ('Когда движок последний раз изменил строку (в том числе отметил удаление): 1С читает изменённое с '
                 'прошлого чтения по этому индексу')


def _datetime() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql')


def _updated_comment(forward: bool) -> None:
    # SQLite stores no comments (sql/sqlite.sql carries them as SQL comment lines)
    if op.get_context().dialect.name == 'sqlite':
        return
    op.alter_column('buf_grades', 'updated_at', existing_type=_datetime(), existing_nullable=False,
                    comment=UPDATED_AFTER if forward else UPDATED_BEFORE,
                    existing_comment=UPDATED_BEFORE if forward else UPDATED_AFTER)


def upgrade() -> None:
    with op.batch_alter_table('buf_grades', schema=None) as batch_op:
        batch_op.add_column(sa.Column('removed_at', _datetime(), nullable=True, comment=(
            'Когда оценка исчезла из Moodle (элемент удалён, оценка сброшена); значения строки тогда очищены. '
            'Пусто — оценка есть')))
    _updated_comment(True)


def downgrade() -> None:
    _updated_comment(False)
    with op.batch_alter_table('buf_grades', schema=None) as batch_op:
        batch_op.drop_column('removed_at')
