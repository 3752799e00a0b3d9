"""The sandbox VK API (Сферум) over real HTTP, as a client meets it: every method's answer and its documented
errors, token kinds, the body formats VK reads and the one it does not, idempotency where VK has it and none
where it has not, the lost answer, paging, execute, the rate limit on a clock the test moves, injected errors.
The lookups (messages.getConversations, users.get, groups.getById) and the application's service token too.
The clock is stopped in every test: nothing here depends on how fast the machine is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bufsync import tls
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.vk import Person, SandboxConfig, Token, VkServer, start

V = "5.199"
EPOCH = 1_700_000_000.0
STUDENTS = list(range(2001, 2011))


def api(method: str, **args: Any) -> str:
    """One call of VKScript, as a batching client writes it."""
    return f"API.{method}({json.dumps(args, ensure_ascii=False)})"


def batch(*calls: str) -> str:
    return f"return [{', '.join(calls)}];"


def sends(chat: int, random_ids: range) -> str:
    return batch(*(api("messages.send", peer_id=2_000_000_000 + chat, random_id=i, message="m") for i in random_ids))


def config(**knobs: Any) -> SandboxConfig:
    people = [Person(1001, "Анна", "Петрова", "teacher"), Person(1002, "Борис", "Сидоров", "teacher")]
    people += [Person(i, f"Ученик{i}", "Иванов") for i in STUDENTS]
    tokens = {"teacher": Token("user", 1001), "teacher2": Token("user", 1002), "school": Token("group", 501),
              "app": Token("service", 51_000_001)}
    # most tests make more than 3 calls a clock second
    knobs = {"rate_user": 0, "rate_group": 0, "rate_service": 0} | knobs
    return SandboxConfig(tokens=tokens, people=people, clock=EPOCH, **knobs)


class Vk:
    """A client of one sandbox: calls with a named token, the admin endpoint, the state."""

    def __init__(self, server: VkServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=10, verify=tls.verify())

    def token(self, name: str) -> str:
        return self.server.api.config.tokens[name].value

    def call(self, method: str, token: str | None = "teacher", /, **params: Any) -> dict[str, Any]:
        data = {"v": V, **{k: str(v) for k, v in params.items()}}
        if token is not None:
            data["access_token"] = self.token(token)
        answer = self.http.post(f"/method/{method}", data=data)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = answer.json()
        return body

    def ok(self, method: str, token: str = "teacher", /, **params: Any) -> Any:
        body = self.call(method, token, **params)
        assert "response" in body, body
        return body["response"]

    def error(self, method: str, expected: int, /, token: str | None = "teacher", **params: Any) -> dict[str, Any]:
        body = self.call(method, token, **params)
        assert "error" in body and body["error"]["error_code"] == expected, body
        error: dict[str, Any] = body["error"]
        return error

    def admin(self, action: str, **args: Any) -> Any:
        answer = self.http.post("/sandbox/admin", json={"action": action, "args": args},
                                headers={"X-Sandbox-Token": self.server.api.config.admin_token})
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    def state(self) -> dict[str, Any]:
        answer = self.http.get("/sandbox/state", headers={"X-Sandbox-Token": self.server.api.config.admin_token})
        assert answer.status_code == 200
        state: dict[str, Any] = answer.json()
        return state

    def chat(self, users: list[int] = STUDENTS[:3], token: str = "teacher", title: str = "7А") -> int:
        chat_id: int = self.ok("messages.createChat", token, user_ids=",".join(map(str, users)), title=title)["chat_id"]
        return chat_id

    def members(self, chat_id: int, token: str = "teacher") -> list[int]:
        answer = self.ok("messages.getConversationMembers", token, peer_id=2_000_000_000 + chat_id, count=1000)
        return [item["member_id"] for item in answer["items"]]


def running(**knobs: Any) -> Iterator[Vk]:
    server = start(config=config(**knobs))
    client = Vk(server)
    try:
        yield client
    finally:
        client.http.close()
        server.shutdown()
        server.server_close()


@pytest.fixture
def vk() -> Iterator[Vk]:
    yield from running()


@pytest.fixture
def limited() -> Iterator[Vk]:
    """The real rate limits: 3 requests a second per user token, 20 per community token (3 per service token)."""
    yield from running(rate_user=3, rate_group=20, rate_service=3)


# -- transport ----------------------------------------------------------------------------------------
def test_get_and_post_form_and_multipart_and_bearer(vk: Vk) -> None:
    token = vk.token("teacher")
    got = vk.http.get("/method/messages.createChat", params={"v": V, "access_token": token, "user_ids": "2001"})
    assert got.json()["response"] == {"chat_id": 1, "peer_ids": [2001]}
    posted = vk.http.post("/method/messages.createChat", data={"v": V, "user_ids[]": ["2002", "2003"]},
                          headers={"Authorization": f"Bearer {token}"})
    assert posted.json()["response"] == {"chat_id": 2, "peer_ids": [2002, 2003]}
    multipart = vk.http.post("/method/messages.editChat?v=5.199",
                             files={"access_token": (None, token), "chat_id": (None, "2"), "title": (None, "9Б")})
    assert multipart.json() == {"response": 1}
    assert [c["title"] for c in vk.state()["chats"]] == ["", "9Б"]


def test_errors_are_http_200_with_request_params_without_the_token(vk: Vk) -> None:
    error = vk.error("messages.editChat", 100, chat_id=1)
    assert error["error_msg"] == "One of the parameters specified was missing or invalid: title is undefined"
    assert error["request_params"] == [{"key": "oauth", "value": "1"}, {"key": "method", "value": "messages.editChat"},
                                       {"key": "v", "value": V}, {"key": "chat_id", "value": "1"}]


def test_json_bodies_are_not_read(vk: Vk) -> None:
    """VK reads the query and form fields only: a JSON body's fields are simply absent."""
    token = vk.token("teacher")
    everything = {"v": V, "access_token": token, "chat_id": 1, "title": "x"}
    answer = vk.http.post("/method/messages.editChat", json=everything).json()
    assert answer["error"]["error_code"] == 5 and "no access_token passed" in answer["error"]["error_msg"]
    bearer = {"Authorization": f"Bearer {token}"}
    answer = vk.http.post("/method/messages.editChat", json=everything, headers=bearer).json()
    assert answer["error"]["error_code"] == 8  # no v
    answer = vk.http.post("/method/messages.editChat?v=5.199", json=everything, headers=bearer).json()
    assert answer["error"]["error_code"] == 100 and "chat_id is undefined" in answer["error"]["error_msg"]


