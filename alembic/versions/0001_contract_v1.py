"""Contract v1: the buffer tables of the shipped mappings and the engine's own tables.

Server defaults use portable constructs (sa.true(), func.current_timestamp()) so the
same revision runs on PostgreSQL, MS SQL Server and SQLite.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('buf_batches',
    sa.Column('entity', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Сущность: имя маппинга (users, subscriptions, ...)'),
    sa.Column('batch_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Идентификатор пакета, который выбирает 1С'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='loading', nullable=False, comment='loading — 1С ещё пишет, ready — пакет записан полностью'),
    sa.Column('rows_expected', sa.Integer(), nullable=True, comment='Сколько строк 1С записала в таблицу сущности; движок сверяет'),
    sa.Column('created_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), server_default=sa.func.current_timestamp(), nullable=False, comment='Когда пакет начат'),
    sa.Column('ready_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда пакет отмечен как ready'),
    sa.PrimaryKeyConstraint('entity', 'batch_id', name=op.f('pk_buf_batches')),
    comment='Отметки загрузки (пакеты); движок берёт сущность только из пакета в состоянии ready с совпадающим числом строк'
    )
    op.create_table('buf_courses',
    sa.Column('external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор курса в 1С; становится idnumber курса Moodle'),
    sa.Column('shortname', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Краткое название курса; в Moodle уникально'),
    sa.Column('fullname', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Полное название курса'),
    sa.Column('category_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Подразделение (buf_departments.external_id) = idnumber категории Moodle; пусто — категория по умолчанию из настроек'),
    sa.Column('start_date', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=True, comment='Дата начала курса'),
    sa.Column('end_date', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=True, comment='Дата окончания курса; не раньше даты начала'),
    sa.Column('visible', sa.Boolean(), server_default=sa.true(), nullable=True, comment='Виден ли курс студентам'),
    sa.Column('template_shortname', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Краткое название курса-образца, с которого копируются настройки при создании'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.Column('lms_id', sa.BigInteger(), nullable=True, comment='Движок: идентификатор записи в LMS (id в Moodle)'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_courses')),
    comment='Курсы, которые должны быть в LMS (необязательная таблица)'
    )
    op.create_table('buf_departments',
    sa.Column('external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор подразделения в 1С; становится idnumber категории Moodle'),
    sa.Column('parent_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Вышестоящее подразделение (buf_departments.external_id); пусто — верхний уровень'),
    sa.Column('name', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Наименование'),
    sa.Column('code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=True, comment='Код подразделения в 1С'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='active', nullable=False, comment='active — действует, closed — закрыто (категория скрывается)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.Column('lms_id', sa.BigInteger(), nullable=True, comment='Движок: идентификатор записи в LMS (id в Moodle)'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_departments')),
    comment='Подразделения (факультеты, кафедры); в Moodle — категории курсов'
    )
    op.create_table('buf_grades',
    sa.Column('user_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (idnumber пользователя Moodle = buf_users.external_id)'),
    sa.Column('course_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Курс (idnumber курса Moodle)'),
    sa.Column('item', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='course — итог по курсу, иначе idnumber элемента оценивания'),
    sa.Column('grade', sa.Numeric(precision=10, scale=5), nullable=True, comment='Оценка в баллах; пусто — не оценено'),
    sa.Column('grade_max', sa.Numeric(precision=10, scale=5), nullable=False, comment='Максимальный балл'),
    sa.Column('percent', sa.Numeric(precision=6, scale=2), nullable=True, comment='Оценка в процентах'),
    sa.Column('grade_text', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Оценка словами по шкале курса, например «отлично»'),
    sa.Column('passed', sa.Boolean(), nullable=True, comment='Зачтено ли (проходной балл достигнут)'),
    sa.Column('completed_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда курс завершён'),
    sa.Column('graded_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда выставлена оценка'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда движок последний раз изменил строку'),
    sa.PrimaryKeyConstraint('user_external_id', 'course_external_id', 'item', name=op.f('pk_buf_grades')),
    comment='Итоговые оценки (пишет движок, читает 1С)'
    )
    op.create_index('ix_buf_grades_updated_at', 'buf_grades', ['updated_at'], unique=False)
    op.create_table('buf_learning_processes',
    sa.Column('external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор учебного процесса в 1С; становится idnumber группы в курсе'),
    sa.Column('group_code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=False, comment='Код академической группы; становится именем группы в курсе'),
    sa.Column('course_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Курс дисциплины (idnumber курса Moodle)'),
    sa.Column('teacher_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Преподаватель (buf_users.external_id); пусто — без преподавателя'),
    sa.Column('semester', sa.Integer(), nullable=False, comment='Номер семестра'),
    sa.Column('start_date', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=False, comment='Начало изучения'),
    sa.Column('end_date', sa.Date().with_variant(sa.DATE(), 'mssql'), nullable=False, comment='Окончание изучения'),
    sa.Column('program_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Учебная программа (buf_programs.external_id)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.Column('lms_id', sa.BigInteger(), nullable=True, comment='Движок: идентификатор записи в LMS (id в Moodle)'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_learning_processes')),
    comment='Учебные процессы — академическая группа изучает дисциплину (курс) у преподавателя в семестре'
    )
    op.create_table('buf_programs',
    sa.Column('external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Идентификатор программы в 1С; становится idnumber категории Moodle'),
    sa.Column('name', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Наименование программы'),
    sa.Column('speciality_code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=True, comment='Код специальности (направления подготовки)'),
    sa.Column('education_form', sa.String(length=20).with_variant(sa.NVARCHAR(length=20), 'mssql'), nullable=True, comment='Форма обучения: очная, заочная, очно-заочная'),
    sa.Column('department_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Подразделение (buf_departments.external_id), в категории которого создаётся программа'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.Column('lms_id', sa.BigInteger(), nullable=True, comment='Движок: идентификатор записи в LMS (id в Moodle)'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_programs')),
    comment='Учебные программы (образовательные программы)'
    )
    op.create_table('buf_staff',
    sa.Column('person_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id)'),
    sa.Column('position', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Должность'),
    sa.Column('department_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Подразделение (buf_departments.external_id); становится idnumber когорты Moodle'),
    sa.Column('status', sa.String(length=20).with_variant(sa.NVARCHAR(length=20), 'mssql'), server_default='working', nullable=False, comment='working — работает, dismissed — уволен'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда 1С изменила строку (необязательно)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.PrimaryKeyConstraint('person_external_id', 'position', 'department_external_id', name=op.f('pk_buf_staff')),
    comment='Контингент сотрудников (одна строка — одна должность в подразделении)'
    )
    op.create_table('buf_students',
    sa.Column('person_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id)'),
    sa.Column('record_book', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=False, comment='Номер зачётной книжки'),
    sa.Column('group_code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=False, comment='Код академической группы; становится idnumber когорты Moodle'),
    sa.Column('group_name', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Наименование академической группы'),
    sa.Column('speciality_code', sa.String(length=50).with_variant(sa.NVARCHAR(length=50), 'mssql'), nullable=True, comment='Код специальности (направления подготовки)'),
    sa.Column('speciality_name', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Наименование специальности'),
    sa.Column('study_year', sa.Integer(), nullable=True, comment='Курс (год обучения)'),
    sa.Column('education_form', sa.String(length=20).with_variant(sa.NVARCHAR(length=20), 'mssql'), nullable=True, comment='Форма обучения: очная, заочная, очно-заочная'),
    sa.Column('department_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Подразделение (buf_departments.external_id)'),
    sa.Column('status', sa.String(length=20).with_variant(sa.NVARCHAR(length=20), 'mssql'), server_default='studying', nullable=False, comment='studying — учится, academic_leave — академический отпуск, expelled — отчислен, graduated — выпускник'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда 1С изменила строку (необязательно)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.PrimaryKeyConstraint('person_external_id', 'record_book', name=op.f('pk_buf_students')),
    comment='Контингент студентов (одна строка — одна зачётная книжка)'
    )
    op.create_table('buf_subscriptions',
    sa.Column('user_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Человек (buf_users.external_id = idnumber пользователя Moodle)'),
    sa.Column('course_external_id', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Курс (idnumber курса Moodle); неизвестный курс создаётся из buf_courses, если там есть строка, иначе строка отклоняется'),
    sa.Column('role', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), server_default='student', nullable=False, comment='Краткое имя роли Moodle: student, teacher, editingteacher, ...'),
    sa.Column('time_start', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Начало доступа к курсу'),
    sa.Column('time_end', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Окончание доступа к курсу; пусто — бессрочно'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='active', nullable=False, comment='active — действует, suspended — приостановлена'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда 1С изменила строку (необязательно)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.PrimaryKeyConstraint('user_external_id', 'course_external_id', 'role', name=op.f('pk_buf_subscriptions')),
    comment='Подписки людей на курсы (записи на курс с ролью)'
    )
    op.create_index('ix_buf_subscriptions_course', 'buf_subscriptions', ['course_external_id'], unique=False)
    op.create_index('ix_buf_subscriptions_sync_status', 'buf_subscriptions', ['sync_status'], unique=False)
    op.create_table('buf_user_fields',
    sa.Column('user_external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Идентификатор человека в 1С (buf_users.external_id)'),
    sa.Column('field', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Краткое имя (shortname) дополнительного поля профиля в Moodle'),
    sa.Column('value', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Значение поля'),
    sa.PrimaryKeyConstraint('user_external_id', 'field', name=op.f('pk_buf_user_fields')),
    comment='Значения дополнительных полей профиля; строки присоединяются к пользователю из buf_users'
    )
    op.create_table('buf_users',
    sa.Column('external_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Идентификатор человека в 1С (GUID или код); становится idnumber пользователя Moodle'),
    sa.Column('username', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Логин; движок приводит его к нижнему регистру; допустимы латиница, цифры и символы _-.@'),
    sa.Column('email', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Адрес электронной почты; в Moodle должен быть уникальным'),
    sa.Column('last_name', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Фамилия'),
    sa.Column('first_name', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=False, comment='Имя'),
    sa.Column('middle_name', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Отчество (поле middlename в Moodle)'),
    sa.Column('phone', sa.String(length=30).with_variant(sa.NVARCHAR(length=30), 'mssql'), nullable=True, comment='Телефон (поле phone1 в Moodle)'),
    sa.Column('snils', sa.String(length=14).with_variant(sa.NVARCHAR(length=14), 'mssql'), nullable=True, comment='СНИЛС; пишется в дополнительное поле профиля snils'),
    sa.Column('esia_id', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Идентификатор ЕСИА / пользователя СЦОС; нужен для сценариев ГИС СЦОС'),
    sa.Column('vk_id', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=True, comment='VK ID профиля Сферум; нужен для чатов Сферум'),
    sa.Column('auth', sa.String(length=20).with_variant(sa.NVARCHAR(length=20), 'mssql'), nullable=True, comment='Способ входа в Moodle (плагин аутентификации); пусто — manual'),
    sa.Column('password', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=True, comment='Начальный пароль; используется только при создании; пусто — Moodle сам создаст пароль и отправит его письмом'),
    sa.Column('status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), server_default='active', nullable=False, comment='active — действует, suspended — заблокирован'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда 1С изменила строку (необязательно: движок сравнивает содержимое)'),
    sa.Column('sync_status', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=True, comment='Движок: результат синхронизации строки — ok, error, skipped, pending'),
    sa.Column('sync_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Движок: почему строка не применена — текст для разработчика 1С и код ошибки LMS'),
    sa.Column('synced_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Движок: когда строка последний раз применена или проверена'),
    sa.Column('lms_id', sa.BigInteger(), nullable=True, comment='Движок: идентификатор записи в LMS (id в Moodle)'),
    sa.PrimaryKeyConstraint('external_id', name=op.f('pk_buf_users')),
    comment='Люди (студенты, преподаватели, сотрудники), которых 1С передаёт в LMS'
    )
    op.create_index('ix_buf_users_sync_status', 'buf_users', ['sync_status'], unique=False)
    op.create_table('sync_ledger',
    sa.Column('mapping_name', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=False, comment='Имя маппинга (файл в mappings/)'),
    sa.Column('record_key', sa.String(length=300).with_variant(sa.NVARCHAR(length=300), 'mssql'), nullable=False, comment='Ключ строки буфера (значения ключевых столбцов)'),
    sa.Column('remote_id', sa.BigInteger(), nullable=True, comment='Идентификатор записи в LMS или на портале'),
    sa.Column('content_hash', sa.String(length=64).with_variant(sa.NVARCHAR(length=64), 'mssql'), nullable=True, comment='Хеш применённого содержимого: изменилось ли что-то с прошлого прогона'),
    sa.Column('state', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='Состояние: linked, suspended, removed, error, pending'),
    sa.Column('applied', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=True, comment='Что применено в LMS (JSON, без паролей): нужно, чтобы приостановить исчезнувшую запись'),
    sa.Column('last_error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Последняя ошибка по этой записи'),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False, comment='Сколько раз подряд запись не удалось применить'),
    sa.Column('created_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда запись впервые попала в журнал'),
    sa.Column('updated_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Когда запись журнала изменилась'),
    sa.Column('applied_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Когда изменение последний раз применено в LMS'),
    sa.PrimaryKeyConstraint('mapping_name', 'record_key', name=op.f('pk_sync_ledger')),
    comment='Журнал движка: что применено в LMS по каждому ключу каждого маппинга'
    )
    op.create_index('ix_sync_ledger_remote', 'sync_ledger', ['mapping_name', 'remote_id'], unique=False)
    op.create_index('ix_sync_ledger_state', 'sync_ledger', ['mapping_name', 'state'], unique=False)
    op.create_table('sync_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False, comment='Номер прогона'),
    sa.Column('job', sa.String(length=100).with_variant(sa.NVARCHAR(length=100), 'mssql'), nullable=True, comment='Задача расписания (пусто для ручного запуска)'),
    sa.Column('kind', sa.String(length=32).with_variant(sa.NVARCHAR(length=32), 'mssql'), nullable=False, comment='Вид: sync, dispatch, poll, ...'),
    sa.Column('triggered_by', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='Кто запустил: manual, schedule'),
    sa.Column('host', sa.String(length=255).with_variant(sa.NVARCHAR(length=255), 'mssql'), nullable=False, comment='Сервер, на котором шёл прогон'),
    sa.Column('pid', sa.Integer(), nullable=False, comment='Идентификатор процесса'),
    sa.Column('started_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=False, comment='Начало (UTC)'),
    sa.Column('finished_at', sa.DateTime().with_variant(mssql.DATETIME2(), 'mssql'), nullable=True, comment='Конец (UTC); пусто, пока идёт'),
    sa.Column('outcome', sa.String(length=16).with_variant(sa.NVARCHAR(length=16), 'mssql'), nullable=False, comment='Итог: running, ok, rejected, refused, failed, interrupted'),
    sa.Column('dry_run', sa.Boolean(), server_default=sa.false(), nullable=False, comment='Пробный прогон: ничего не менялось'),
    sa.Column('options', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=True, comment='Параметры запуска (JSON), включая обходы защит'),
    sa.Column('counts', sa.Text().with_variant(sa.NVARCHAR(), 'mssql'), nullable=True, comment='Счётчики по маппингам (JSON): created, updated, suspended, unchanged, rejected, skipped'),
    sa.Column('error', sa.String(length=2000).with_variant(sa.NVARCHAR(length=2000), 'mssql'), nullable=True, comment='Текст ошибки прогона'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_runs')),
    comment='История прогонов движка'
    )
    op.create_index('ix_sync_runs_job', 'sync_runs', ['job', 'started_at'], unique=False)
    op.create_index('ix_sync_runs_started', 'sync_runs', ['started_at'], unique=False)



def downgrade() -> None:
    op.drop_index('ix_sync_runs_started', table_name='sync_runs')
    op.drop_index('ix_sync_runs_job', table_name='sync_runs')
    op.drop_table('sync_runs')
    op.drop_index('ix_sync_ledger_state', table_name='sync_ledger')
    op.drop_index('ix_sync_ledger_remote', table_name='sync_ledger')
    op.drop_table('sync_ledger')
    op.drop_index('ix_buf_users_sync_status', table_name='buf_users')
    op.drop_table('buf_users')
    op.drop_table('buf_user_fields')
    op.drop_index('ix_buf_subscriptions_sync_status', table_name='buf_subscriptions')
    op.drop_index('ix_buf_subscriptions_course', table_name='buf_subscriptions')
    op.drop_table('buf_subscriptions')
    op.drop_table('buf_students')
    op.drop_table('buf_staff')
    op.drop_table('buf_programs')
    op.drop_table('buf_learning_processes')
    op.drop_index('ix_buf_grades_updated_at', table_name='buf_grades')
    op.drop_table('buf_grades')
    op.drop_table('buf_departments')
    op.drop_table('buf_courses')
    op.drop_table('buf_batches')

