"""The СЦОС scenarios' own state: what each course, learner and result is on the portal."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.state.tables import column_type as _t


def add_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    scos_courses = sa.Table(
        "sync_scos_courses", metadata,
        sa.Column("course_id", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="Курс в Moodle (course.id)"),
        sa.Column("shortname", _t("string(255)"), nullable=True, comment="Краткое название курса в Moodle"),
        sa.Column("scos_id", _t("string(64)"), nullable=True, comment="Идентификатор курса на портале СЦОС (UUID)"),
        sa.Column("session_id", _t("string(100)"), nullable=True,
                  comment="Сессия курса на портале (session_id в записях слушателей)"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="publishing — паспорт в очереди, moderation — на модерации, published — опубликован, "
                          "updating — изменения в очереди, archiving / archived — снимается / снят с публикации, "
                          "activating — возвращается в публикацию, rejected — отклонён модерацией, "
                          "error — паспорт не собран или отвергнут порталом (см. last_error)"),
        sa.Column("moderation", _t("string(32)"), nullable=True, comment="Последний статус модерации от портала"),
        sa.Column("business_version", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Версия паспорта на портале: 1 при публикации, +1 при каждом изменении"),
        sa.Column("passport_hash", _t("string(32)"), nullable=True,
                  comment="md5 последнего отправленного паспорта: изменения курса находятся сравнением"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт курс (sync_queue.idempotency_key)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True,
                  comment="Почему курс не опубликован или не обновлён"),
        sa.Column("published_at", _t("datetime"), nullable=True, comment="Когда портал принял паспорт (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Курсы на портале СЦОС: публикация, модерация, версии, архив",
    )
    scos_learners = sa.Table(
        "sync_scos_learners", metadata,
        sa.Column("course_id", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="Курс в Moodle (course.id)"),
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="Пользователь Moodle (user.id)"),
        sa.Column("scos_user_id", _t("string(64)"), nullable=False,
                  comment="Идентификатор слушателя на портале (user_id СЦОС)"),
        sa.Column("session_id", _t("string(100)"), nullable=False, comment="Сессия курса на портале"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="enrolling — запись в очереди, enrolled — записан на портале, unenrolling — отчисление "
                          "в очереди, unenrolled — отчислен, error — портал отверг запись (см. last_error)"),
        sa.Column("enrolment_no", sa.Integer(), nullable=False, server_default=sa.literal_column("1"),
                  comment="Номер записи на курс: повторная запись после отчисления увеличивает его"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт запись (sync_queue.idempotency_key)"),
        sa.Column("certified_at", _t("datetime"), nullable=True, comment="Когда сертификат поставлен в очередь (UTC)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Почему слушатель не записан на портале"),
        sa.Column("enrolled_at", _t("datetime"), nullable=True, comment="Когда портал принял запись (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Слушатели курсов СЦОС: кто записан на портале, по какой сессии, с каким результатом",
    )
    scos_results = sa.Table(
        "sync_scos_results", metadata,
        sa.Column("course_id", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="Курс в Moodle (course.id)"),
        sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False,
                  comment="Пользователь Moodle (user.id)"),
        sa.Column("item", _t("string(32)"), primary_key=True,
                  comment="Элемент оценивания Moodle (grade_items.id) или course — итог курса (прогресс)"),
        sa.Column("value", _t("decimal(6,2)"), nullable=False, comment="Отправленная оценка в процентах (0–100)"),
        sa.Column("graded_at", _t("datetime"), nullable=True, comment="Когда оценка выставлена в Moodle (UTC)"),
        sa.Column("enrolment_no", sa.Integer(), nullable=False, comment="К какой записи на курс относится оценка"),
        sa.Column("sends", sa.Integer(), nullable=False,
                  comment="Сколько раз значение отправлялось (номер в ключе очереди)"),
        sa.Column("queued_at", _t("datetime"), nullable=False,
                  comment="Когда последнее значение поставлено в очередь (UTC)"),
        comment="Результаты слушателей, отправленные в СЦОС: по элементам оценивания и итог курса",
    )
    return {"sync_scos_courses": scos_courses, "sync_scos_learners": scos_learners, "sync_scos_results": scos_results}
