"""sync_queue.in_doubt and resends (items a dead dispatcher may have sent); the `died` outcome of sync_runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from bufsync.state.views import DropView, queue_view, view_name

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OUTCOME = ('Итог: running, ok, rejected, refused, failed, interrupted, timeout, died — процесс умер (убит), '
           'не записав итог')
OUTCOME_BEFORE = 'Итог: running, ok, rejected, refused, failed, interrupted'
STATE = 'idle — ждёт, running — выполняется, interrupted/timeout/failed/died — последний итог'
STATE_BEFORE = 'idle — ждёт, running — выполняется, interrupted/timeout/failed — последний итог'
STRING16 = sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql')
# v_queue_scos as 0004 created it: SQLite rebuilds sync_queue to drop a column, and a view must not see that
VIEW_FIELDS = (('_moodle_course_id', 'moodle_course_id'), ('_moodle_user_id', 'moodle_user_id'),
               ('course_id', 'course_id'), ('user_id', 'user_id'), ('session_id', 'session_id'),
               ('checkpoint_id', 'checkpoint_id'), ('checkpoint_name', 'checkpoint_name'), ('rating', 'rating'),
               ('progress', 'progress'), ('title', 'title'), ('business_version', 'business_version'),
               ('status', 'new_status'))


def _comments(outcome: str, outcome_before: str, state: str, state_before: str) -> None:
    # SQLite stores no comments (sql/sqlite.sql carries them as SQL comment lines)
    if op.get_context().dialect.name == 'sqlite':
        return
    op.alter_column('sync_runs', 'outcome', existing_type=STRING16, existing_nullable=False, comment=outcome,
                    existing_comment=outcome_before)
    op.alter_column('sync_heartbeat', 'state', existing_type=STRING16, existing_nullable=False, comment=state,
                    existing_comment=state_before)


def upgrade() -> None:
    op.add_column('sync_queue', sa.Column(
        'in_doubt', sa.Boolean(), server_default=sa.false(), nullable=False,
        comment='Под сомнением: исполнитель умер во время отправки или ответ портала потерян — портал мог операцию '
                'уже получить; перед повтором портал опрашивается, где это возможно'))
    op.add_column('sync_queue', sa.Column(
        'resends', sa.Integer(), server_default=sa.text('0'), nullable=False,
        comment='Сколько раз операцию под сомнением отправили повторно (портал мог получить её дважды)'))
    _comments(OUTCOME, OUTCOME_BEFORE, STATE, STATE_BEFORE)


def downgrade() -> None:
    _comments(OUTCOME_BEFORE, OUTCOME, STATE_BEFORE, STATE)
    dialect = op.get_context().dialect.name
    if dialect == 'sqlite':
        op.execute(DropView(view_name('scos')))
    with op.batch_alter_table('sync_queue') as batch:
        batch.drop_column('resends', mssql_drop_default=True)
        batch.drop_column('in_doubt', mssql_drop_default=True)
    if dialect == 'sqlite':
        queue = sa.table('sync_queue', *(sa.column(name) for name in (
            'id', 'portal', 'operation', 'status', 'attempts', 'max_attempts', 'available_at', 'created_at',
            'completed_at', 'last_error', 'idempotency_key', 'payload')))
        op.execute(queue_view(queue, 'scos', VIEW_FIELDS, dialect))