def test_version_is_required(vk: Vk) -> None:
    token = vk.token("teacher")
    for query in ({}, {"v": "4.104"}, {"v": "latest"}, {"v": "5.199.1"}):
        answer = vk.http.post("/method/messages.createChat", data={"access_token": token, **query}).json()
        assert answer["error"]["error_code"] == 8, query
    assert vk.state()["chats"] == []


def test_unknown_method(vk: Vk) -> None:
    assert vk.error("messages.createChatt", 3)["error_msg"] == "Unknown method passed"
    assert vk.error("messages.createChatt", 3, token=None)["error_code"] == 3


def test_unknown_missing_and_expired_tokens(vk: Vk) -> None:
    vk.error("messages.createChat", 5, token=None)
    assert vk.http.post("/method/calls.start", data={"v": V, "access_token": "nope"}).json()["error"]["error_code"] == 5
    vk.ok("calls.start")
    vk.admin("expire_token", name="teacher")
    assert vk.error("calls.start", 1117)["error_msg"] == "Access token has expired"
    vk.admin("set", expired_code=5)
    vk.error("calls.start", 5)
    vk.admin("expire_token", name="teacher", expired=False)
    vk.ok("calls.start")
    assert vk.state()["tokens"]["teacher"] == {"kind": "user", "owner_id": 1001, "expired": False,
                                               "value": vk.token("teacher")}


def test_token_kinds(vk: Vk) -> None:
    """A community token creates chats and reads members but cannot add members or start calls (VK's schema)."""
    chat = vk.chat(token="school")
    for method, params in (("messages.addChatUser", {"chat_id": chat, "user_id": 2005}), ("calls.start", {}),
                           ("calls.forceFinish", {"call_id": "0" * 36})):
        error = vk.error(method, 27, token="school", **params)
        assert error["error_msg"] == "Group authorization failed: method is unavailable with group auth."
    answer = vk.ok("messages.getConversationMembers", "school", peer_id=2_000_000_000 + chat, extended=1)
    assert [i["member_id"] for i in answer["items"]] == [-501, *STUDENTS[:3]]
    assert answer["items"][0]["is_owner"] and answer["groups"][0]["id"] == 501
    assert vk.ok("messages.removeChatUser", "school", chat_id=chat, member_id=2001) == 1
    vk.error("messages.getConversationMembers", 917, token="teacher", peer_id=2_000_000_000 + chat)
    vk.error("messages.createChat", 100, token="school", group_id=502)  # only its own community
    vk.error("messages.createChat", 15, group_id=501)  # a staff profile acts for no community here


# -- chats --------------------------------------------------------------------------------------------
def test_create_chat_skips_unknown_ids_and_is_not_idempotent(vk: Vk) -> None:
    first = vk.ok("messages.createChat", user_ids="2001,999999,2002,1001", title="7А")
    assert first == {"chat_id": 1, "peer_ids": [2001, 2002]}
    second = vk.ok("messages.createChat", user_ids="2001,999999,2002,1001", title="7А")
    assert second == {"chat_id": 2, "peer_ids": [2001, 2002]}  # a second chat, the same members
    chats = vk.state()["chats"]
    assert [(c["chat_id"], c["title"], c["owner_id"], c["admins"]) for c in chats] == [(1, "7А", 1001, [1001]),
                                                                                        (2, "7А", 1001, [1001])]
    assert chats[0]["members"][1] == {"member_id": 2001, "invited_by": 1001, "join_date": int(EPOCH), "is_admin": False}
    vk.error("messages.createChat", 936, user_ids="999998,999999")


