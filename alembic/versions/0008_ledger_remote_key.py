"""sync_ledger.remote_key: a remote id that is not a number (an xAPI statement's UUID, an S3 object key, a chat
id given as text) is kept as text beside the numeric remote_id; a record has one or the other

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('sync_ledger') as batch:
        batch.add_column(sa.Column(
            'remote_key', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True,
            comment='Текстовый идентификатор записи (UUID, ключ объекта S3, id чата), когда он не число; '
                    'у записи заполнен либо remote_id, либо remote_key'))
        batch.create_index('ix_sync_ledger_remote_key', ['mapping_name', 'remote_key'])


def downgrade() -> None:
    with op.batch_alter_table('sync_ledger') as batch:
        batch.drop_index('ix_sync_ledger_remote_key')
        batch.drop_column('remote_key')
