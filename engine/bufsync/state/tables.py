"""Engine tables, declared once; buffer tables come from the mappings instead."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bufsync.mapping.types import parse_type


def column_type(text: str) -> sa.types.TypeEngine[Any]:
    """A portable contract type (`string(64)`, `datetime`) as this table set declares it on every dialect."""
    return parse_type(text).sqlalchemy()


_t = column_type


def add_state_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    ledger = sa.Table(
        "sync_ledger", metadata,
        sa.Column("mapping_name", _t("string(64)"), primary_key=True, comment="Имя маппинга (файл в mappings/)"),
        sa.Column("record_key", _t("string(300)"), primary_key=True,
                  comment="Ключ строки буфера (значения ключевых столбцов)"),
        sa.Column("remote_id", sa.BigInteger(), nullable=True, comment="Идентификатор записи в LMS или на портале"),
        sa.Column("remote_key", _t("string(255)"), nullable=True,
                  comment="Текстовый идентификатор записи (UUID, ключ объекта S3, id чата), когда он не число; "
                          "у записи заполнен либо remote_id, либо remote_key"),
        sa.Column("content_hash", _t("string(64)"), nullable=True,
                  comment="Хеш применённого содержимого: изменилось ли что-то с прошлого прогона"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="Состояние: linked, suspended, removed, error, pending"),
        sa.Column("applied", _t("text"), nullable=True,
                  comment="Что применено в LMS (JSON, без паролей): нужно, чтобы приостановить исчезнувшую запись"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Последняя ошибка по этой записи"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько раз подряд запись не удалось применить"),
        sa.Column("created_at", _t("datetime"), nullable=False, comment="Когда запись впервые попала в журнал"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда запись журнала изменилась"),
        sa.Column("applied_at", _t("datetime"), nullable=True, comment="Когда изменение последний раз применено в LMS"),
        comment="Журнал движка: что применено в LMS по каждому ключу каждого маппинга",
    )
    sa.Index("ix_sync_ledger_state", ledger.c.mapping_name, ledger.c.state)
    sa.Index("ix_sync_ledger_remote", ledger.c.mapping_name, ledger.c.remote_id)
    sa.Index("ix_sync_ledger_remote_key", ledger.c.mapping_name, ledger.c.remote_key)

    runs = sa.Table(
        "sync_runs", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True, comment="Номер прогона"),
        sa.Column("job", _t("string(100)"), nullable=True, comment="Задача расписания (пусто для ручного запуска)"),
        sa.Column("kind", _t("string(32)"), nullable=False, comment="Вид: sync, dispatch, poll, ..."),
        sa.Column("triggered_by", _t("string(16)"), nullable=False, comment="Кто запустил: manual, schedule"),
        sa.Column("host", _t("string(255)"), nullable=False, comment="Сервер, на котором шёл прогон"),
        sa.Column("pid", sa.Integer(), nullable=False, comment="Идентификатор процесса"),
        sa.Column("started_at", _t("datetime"), nullable=False, comment="Начало (UTC)"),
        sa.Column("finished_at", _t("datetime"), nullable=True, comment="Конец (UTC); пусто, пока идёт"),
        sa.Column("outcome", _t("string(16)"), nullable=False,
                  comment="Итог: running, ok, rejected, refused, failed, interrupted, timeout, died — процесс "
                          "умер (убит), не записав итог"),
        sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false(),
                  comment="Пробный прогон: ничего не менялось"),
        sa.Column("options", _t("text"), nullable=True, comment="Параметры запуска (JSON), включая обходы защит"),
        sa.Column("counts", _t("text"), nullable=True,
                  comment="Счётчики по маппингам (JSON): created, updated, suspended, unchanged, rejected, skipped"),
        sa.Column("error", _t("string(2000)"), nullable=True, comment="Текст ошибки прогона"),
        comment="История прогонов движка",
    )
    sa.Index("ix_sync_runs_started", runs.c.started_at)
    sa.Index("ix_sync_runs_job", runs.c.job, runs.c.started_at)
    heartbeat = sa.Table(
        "sync_heartbeat", metadata,
        sa.Column("job", _t("string(100)"), primary_key=True, comment="Задача расписания"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="idle — ждёт, running — выполняется, interrupted/timeout/failed/died — последний итог"),
        sa.Column("host", _t("string(255)"), nullable=True, comment="Сервер, где задача выполняется или выполнялась"),
        sa.Column("pid", sa.Integer(), nullable=True, comment="Процесс задачи"),
        sa.Column("run_id", sa.BigInteger(), nullable=True, comment="Текущий или последний прогон (sync_runs.id)"),
        sa.Column("started_at", _t("datetime"), nullable=True, comment="Начало текущего или последнего прогона (UTC)"),
        sa.Column("last_beat", _t("datetime"), nullable=True,
                  comment="Последний сигнал «жив» (UTC); отстаёт — процесс завис или убит"),
        sa.Column("last_due", _t("datetime"), nullable=True,
                  comment="Срок по расписанию, который уже взят в работу (UTC): каждый срок выполняется один раз"),
        sa.Column("next_run", _t("datetime"), nullable=True, comment="Следующий срок по расписанию (UTC)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Ошибка последнего прогона"),
        comment="Задачи расписания: что выполняется сейчас, когда был сигнал «жив», когда следующий запуск",
    )
    queue = sa.Table(
        "sync_queue", metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True,
                  comment="Номер операции"),
        sa.Column("portal", _t("string(32)"), nullable=False, comment="Портал: scos, sferum, u2035"),
        sa.Column("operation", _t("string(64)"), nullable=False,
                  comment="Операция портала, например course_publish, participation_add"),
        sa.Column("payload", _t("text"), nullable=False, comment="Данные операции (JSON, без секретов)"),
        sa.Column("idempotency_key", _t("string(200)"), nullable=False,
                  comment="Ключ повтора: одна и та же операция ставится в очередь один раз"),
        sa.Column("status", _t("string(16)"), nullable=False, server_default="pending",
                  comment="pending — ждёт, running — выполняется, done — выполнена, failed — ошибка (ждёт retry), "
                          "dead — попытки исчерпаны, cancelled — отменена"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько раз операцию пытались выполнить"),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default=sa.literal_column("8"),
                  comment="После стольких неудач операция становится dead"),
        sa.Column("available_at", _t("datetime"), nullable=False,
                  comment="Не раньше этого времени (UTC): отложенный повтор с нарастающей паузой"),
        sa.Column("locked_by", _t("string(255)"), nullable=True, comment="Кто взял операцию (хост:pid)"),
        sa.Column("locked_until", _t("datetime"), nullable=True,
                  comment="Аренда до (UTC): если исполнитель умер, после этого операцию берёт другой"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Последняя ошибка (ответ портала)"),
        sa.Column("response", _t("text"), nullable=True, comment="Ответ портала на успешную операцию (JSON)"),
        sa.Column("created_at", _t("datetime"), nullable=False, comment="Когда поставлена в очередь (UTC)"),
        sa.Column("completed_at", _t("datetime"), nullable=True, comment="Когда выполнена или отменена (UTC)"),
        sa.Column("in_doubt", sa.Boolean(), nullable=False, server_default=sa.false(),
                  comment="Под сомнением: исполнитель умер во время отправки или ответ портала потерян — портал мог "
                          "операцию уже получить; перед повтором портал опрашивается, где это возможно"),
        sa.Column("resends", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько раз операцию под сомнением отправили повторно (портал мог получить её дважды)"),
        comment="Очередь операций для порталов (СЦОС, Сферум, Университет 2035)",
    )
    sa.Index("uq_sync_queue_idempotency", queue.c.portal, queue.c.idempotency_key, unique=True)
    sa.Index("ix_sync_queue_claim", queue.c.portal, queue.c.status, queue.c.available_at)
    cursors = sa.Table(
        "sync_cursors", metadata,
        sa.Column("mapping_name", _t("string(64)"), primary_key=True, comment="Имя маппинга (файл в mappings/)"),
        sa.Column("position", _t("string(300)"), nullable=True,
                  comment="Где остановилось чтение из LMS, ограниченное по времени (например, id курса); "
                          "пусто — прочитано всё, следующий прогон начнёт сначала"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда позиция записана (UTC)"),
        comment="Движок: откуда следующий прогон продолжит чтение из LMS (moodle.grades.time_budget)",
    )

    files = sa.Table(
        "sync_files", metadata,
        sa.Column("checksum", _t("string(64)"), primary_key=True,
                  comment="SHA-256 содержимого файла: один и тот же файл не загружается дважды"),
        sa.Column("file_name", _t("string(255)"), nullable=False, comment="Имя файла при загрузке"),
        sa.Column("mapping_name", _t("string(64)"), nullable=False, comment="Маппинг, в таблицу которого загружен"),
        sa.Column("job", _t("string(100)"), nullable=True, comment="Задача расписания (пусто для ручной загрузки)"),
        sa.Column("run_id", sa.BigInteger(), nullable=True, comment="Прогон загрузки (sync_runs.id)"),
        sa.Column("loaded_at", _t("datetime"), nullable=False, comment="Когда загружен (UTC)"),
        comment="Движок: файлы, загруженные задачами import (в той же транзакции, что и их строки)",
    )

    rate_limits = sa.Table(
        "sync_rate_limits", metadata,
        sa.Column("limit_key", _t("string(200)"), primary_key=True,
                  comment="Чей лимит: метка или хеш токена портала (сам токен здесь не хранится)"),
        sa.Column("sent", _t("text"), nullable=False,
                  comment="Времена последних отправок с этим токеном (JSON-список секунд Unix по часам "
                          "отправителей), не больше числа отправок, разрешённых за окно"),
        sa.Column("updated_at", _t("datetime"), nullable=False,
                  comment="Когда взята последняя отправка (UTC, по часам отправителя)"),
        comment="Движок: общий лимит запросов к порталу на один токен для всех процессов и серверов "
                "(например, VK: 3 запроса в секунду на токен пользователя)",
    )

    tables = {"sync_ledger": ledger, "sync_runs": runs, "sync_heartbeat": heartbeat, "sync_queue": queue,
              "sync_cursors": cursors, "sync_files": files, "sync_rate_limits": rate_limits}
    from bufsync.portals import portals
    for portal in portals().values():  # each portal's own state tables, created by the same migrations
        tables.update(portal.add_tables(metadata))
    return tables


