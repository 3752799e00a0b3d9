"""sync_rate_limits: one row per portal token (by a label or hash, never the token) holding its last sends, so every
dispatcher process on every host keeps one shared request rate (VK: 3 a second per user token)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0014'
down_revision: Union[str, Sequence[str], None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'sync_rate_limits',
        sa.Column('limit_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=False,
                  comment='Чей лимит: метка или хеш токена портала (сам токен здесь не хранится)'),
        sa.Column('sent', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=False,
                  comment='Времена последних отправок с этим токеном (JSON-список секунд Unix по часам '
                          'отправителей), не больше числа отправок, разрешённых за окно'),
        sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False,
                  comment='Когда взята последняя отправка (UTC, по часам отправителя)'),
        sa.PrimaryKeyConstraint('limit_key', name=op.f('pk_sync_rate_limits')),
        comment='Движок: общий лимит запросов к порталу на один токен для всех процессов и серверов '
                '(например, VK: 3 запроса в секунду на токен пользователя)',
    )


def downgrade() -> None:
    op.drop_table('sync_rate_limits')
