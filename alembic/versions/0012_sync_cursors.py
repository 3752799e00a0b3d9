"""sync_cursors: where a read from the LMS cut short by its time budget (moodle.grades.time_budget) stopped, so
the next run reads the courses not reached first

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'sync_cursors',
        sa.Column('mapping_name', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Имя маппинга (файл в mappings/)'),
        sa.Column('position', sa.String(length=300).with_variant(sa.NVARCHAR(length=300), 'mssql'), nullable=True, comment=(
            'Где остановилось чтение из LMS, ограниченное по времени (например, id курса); пусто — прочитано всё, '
            'следующий прогон начнёт сначала')),
        sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False,
                  comment='Когда позиция записана (UTC)'),
        sa.PrimaryKeyConstraint('mapping_name', name=op.f('pk_sync_cursors')),
        comment='Движок: откуда следующий прогон продолжит чтение из LMS (moodle.grades.time_budget)',
    )


def downgrade() -> None:
    op.drop_table('sync_cursors')
