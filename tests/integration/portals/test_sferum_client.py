"""The VK API client against the sandbox VK API over HTTP: VK's answers and errors as the client types them,
the rate limit kept on the client's side (its waits move the sandbox's stopped clock: nothing sleeps), retries
only where VK did nothing or the call is safe to repeat, a lost create never sent twice, execute bundles."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bufsync.portals.sferum.client import AnswerLost, CaptchaNeeded, TokenRefused, VkClient, VkError
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.vk import Person, SandboxConfig, Token, VkServer, start

EPOCH = 1_700_000_000.0
STUDENTS = list(range(2001, 2061))


@pytest.fixture
def vk() -> Iterator[VkServer]:
    people = [Person(1001, "Анна", "Петрова", "teacher")] + [Person(i, f"Ученик{i}", "Иванов") for i in STUDENTS]
    server = start(config=SandboxConfig(tokens={"teacher": Token("user", 1001), "school": Token("group", 501)},
                                        people=people, clock=EPOCH))
    yield server
    server.shutdown()
    server.server_close()


def admin(server: VkServer, action: str, **args: object) -> object:
    answer = httpx.post(f"{server.url}/sandbox/admin", json={"action": action, "args": args},
                        headers={"X-Sandbox-Token": server.api.config.admin_token}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def client(server: VkServer, token: str = "teacher", **options: object) -> VkClient:
    """A client whose waits move the sandbox's clock (and its own) instead of sleeping."""
    now = [EPOCH]  # the sandbox's clock: both sides count the same seconds

    def sleep(seconds: float) -> None:
        now[0] += seconds
        admin(server, "clock", advance=seconds)
    return VkClient(server.url, server.api.config.tokens[token].value, clock=lambda: now[0], sleep=sleep,
                    **options)  # type: ignore[arg-type]


def chats(server: VkServer) -> list[dict[str, object]]:
    state = admin(server, "state")
    assert isinstance(state, dict)
    found: list[dict[str, object]] = state["chats"]
    return found


def test_calls_answer_and_errors_are_typed_with_a_russian_reason(vk: VkServer) -> None:
    with client(vk) as c:
        made = c.call("messages.createChat", {"user_ids": STUDENTS[:3], "title": "ИС-21"}, safe=False)
        assert set(made["peer_ids"]) >= set(STUDENTS[:3])
        members = c.call("messages.getConversationMembers", {"peer_id": 2_000_000_000 + made["chat_id"]})
        assert {m["member_id"] for m in members["items"]} == {1001, *STUDENTS[:3]}
        with pytest.raises(VkError) as error:
            c.call("messages.removeChatUser", {"chat_id": made["chat_id"], "user_id": STUDENTS[10]})
        assert error.value.code == 935 and "пользователя нет в беседе (VK 935" in error.value.reason
    with client(vk, "school") as c, pytest.raises(VkError) as error:
        c.call("messages.addChatUser", {"chat_id": made["chat_id"], "user_id": STUDENTS[5]})
    assert error.value.code == 27 and "токен сотрудника" in error.value.reason


def test_the_rate_limit_is_kept_by_the_client_so_vk_never_refuses(vk: VkServer) -> None:
    """3 requests a second on a user token: the client waits (moving the clock) before VK would answer 6."""
    with client(vk, rate=3) as c:
        made = c.call("messages.createChat", {"user_ids": STUDENTS[:2], "title": "x"}, safe=False)
        for student in STUDENTS[2:12]:
            c.call("messages.addChatUser", {"chat_id": made["chat_id"], "user_id": student})
        assert c.requests == 11
    state = admin(vk, "state")
    assert isinstance(state, dict) and "6" not in state["errors"]  # never over VK's limit


def test_a_refusal_vk_did_not_execute_is_sent_again(vk: VkServer) -> None:
    """6, 9 and 29 mean VK did nothing: even a create is sent again, and there is one chat."""
    admin(vk, "errors", rules=[{"code": 9, "method": "messages.createChat", "count": 1},
                               {"code": 6, "method": "messages.createChat", "count": 1}])
    with client(vk) as c:
        c.call("messages.createChat", {"user_ids": STUDENTS[:2], "title": "x"}, safe=False)
        assert c.requests == 3
    assert len(chats(vk)) == 1


