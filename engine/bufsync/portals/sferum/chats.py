"""The chats scenario: each wanted chat created once, renamed when its title changes, and its members kept in step
with the contingent.

Writes go through the queue only; this run reads (the chats' members, by `execute` bundles) and records what it
queued in its own tables in the same transaction. First it settles what the dispatchers finished since the last
run: a created chat's chat_id, added and removed members. A membership run that finds nothing to change makes no
write and queues nothing.

Removals are weighed by the removal guards of the table the chat's members come from (buf_students for group and
subject chats, buf_staff for department chats): a half-written or empty contingent never empties a chat.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bufsync.buffer import markers
from bufsync.mapping.loader import MappingSet
from bufsync.portals.pending import chunks, queue_items, update_many
from bufsync.portals.sferum.client import CHAT_PEER, VkClient, VkError
from bufsync.portals.sferum.contingent import Contingent, Person, Wanted
from bufsync.portals.sferum.settings import SferumSettings
from bufsync.queue import outbox
from bufsync.reconcile.guards import Weighed, removal_refusal
from bufsync.report import Tally
from bufsync.state.ledger import now_utc

log = logging.getLogger("bufsync.sferum")
PORTAL = "sferum"
FINISHED = (outbox.DONE, outbox.DEAD, outbox.CANCELLED)
SOURCE_TABLE = {"groups": "buf_students", "processes": "buf_students", "departments": "buf_staff",
                "adhoc": "buf_chat_members"}
KIND_WORD = {"groups": "группы", "departments": "подразделения", "processes": "дисциплины", "adhoc": ""}
MEMBERS_PAGE = 1000  # messages.getConversationMembers' largest page
RETRY_AFTER = timedelta(days=1)  # an add, removal or rename VK refused is tried again this much later
UNREAD = "участники беседы не прочитаны"


def item_key(*parts: object) -> str:
    """An idempotency key a DBA can read; one too long for the queue's column is shortened by a hash."""
    text = ":".join(str(p) for p in parts)
    if len(text) <= 200:
        return text
    return f"{text[:150]}~{hashlib.sha1(text.encode()).hexdigest()[:20]}"


@dataclass
class Present:
    """A chat's members as VK lists them."""

    ids: set[int]
    admins: set[int]   # admins and the owner: never removed
    count: int


