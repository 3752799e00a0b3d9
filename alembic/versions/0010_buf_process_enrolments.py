"""buf_process_enrolments: the enrolments learning processes ask for (each studying student of the academic
group, the teacher), filled by bufsync from buf_learning_processes and buf_students before each run

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('buf_process_enrolments',
    sa.Column('user_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id): студент группы или преподаватель'),
    sa.Column('course_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Курс дисциплины (buf_learning_processes.course_external_id)'),
    sa.Column('process_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Учебный процесс (buf_learning_processes.external_id); его группа в курсе — группа Moodle, где человек участник'),
    sa.Column('role', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=False, comment='Роль в курсе: student — студент группы, editingteacher — преподаватель (настраивается в mappings/process_enrolments.yaml)'),
    sa.Column('time_start', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=False, comment='Начало изучения (buf_learning_processes.start_date)'),
    sa.Column('time_end', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=False, comment='Окончание изучения (buf_learning_processes.end_date), день включительно'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, warning, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена (error, skipped) или что LMS не сохранила (warning) — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.PrimaryKeyConstraint('user_external_id', 'course_external_id', 'process_external_id', 'role', name=op.f('pk_buf_process_enrolments')),
    comment='Записи на курсы по учебным процессам (заполняет bufsync из buf_learning_processes и buf_students перед каждым запуском; 1С эту таблицу не пишет)'
    )
    with op.batch_alter_table('buf_process_enrolments', schema=None) as batch_op:
        batch_op.create_index('ix_buf_process_enrolments_process', ['process_external_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('buf_process_enrolments', schema=None) as batch_op:
        batch_op.drop_index('ix_buf_process_enrolments_process')

    op.drop_table('buf_process_enrolments')
