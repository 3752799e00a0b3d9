"""Queue items of portal `sferum` to VK calls: member adds and removals in `execute` bundles of 25, the rest one by
one. What each operation does when its previous send may have reached VK (docs/portals/sferum.md):
- chat_create: VK's createChat is not idempotent, so the organiser's conversations are searched first for a chat
  with this title that bufsync does not hold yet; found, it is adopted, else created;
- member_add: sent again; an error is read back (the person may be in the chat already: then it is done);
- member_remove: sent again; 935 (not in the chat) is done;
- chat_title, lesson_post (messages.send with a random_id VK deduplicates), call_finish (104: finished already):
  sent again;
- call_start: sent again: a lost start leaves a call nobody joins, which VK ends; a lesson without a call is worse.
5 and 1117 (the token refused or expired) and 14 (a captcha) stop the dispatcher and kill no item.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bufsync.portals.sferum.chats import PORTAL
from bufsync.portals.sferum.client import (
    AMBIGUOUS,
    CHAT_PEER,
    EXECUTE_MAX,
    AnswerLost,
    CaptchaNeeded,
    TokenRefused,
    VkClient,
    VkError,
)
from bufsync.queue.dispatcher import AccessRefused, Delivered, Permanent, Result, Transient

log = logging.getLogger("bufsync.sferum")
BUNDLED = {"member_add": "messages.addChatUser", "member_remove": "messages.removeChatUser"}
NOT_EXECUTED = (6, 9, 29)  # VK refused before doing anything (the client gave up retrying): another try later
CONVERSATIONS_PAGE = 200


def refused(exc: VkError) -> AccessRefused:
    """The operator's message; the token itself is never part of it."""
    if isinstance(exc, CaptchaNeeded):
        return AccessRefused(
            "VK asks for a captcha (error 14): a person must sign in to VK as the organiser (the owner of "
            "portals.sferum.user_token) and answer it; no item was sent or used an attempt: dispatch again after that")
    return AccessRefused(
        f"VK refused the organiser's token portals.sferum.user_token (BUFSYNC_SFERUM_USER_TOKEN): {exc.reason}; no "
        "item was sent or used an attempt: put a fresh token of the organiser's Сферум profile there, then dispatch "
        "again")


