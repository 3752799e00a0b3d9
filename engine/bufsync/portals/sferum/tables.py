"""The Сферум state: each chat bufsync keeps, who is in it and why, and each lesson's call."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bufsync.state.tables import column_type as _t


def add_tables(metadata: sa.MetaData) -> dict[str, sa.Table]:
    chats = sa.Table(
        "sync_sferum_chats", metadata,
        sa.Column("chat_key", _t("string(200)"), primary_key=True,
                  comment="Беседа: group:<код группы>, department:<код подразделения>, process:<код учебного "
                          "процесса>, adhoc:<код беседы из buf_chat_members>"),
        sa.Column("kind", _t("string(16)"), nullable=False,
                  comment="groups — академическая группа, departments — подразделение, processes — учебный "
                          "процесс (беседа дисциплины), adhoc — беседа из buf_chat_members"),
        sa.Column("title", _t("string(255)"), nullable=False, comment="Название беседы (по шаблону из настроек)"),
        sa.Column("owner_id", sa.BigInteger(), nullable=True,
                  comment="VK ID организатора, создавшего беседу: chat_id действует только для его токена"),
        sa.Column("chat_id", sa.BigInteger(), nullable=True, comment="Идентификатор беседы в VK (chat_id)"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="creating — создание в очереди, active — беседа есть, renaming — переименование в "
                          "очереди, retired — источник беседы исчез (участники больше не меняются), error — не "
                          "создана (см. last_error)"),
        sa.Column("members", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Участников в VK при последней сверке"),
        sa.Column("expected", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько людей должно быть в беседе по контингенту"),
        sa.Column("without_vk", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько из них без VK ID (buf_users.vk_id): они не добавлены"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт беседа (sync_queue.idempotency_key)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Почему беседа не создана или не сверена"),
        sa.Column("checked_at", _t("datetime"), nullable=True, comment="Последняя сверка участников (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Беседы Сферум, которые ведёт bufsync: группы, подразделения, дисциплины",
    )
    members = sa.Table(
        "sync_sferum_members", metadata,
        sa.Column("chat_key", _t("string(200)"), primary_key=True, comment="Беседа (sync_sferum_chats.chat_key)"),
        sa.Column("person_external_id", _t("string(64)"), primary_key=True,
                  comment="Человек (buf_users.external_id)"),
        sa.Column("vk_id", sa.BigInteger(), nullable=True, comment="VK ID человека; пусто — 1С его не заполнила"),
        sa.Column("origin", _t("string(8)"), nullable=False,
                  comment="added — добавлен bufsync, found — уже был в беседе (bufsync удаляет его, только если "
                          "так настроено: portals.sferum.remove)"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="adding — добавление в очереди, member — в беседе, removing — удаление в очереди, "
                          "removed — удалён, no_vk — нет VK ID, не добавлен, missing — VK не добавил его при "
                          "создании беседы (добавится при следующем запуске), error — VK не принял (см. last_error; "
                          "повтор через сутки или сразу после смены VK ID)"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт строка (sync_queue.idempotency_key)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Почему человек не добавлен или не удалён"),
        sa.Column("sends", sa.Integer(), nullable=False, server_default=sa.literal_column("0"),
                  comment="Сколько раз человек добавлялся или удалялся (номер в ключе очереди)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Участники бесед Сферум: кто должен быть в беседе, кто добавлен и удалён bufsync",
    )
    calls = sa.Table(
        "sync_sferum_calls", metadata,
        sa.Column("lesson_id", _t("string(100)"), primary_key=True, comment="Занятие (buf_lessons.external_id)"),
        sa.Column("chat_key", _t("string(200)"), nullable=True, comment="Беседа дисциплины, куда отправлена ссылка"),
        sa.Column("call_id", _t("string(64)"), nullable=True, comment="Звонок VK (call_id)"),
        sa.Column("join_link", _t("string(500)"), nullable=True, comment="Ссылка для подключения к звонку"),
        sa.Column("state", _t("string(16)"), nullable=False,
                  comment="starting — запуск в очереди, started — звонок идёт, finishing — завершение в очереди, "
                          "finished — завершён, error — не запущен (см. last_error)"),
        sa.Column("posted", sa.Boolean(), nullable=False, server_default=sa.false(),
                  comment="Ссылка отправлена в беседу дисциплины"),
        sa.Column("pending_key", _t("string(200)"), nullable=True,
                  comment="Операция в очереди, которую ждёт звонок (sync_queue.idempotency_key)"),
        sa.Column("last_error", _t("string(2000)"), nullable=True, comment="Почему звонок не запущен или не завершён"),
        sa.Column("started_at", _t("datetime"), nullable=True, comment="Когда VK запустил звонок (UTC)"),
        sa.Column("finished_at", _t("datetime"), nullable=True, comment="Когда звонок завершён (UTC)"),
        sa.Column("updated_at", _t("datetime"), nullable=False, comment="Когда строка изменилась (UTC)"),
        comment="Звонки Сферум онлайн-занятий из buf_lessons",
    )
    return {"sync_sferum_chats": chats, "sync_sferum_members": members, "sync_sferum_calls": calls}


def views(tables: dict[str, sa.Table]) -> list[tuple[str, sa.Select[Any], str]]:
    """v_sferum_without_vk: who is in no chat for want of a VK ID, chat by chat; v_sferum_lessons: each online
    lesson's call with the chat its link went to."""
    if not {"sync_sferum_chats", "sync_sferum_members", "sync_sferum_calls"} <= set(tables):
        return []
    chats, members, calls = tables["sync_sferum_chats"], tables["sync_sferum_members"], tables["sync_sferum_calls"]
    without = (sa.select(members.c.chat_key, chats.c.kind, chats.c.title.label("chat_title"),
                         members.c.person_external_id, members.c.last_error.label("reason"), members.c.updated_at)
               .join_from(members, chats, chats.c.chat_key == members.c.chat_key)
               .where(members.c.state == sa.literal("no_vk")))
    lessons = (sa.select(calls.c.lesson_id, calls.c.state, calls.c.join_link, calls.c.call_id, calls.c.posted,
                         calls.c.chat_key, chats.c.title.label("chat_title"), chats.c.chat_id, calls.c.started_at,
                         calls.c.finished_at, calls.c.last_error, calls.c.updated_at)
               .join_from(calls, chats, chats.c.chat_key == calls.c.chat_key, isouter=True))
    return [("v_sferum_without_vk", without, "people in no Сферум chat for want of a VK ID, chat by chat"),
            ("v_sferum_lessons", lessons, "each online lesson's VK call and the chat its link was posted to")]
