"""buf_users column descriptions say what Moodle 4.5 refuses: an empty e-mail, tags in names, a phone over 20
characters, an auth plugin that is not installed, a profile field Moodle lacks (comments only)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _string(length: int) -> sa.types.TypeEngine:
    return sa.String(length=length).with_variant(sa.NVARCHAR(length=length), 'mssql')


# column: (type length, nullable, comment before, comment after)
COMMENTS = {
    'email': (100, True, 'Адрес электронной почты; в Moodle должен быть уникальным',
              'Адрес электронной почты; обязателен: Moodle не создаёт учётную запись без действующего адреса и не '
              'даёт его очистить — строка без адреса получает ошибку; в Moodle адрес должен быть уникальным (регистр '
              'не различается)'),
    'last_name': (100, False, 'Фамилия', 'Фамилия; текст без HTML-тегов (Moodle отвергает значение с тегами)'),
    'first_name': (100, False, 'Имя', 'Имя; текст без HTML-тегов (Moodle отвергает значение с тегами)'),
    'middle_name': (100, True, 'Отчество (поле middlename в Moodle)',
                    'Отчество (поле middlename в Moodle); текст без HTML-тегов'),
    'phone': (30, True, 'Телефон (поле phone1 в Moodle)',
              'Телефон (поле phone1 в Moodle): не длиннее 20 символов — длиннее Moodle не хранит, строка получает '
              'ошибку'),
    'snils': (14, True, 'СНИЛС; пишется в дополнительное поле профиля snils',
              'СНИЛС; пишется в дополнительное поле профиля snils, которое должно быть создано в Moodle (иначе Moodle '
              'молча пропускает значение; об этом скажут bufsync check и sync_error строки)'),
    'auth': (20, True, 'Способ входа в Moodle (плагин аутентификации); пусто — manual',
             'Способ входа в Moodle: имя установленного в Moodle плагина аутентификации (manual, ldap, db, cas, '
             'oauth2, ...); пусто — manual'),
}


def _comments(forward: bool) -> None:
    # SQLite stores no comments (sql/sqlite.sql carries them as SQL comment lines)
    if op.get_context().dialect.name == 'sqlite':
        return
    for column, (length, nullable, before, after) in COMMENTS.items():
        op.alter_column('buf_users', column, existing_type=_string(length), existing_nullable=nullable,
                        comment=after if forward else before, existing_comment=before if forward else after)


def upgrade() -> None:
    _comments(True)


def downgrade() -> None:
    _comments(False)
