"""sync_files: the files import jobs loaded, by checksum, written in the same transaction as their rows, so the
same file is never loaded twice

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _text(length: int) -> sa.types.TypeEngine:
    return sa.String(length=length).with_variant(sa.NVARCHAR(length=length), 'mssql')


def upgrade() -> None:
    op.create_table(
        'sync_files',
        sa.Column('checksum', _text(64), nullable=False,
                  comment='SHA-256 содержимого файла: один и тот же файл не загружается дважды'),
        sa.Column('file_name', _text(255), nullable=False, comment='Имя файла при загрузке'),
        sa.Column('mapping_name', _text(64), nullable=False, comment='Маппинг, в таблицу которого загружен'),
        sa.Column('job', _text(100), nullable=True, comment='Задача расписания (пусто для ручной загрузки)'),
        sa.Column('run_id', sa.BigInteger(), nullable=True, comment='Прогон загрузки (sync_runs.id)'),
        sa.Column('loaded_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False,
                  comment='Когда загружен (UTC)'),
        sa.PrimaryKeyConstraint('checksum', name=op.f('pk_sync_files')),
        comment='Движок: файлы, загруженные задачами import (в той же транзакции, что и их строки)',
    )


def downgrade() -> None:
    op.drop_table('sync_files')
