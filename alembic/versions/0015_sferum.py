"""VK Сферум: sync_sferum_chats, sync_sferum_members, sync_sferum_calls and v_queue_sferum; the buffer tables
buf_lessons (the timetable whose online lessons become VK calls) and buf_chat_members (a site's own chats)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from bufsync.state.views import CreateView, DropView, queue_view, view_name

# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# v_queue_sferum as this revision creates it (payload key -> column); a later change is a later revision
VIEW_FIELDS = (('chat_key', 'chat_key'), ('title', 'title'), ('chat_id', 'chat_id'), ('user_id', 'vk_id'),
               ('person', 'person_external_id'), ('lesson_id', 'lesson_id'), ('call_id', 'call_id'))


def upgrade() -> None:
    op.create_table('buf_chat_members',
    sa.Column('chat_code', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор беседы, который выбирает сайт'),
    sa.Column('person_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id); в беседу попадает по его VK ID'),
    sa.Column('chat_title', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Название беседы (одинаковое во всех строках беседы; берётся первое по алфавиту)'),
    sa.PrimaryKeyConstraint('chat_code', 'person_external_id', name=op.f('pk_buf_chat_members')),
    comment='Участники своих бесед Сферум (одна строка — один человек в одной беседе); беседу движок создаёт сам, состав держит по этой таблице'
    )
    op.create_table('buf_lessons',
    sa.Column('external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор занятия в 1С'),
    sa.Column('process_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Учебный процесс (buf_learning_processes.external_id): его группа и преподаватель; ссылка на звонок уходит в беседу дисциплины'),
    sa.Column('starts_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Начало занятия (местное время, часовой пояс из настроек timezone)'),
    sa.Column('ends_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Окончание занятия (местное время)'),
    sa.Column('online', sa.Boolean(), server_default=sa.false(), nullable=False, comment='Онлайн-занятие: движок запускает для него звонок Сферум'),
    sa.Column('topic', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Тема занятия: текст сообщения со ссылкой'),
    sa.Column('call_state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Пишет движок: starting — запуск в очереди, started — звонок идёт, finishing — завершается, finished — завершён, error — не запущен (причина в sync_error)'),
    sa.Column('join_link', sa.String(length=500).with_variant(sa.NVARCHAR(length=500), 'mssql'), nullable=True, comment='Пишет движок: ссылка для подключения к звонку'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Пишет движок: почему звонок не запущен или не завершён — текст и код ошибки VK'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_lessons')),
    comment='Занятия по расписанию (учебный процесс, время, онлайн); для онлайн-занятия дня движок запускает звонок VK Сферум заранее и завершает его после окончания'
    )
    with op.batch_alter_table('buf_lessons', schema=None) as batch_op:
        batch_op.create_index('ix_buf_lessons_starts_at', ['starts_at'], unique=False)

    op.create_table('sync_sferum_calls',
    sa.Column('lesson_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Занятие (buf_lessons.external_id)'),
    sa.Column('chat_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Беседа дисциплины, куда отправлена ссылка'),
    sa.Column('call_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Звонок VK (call_id)'),
    sa.Column('join_link', sa.String(length=500).with_variant(sa.NVARCHAR(length=500), 'mssql'), nullable=True, comment='Ссылка для подключения к звонку'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='starting — запуск в очереди, started — звонок идёт, finishing — завершение в очереди, finished — завершён, error — не запущен (см. last_error)'),
    sa.Column('posted', sa.Boolean(), server_default=sa.false(), nullable=False, comment='Ссылка отправлена в беседу дисциплины'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт звонок (sync_queue.idempotency_key)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему звонок не запущен или не завершён'),
    sa.Column('started_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда VK запустил звонок (UTC)'),
    sa.Column('finished_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда звонок завершён (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('lesson_id', name=op.f('pk_sync_sferum_calls')),
    comment='Звонки Сферум онлайн-занятий из buf_lessons'
    )
    op.create_table('sync_sferum_chats',
    sa.Column('chat_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=False, comment='Беседа: group:<код группы>, department:<код подразделения>, process:<код учебного процесса>, adhoc:<код беседы из buf_chat_members>'),
    sa.Column('kind', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='groups — академическая группа, departments — подразделение, processes — учебный процесс (беседа дисциплины), adhoc — беседа из buf_chat_members'),
    sa.Column('title', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Название беседы (по шаблону из настроек)'),
    sa.Column('owner_id', sa.BigInteger(), nullable=True, comment='VK ID организатора, создавшего беседу: chat_id действует только для его токена'),
    sa.Column('chat_id', sa.BigInteger(), nullable=True, comment='Идентификатор беседы в VK (chat_id)'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='creating — создание в очереди, active — беседа есть, renaming — переименование в очереди, retired — источник беседы исчез (участники больше не меняются), error — не создана (см. last_error)'),
    sa.Column('members', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Участников в VK при последней сверке'),
    sa.Column('expected', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Сколько людей должно быть в беседе по контингенту'),
    sa.Column('without_vk', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Сколько из них без VK ID (buf_users.vk_id): они не добавлены'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт беседа (sync_queue.idempotency_key)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему беседа не создана или не сверена'),
    sa.Column('checked_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Последняя сверка участников (UTC)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('chat_key', name=op.f('pk_sync_sferum_chats')),
    comment='Беседы Сферум, которые ведёт bufsync: группы, подразделения, дисциплины'
    )
    op.create_table('sync_sferum_members',
    sa.Column('chat_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=False, comment='Беседа (sync_sferum_chats.chat_key)'),
    sa.Column('person_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id)'),
    sa.Column('vk_id', sa.BigInteger(), nullable=True, comment='VK ID человека; пусто — 1С его не заполнила'),
    sa.Column('origin', sa.String(length=8).with_variant(sa.NVARCHAR(length=8), 'mssql'), nullable=False, comment='added — добавлен bufsync, found — уже был в беседе (bufsync удаляет его, только если так настроено: portals.sferum.remove)'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='adding — добавление в очереди, member — в беседе, removing — удаление в очереди, removed — удалён, no_vk — нет VK ID, не добавлен, missing — VK не добавил его при создании беседы (добавится при следующем запуске), error — VK не принял (см. last_error; повтор через сутки или сразу после смены VK ID)'),
    sa.Column('pending_key', sa.String(length=200).with_variant(sa.NVARCHAR(length=200), 'mssql'), nullable=True, comment='Операция в очереди, которую ждёт строка (sync_queue.idempotency_key)'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Почему человек не добавлен или не удалён'),
    sa.Column('sends', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Сколько раз человек добавлялся или удалялся (номер в ключе очереди)'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда строка изменилась (UTC)'),
    sa.PrimaryKeyConstraint('chat_key', 'person_external_id', name=op.f('pk_sync_sferum_members')),
    comment='Участники бесед Сферум: кто должен быть в беседе, кто добавлен и удалён bufsync'
    )
    # the DBA view of the Сферум queue
    queue = sa.table('sync_queue', *(sa.column(name) for name in (
        'id', 'portal', 'operation', 'status', 'attempts', 'max_attempts', 'available_at', 'created_at',
        'completed_at', 'last_error', 'idempotency_key', 'payload')))
    op.execute(queue_view(queue, 'sferum', VIEW_FIELDS, op.get_context().dialect.name))
    # the state views, over the tables as this revision creates them
    from bufsync.portals.sferum.tables import add_tables, views
    for name, select, _ in views(add_tables(sa.MetaData())):
        op.execute(CreateView(name, select))


def downgrade() -> None:
    op.execute(DropView('v_sferum_lessons'))
    op.execute(DropView('v_sferum_without_vk'))
    op.execute(DropView(view_name('sferum')))
    op.drop_table('sync_sferum_members')
    op.drop_table('sync_sferum_chats')
    op.drop_table('sync_sferum_calls')
    with op.batch_alter_table('buf_lessons', schema=None) as batch_op:
        batch_op.drop_index('ix_buf_lessons_starts_at')

    op.drop_table('buf_lessons')
    op.drop_table('buf_chat_members')
