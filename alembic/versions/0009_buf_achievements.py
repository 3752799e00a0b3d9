"""buf_achievements: the portfolio (contract v1.1). A person with an achievement of a kind is a member of that
kind's cohort (ach-<type_code>), so a site can award a core badge by cohort criterion

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('buf_achievements',
    sa.Column('person_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id)'),
    sa.Column('type_code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=False, comment='Код вида достижения (олимпиада, конкурс, ...); человек с достижением этого вида — участник когорты «ach-» + код'),
    sa.Column('achievement_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор достижения в 1С'),
    sa.Column('type_name', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Наименование вида достижения; становится именем когорты'),
    sa.Column('title', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Название достижения (мероприятие, награда)'),
    sa.Column('achieved_on', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=True, comment='Дата достижения'),
    sa.Column('level', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=True, comment='Уровень: международный, всероссийский, региональный, ...'),
    sa.Column('document', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Подтверждающий документ (номер диплома, сертификата)'),
    sa.Column('points', sa.Numeric(precision=6, scale=2), nullable=True, comment='Баллы за достижение'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='active', nullable=False, comment='active — действует, cancelled — аннулировано'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда 1С изменила строку (необязательно)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, warning, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена (error, skipped) или что LMS не сохранила (warning) — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.PrimaryKeyConstraint('person_external_id', 'type_code', 'achievement_id', name=op.f('pk_buf_achievements')),
    comment='Достижения (портфолио) обучающихся и сотрудников'
    )


def downgrade() -> None:
    op.drop_table('buf_achievements')
