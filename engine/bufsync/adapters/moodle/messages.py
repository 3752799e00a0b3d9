"""Texts for sync_error: Russian, actionable for a 1C developer, ending with Moodle's code."""

from __future__ import annotations

from collections.abc import Sequence

from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable, http_status_text
from bufsync.adapters.moodle.rules import NOT_FOR_NEW_USERS, STANDARD_AUTH_PLUGINS, FieldProblem

FIELD_NAMES_RU = {
    "username": "Логин", "firstname": "Имя", "lastname": "Фамилия", "email": "Почта", "password": "Пароль",
    "idnumber": "Идентификатор", "shortname": "Краткое название", "fullname": "Полное название",
    "categoryid": "Категория", "name": "Наименование", "middlename": "Отчество", "phone1": "Телефон",
    "phone2": "Телефон 2", "city": "Город", "institution": "Учреждение", "department": "Отдел",
    "address": "Адрес", "auth": "Способ входа", "alternatename": "Альтернативное имя",
    "firstnamephonetic": "Имя (фонетически)", "lastnamephonetic": "Фамилия (фонетически)",
}


def _field(field: str) -> str:
    name = FIELD_NAMES_RU.get(field)
    return f"«{name}» ({field})" if name else f"«{field}»"


def with_code(text: str, code: str) -> str:
    return f"{text} ({code})"


def bad_username(value: str) -> str:
    return with_code(f"Логин «{value}» недопустим: Moodle принимает только строчную латиницу, цифры и "
                     "символы _-.@", "invalidparameter")


def username_taken(value: str) -> str:
    return with_code(f"Логин «{value}» уже занят другой учётной записью Moodle; измените логин в 1С или "
                     "укажите этот же idnumber у существующей записи", "invalidparameter")


def username_twice(value: str) -> str:
    return with_code(f"Логин «{value}» повторяется у нескольких строк одного пакета; логины должны быть "
                     "уникальны", "invalidparameter")


def bad_email(value: str) -> str:
    return with_code(f"Адрес почты «{value}» недопустим: нужен адрес вида имя@домен.зона без пробелов",
                     "invalidparameter")


def email_taken(value: str) -> str:
    return with_code(f"Адрес почты «{value}» уже используется другой учётной записью Moodle (регистр букв не "
                     "различается); в Moodle адрес должен быть уникальным", "invalidparameter")


def missing_field(field: str) -> str:
    name = FIELD_NAMES_RU.get(field, field)
    return with_code(f"Не заполнено обязательное поле «{name}» ({field})", "invalidparameter")


def email_missing() -> str:
    return with_code("Не заполнен адрес почты (email): Moodle не создаёт учётную запись без адреса почты "
                     "(core_user_create_users требует действующий адрес). Заполните email в 1С", "invalidparameter")


def email_cleared() -> str:
    return with_code("Адрес почты (email) в 1С очищен, но Moodle не позволяет оставить учётную запись без адреса "
                     "почты и отвергает пустой адрес; остальные изменения строки тоже не применены. Укажите адрес "
                     "почты в 1С", "useremailinvalid")


def field_problem(problem: FieldProblem) -> str:
    """A text field Moodle would refuse: which field, what was found, what is allowed."""
    if problem.kind == "toolong":
        return with_code(f"Поле {_field(problem.field)} длиннее, чем его хранит Moodle: {problem.found} симв., "
                         f"допустимо не больше {problem.limit}. Сократите значение в 1С", "toolong")
    return with_code(f"Поле {_field(problem.field)} содержит HTML-разметку {problem.found[:200]}: Moodle принимает в "
                     "этом поле только текст без тегов и отвергает значение целиком (знак < допустим, если за ним "
                     "пробел: «a < b»). Уберите разметку в 1С", "invalidparameter")


_AUTH_FOR_NEW = ", ".join(a for a in STANDARD_AUTH_PLUGINS if a not in NOT_FOR_NEW_USERS)