def test_create_chat_over_the_size_limit() -> None:
    for vk in running(max_members=3):
        vk.error("messages.createChat", 103, user_ids="2001,2002,2003")
        assert vk.ok("messages.createChat", user_ids="2001,2002")["peer_ids"] == [2001, 2002]


def test_lost_create_answer_the_chat_exists(vk: Vk) -> None:
    vk.server.faults.add(FaultRule("drop_after_write", function="messages.createChat", count=1))
    with pytest.raises(httpx.TransportError):
        vk.call("messages.createChat", user_ids="2001,2002", title="8В")
    chats = vk.state()["chats"]
    assert [(c["chat_id"], c["title"]) for c in chats] == [(1, "8В")]  # done at VK, though the client saw nothing
    assert vk.members(1) == [1001, 2001, 2002]  # what an adopting client reads back
    assert vk.chat(title="8В") == 2  # and a blind retry makes a second chat


def test_add_chat_user(vk: Vk) -> None:
    chat = vk.chat()
    assert vk.ok("messages.addChatUser", chat_id=chat, user_id=2005) == 1
    assert vk.members(chat)[-1] == 2005
    assert vk.error("messages.addChatUser", 15, chat_id=chat, user_id=2005)["error_msg"].endswith(
        "already in the chat")  # the default reading: an error, so a client must read members back
    vk.admin("set", add_existing="ok")
    assert vk.ok("messages.addChatUser", chat_id=chat, user_id=2005) == 1
    assert vk.members(chat).count(2005) == 1
    vk.error("messages.addChatUser", 927, chat_id=99, user_id=2006)
    vk.error("messages.addChatUser", 936, chat_id=chat, user_id=999999)
    vk.error("messages.addChatUser", 100, chat_id=chat)
    vk.error("messages.addChatUser", 925, token="teacher2", chat_id=chat, user_id=2006)  # not in the chat
    vk.ok("messages.addChatUser", chat_id=chat, user_id=1002)
    vk.error("messages.addChatUser", 925, token="teacher2", chat_id=chat, user_id=2006)  # a member, not an admin
    vk.admin("disable_chat", chat_id=chat)
    vk.error("messages.addChatUser", 945, chat_id=chat, user_id=2006)


def test_add_chat_user_to_a_full_chat() -> None:
    for vk in running(max_members=4):
        chat = vk.chat(STUDENTS[:2])
        assert vk.ok("messages.addChatUser", chat_id=chat, user_id=2003) == 1
        vk.error("messages.addChatUser", 103, chat_id=chat, user_id=2004)


def test_remove_chat_user(vk: Vk) -> None:
    chat = vk.chat(STUDENTS[:3] + [1002])
    assert vk.ok("messages.removeChatUser", chat_id=chat, user_id=2001) == 1
    vk.error("messages.removeChatUser", 935, chat_id=chat, user_id=2001)  # already gone
    vk.error("messages.removeChatUser", 936, chat_id=chat, user_id=999999)
    vk.error("messages.removeChatUser", 927, chat_id=99, user_id=2002)
    vk.error("messages.removeChatUser", 925, token="teacher2", chat_id=chat, user_id=2002)
    vk.admin("chat_admin", chat_id=chat, member_id=1002)
    assert vk.ok("messages.removeChatUser", "teacher2", chat_id=chat, user_id=2002) == 1  # an admin may
    vk.error("messages.removeChatUser", 15, token="teacher2", chat_id=chat, user_id=1001)  # the creator stays
    assert vk.ok("messages.removeChatUser", "teacher2", chat_id=chat, member_id=1002) == 1  # one may leave
    vk.error("messages.removeChatUser", 100, chat_id=chat)
    assert vk.members(chat) == [1001, 2003]
    vk.admin("disable_chat", chat_id=chat)
    vk.error("messages.removeChatUser", 945, chat_id=chat, user_id=2003)


def test_members_paging_and_profiles(vk: Vk) -> None:
    chat = vk.chat(STUDENTS)
    peer = 2_000_000_000 + chat
    first = vk.ok("messages.getConversationMembers", peer_id=peer, count=4)
    assert first["count"] == 11 and [i["member_id"] for i in first["items"]] == [1001, 2001, 2002, 2003]
    assert "profiles" not in first
    owner, student = first["items"][0], first["items"][1]
    assert owner == {"member_id": 1001, "invited_by": 1001, "join_date": int(EPOCH), "is_owner": True,
                     "is_admin": True, "can_kick": False}
    assert student["can_kick"] and not student["is_admin"] and not student["is_owner"]
    last = vk.ok("messages.getConversationMembers", peer_id=peer, count=4, offset=8)
    assert [i["member_id"] for i in last["items"]] == [2008, 2009, 2010]
    assert len(vk.ok("messages.getConversationMembers", peer_id=peer)["items"]) == 11  # default 20
    extended = vk.ok("messages.getConversationMembers", peer_id=peer, count=2, extended=1,
                     fields="educational_profile")
    assert [(p["id"], p["educational_profile"]["edu_roles"]["main_roles"]) for p in extended["profiles"]] == [
        (1001, "teacher"), (2001, "student")]
    assert extended["profiles"][1]["educational_profile"]["edu_roles"]["organizations"] == [
        {"organization_name": "Песочница: школа № 1"}]
    vk.admin("set", main_roles="list")
    extended = vk.ok("messages.getConversationMembers", peer_id=peer, count=1, extended=1, fields="educational_profile")
    assert extended["profiles"][0]["educational_profile"]["edu_roles"]["main_roles"] == ["teacher"]
    chosen = vk.ok("messages.getConversationMembers", peer_id=peer, member_ids="2003,2001,999")
    assert chosen["count"] == 2 and [i["member_id"] for i in chosen["items"]] == [2001, 2003]
    vk.error("messages.getConversationMembers", 917, token="teacher2", peer_id=peer)
    vk.error("messages.getConversationMembers", 927, peer_id=2_000_000_099)
    vk.error("messages.getConversationMembers", 100, peer_id=2001)
    vk.error("messages.getConversationMembers", 100)


