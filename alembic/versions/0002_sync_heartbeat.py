"""sync_heartbeat: scheduled jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('sync_heartbeat',
    sa.Column('job', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Задача расписания'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='idle — ждёт, running — выполняется, interrupted/timeout/failed — последний итог'),
    sa.Column('host', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Сервер, где задача выполняется или выполнялась'),
    sa.Column('pid', sa.Integer(), nullable=True, comment='Процесс задачи'),
    sa.Column('run_id', sa.BigInteger(), nullable=True, comment='Текущий или последний прогон (sync_runs.id)'),
    sa.Column('started_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Начало текущего или последнего прогона (UTC)'),
    sa.Column('last_beat', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Последний сигнал «жив» (UTC); отстаёт — процесс завис или убит'),
    sa.Column('last_due', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Срок по расписанию, который уже взят в работу (UTC): каждый срок выполняется один раз'),
    sa.Column('next_run', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Следующий срок по расписанию (UTC)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Ошибка последнего прогона'),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_sync_heartbeat')),
    comment='Задачи расписания: что выполняется сейчас, когда был сигнал «жив», когда следующий запуск'
    )


def downgrade() -> None:
    op.drop_table('sync_heartbeat')