def test_an_execute_vk_refused_or_whose_answer_was_lost_is_sent_again(vk: VkServer) -> None:
    """An execute bundle holds only calls safe to repeat: refused before running (6, 29) or its answer lost, the
    whole bundle goes again and each call's answer comes back."""
    with client(vk) as c:
        made = c.call("messages.createChat", {"user_ids": STUDENTS[:2], "title": "x"}, safe=False)
        admin(vk, "errors", rules=[{"code": 6, "method": "execute", "count": 1},
                                   {"code": 29, "method": "execute", "count": 1}])
        vk.faults.add(FaultRule("drop_after_write", function="execute", count=1, skip=2))  # the third send
        before = c.requests
        read = ("messages.getConversationMembers", {"peer_id": 2_000_000_000 + made["chat_id"], "count": 1000})
        answers = c.execute([read, read])
        assert c.requests - before == 4 and [a["count"] for a in answers] == [3, 3]


def test_a_lost_create_is_not_sent_again(vk: VkServer) -> None:
    """createChat is not idempotent: a lost answer raises AnswerLost after one send; VK made the chat."""
    vk.faults.add(FaultRule("drop_after_write", function="messages.createChat", count=1))
    with client(vk) as c:
        with pytest.raises(AnswerLost, match="read back before a retry"):
            c.call("messages.createChat", {"user_ids": STUDENTS[:2], "title": "ИС-21"}, safe=False)
        assert c.requests == 1
    assert [chat["title"] for chat in chats(vk)] == ["ИС-21"]


def test_a_lost_read_is_read_again(vk: VkServer) -> None:
    with client(vk) as c:
        made = c.call("messages.createChat", {"user_ids": STUDENTS[:2], "title": "x"}, safe=False)
        vk.faults.add(FaultRule("drop_after_write", function="messages.getConversationMembers", count=1))
        members = c.call("messages.getConversationMembers", {"peer_id": 2_000_000_000 + made["chat_id"]})
        assert members["count"] == 3 and c.requests == 3


def test_a_refused_token_and_a_captcha_stop_with_what_to_do(vk: VkServer) -> None:
    with VkClient(vk.url, "not-a-token", sleep=lambda _: None) as c, pytest.raises(TokenRefused) as refused:
        c.call("messages.getConversationMembers", {"peer_id": 2_000_000_001})
    assert refused.value.code == 5 and "not-a-token" not in str(refused.value)
    admin(vk, "errors", rules=[{"code": 14, "method": "messages.editChat", "count": 1}])
    with client(vk) as c, pytest.raises(CaptchaNeeded) as captcha:
        c.call("messages.editChat", {"chat_id": 1, "title": "y"})
    assert "captcha_sid" in captcha.value.extra and c.requests == 1


def test_execute_bundles_25_calls_a_request_and_types_each_failure(vk: VkServer) -> None:
    with client(vk) as c:
        made = c.call("messages.createChat", {"user_ids": STUDENTS[:1], "title": "x"}, safe=False)
        calls = [("messages.addChatUser", {"chat_id": made["chat_id"], "user_id": s}) for s in STUDENTS[1:40]]
        calls.append(("messages.removeChatUser", {"chat_id": made["chat_id"], "user_id": 999_999}))
        before = c.requests
        results = c.execute(calls)
        assert c.requests - before == 2  # 40 calls: 25 + 15
        assert results[:39] == [1] * 39
        assert isinstance(results[39], VkError) and results[39].code in (935, 936)
        members = c.call("messages.getConversationMembers", {"peer_id": 2_000_000_000 + made["chat_id"],
                                                             "count": 1000})
    assert {m["member_id"] for m in members["items"]} == {1001, *STUDENTS[:40]}  # what VK now holds