class Chats:
    def __init__(self, engine: sa.Engine, tables: dict[str, sa.Table], client: VkClient, settings: SferumSettings,
                 contingent: Contingent, mappings: MappingSet, organiser: int, report: Tally) -> None:
        self.engine = engine
        self.chats_t, self.members_t, self.queue_t = (tables["sync_sferum_chats"], tables["sync_sferum_members"],
                                                       tables["sync_queue"])
        self.client = client
        self.settings = settings
        self.contingent = contingent
        self.mappings = mappings
        self.organiser = organiser
        self.report = report
        # whom the buffer knows by VK ID (remove: contingent): everyone in buf_users, in a chat or not
        self.people_by_vk = {p.vk_id: p for p in contingent.people.values() if p.vk_id is not None}

    def run(self) -> None:
        self.settle()
        ready = self.chats()
        self.membership(ready)

    def _item(self, operation: str, payload: dict[str, Any], key: str) -> outbox.Item:
        return outbox.Item(PORTAL, operation, payload, key, self.settings.max_attempts)

    def _rows(self, table: sa.Table, *where: Any) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(*where)))

    # -- settle: what the dispatchers finished --------------------------------------------------------------
    def settle(self) -> None:
        chats = self._rows(self.chats_t, self.chats_t.c.pending_key.is_not(None))
        members = self._rows(self.members_t, self.members_t.c.pending_key.is_not(None))
        items = queue_items(self.engine, self.queue_t, PORTAL,
                            [r.pending_key for r in chats] + [r.pending_key for r in members])
        now = now_utc()
        chat_changes: list[dict[str, Any]] = []
        member_changes: list[dict[str, Any]] = []
        created: dict[str, set[int]] = {}  # pending key of a create -> the peer ids VK added
        for row in chats:
            item = items.get(row.pending_key)
            if item is None or item.status not in FINISHED:
                continue
            values = self._settle_chat(row, item, created)
            if values:
                chat_changes.append(values | {"chat_key": row.chat_key, "pending_key_was": row.pending_key,
                                              "updated_at": now})
        for row in members:
            item = items.get(row.pending_key)
            if item is None or item.status not in FINISHED:
                continue
            values = self._settle_member(row, item, created)
            if values:
                member_changes.append(values | {"chat_key": row.chat_key, "person_external_id": row.person_external_id,
                                                "pending_key_was": row.pending_key, "updated_at": now})
        with self.engine.begin() as conn:
            update_many(conn, self.chats_t, ("chat_key", "pending_key_was"), chat_changes)
            update_many(conn, self.members_t, ("chat_key", "person_external_id", "pending_key_was"), member_changes)

    def _settle_chat(self, row: sa.Row[Any], item: sa.Row[Any], created: dict[str, set[int]]) -> dict[str, Any]:
        operation = item.operation
        if item.status == outbox.DONE:
            self.report.add(f"settled.{operation}")
            response = json.loads(item.response or "{}")
            if operation == "chat_create":
                created[row.pending_key] = {int(p) for p in response.get("peer_ids") or []}
                return {"chat_id": int(response["chat_id"]), "owner_id": self.organiser, "state": "active",
                        "pending_key": None, "last_error": None}
            payload = json.loads(item.payload)
            return {"title": payload["title"], "state": "active", "pending_key": None, "last_error": None}
        what = "создание беседы" if operation == "chat_create" else "переименование беседы"
        text = f"Сферум не принял {what}: {item.last_error or item.status}"[:2000]
        if operation == "chat_create":
            # the chat does not exist; the item stays referenced, so an operator's `bufsync queue retry` that later
            # succeeds is still picked up here (created again blindly, a bad title would only fail again)
            if row.state == "error" and row.last_error == text:
                return {}
            self.report.add(f"failed.{operation}")
            return {"state": "error", "last_error": text}
        self.report.add(f"failed.{operation}")
        return {"state": "active", "pending_key": None, "last_error": text}

    def _settle_member(self, row: sa.Row[Any], item: sa.Row[Any], created: dict[str, set[int]]) -> dict[str, Any]:
        operation = item.operation
        if operation == "chat_create":  # the members a create carried: those VK added are in
            if item.status == outbox.DONE and row.vk_id in created.get(row.pending_key, set()):
                return {"state": "member", "pending_key": None, "last_error": None}
            if item.status == outbox.DONE:
                return {"state": "missing", "pending_key": None,
                        "last_error": "VK не добавил человека при создании беседы; добавление повторится"}
            return {"state": "missing", "pending_key": None, "last_error": "беседа не создана (см. sync_sferum_chats)"}
        if item.status == outbox.DONE:
            self.report.add(f"settled.{operation}")
            return {"state": "member" if operation == "member_add" else "removed", "pending_key": None,
                    "last_error": None}
        self.report.add(f"failed.{operation}")
        what = "добавление в беседу" if operation == "member_add" else "удаление из беседы"
        return {"state": "error", "pending_key": None,
                "last_error": f"Сферум не принял {what}: {item.last_error or item.status}"[:2000]}

    # -- chats: create, rename, retire ---------------------------------------------------------------------
    def chats(self) -> list[sa.Row[Any]]:
        """Queue creates and renames; returns the chats whose members can be compared now."""
        rows = {r.chat_key: r for r in self._rows(self.chats_t)}
        now = now_utc()
        items: list[outbox.Item] = []
        inserts: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        member_inserts: list[dict[str, Any]] = []
        ready: list[sa.Row[Any]] = []
        for key, wanted in self.contingent.chats.items():
            row = rows.get(key)
            counts = {"expected": len(wanted.members),
                      "without_vk": sum(1 for p in wanted.members.values() if p.vk_id is None)}
            if row is None:
                create = item_key("chat", key, "create")
                carried = list(wanted.vk_ids.items())[:self.settings.max_members - 1]
                items.append(self._item("chat_create", {"chat_key": key, "title": wanted.title, "kind": wanted.kind,
                                                        "user_ids": [vk for vk, _ in carried]}, create))
                inserts.append({"chat_key": key, "kind": wanted.kind, "title": wanted.title, "state": "creating",
                                "pending_key": create, "updated_at": now, **counts})
                member_inserts += [self._member(key, person, "adding", create, "added", now)
                                   for _, person in carried]
                self.report.add("queued.chat_create")
                continue
            if row.pending_key is not None or row.chat_id is None:
                continue
            refused = (row.last_error or "").startswith("Сферум не принял переименование беседы") and \
                row.updated_at > now - RETRY_AFTER  # VK refused the last rename: tried again a day later
            if row.title != wanted.title and not refused:
                # a key of its own for each rename (A -> B -> A must send the second A too)
                # (now_utc keeps whole seconds: two runs in one second would share the key, so the clock's own)
                rename = item_key("chat", key, "title", f"{datetime.now(UTC):%Y%m%d%H%M%S%f}")
                items.append(self._item("chat_title", {"chat_key": key, "chat_id": row.chat_id,
                                                       "title": wanted.title}, rename))
                changes.append({"chat_key": key, "state": "renaming", "pending_key": rename, "updated_at": now})
                self.report.add("queued.chat_title")
            elif row.state == "retired":
                changes.append({"chat_key": key, "state": "active", "updated_at": now})
            if (row.expected, row.without_vk) != (counts["expected"], counts["without_vk"]):
                changes.append({"chat_key": key, "updated_at": now, **counts})
            ready.append(row)
        for key, row in rows.items():  # its group, department or process is gone: its members stay as they are
            if key not in self.contingent.chats and row.state in ("active", "renaming") and row.pending_key is None:
                changes.append({"chat_key": key, "state": "retired", "updated_at": now})
                self.report.add("chats.retired")
        with self.engine.begin() as conn:
            if inserts:
                conn.execute(self.chats_t.insert(), inserts)
            update_many(conn, self.chats_t, ("chat_key",), changes)
            self._upsert_members(conn, member_inserts)
            outbox.enqueue(conn, self.queue_t, items)
        return ready

    def _member(self, chat_key: str, person: Person, state: str, pending: str | None, origin: str,
                now: datetime, error: str | None = None) -> dict[str, Any]:
        return {"chat_key": chat_key, "person_external_id": person.external_id, "vk_id": person.vk_id,
                "origin": origin, "state": state, "pending_key": pending, "last_error": error, "updated_at": now}

    def _upsert_members(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Member rows written whole: the existing ones updated, the rest inserted."""
        if not rows:
            return
        m = self.members_t
        existing: set[tuple[str, str]] = set()
        for chunk in chunks(sorted({r["chat_key"] for r in rows})):
            existing |= {(c, p) for c, p in conn.execute(
                sa.select(m.c.chat_key, m.c.person_external_id).where(m.c.chat_key.in_(chunk)))}
        update_many(conn, m, ("chat_key", "person_external_id"), [r for r in rows
                                                                  if (r["chat_key"], r["person_external_id"])
                                                                  in existing])
        fresh = [r for r in rows if (r["chat_key"], r["person_external_id"]) not in existing]
        if fresh:
            conn.execute(m.insert(), [{"sends": 0, **r} for r in fresh])

    # -- membership ---------------------------------------------------------------------------------------------
    def membership(self, ready: list[sa.Row[Any]]) -> None:
        present = self.read_members(ready)
        rows_by_chat: dict[str, dict[str, sa.Row[Any]]] = defaultdict(dict)
        for member in self._rows(self.members_t):
            rows_by_chat[member.chat_key][member.person_external_id] = member
        now = now_utc()
        adds: list[tuple[sa.Row[Any], Person, int]] = []
        removals: dict[str, list[tuple[sa.Row[Any], str, int, sa.Row[Any] | None]]] = defaultdict(list)
        writes: list[dict[str, Any]] = []
        chat_counts: list[dict[str, Any]] = []
        for chat in ready:
            held = present.get(chat.chat_key)
            if held is None:
                continue
            wanted = self.contingent.chats[chat.chat_key]
            rows = rows_by_chat.get(chat.chat_key, {})
            # read: an unreadable chat's note goes (a refused rename's reason stays until a rename goes through)
            chat_counts.append({"chat_key": chat.chat_key, "members": held.count, "checked_at": now,
                                "last_error": None if (chat.last_error or "").startswith(UNREAD) else
                                chat.last_error})
            room = self.settings.max_members - len(held.ids | {self.organiser})
            wanted_vk = set(wanted.vk_ids)
            for person in wanted.members.values():
                row = rows.get(person.external_id)
                if row is not None and row.pending_key is not None:
                    continue
                old = row.vk_id if row is not None else None
                if row is not None and person.vk_id is not None and old not in (None, person.vk_id) and \
                        old in held.ids - wanted_vk - held.admins - {self.organiser} and \
                        (row.origin == "added" or self.settings.remove != "added"):
                    # 1C changed the person's VK ID: the account their row held leaves, under a row of its own (the
                    # person's row follows the new one)
                    removals[chat.kind].append((chat, f"vk:{old}", old, row))
                if person.vk_id is None:
                    if row is None or row.state != "no_vk" or row.last_error != person.vk_problem:
                        writes.append(self._member(chat.chat_key, person, "no_vk", None,
                                                   row.origin if row else "added", now, person.vk_problem))
                    continue
                if person.vk_id in held.ids:
                    if row is None or row.state != "member" or row.vk_id != person.vk_id:
                        writes.append(self._member(chat.chat_key, person, "member", None,
                                                   row.origin if row else "found", now))
                    continue
                if row is not None and row.state == "error" and row.vk_id == person.vk_id and \
                        row.updated_at > now - RETRY_AFTER:
                    continue  # VK refused it lately: tried again a day later, or at once for a new VK ID
                if room <= 0:
                    text = (f"беседа заполнена: в ней {held.count} участников, предел portals.sferum.max_members = "
                            f"{self.settings.max_members}")
                    if row is None or row.last_error != text:
                        writes.append(self._member(chat.chat_key, person, "error", None,
                                                   row.origin if row else "added", now, text))
                    continue
                room -= 1
                adds.append((chat, person, (row.sends if row else 0) + 1))
            for person_id, kept in rows.items():
                if kept.pending_key is not None or person_id in wanted.members:
                    continue
                if kept.state == "error" and kept.updated_at > now - RETRY_AFTER:
                    continue
                if kept.vk_id is not None and kept.vk_id in held.ids and kept.vk_id not in wanted_vk:
                    if kept.vk_id == self.organiser or kept.vk_id in held.admins:
                        continue  # the organiser and the chat's admins are never removed
                    if kept.origin == "added" or self.settings.remove != "added":
                        removals[chat.kind].append((chat, person_id, kept.vk_id, kept))
                        continue
                    continue  # found there, not bufsync's to remove: left as it is
                if kept.state != "removed":
                    writes.append({"chat_key": chat.chat_key, "person_external_id": person_id, "vk_id": kept.vk_id,
                                   "origin": kept.origin, "state": "removed", "pending_key": None, "last_error": None,
                                   "updated_at": now})
            tracked = {r.vk_id for r in rows.values() if r.vk_id is not None}
            for vk_id in sorted(held.ids - wanted_vk - tracked - held.admins - {self.organiser}):
                known = self.people_by_vk.get(vk_id)
                if self.settings.remove == "all" or (self.settings.remove == "contingent" and known is not None):
                    removals[chat.kind].append((chat, known.external_id if known else f"vk:{vk_id}", vk_id, None))
        items: list[outbox.Item] = []
        for chat, person, sends in adds:
            key = item_key("member", chat.chat_key, person.external_id, "add", sends)
            items.append(self._item("member_add", {"chat_key": chat.chat_key, "chat_id": chat.chat_id,
                                                   "user_id": person.vk_id, "person": person.external_id}, key))
            prior = rows_by_chat.get(chat.chat_key, {}).get(person.external_id)
            writes.append(self._member(chat.chat_key, person, "adding", key, prior.origin if prior else "added", now)
                          | {"sends": sends})
        self.report.add("queued.member_add", len(adds))
        for kind, planned in removals.items():
            refusal = self._refusal(kind, len(planned), rows_by_chat)
            if refusal:
                self.report.add("guard_refused.member_remove", len(planned))
                self.report.problems.append(refusal)
                log.warning("%s", refusal)
                continue
            for chat, person_id, vk_id, member_row in planned:
                sends = (member_row.sends if member_row else 0) + 1
                key = item_key("member", chat.chat_key, person_id, "remove", sends)
                items.append(self._item("member_remove", {"chat_key": chat.chat_key, "chat_id": chat.chat_id,
                                                          "user_id": vk_id, "person": person_id}, key))
                writes.append({"chat_key": chat.chat_key, "person_external_id": person_id, "vk_id": vk_id,
                               "origin": member_row.origin if member_row else "found", "state": "removing",
                               "pending_key": key, "last_error": None, "sends": sends, "updated_at": now})
            self.report.add("queued.member_remove", len(planned))
        with self.engine.begin() as conn:
            update_many(conn, self.chats_t, ("chat_key",), chat_counts)
            self._upsert_members(conn, writes)
            outbox.enqueue(conn, self.queue_t, items)

    def _refusal(self, kind: str, removals: int, rows_by_chat: dict[str, dict[str, sa.Row[Any]]]) -> str | None:
        """The removal guards of the chats' source table (its mapping's, or the defaults)."""
        table = SOURCE_TABLE[kind]
        mapping = next((m for m in self.mappings if m.table.name == table), None)
        linked = sum(1 for key, rows in rows_by_chat.items()
                     if self.contingent.chats.get(key) is not None and self.contingent.chats[key].kind == kind
                     for r in rows.values() if r.state == "member")
        source_rows = self.contingent.source_rows.get(kind, 0)
        word = f"беседы {KIND_WORD[kind]}".strip()
        if mapping is not None and mapping.sync is not None and mapping.flow.guards.require_batch:
            marker = self.mappings.load_markers()
            table_t = self.contingent.tables.get(marker.table.name) if marker is not None else None
            if marker is not None and table_t is None:
                from bufsync.schema import build_metadata
                table_t = build_metadata(self.mappings).tables[marker.table.name]
            if marker is not None and table_t is not None:
                with self.engine.connect() as conn:
                    state = markers.latest_ready(conn, marker, table_t, mapping.flow.guards.require_batch,
                                                 source_rows)
                if not state.ready:
                    return (f"Сферум, {word}: {removals} удалений из бесед не выполнены: {state.reason} "
                            f"(защита require_batch таблицы {table})")
        if mapping is None:
            return None
        refusal = removal_refusal(mapping, Weighed(source_rows, linked, removals), None)
        return f"Сферум, {word}: удаления из бесед не выполнены: {refusal}" if refusal else None

    def read_members(self, chats: list[sa.Row[Any]]) -> dict[str, Present]:
        """Each chat's members, `execute` bundling the reads (25 chats a request) unless switched off."""
        calls = [("messages.getConversationMembers", {"peer_id": CHAT_PEER + int(c.chat_id),
                                                      "count": MEMBERS_PAGE}) for c in chats]
        answers: list[Any]
        if self.settings.execute and calls:
            answers = self.client.execute(calls)
        else:
            answers = []
            for method, params in calls:
                try:
                    answers.append(self.client.call(method, params))
                except VkError as exc:
                    if exc.code in (5, 1117, 14):
                        raise
                    answers.append(exc)
        out: dict[str, Present] = {}
        errors: list[dict[str, Any]] = []
        now = now_utc()
        for chat, answer in zip(chats, answers, strict=True):
            if isinstance(answer, VkError):
                if answer.code in (5, 1117, 14):
                    raise answer
                text = f"{UNREAD}: {answer.reason}"[:2000]
                self.report.add("chats.unreadable")
                self.report.problems.append(f"{chat.title}: {text}")
                if chat.last_error != text:
                    errors.append({"chat_key": chat.chat_key, "last_error": text, "updated_at": now})
                continue
            items = list(answer.get("items") or [])
            count = int(answer.get("count") or len(items))
            while len(items) < count:  # a chat over one page: the rest read page by page
                more = self.client.call("messages.getConversationMembers",
                                        {"peer_id": CHAT_PEER + int(chat.chat_id), "offset": len(items),
                                         "count": MEMBERS_PAGE})
                page = list(more.get("items") or [])
                if not page:
                    break
                items += page
            ids = {int(i["member_id"]) for i in items if int(i["member_id"]) > 0}
            admins = {int(i["member_id"]) for i in items if i.get("is_admin") or i.get("is_owner")}
            out[chat.chat_key] = Present(ids, admins, count)
            self.report.add("chats.checked")
        if errors:
            with self.engine.begin() as conn:
                update_many(conn, self.chats_t, ("chat_key",), errors)
        return out


def wanted_summary(chats: dict[str, Wanted]) -> dict[str, int]:
    return {"chats.wanted": len(chats), "people.without_vk": len({p.external_id for c in chats.values()
                                                                 for p in c.members.values() if p.vk_id is None})}