class SferumHandler:
    """A batch handler for bufsync.queue.dispatcher.dispatch."""

    def __init__(self, client: VkClient, organiser: Callable[[], int], held_chats: Callable[[], set[int]],
                 execute: bool = True) -> None:
        self.client = client
        self._organiser = organiser        # the token owner's VK id (asked of VK once, when a lookup needs it)
        self._held_chats = held_chats      # chat ids bufsync holds already: a lookup never adopts one of them
        self.execute = execute
        self._refused: AccessRefused | None = None

    def close(self) -> None:
        self.client.close()

    def __call__(self, items: list[dict[str, Any]]) -> list[Result]:
        self._refused = None
        results: dict[int, Result] = {}
        bundled = [item for item in items if item["operation"] in BUNDLED]  # adds and removals share bundles
        for item in items:
            if item["operation"] not in BUNDLED:
                results[item["id"]] = self._refused or self._guarded(self._single, item)
        size = EXECUTE_MAX if self.execute else 1
        for start in range(0, len(bundled), size):
            part = bundled[start:start + size]
            if self._refused is not None:
                results.update({item["id"]: self._refused for item in part})
                continue
            results.update(self._members(part))
        return [self._refused if self._refused is not None and not isinstance(results[i["id"]], Delivered)
                else results[i["id"]] for i in items]

    def _guarded(self, work: Callable[[dict[str, Any]], Result], item: dict[str, Any]) -> Result:
        try:
            return work(item)
        except (TokenRefused, CaptchaNeeded) as exc:
            self._refused = refused(exc)
            return self._refused
        except AnswerLost as exc:
            return Transient(str(exc), in_doubt=True)
        except VkError as exc:
            if exc.code in NOT_EXECUTED:
                return Transient(exc.reason, sent=False)
            if exc.code in AMBIGUOUS:  # VK failed inside, maybe after doing it: the next dispatch checks
                return Transient(exc.reason, in_doubt=True)
            return Permanent(exc.reason)

    # -- one by one ------------------------------------------------------------------------------------------------
    def _single(self, item: dict[str, Any]) -> Result:
        operation, payload = item["operation"], item["payload"]
        unsure = bool(item.get("in_doubt")) or item["attempts"] > 1
        if operation == "chat_create":
            if unsure:
                found = self._lookup(payload["title"])
                if found is not None:
                    return Delivered({"chat_id": found, "peer_ids": [], "adopted": True}, sent=False)
            answer = self.client.call("messages.createChat", {"title": payload["title"],
                                                              "user_ids": payload.get("user_ids") or None}, safe=False)
            return Delivered({"chat_id": int(answer["chat_id"]), "peer_ids": answer.get("peer_ids") or []})
        if operation == "chat_title":
            self.client.call("messages.editChat", {"chat_id": payload["chat_id"], "title": payload["title"]})
            return Delivered({"title": payload["title"]})
        if operation == "call_start":
            answer = self.client.call("calls.start", {}, safe=False)
            return Delivered({"call_id": answer["call_id"], "join_link": answer.get("join_link"),
                              "ok_join_link": answer.get("ok_join_link")})
        if operation == "call_finish":
            try:
                self.client.call("calls.forceFinish", {"call_id": payload["call_id"]})
            except VkError as exc:
                if exc.code != 104:
                    raise
                return Delivered({"finished": True, "already": True}, sent=not unsure)
            return Delivered({"finished": True})
        if operation == "lesson_post":
            answer = self.client.call("messages.send", {"peer_id": payload["peer_id"], "message": payload["message"],
                                                        "random_id": payload["random_id"]})
            return Delivered({"message_id": answer})
        return Permanent(f"unknown Сферум operation '{operation}'")

    def _lookup(self, title: str) -> int | None:
        """A chat this organiser made with this title that bufsync holds no chat_id for: a create whose answer was
        lost. The newest such chat (VK lists conversations newest first)."""
        organiser, held = self._organiser(), self._held_chats()
        offset = 0
        while True:
            page = self.client.call("messages.getConversations", {"offset": offset, "count": CONVERSATIONS_PAGE})
            items = page.get("items") or []
            for entry in items:
                conversation = entry.get("conversation") or {}
                peer, chat = conversation.get("peer") or {}, conversation.get("chat_settings") or {}
                if peer.get("type") != "chat":
                    continue
                chat_id = int(peer.get("local_id") or int(peer["id"]) - CHAT_PEER)
                if chat.get("title") == title and int(chat.get("owner_id") or 0) == organiser and chat_id not in held:
                    log.info("Сферум: the chat «%s» (chat_id %s) whose create answer was lost is adopted", title,
                             chat_id)
                    return chat_id
            offset += len(items)
            if not items or offset >= int(page.get("count") or 0):
                return None

    # -- member adds and removals, bundled ---------------------------------------------------------------------------
    def _members(self, part: list[dict[str, Any]]) -> dict[int, Result]:
        calls = [(BUNDLED[i["operation"]], {"chat_id": i["payload"]["chat_id"], "user_id": i["payload"]["user_id"]})
                 for i in part]
        try:
            if self.execute:
                answers: list[Any] = self.client.execute(calls)
            else:
                answers = []
                for call in calls:
                    try:
                        answers.append(self.client.call(*call))
                    except (TokenRefused, CaptchaNeeded):
                        raise
                    except VkError as exc:
                        answers.append(exc)
        except (TokenRefused, CaptchaNeeded) as exc:
            self._refused = refused(exc)
            return {item["id"]: self._refused for item in part}
        except AnswerLost as exc:
            return {item["id"]: Transient(str(exc), in_doubt=True) for item in part}
        except VkError as exc:  # the bundle itself refused (6, 9, 29 after the client's retries, 10, ...)
            return {item["id"]: Transient(exc.reason, sent=exc.code not in NOT_EXECUTED) for item in part}
        out: dict[int, Result] = {}
        unsure: list[tuple[dict[str, Any], VkError]] = []
        for item, answer in zip(part, answers, strict=True):
            if not isinstance(answer, VkError):
                out[item["id"]] = Delivered({"done": True})
            elif answer.code in (5, 1117, 14):
                self._refused = refused(answer)
                out[item["id"]] = self._refused
            elif item["operation"] == "member_remove" and answer.code == 935:  # not in the chat: removed already
                out[item["id"]] = Delivered({"done": True, "already": True})
            elif answer.code in NOT_EXECUTED:
                out[item["id"]] = Transient(answer.reason, sent=False)
            else:
                unsure.append((item, answer))
        if unsure:
            out.update(self._read_back(unsure))
        return out

    def _read_back(self, failed: list[tuple[dict[str, Any], VkError]]) -> dict[int, Result]:
        """An add or removal VK refused: the chat read back decides (someone already in is added, someone already
        gone is removed); otherwise the item fails with VK's reason."""
        chat_ids = sorted({int(item["payload"]["chat_id"]) for item, _ in failed})
        reads = [("messages.getConversationMembers", {"peer_id": CHAT_PEER + c, "count": 1000}) for c in chat_ids]
        try:
            answers = self.client.execute(reads) if self.execute else [self.client.call(*r) for r in reads]
        except (AnswerLost, VkError):
            answers = [None] * len(reads)
        members: dict[int, set[int] | None] = {}
        for chat_id, answer in zip(chat_ids, answers, strict=True):
            members[chat_id] = ({int(i["member_id"]) for i in answer.get("items") or []}
                                if isinstance(answer, dict) else None)
        out: dict[int, Result] = {}
        for item, error in failed:
            held = members.get(int(item["payload"]["chat_id"]))
            user = int(item["payload"]["user_id"])
            if held is not None and (user in held) == (item["operation"] == "member_add"):
                out[item["id"]] = Delivered({"done": True, "already": True})
            elif error.code in AMBIGUOUS:  # VK's internal error, not a refusal: the next dispatch tries again
                out[item["id"]] = Transient(error.reason, in_doubt=True)
            else:
                out[item["id"]] = Permanent(error.reason)
        return out


def held_chats(engine: sa.Engine, chats: sa.Table, queue: sa.Table) -> Callable[[], set[int]]:
    """The chat ids of the chats' rows, and those of the creates done that no run has settled into a row yet (two
    chats may share a title: a lookup must not adopt the other's chat while its chat_id is still in the queue)."""
    def read() -> set[int]:
        with engine.connect() as conn:
            held = {int(c) for (c,) in conn.execute(sa.select(chats.c.chat_id).where(chats.c.chat_id.is_not(None)))}
            for (response,) in conn.execute(sa.select(queue.c.response).where(
                    queue.c.portal == PORTAL, queue.c.operation == "chat_create", queue.c.status == "done",
                    queue.c.idempotency_key.in_(sa.select(chats.c.pending_key)
                                                .where(chats.c.pending_key.is_not(None))))):
                chat_id = json.loads(response or "{}").get("chat_id")
                if chat_id is not None:
                    held.add(int(chat_id))
            return held
    return read
