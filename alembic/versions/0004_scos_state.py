"""sync_scos_courses, sync_scos_learners, sync_scos_results; v_queue_scos

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from bufsync.state.views import DropView, queue_view, view_name

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# v_queue_scos as this revision creates it (payload key -> column); a later change is a later revision
VIEW_FIELDS = (('_moodle_course_id', 'moodle_course_id'), ('_moodle_user_id', 'moodle_user_id'),
               ('course_id', 'course_id'), ('user_id', 'user_id'), ('session_id', 'session_id'),
               ('checkpoint_id', 'checkpoint_id'), ('checkpoint_name', 'checkpoint_name'), ('rating', 'rating'),
               ('progress', 'progress'), ('title', 'title'), ('business_version', 'business_version'),
               ('status', 'new_status'))


def upgrade() -> None:
    op.create_table('sync_scos_courses',
    sa.Column('course_id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Курс в Moodle (course.id)'),
    sa.Column('shortname', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Краткое название курса в Moodle'),
    sa.Column('scos_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Идентификатор курса на портале СЦОС (UUID)'),
    sa.Column('session_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Сессия курса на портале (session_id в записях слушателей)'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='publishing — паспорт в очереди, moderation — на модерации, published — опубликован, updating — изменения в очереди, archiving / archived — снимается / снят с публикации, activating — возвращается в публикацию, rejected — отклонён модерацией, error — паспорт не собран или отвергнут порталом (см. last_error)'),
    sa.Column('moderation', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=True, comment='Последний статус модерации от портала'),
    sa.Column('business_version', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Версия паспорта на портале: 1 при публикации, +1 при каждом изменении'),
    sa.Column('passport_hash', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=True, comment='md5 последнего отправленного паспорта: изменения курса находятся сравнением'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт курс (sync_queue.idempotency_key)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему курс не опубликован или не обновлён'),
    sa.Column('published_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда портал принял паспорт (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('course_id', name=op.f('pk_sync_scos_courses')),
    comment='Курсы на портале СЦОС: публикация, модерация, версии, архив'
    )
    op.create_table('sync_scos_learners',
    sa.Column('course_id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Курс в Moodle (course.id)'),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Пользователь Moodle (user.id)'),
    sa.Column('scos_user_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Идентификатор слушателя на портале (user_id СЦОС)'),
    sa.Column('session_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Сессия курса на портале'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='enrolling — запись в очереди, enrolled — записан на портале, unenrolling — отчисление в очереди, unenrolled — отчислен, error — портал отверг запись (см. last_error)'),
    sa.Column('enrolment_no', sa.Integer(), server_default=sa.text('1'), nullable=False, comment='Номер записи на курс: повторная запись после отчисления увеличивает его'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт запись (sync_queue.idempotency_key)'),
    sa.Column('certified_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда сертификат поставлен в очередь (UTC)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему слушатель не записан на портале'),
    sa.Column('enrolled_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда портал принял запись (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('course_id', 'user_id', name=op.f('pk_sync_scos_learners')),
    comment='Слушатели курсов СЦОС: кто записан на портале, по какой сессии, с каким результатом'
    )
    op.create_table('sync_scos_results',
    sa.Column('course_id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Курс в Moodle (course.id)'),
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Пользователь Moodle (user.id)'),
    sa.Column('item', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=False, comment='Элемент оценивания Moodle (grade_items.id) или course — итог курса (прогресс)'),
    sa.Column('value', sa.Numeric(precision=6, scale=2), nullable=False, comment='Отправленная оценка в процентах (0–100)'),
    sa.Column('graded_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда оценка выставлена в Moodle (UTC)'),
    sa.Column('enrolment_no', sa.Integer(), nullable=False, comment='К какой записи на курс относится оценка'),
    sa.Column('sends', sa.Integer(), nullable=False, comment='Сколько раз значение отправлялось (номер в ключе очереди)'),
    sa.Column('queued_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда последнее значение поставлено в очередь (UTC)'),
    sa.PrimaryKeyConstraint('course_id', 'user_id', 'item', name=op.f('pk_sync_scos_results')),
    comment='Результаты слушателей, отправленные в СЦОС: по элементам оценивания и итог курса'
    )
    # the DBA view of the СЦОС queue
    queue = sa.table('sync_queue', *(sa.column(name) for name in (
        'id', 'portal', 'operation', 'status', 'attempts', 'max_attempts', 'available_at', 'created_at',
        'completed_at', 'last_error', 'idempotency_key', 'payload')))
    op.execute(queue_view(queue, 'scos', VIEW_FIELDS, op.get_context().dialect.name))


def downgrade() -> None:
    op.execute(DropView(view_name('scos')))
    op.drop_table('sync_scos_results')
    op.drop_table('sync_scos_learners')
    op.drop_table('sync_scos_courses')
