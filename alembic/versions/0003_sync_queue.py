"""sync_queue: the portal outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('sync_queue',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False, comment='Номер операции'),
    sa.Column('portal', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=False, comment='Портал: scos, sferum, u2035'),
    sa.Column('operation', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Операция портала, например course_publish, participation_add'),
    sa.Column('payload', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=False, comment='Данные операции (JSON, без секретов)'),
    sa.Column('idempotency_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=False, comment='Ключ повтора: одна и та же операция ставится в очередь один раз'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='pending', nullable=False, comment='pending — ждёт, running — выполняется, done — выполнена, failed — ошибка (ждёт retry), dead — попытки исчерпаны, cancelled — отменена'),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Сколько раз операцию пытались выполнить'),
    sa.Column('max_attempts', sa.Integer(), server_default=sa.text('8'), nullable=False, comment='После стольких неудач операция становится dead'),
    sa.Column('available_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Не раньше этого времени (UTC): отложенный повтор с нарастающей паузой'),
    sa.Column('locked_by', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Кто взял операцию (хост:pid)'),
    sa.Column('locked_until', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Аренда до (UTC): если исполнитель умер, после этого операцию берёт другой'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Последняя ошибка (ответ портала)'),
    sa.Column('response', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=True, comment='Ответ портала на успешную операцию (JSON)'),
    sa.Column('created_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда поставлена в очередь (UTC)'),
    sa.Column('completed_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда выполнена или отменена (UTC)'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_queue')),
    comment='Очередь операций для порталов (СЦОС, Сферум, Университет 2035)'
    )
    op.create_index('ix_sync_queue_claim', 'sync_queue', ['portal', 'status', 'available_at'], unique=False)
    op.create_index('uq_sync_queue_idempotency', 'sync_queue', ['portal', 'idempotency_key'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_sync_queue_idempotency', table_name='sync_queue')
    op.drop_index('ix_sync_queue_claim', table_name='sync_queue')
    op.drop_table('sync_queue')
