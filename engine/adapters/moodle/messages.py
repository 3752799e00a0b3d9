"""Texts for sync_error: Russian, actionable for a 1C developer, ending with Moodle's code."""

from __future__ import annotations

from bufsync.adapters.moodle.errors import MoodleError

FIELD_NAMES_RU = {
    "username": "Логин", "firstname": "Имя", "lastname": "Фамилия", "email": "Почта", "password": "Пароль",
    "idnumber": "Идентификатор", "shortname": "Краткое название", "fullname": "Полное название",
    "categoryid": "Категория", "name": "Наименование",
}


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


def weak_password(problems_ru: list[str]) -> str:
    return with_code("Пароль не соответствует политике паролей Moodle: " + "; ".join(problems_ru) +
                     ". Исправьте пароль или оставьте поле пустым — Moodle создаст пароль сам", "passwordpolicy")


def from_moodle(error: MoodleError) -> str:
    """A remote error we could not explain locally: Moodle's words plus its code."""
    known = {
        "useremailduplicate": "Адрес почты уже используется другой учётной записью Moodle",
        "useremailinvalid": "Адрес почты недопустим",
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
    }
    text = known.get(error.code)
    if text is None:
        text = f"Moodle отклонил запись: {error.message}"
        if error.debuginfo:
            text += f" — {error.debuginfo.strip()[:600]}"
    return with_code(text, error.code)