def test_members_at_most_1000_a_page() -> None:
    for vk in running(max_members=1500):
        ids = list(range(100_000, 101_200))
        vk.admin("add_people", people=[{"id": i, "first_name": "У", "last_name": str(i)} for i in ids])
        chat = vk.chat(ids)
        peer = 2_000_000_000 + chat
        page = vk.ok("messages.getConversationMembers", peer_id=peer, count=1000)
        assert page["count"] == 1201 and len(page["items"]) == 1000
        assert len(vk.ok("messages.getConversationMembers", peer_id=peer, count=5000)["items"]) == 1000  # clamped
        rest = vk.ok("messages.getConversationMembers", peer_id=peer, count=1000, offset=1000)
        assert [i["member_id"] for i in rest["items"]] == ids[999:]
        vk.admin("set", count_over_max="error")
        vk.error("messages.getConversationMembers", 100, peer_id=peer, count=1001)


def test_invite_link(vk: Vk) -> None:
    chat = vk.chat(STUDENTS[:1] + [1002])
    peer = 2_000_000_000 + chat
    link = vk.ok("messages.getInviteLink", peer_id=peer)["link"]
    assert link.startswith("https://vk.me/join/")
    assert vk.ok("messages.getInviteLink", "teacher2", peer_id=peer)["link"] == link
    fresh = vk.ok("messages.getInviteLink", peer_id=peer, reset=1)["link"]
    assert fresh != link and vk.state()["chats"][0]["invite_link"] == fresh
    vk.error("messages.getInviteLink", 931, token="teacher2", peer_id=peer, reset=1)
    vk.ok("messages.removeChatUser", "teacher2", chat_id=chat, user_id=1002)
    vk.error("messages.getInviteLink", 919, token="teacher2", peer_id=peer)


def test_edit_chat(vk: Vk) -> None:
    chat = vk.chat(title="7А")
    assert vk.ok("messages.editChat", chat_id=chat, title="8А") == 1
    assert vk.state()["chats"][0]["title"] == "8А"
    vk.error("messages.editChat", 925, token="teacher2", chat_id=chat, title="x")
    vk.error("messages.editChat", 927, chat_id=99, title="x")
    vk.admin("disable_chat", chat_id=chat)
    vk.error("messages.editChat", 945, chat_id=chat, title="x")


# -- messages -----------------------------------------------------------------------------------------
def test_send_deduplicates_by_random_id(vk: Vk) -> None:
    chat = vk.chat()
    peer = 2_000_000_000 + chat
    first = vk.ok("messages.send", peer_id=peer, random_id=77, message="Урок в 10:00")
    assert isinstance(first, int)
    assert vk.ok("messages.send", peer_id=peer, random_id=77, message="Урок в 10:00") == first  # a retry
    assert vk.ok("messages.send", peer_id=peer, random_id=78, message="Урок в 10:00") == first + 1
    vk.ok("messages.addChatUser", chat_id=chat, user_id=1002)
    other = vk.ok("messages.send", "teacher2", peer_id=peer, random_id=77, message="Урок в 10:00")
    assert other == first + 2  # another sender's random_id is another message
    assert [(m["from_id"], m["random_id"], m["conversation_message_id"]) for m in vk.state()["messages"]] == [
        (1001, 77, 1), (1001, 78, 2), (1002, 77, 3)]
    vk.admin("clock", advance=3600)
    assert vk.ok("messages.send", peer_id=peer, random_id=77, message="Урок в 10:00") == first + 3  # window over


def test_send_to_many_peers_and_errors(vk: Vk) -> None:
    chat = vk.chat()
    answer = vk.ok("messages.send", peer_ids=f"{2_000_000_000 + chat},2001,999999", random_id=1, message="Привет")
    assert [a["peer_id"] for a in answer] == [2_000_000_000 + chat, 2001, 999999]
    assert answer[0]["conversation_message_id"] == 1 and "message_id" in answer[1]
    assert answer[2]["error"]["code"] == 936
    vk.error("messages.send", 917, token="teacher2", peer_id=2_000_000_000 + chat, random_id=2, message="x")
    vk.error("messages.send", 914, peer_id=2001, random_id=3, message="x" * 9001)
    vk.error("messages.send", 100, peer_id=2001, message="x")  # random_id is required
    vk.error("messages.send", 100, random_id=4, message="x")  # no peer
    vk.admin("disable_chat", chat_id=chat)
    vk.error("messages.send", 945, peer_id=2_000_000_000 + chat, random_id=5, message="x")


