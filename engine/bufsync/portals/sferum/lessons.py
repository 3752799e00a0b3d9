"""The lessons scenario: an online lesson of buf_lessons gets a VK call `start_before` minutes before it begins, its
join link written back to the lesson row and posted into the subject chat, and the call is finished `finish_after`
minutes after the lesson ends.

Times in buf_lessons are local (settings.timezone), as 1C writes them. Every step goes through the queue; the state
is in sync_sferum_calls and, for 1C, in the lesson row (call_state, join_link, sync_error).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.portals.pending import chunks, queue_items, update_many
from bufsync.portals.sferum.chats import FINISHED, PORTAL, item_key
from bufsync.portals.sferum.client import CHAT_PEER
from bufsync.portals.sferum.settings import SferumSettings
from bufsync.queue import outbox
from bufsync.report import Tally
from bufsync.state.ledger import now_utc

WHAT = {"call_start": "запуск звонка", "call_finish": "завершение звонка", "lesson_post": "ссылку в беседу"}


def random_id(*parts: object) -> int:
    """messages.send's random_id from what the message is about: a resend is the same message to VK."""
    return int.from_bytes(hashlib.sha1(":".join(map(str, parts)).encode()).digest()[:4], "big") & 0x7FFFFFFF or 1


class Lessons:
    def __init__(self, engine: sa.Engine, tables: dict[str, sa.Table], lessons: sa.Table, settings: SferumSettings,
                 zone: ZoneInfo, report: Tally, now: datetime | None = None) -> None:
        self.engine = engine
        self.calls_t, self.chats_t, self.queue_t = (tables["sync_sferum_calls"], tables["sync_sferum_chats"],
                                                     tables["sync_queue"])
        self.lessons_t = lessons
        self.settings = settings
        self.zone = zone
        self.report = report
        self.now = now or now_utc()  # naive UTC, as the state tables keep it

    def _utc(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC).replace(tzinfo=None)

    def _item(self, operation: str, payload: dict[str, Any], key: str) -> outbox.Item:
        return outbox.Item(PORTAL, operation, payload, key, self.settings.max_attempts)

    def run(self) -> None:
        self.settle()
        self.plan()

    def settle(self) -> None:
        t = self.calls_t
        with self.engine.connect() as conn:
            rows = list(conn.execute(sa.select(t).where(t.c.pending_key.is_not(None))))
        items = queue_items(self.engine, self.queue_t, PORTAL, [r.pending_key for r in rows])
        changes: list[dict[str, Any]] = []
        for row in rows:
            item = items.get(row.pending_key)
            if item is None or item.status not in FINISHED:
                continue
            operation = item.operation
            values: dict[str, Any]
            if item.status == outbox.DONE:
                self.report.add(f"settled.{operation}")
                response = json.loads(item.response or "{}")
                if operation == "call_start":
                    values = {"state": "started", "call_id": str(response["call_id"]),
                              "join_link": response.get("join_link"), "started_at": self.now, "last_error": None}
                elif operation == "call_finish":
                    values = {"state": "finished", "finished_at": self.now, "last_error": None}
                else:
                    values = {"posted": True, "last_error": None}
            else:
                text = f"Сферум не принял {WHAT[operation]}: {item.last_error or item.status}"[:2000]
                if operation == "call_start":
                    # the item stays referenced: an operator's `bufsync queue retry` that succeeds is picked up
                    if row.state == "error" and row.last_error == text:
                        continue
                    self.report.add(f"failed.{operation}")
                    changes.append({"lesson_id": row.lesson_id, "state": "error", "last_error": text,
                                    "pending_key_was": row.pending_key, "updated_at": self.now})
                    continue
                self.report.add(f"failed.{operation}")
                values = {"last_error": text}
                if operation == "call_finish":
                    values["state"] = "started"  # still running as far as anyone knows; tried again next run
                else:
                    values["posted"] = True  # a message VK refused is not sent again and again
            changes.append(values | {"lesson_id": row.lesson_id, "pending_key": None,
                                     "pending_key_was": row.pending_key, "updated_at": self.now})
        with self.engine.begin() as conn:
            update_many(conn, self.calls_t, ("lesson_id", "pending_key_was"), changes)

    def plan(self) -> None:
        """Start, post and finish what is due now; the lesson rows told."""
        lessons = self.lessons_t
        start_before = timedelta(minutes=self.settings.lessons.start_before)
        finish_after = timedelta(minutes=self.settings.lessons.finish_after)
        local_now = self.now.replace(tzinfo=UTC).astimezone(self.zone).replace(tzinfo=None)
        window = (local_now - timedelta(days=1), local_now + timedelta(days=1))
        with self.engine.connect() as conn:
            due = {r.external_id: r for r in conn.execute(sa.select(lessons).where(
                lessons.c.online == sa.true(), lessons.c.starts_at >= window[0], lessons.c.starts_at <= window[1]))}
            calls = {r.lesson_id: r for r in conn.execute(sa.select(self.calls_t))}
            chats = {key: chat_id for key, chat_id in conn.execute(
                sa.select(self.chats_t.c.chat_key, self.chats_t.c.chat_id).where(
                    self.chats_t.c.chat_key.like("process:%"), self.chats_t.c.chat_id.is_not(None)))}
        items: list[outbox.Item] = []
        inserts: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        for lesson_id, lesson in due.items():
            starts, ends = self._utc(lesson.starts_at), self._utc(lesson.ends_at)
            call = calls.get(lesson_id)
            chat_key = f"process:{lesson.process_external_id}"
            if call is None:
                if starts - start_before <= self.now < ends + finish_after:
                    key = item_key("call", lesson_id, "start")
                    items.append(self._item("call_start", {"lesson_id": lesson_id, "chat_key": chat_key,
                                                           "topic": lesson.topic}, key))
                    inserts.append({"lesson_id": lesson_id, "chat_key": chat_key, "state": "starting",
                                    "posted": False, "pending_key": key, "updated_at": self.now})
                    self.report.add("queued.call_start")
                continue
            if call.pending_key is not None or call.state != "started":
                continue
            if self.now >= ends + finish_after:
                if self._gave_up(call):
                    continue
                items.append(self._finish(call))
                changes.append({"lesson_id": lesson_id, "state": "finishing", "pending_key": items[-1].key,
                                "updated_at": self.now})
            elif self.settings.lessons.post_link and not call.posted and chats.get(chat_key) is not None:
                key = item_key("call", lesson_id, "post")
                at = lesson.starts_at.strftime("%H:%M")
                text = (f"Онлайн-занятие «{lesson.topic}» в {at}: {call.join_link}" if lesson.topic
                        else f"Онлайн-занятие в {at}: {call.join_link}")
                items.append(self._item("lesson_post", {"lesson_id": lesson_id, "chat_id": chats[chat_key],
                                                        "peer_id": CHAT_PEER + int(chats[chat_key]), "message": text,
                                                        "random_id": random_id(lesson_id, call.call_id)}, key))
                changes.append({"lesson_id": lesson_id, "pending_key": key, "updated_at": self.now})
                self.report.add("queued.lesson_post")
        for lesson_id, call in calls.items():  # a started call whose lesson is gone or no longer online: finished
            if lesson_id not in due and call.state == "started" and call.pending_key is None and \
                    not self._gave_up(call):
                items.append(self._finish(call))
                changes.append({"lesson_id": lesson_id, "state": "finishing", "pending_key": items[-1].key,
                                "updated_at": self.now})
        with self.engine.begin() as conn:
            if inserts:
                conn.execute(self.calls_t.insert(), inserts)
            update_many(conn, self.calls_t, ("lesson_id",), changes)
            outbox.enqueue(conn, self.queue_t, items)
        self.write_back()

    def _finish(self, call: sa.Row[Any]) -> outbox.Item:
        self.report.add("queued.call_finish")
        # a key of its own for each try: a finish that died is sent again by the next run, not settled dead again
        return self._item("call_finish", {"lesson_id": call.lesson_id, "call_id": call.call_id},
                          item_key("call", call.lesson_id, "finish", f"{datetime.now(UTC):%Y%m%d%H%M%S%f}"))

    def _gave_up(self, call: sa.Row[Any]) -> bool:
        """A finish VK kept refusing for a day after the call started: left as it is, the reason in last_error (VK
        ends a call nobody is in)."""
        return bool(call.last_error) and call.last_error.startswith(f"Сферум не принял {WHAT['call_finish']}") and \
            self.now >= (call.started_at or self.now) + timedelta(days=1)

    def write_back(self) -> None:
        """The lesson rows told their call's state, link and error (only the rows that differ)."""
        lessons, calls = self.lessons_t, self.calls_t
        with self.engine.begin() as conn:
            # the calls of the last days: older ones were written back when they changed
            held = {r.lesson_id: r for r in conn.execute(
                sa.select(calls.c.lesson_id, calls.c.state, calls.c.join_link, calls.c.last_error)
                .where(calls.c.updated_at >= self.now - timedelta(days=3)))}
            changes = []
            for chunk in chunks(list(held)):
                for row in conn.execute(sa.select(lessons.c.external_id, lessons.c.call_state, lessons.c.join_link,
                                                  lessons.c.sync_error).where(lessons.c.external_id.in_(chunk))):
                    call = held[row.external_id]
                    values = {"call_state": call.state, "join_link": call.join_link, "sync_error": call.last_error}
                    if (row.call_state, row.join_link, row.sync_error) != tuple(values.values()):
                        changes.append({"external_id": row.external_id, **values})
            update_many(conn, lessons, ("external_id",), changes)