def bad_auth(value: str, why: str) -> str:
    """why: 'name' (not a plugin name), 'missing' (no such plugin installed), 'new' (not for new accounts)."""
    if why == "new":
        return with_code(f"Способ входа (auth) «{value}» нельзя назначить новой учётной записи: Moodle создаёт "
                         f"пользователей через веб-службы с любым установленным способом входа, кроме "
                         f"{' и '.join(NOT_FOR_NEW_USERS)} (стандартные: {_AUTH_FOR_NEW}); пусто — manual",
                         "invalidparameter")
    head = (f"Способ входа (auth) «{value}» — не имя плагина аутентификации Moodle (строчные латинские буквы, "
            "цифры и _)" if why == "name" else
            f"Способ входа (auth) «{value}»: такого плагина аутентификации в Moodle нет")
    return with_code(f"{head}. Допустимы установленные в Moodle плагины аутентификации; стандартные в Moodle 4.5: "
                     f"{_AUTH_FOR_NEW}; пусто — manual", "invalidparameter")


def bad_profile_field_name(name: str) -> str:
    return with_code(f"Краткое имя дополнительного поля профиля «{name}» недопустимо: Moodle принимает только "
                     "латинские буквы, цифры, _ и - (и отвергает всю запись). Исправьте имя поля в 1С "
                     "(buf_user_fields.field)", "invalidparameter")


def profile_fields_missing(names: Sequence[str]) -> str:
    """The record was saved but Moodle silently skipped these custom profile fields."""
    listed = ", ".join(f"«{n}»" for n in names)
    what, which = (("значения дополнительных полей профиля", "таких полей профиля") if len(names) > 1 else
                   ("значение дополнительного поля профиля", "такого поля профиля"))
    return with_code(
        f"Учётная запись сохранена в Moodle, но {what} {listed} Moodle не сохранил: {which} в Moodle нет, а "
        "неизвестные поля Moodle пропускает молча. Создайте поле с этим кратким именем (Администрирование > "
        "Пользователи > Учётные записи > Поля профиля пользователя) и запустите bufsync run --full, или уберите "
        "поле из 1С", "profilefieldmissing")


def unavailable(error: MoodleUnavailable) -> str:
    """For rows whose write Moodle never confirmed (a 5xx, a lost answer): nothing is recorded for them."""
    status = getattr(error, "status", None)
    said = f"Moodle ответил {http_status_text(status)}" if status else "Moodle не ответил"
    code = f"http{status}" if status else "noanswer"
    return with_code(f"{said} на запись; применена ли она, неизвестно. Строка не отмечена: следующий запуск "
                     "сначала прочитает, что есть в Moodle, и доделает только недостающее", code)


def weak_password(problems_ru: list[str]) -> str:
    return with_code("Пароль не соответствует политике паролей Moodle: " + "; ".join(problems_ru) +
                     ". Исправьте пароль или оставьте поле пустым — Moodle создаст пароль сам", "passwordpolicy")


def from_moodle(error: MoodleError) -> str:
    """A remote error we could not explain locally: Moodle's words plus its code."""
    known = {
        "useremailduplicate": "Адрес почты уже используется другой учётной записью Moodle",
        "invaliduserid": "Пользователь не найден в Moodle (удалён вручную?)",
        "shortnametaken": "Краткое название курса уже занято другим курсом Moodle",
        "courseidnumbertaken": "idnumber курса уже занят другим курсом Moodle",
        "categoryidnumbertaken": "idnumber категории уже занят другой категорией Moodle",
        "errorcatcontextnotvalid": "Категория курса не найдена в Moodle",
        "unknowcategory": "Вышестоящая категория не найдена в Moodle",
        "enddatebeforestartdate": "Дата окончания курса раньше даты начала",
        "wsusercannotassign": "Роль не существует или её нельзя назначить в курсе",
        "wsnoinstance": "В курсе нет способа записи «Записать вручную» (manual); включите его в курсе",
        "passwordpolicy": "Пароль не соответствует политике паролей Moodle",
        "dmlwriteexception": "Moodle не смог записать запись в свою базу данных: обычно одно из значений длиннее "
                             "столбца Moodle (например, телефон длиннее 20 символов)",
        "categorytoolong": "Наименование категории длиннее 255 символов",
        "idnumbertoolong": "idnumber длиннее 100 символов",
        "useremailinvalid": "Адрес почты недопустим (пустой адрес Moodle тоже отвергает)",
    }
    text = known.get(error.code)
    if text is None:
        text = f"Moodle отклонил запись: {error.message}"
        if error.debuginfo:
            text += f" — {error.debuginfo.strip()[:600]}"
    return with_code(text, error.code)