# -- calls --------------------------------------------------------------------------------------------
def test_calls_start_and_force_finish(vk: Vk) -> None:
    call = vk.ok("calls.start")
    assert len(call["call_id"]) == 36
    assert call["join_link"].startswith("https://sferum.ru/?p=join_call_page&callId=")
    assert call["ok_join_link"] and set(call["short_credentials"]) == {"id", "password", "link_without_password",
                                                                        "link_with_password"}
    vk.error("calls.forceFinish", 15, token="teacher2", call_id=call["call_id"])
    assert vk.ok("calls.forceFinish", call_id=call["call_id"]) == 1
    assert vk.state()["calls"][0]["finished_at"] == EPOCH
    vk.error("calls.forceFinish", 104, call_id=call["call_id"])  # finished already: the default reading
    vk.admin("set", finish_finished="ok")
    assert vk.ok("calls.forceFinish", call_id=call["call_id"]) == 1
    vk.error("calls.forceFinish", 104, call_id="00000000-0000-0000-0000-000000000000")
    vk.error("calls.forceFinish", 100, call_id="short")
    vk.error("calls.forceFinish", 100)
    assert vk.ok("calls.start") != call


# -- execute ------------------------------------------------------------------------------------------
def test_execute_three_calls(vk: Vk) -> None:
    chat = vk.chat()
    code = batch(api("messages.addChatUser", chat_id=chat, user_id=2005),
                 api("messages.send", peer_id=2_000_000_000 + chat, random_id=9, message="Добро пожаловать"),
                 api("messages.getConversationMembers", peer_id=2_000_000_000 + chat, count=1))
    body = vk.call("execute", code=code)
    assert "execute_errors" not in body
    added, message_id, members = body["response"]
    assert added == 1 and isinstance(message_id, int) and members["count"] == 5
    assert vk.ok("execute", code=f"return {api('messages.editChat', chat_id=chat, title='x')};") == 1
    assert vk.state()["requests"]["in_execute"]["messages.send"] == 1


def test_execute_failing_inner_calls(vk: Vk) -> None:
    chat = vk.chat()
    code = batch(api("messages.send", peer_id=2_000_000_000 + chat, random_id=1, message="m"),
                 api("messages.addChatUser", chat_id=99, user_id=2005), "API.no.such({})")
    body = vk.call("execute", code=code)
    assert body["response"][0] > 0 and body["response"][1:] == [False, False]
    assert body["execute_errors"] == [
        {"method": "messages.addChatUser", "error_code": 927, "error_msg": "Chat does not exist"},
        {"method": "no.such", "error_code": 3, "error_msg": "Unknown method passed"}]
    inner = vk.call("execute", "school", code="return [API.calls.start()];")
    assert inner["response"] == [False] and inner["execute_errors"][0]["error_code"] == 27


def test_execute_26_calls(vk: Vk) -> None:
    chat = vk.chat()
    code = sends(chat, range(1, 27))
    error = vk.error("execute", 13, code=code)
    assert error["error_msg"].endswith("Too many API calls")
    assert len(vk.state()["messages"]) == 25  # the 25 before the one over the limit took effect
    vk.admin("set", execute_partial=False)
    code = sends(chat, range(100, 126))
    vk.error("execute", 13, code=code)
    assert len(vk.state()["messages"]) == 25


def test_execute_outside_the_subset(vk: Vk) -> None:
    for code in ("var a = API.calls.start(); return a;", "return 1;", "return API.calls.start({x: 1});",
                 "return [API.calls.start()] + 1;"):
        assert vk.error("execute", 12, code=code)["error_msg"].startswith("Unable to compile code"), code
    vk.error("execute", 100)


