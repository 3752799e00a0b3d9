"""Университет 2035: sync_u2035_connection (the four-stage connection and its status), sync_u2035_statements
(each footprint statement with its UUID), sync_u2035_files (each file in S3 by SHA-256), v_queue_u2035; the buffer
column buf_users.unti_id (the learner's UNTI id, the statements' actor)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from bufsync.state.views import DropView, queue_view, view_name

# revision identifiers, used by Alembic.
revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# v_queue_u2035 as this revision creates it (payload key -> column); a later change is a later revision
VIEW_FIELDS = (('fact_key', 'fact_key'), ('statement_id', 'statement_id'), ('unti_id', 'unti_id'), ('verb', 'verb'),
               ('course_id', 'moodle_course_id'), ('user_id', 'moodle_user_id'))


def upgrade() -> None:
    op.create_table('sync_u2035_connection',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False, comment='Всегда 1: одно подключение'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='not_started — «Не выполнен», in_progress — «В процессе (k/4)», data_error — «Ошибка данных» (проверка этапа 2 или 4 не прошла), active — «Активен»: след отправляется'),
    sa.Column('stage', sa.Integer(), server_default=sa.text('1'), nullable=False, comment='Текущий этап подключения (1–4)'),
    sa.Column('opened', sa.Integer(), server_default=sa.text('1'), nullable=False, comment='Самый дальний открытый этап: к любому этапу до него можно вернуться'),
    sa.Column('test_statement_id', sa.String(length=36).with_variant(sa.NVARCHAR(length=36), 'mssql'), nullable=True, comment='Идентификатор пробного высказывания в тестовом LRS (этап 2): нужен для письма этапа 3'),
    sa.Column('settings_hash', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Отпечаток настроек подключения на момент активации: их нельзя менять до отключения'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Ответ LRS или S3 на последнюю неудачную проверку'),
    sa.Column('checked_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Последняя проверка (UTC)'),
    sa.Column('activated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда подключение стало активным (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_u2035_connection')),
    comment='Подключение к Университету 2035: этапы и статус; без статуса active след не отправляется'
    )
    op.create_table('sync_u2035_files',
    sa.Column('sha256', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='SHA-256 содержимого (sha2 вложения)'),
    sa.Column('length', sa.BigInteger(), nullable=False, comment='Размер в байтах (length вложения)'),
    sa.Column('object_key', sa.String(length=1000).with_variant(sa.NVARCHAR(length=1000), 'mssql'), nullable=False, comment='Ключ объекта в бакете'),
    sa.Column('url', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=False, comment='Публичная ссылка (fileUrl вложения)'),
    sa.Column('content_type', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Тип содержимого'),
    sa.Column('source', sa.String(length=800).with_variant(sa.NVARCHAR(length=800), 'mssql'), nullable=True, comment='Откуда файл взят в Moodle: время изменения, размер и путь (без токена); по нему файл, уже записанный в S3, находится без повторного скачивания'),
    sa.Column('uploaded_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда файл записан в S3 (UTC)'),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_sync_u2035_files')),
    comment='Файлы цифрового следа в S3 Университета 2035: один объект на содержимое (по SHA-256)'
    )
    op.create_table('sync_u2035_statements',
    sa.Column('fact_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=False, comment='Факт: enrolment:<курс>:<пользователь>, activity:<cmid>:<пользователь>, grade:<элемент оценивания>:<пользователь>, completion:<курс>:<пользователь>, submission:<ответ>'),
    sa.Column('kind', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='enrolment — запись на курс, activity — выполнен элемент курса, grade — оценка, completion — курс завершён, submission — ответ на задание с файлами'),
    sa.Column('unti_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='UNTI ID учащегося (actor высказывания)'),
    sa.Column('moodle_user_id', sa.BigInteger(), nullable=False, comment='Пользователь Moodle (user.id)'),
    sa.Column('moodle_course_id', sa.BigInteger(), nullable=False, comment='Курс Moodle (course.id)'),
    sa.Column('statement_id', sa.String(length=36).with_variant(sa.NVARCHAR(length=36), 'mssql'), nullable=False, comment='UUID высказывания: назначается при первой постановке в очередь и не меняется при повторной отправке; новое содержание факта — новое высказывание'),
    sa.Column('verb', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Глагол (verb.id)'),
    sa.Column('fingerprint', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Отпечаток содержания факта: изменилось ли что-то с прошлой отправки'),
    sa.Column('occurred_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда это произошло (timestamp, UTC)'),
    sa.Column('files', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Файлов во вложениях (ответ на задание)'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='queued — в очереди, sent — LRS принял, error — LRS отверг (см. last_error), held — ждёт активного подключения'),
    sa.Column('sends', sa.Integer(), server_default=sa.text('1'), nullable=False, comment='Сколько версий факта отправлено (номер в ключе очереди)'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт строка (sync_queue.idempotency_key)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему LRS не принял высказывание'),
    sa.Column('sent_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда LRS принял высказывание (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('fact_key', name=op.f('pk_sync_u2035_statements')),
    comment='Цифровой след для Университета 2035: каждое высказывание xAPI, его UUID и судьба'
    )
    with op.batch_alter_table('sync_u2035_statements', schema=None) as batch_op:
        batch_op.create_index('ix_sync_u2035_statements_pending', ['pending_key'], unique=False)
    with op.batch_alter_table('sync_u2035_files', schema=None) as batch_op:
        batch_op.create_index('ix_sync_u2035_files_source', ['source'], unique=False)

    with op.batch_alter_table('buf_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unti_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Идентификатор человека в Университете 2035 (UNTI ID); нужен для передачи цифрового следа'))
    # the DBA view of the Университет 2035 queue
    queue = sa.table('sync_queue', *(sa.column(name) for name in (
        'id', 'portal', 'operation', 'status', 'attempts', 'max_attempts', 'available_at', 'created_at',
        'completed_at', 'last_error', 'idempotency_key', 'payload')))
    op.execute(queue_view(queue, 'u2035', VIEW_FIELDS, op.get_context().dialect.name))


def downgrade() -> None:
    op.execute(DropView(view_name('u2035')))
    with op.batch_alter_table('buf_users', schema=None) as batch_op:
        batch_op.drop_column('unti_id')

    with op.batch_alter_table('sync_u2035_files', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_u2035_files_source')

    with op.batch_alter_table('sync_u2035_statements', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_u2035_statements_pending')

    op.drop_table('sync_u2035_statements')
    op.drop_table('sync_u2035_files')
    op.drop_table('sync_u2035_connection')
