"""The Университет 2035 state: the connection's stage and status, each statement sent (or waiting), each file
stored in S3. A DBA reads them with plain SQL, and the queue through v_queue_u2035."""

from __future__ import annotations

import sqlalchemy as sa

from bufsync.state.tables import column_type as _t


def add_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    connection = sa.Table(
        "sync_u2035_connection", metadata,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False, comment="Всегда 1: одно подключение"),
        sa.Column("status", _t("string(16)"), nullable=False,
                  comment="not_started — «Не выполнен», in_progress — «В процессе (k/4)», data_error — «Ошибка "
                          "данных» (проверка этапа 2 или 4 не прошла), active — «Активен»: след отправляется"),
        sa.Column("stage", sa.Integer(), nullable=False, server_default=sa.literal_column("1"),
                  comment="Текущий этап подключения (1–4)"),
        sa.Column("opened", sa.Integer(), nullable=False, server_default=sa.literal_column("1"),
                  comment="Самый дальний открытый этап: к любому этапу до него можно вернуться"),
        sa.Column("test_statement_id", _t("string(36)"), nullable=True,
                  comment="Идентификатор пробного высказывания в тестовом LRS (этап 2): нужен для письма этапа 3"),
        sa.Column("settings_hash", _t("string(64)"), nullable=True,
                  comment="Отпечаток настроек подключения на момент активации: их нельзя менять до отключения"),
        sa.Column("last_error", _t("string(2000)"), nullable=True,
                  comment="Ответ LRS или S3 на последнюю неудачную проверку"),
        sa.Column("checked_at", _t("datetime"), nullable=True, comment="Последняя проверка (UTC)"),
        sa.Column("activated_at", _t("datetime"), nullable=True, comment="Когда подключение стало активным (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Подключение к Университету 2035: этапы и статус; без статуса active след не отправляется",
    )
    statements = sa.Table(
        "sync_u2035_statements", metadata,
        sa.Column("fact_key", _t("string(200)"), primary_key=True,
                  comment="Факт: enrolment:<курс>:<пользователь>, activity:<cmid>:<пользователь>, grade:<элемент "
                          "оценивания>:<пользователь>, completion:<курс>:<пользователь>, submission:<ответ>"),
        sa.Column("kind", _t("string(16)"), nullable=False,
                  comment="enrolment — запись на курс, activity — выполнен элемент курса, grade — оценка, "
                          "completion — курс завершён, submission — ответ на задание с файлами"),
        sa.Column("unti_id", _t("string(64)"), nullable=False, comment="UNTI ID учащегося (actor высказывания)"),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=False, comment="Пользователь Moodle (user.id)"),
        sa.Column("moodle_course_id", sa.BigInteger(), nullable=False, comment="Курс Moodle (course.id)"),
        sa.Column("statement_id", _t("string(36)"), nullable=False,
                  comment="UUID высказывания: назначается при первой постановке в очередь и не меняется при "
                          "повторной отправке; новое содержание факта — новое высказывание"),
        sa.Column("verb", _t("string(255)"), nullable=False, comment="Глагол (verb.id)"),
        sa.Column("fingerprint", _t("string(64)"), nullable=False,
                  comment="Отпечаток содержания факта: изменилось ли что-то с прошлой отправки"),
        sa.Column("occurred_at", _t("datetime"), nullable=False, comment="Когда это произошло (timestamp, UTC)"),
        sa.Column("files", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Файлов во вложениях (ответ на задание)"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="queued — в очереди, sent — LRS принял, error — LRS отверг (см. last_error), held — "
                          "ждёт активного подключения"),
        sa.Column("sends", sa.Integer(), nullable=False, server_default=sa.literal_column("1"),
                  comment="Сколько версий факта отправлено (номер в ключе очереди)"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт строка (sync_queue.idempotency_key)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Почему LRS не принял высказывание"),
        sa.Column("sent_at", _t("datetime"), nullable=True, comment="Когда LRS принял высказывание (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Цифровой след для Университета 2035: каждое высказывание xAPI, его UUID и судьба",
    )
    files = sa.Table(
        "sync_u2035_files", metadata,
        sa.Column("sha256", _t("string(64)"), primary_key=True, comment="SHA-256 содержимого (sha2 вложения)"),
        sa.Column("length", sa.BigInteger(), nullable=False, comment="Размер в байтах (length вложения)"),
        sa.Column("object_key", _t("string(1000)"), nullable=False, comment="Ключ объекта в бакете"),
        sa.Column("url", _t("string(2000)"), nullable=False, comment="Публичная ссылка (fileUrl вложения)"),
        sa.Column("content_type", _t("string(255)"), nullable=True, comment="Тип содержимого"),
        sa.Column("source", _t("string(800)"), nullable=True,
                  comment="Откуда файл взят в Moodle: время изменения, размер и путь (без токена); по нему файл, уже "
                          "записанный в S3, находится без повторного скачивания"),
        sa.Column("uploaded_at", _t("datetime"), nullable=False, comment="Когда файл записан в S3 (UTC)"),
        comment="Файлы цифрового следа в S3 Университета 2035: один объект на содержимое (по SHA-256)",
    )
    sa.Index("ix_sync_u2035_statements_pending", statements.c.pending_key)
    sa.Index("ix_sync_u2035_files_source", files.c.source)  # looked up once per file a dispatcher meets
    return {"sync_u2035_connection": connection, "sync_u2035_statements": statements, "sync_u2035_files": files}