# -- lookups: conversations, users, communities ---------------------------------------------------------
def conversations(vk: Vk, token: str = "teacher", **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = vk.ok("messages.getConversations", token, **params)
    return answer


def titles(answer: dict[str, Any]) -> list[str]:
    return [item["conversation"]["chat_settings"]["title"] for item in answer["items"]]


def test_get_conversations_shape_and_order(vk: Vk) -> None:
    """Only the caller's chats, the latest activity first: a chat's creation, then a message in it moves it up."""
    for title in ("7А", "7Б", "8В"):
        vk.chat(STUDENTS[:2], title=title)
    answer = conversations(vk)
    assert answer["count"] == 3 and titles(answer) == ["8В", "7Б", "7А"]
    newest = answer["items"][0]
    assert "last_message" not in newest  # no message yet (the sandbox writes no chat_create service message)
    conversation = newest["conversation"]
    assert conversation["peer"] == {"id": 2_000_000_003, "type": "chat", "local_id": 3}
    assert (conversation["last_message_id"], conversation["last_conversation_message_id"]) == (0, 0)
    assert conversation["can_write"] == {"allowed": True}
    settings = conversation["chat_settings"]
    assert {k: settings[k] for k in ("title", "members_count", "owner_id", "admin_ids", "state")} == {
        "title": "8В", "members_count": 3, "owner_id": 1001, "admin_ids": [1001], "state": "in"}
    assert settings["acl"]["can_invite"] and settings["acl"]["can_promote_users"]
    message_id = vk.ok("messages.send", peer_id=2_000_000_001, random_id=1, message="Урок в 10:00")
    answer = conversations(vk)
    assert titles(answer) == ["7А", "8В", "7Б"]
    first = answer["items"][0]
    assert first["conversation"]["last_message_id"] == message_id
    assert first["conversation"]["last_conversation_message_id"] == 1
    last = first["last_message"]
    assert {k: last[k] for k in ("id", "from_id", "peer_id", "text", "out", "conversation_message_id", "date")} == {
        "id": message_id, "from_id": 1001, "peer_id": 2_000_000_001, "text": "Урок в 10:00", "out": 1,
        "conversation_message_id": 1, "date": int(EPOCH)}
    assert "profiles" not in answer
    assert conversations(vk, "teacher2") == {"count": 0, "items": []}  # in none of them
    vk.ok("messages.addChatUser", chat_id=2, user_id=1002)
    seen = conversations(vk, "teacher2")
    assert titles(seen) == ["7Б"]
    acl = seen["items"][0]["conversation"]["chat_settings"]["acl"]
    assert not acl["can_invite"] and not acl["can_change_info"] and acl["can_see_invite_link"]
    vk.ok("messages.editChat", chat_id=2, title="7Б (2024)")
    assert titles(conversations(vk))[2] == "7Б (2024)"  # the title is today's; editing is no activity


def test_get_conversations_paging_and_count_limit(vk: Vk) -> None:
    for i in range(205):
        vk.chat(STUDENTS[:1], title=f"Беседа {i}")
    default = conversations(vk)
    assert default["count"] == 205 and len(default["items"]) == 20 and titles(default)[0] == "Беседа 204"
    page = conversations(vk, count=200)
    assert len(page["items"]) == 200 and titles(page)[-1] == "Беседа 5"
    rest = conversations(vk, count=200, offset=200)
    assert titles(rest) == [f"Беседа {i}" for i in (4, 3, 2, 1, 0)]
    assert len(conversations(vk, count=1000)["items"]) == 200  # clamped to the schema's maximum
    assert conversations(vk, count=0) == {"count": 205, "items": []}
    vk.admin("set", count_over_max="error")
    vk.error("messages.getConversations", 100, count=201)
    vk.error("messages.getConversations", 100, offset=-1)
    vk.error("messages.getConversations", 100, filter="everything")
    for kind in ("unread", "important", "unanswered"):  # no read, important or unanswered marks in the sandbox
        assert conversations(vk, filter=kind) == {"count": 0, "items": []}
    assert conversations(vk, filter="all", count=1)["count"] == 205


def test_get_conversations_kicked_and_left(vk: Vk) -> None:
    """A removed member still sees the chat, as `kicked`; one who went, as `left`; both as it was then."""
    chat = vk.chat(STUDENTS[:1] + [1002], title="7А")
    peer = 2_000_000_000 + chat
    first = vk.ok("messages.send", peer_id=peer, random_id=1, message="до")
    vk.ok("messages.removeChatUser", chat_id=chat, user_id=1002)
    vk.chat(STUDENTS[:1], title="другая")
    vk.ok("messages.send", peer_id=peer, random_id=2, message="после")
    seen = conversations(vk, "teacher2")["items"]
    assert [i["conversation"]["chat_settings"]["state"] for i in seen] == ["kicked"]
    assert seen[0]["last_message"]["id"] == first and seen[0]["last_message"]["out"] == 0
    assert seen[0]["conversation"]["can_write"] == {"allowed": False}
    assert not any(seen[0]["conversation"]["chat_settings"]["acl"].values())
    vk.ok("messages.addChatUser", chat_id=chat, user_id=1002)
    assert conversations(vk, "teacher2")["items"][0]["conversation"]["chat_settings"]["state"] == "in"
    vk.ok("messages.removeChatUser", "teacher2", chat_id=chat, member_id=1002)
    assert conversations(vk, "teacher2")["items"][0]["conversation"]["chat_settings"]["state"] == "left"
    assert titles(conversations(vk)) == ["7А", "другая"]  # the creator's own list is untouched


def test_get_conversations_of_a_community_and_extended(vk: Vk) -> None:
    vk.chat(STUDENTS[:2], title="7А")
    school_chat = vk.chat(STUDENTS[:1], token="school", title="Родители 7А")
    answer = conversations(vk, "school", extended=1)
    assert titles(answer) == ["Родители 7А"]
    assert answer["items"][0]["conversation"]["chat_settings"]["owner_id"] == -501
    assert answer["profiles"] == [] and [g["id"] for g in answer["groups"]] == [501]
    vk.ok("messages.send", "school", peer_id=2_000_000_000 + school_chat, random_id=1, message="x")
    vk.error("messages.getConversations", 100, token="school", group_id=502)
    vk.error("messages.getConversations", 15, group_id=501)
    vk.ok("messages.send", peer_id=2_000_000_001, random_id=1, message="x")
    mine = conversations(vk, extended=1, fields="educational_profile")
    assert [(p["id"], p["educational_profile"]["edu_roles"]["main_roles"]) for p in mine["profiles"]] == [
        (1001, "teacher")]
    assert mine["groups"] == []


def test_lost_create_answer_found_by_title(vk: Vk) -> None:
    """createChat's answer lost: the chat is made; getConversations finds it by title and owner, newest first."""
    vk.chat(title="7А")
    vk.server.faults.add(FaultRule("drop_after_write", function="messages.createChat", count=1))
    with pytest.raises(httpx.TransportError):
        vk.call("messages.createChat", user_ids="2001,2002", title="8В")
    found = [item["conversation"] for item in conversations(vk)["items"]
             if item["conversation"]["chat_settings"]["title"] == "8В"
             and item["conversation"]["chat_settings"]["owner_id"] == 1001]
    assert len(found) == 1 and found[0]["peer"]["local_id"] == 2 and found[0]["chat_settings"]["members_count"] == 3
    assert titles(conversations(vk, count=1)) == ["8В"]  # the newest
    assert vk.members(found[0]["peer"]["local_id"]) == [1001, 2001, 2002]


def test_users_get(vk: Vk) -> None:
    me = vk.ok("users.get")
    assert me == [{"id": 1001, "first_name": "Анна", "last_name": "Петрова", "can_access_closed": True,
                   "is_closed": False}]
    assert vk.ok("users.get", "school") == [] and vk.ok("users.get", "app") == []  # no "current user"
    some = vk.ok("users.get", "app", user_ids="2001,id2002,999999,2001")
    assert [u["id"] for u in some] == [2001, 2002, 999999]
    assert some[2] == {"id": 999999, "first_name": "DELETED", "last_name": "", "deactivated": "deleted"}
    profiled = vk.ok("users.get", "school", user_ids="1002", fields="educational_profile")
    assert profiled[0]["educational_profile"]["edu_roles"]["main_roles"] == "teacher"
    vk.admin("set", users_unknown="omit")
    assert [u["id"] for u in vk.ok("users.get", user_ids="2001,999999")] == [2001]
    for bad in ("durov", "0", "-5", "12abc"):
        assert vk.error("users.get", 113, user_ids=bad)["error_msg"].startswith("Invalid user id"), bad
    vk.error("users.get", 100, user_ids=",".join(str(i) for i in range(1, 1002)))
    value = vk.admin("add_token", name="teacher3", kind="user", owner_id=3001)  # a staff profile the site never listed
    answer = vk.http.post("/method/users.get", data={"v": V, "access_token": value}).json()
    assert answer["response"][0]["id"] == 3001 and "deactivated" not in answer["response"][0]


def test_groups_get_by_id(vk: Vk) -> None:
    own = vk.ok("groups.getById", "school")
    assert own["profiles"] == [] and [(g["id"], g["name"], g["screen_name"], g["type"], g["is_closed"])
                                      for g in own["groups"]] == [(501, "Песочница: школа № 1", "club501", "group", 0)]
    assert own["groups"][0]["photo_100"] == "https://vk.com/images/community_100.png"
    assert vk.ok("groups.getById", group_id=501) == own
    assert vk.ok("groups.getById", "app", group_ids="club501,999") == own  # an unknown one among them is skipped
    vk.error("groups.getById", 100)  # a user token has no community of its own
    vk.error("groups.getById", 100, token="app")
    vk.error("groups.getById", 100, group_id=999)
    vk.error("groups.getById", 100, group_ids="nosuchclub")
    old = vk.call("groups.getById", "school")
    assert isinstance(old["response"], dict)
    token = vk.token("school")
    legacy = vk.http.post("/method/groups.getById", data={"v": "5.131", "access_token": token}).json()
    assert [g["id"] for g in legacy["response"]] == [501]  # the plain list of older versions
    inner = vk.ok("execute", "school", code="return API.groups.getById({});")
    assert inner == own  # an inner call answers in the request's version


def test_service_token(vk: Vk) -> None:
    """An application's service token may look people and communities up; messages.*, calls.* and execute: 28."""
    refused = [m for m in vk.server.api.methods if m.startswith(("messages.", "calls."))] + ["execute"]
    assert len(refused) == 11
    for method in refused:
        error = vk.error(method, 28, token="app")
        assert error["error_msg"] == "Application authorization failed: method is unavailable with service token."
    assert vk.ok("users.get", "app", user_ids="1001")[0]["id"] == 1001
    assert vk.state()["tokens"]["app"]["kind"] == "service"
    value = vk.admin("add_token", name="app2", kind="service", owner_id=51_000_002)
    answer = vk.http.post("/method/calls.start", data={"v": V, "access_token": value}).json()
    assert answer["error"]["error_code"] == 28
    headers = {"X-Sandbox-Token": vk.server.api.config.admin_token}
    bad = vk.http.post("/sandbox/admin", json={"action": "add_token", "args": {"name": "x", "kind": "app",
                                                                                 "owner_id": 1}}, headers=headers)
    assert bad.status_code == 400


def test_default_config_has_a_service_token() -> None:
    tokens = SandboxConfig().tokens
    assert {name: token.kind for name, token in tokens.items()} == {"teacher": "user", "school": "group",
                                                                    "app": "service"}


# -- limits and injected errors -----------------------------------------------------------------------
def test_rate_limit_on_the_test_clock(limited: Vk) -> None:
    vk = limited
    for _ in range(3):
        vk.ok("calls.start")
    assert vk.error("calls.start", 6)["error_msg"] == "Too many requests per second"
    assert len(vk.state()["calls"]) == 3
    vk.admin("clock", advance=0.5)
    vk.error("calls.start", 6)  # still within the second
    vk.admin("clock", advance=0.5)
    vk.ok("calls.start")
    for _ in range(20):
        vk.ok("messages.createChat", "school", user_ids="2001")
    vk.error("messages.createChat", 6, token="school", user_ids="2001")
    for _ in range(3):  # a service token: 3 a second as a user's ([inf], knob rate_service)
        vk.ok("users.get", "app", user_ids="2001")
    vk.error("users.get", 6, token="app", user_ids="2001")


def test_execute_is_one_request_for_the_rate_limit(limited: Vk) -> None:
    vk = limited
    chat = vk.chat()
    code = sends(chat, range(1, 26))
    assert len(vk.ok("execute", code=code)) == 25
    vk.ok("execute", code=code)  # the third request of this second; its sends are all retries
    vk.error("calls.start", 6)
    assert len(vk.state()["messages"]) == 25


def test_injected_errors_answer_instead_of_the_method(vk: Vk) -> None:
    for code in (9, 10, 29):
        vk.admin("errors", rules=[{"code": code, "method": "messages.createChat", "count": 1}])
        vk.ok("calls.start")  # another method is not touched
        vk.error("messages.createChat", code, user_ids="2001")
    assert vk.state()["chats"] == []
    assert vk.chat() == 1
    assert vk.state()["injected"] == {"9": 1, "10": 1, "29": 1}


def test_captcha(vk: Vk) -> None:
    vk.admin("errors", rules=[{"code": 14, "method": "messages.send", "count": 2}])
    asked = vk.error("messages.send", 14, peer_id=2001, random_id=1, message="x")
    assert asked["captcha_img"] == f"https://api.vk.com/captcha.php?sid={asked['captcha_sid']}&s=1"
    again = vk.error("messages.send", 14, peer_id=2001, random_id=1, message="x", captcha_sid=asked["captcha_sid"],
                     captcha_key="wrong")
    assert again["captcha_sid"] != asked["captcha_sid"]
    assert vk.ok("messages.send", peer_id=2001, random_id=1, message="x", captcha_sid=again["captcha_sid"],
                 captcha_key="sandbox") > 0
    vk.error("messages.send", 14, peer_id=2001, random_id=2, message="x")  # the rule's second captcha
    vk.ok("messages.send", peer_id=2001, random_id=2, message="x")


# -- administration -----------------------------------------------------------------------------------
def test_admin_endpoint(vk: Vk) -> None:
    assert vk.http.get("/sandbox/state").status_code == 403
    assert vk.http.post("/sandbox/admin", json={"action": "state"}).status_code == 403
    headers = {"X-Sandbox-Token": vk.server.api.config.admin_token}
    assert vk.http.post("/sandbox/admin", json={"action": "nope"}, headers=headers).status_code == 400
    for knobs in ({"nope": 1}, {"rate_user": "many"}, {"execute_partial": 1}, {"main_roles": "dict"},
                  {"add_existing": "maybe"}, {"users_unknown": "maybe"}, {"groups_object_from": "latest"}):
        answer = vk.http.post("/sandbox/admin", json={"action": "set", "args": knobs}, headers=headers)
        assert answer.status_code == 400 and answer.json()["error"], knobs
    assert vk.admin("add_people", people=[{"id": 3001, "first_name": "Вера", "last_name": "Новая",
                                           "role": "teacher"}]) == 13
    value = vk.admin("add_token", name="teacher3", kind="user", owner_id=3001)
    assert vk.http.post("/method/calls.start", data={"v": V, "access_token": value}).json()["response"]["call_id"]
    vk.chat()
    vk.error("messages.editChat", 100, chat_id=1)
    assert vk.admin("clock", advance=10) == EPOCH + 10
    state = vk.admin("state")
    assert state["now"] == EPOCH + 10
    assert state["requests"]["by_method"] == {"calls.start": 1, "messages.createChat": 1, "messages.editChat": 1}
    assert state["requests"]["by_token"] == {"teacher3": 1, "teacher": 2}
    assert state["errors"] == {"100": 1}
    assert "admin_token" not in state["knobs"] and state["knobs"]["rate_user"] == 0
    assert vk.admin("faults", rules=[{"kind": "http_503", "function": "calls.start", "count": 1}]) == 1
    assert vk.http.post("/method/calls.start", data={"v": V}).status_code == 503
    assert vk.http.get("/nowhere").status_code == 404
