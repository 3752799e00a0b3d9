"""The emulated VK API as Сферум uses it: staff tokens, community tokens and an application's service token,
chats and their members, messages, calls, `execute`, the lookups (messages.getConversations, users.get,
groups.getById), the rate limit and the errors (docs/portals/sferum.md says what is real,
what is inferred, and which knob holds each inference).

Everything the transport does not need lives here: `VkApi.request(method, params, token)` gives the
whole JSON answer of one request. The server (server.py) adds HTTP, the transport faults and the admin
endpoint. Time is `VkApi.now()`: the wall clock for people trying the sandbox by hand, or a stopped
clock (`SandboxConfig.clock`) that only the admin `clock` action moves, so that the rate limit, join dates
and `random_id` windows in tests never depend on how fast the machine is.
"""

from __future__ import annotations

import random
import secrets
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from bufsync.sandbox.clock import StoppableClock
from bufsync.sandbox.faults import fires
from bufsync.sandbox.vk import vkscript
from bufsync.sandbox.vk.errors import ApiError, invalid, missing

TokenKind = Literal["user", "group", "service"]
TOKEN_KINDS: tuple[TokenKind, ...] = ("user", "group", "service")
CHAT_PEER = 2_000_000_000  # peer_id = 2000000000 + chat_id
MAX_CHAT_ID = 100_000_000  # the schema's maximum for chat_id
JOIN_CALL = "https://sferum.ru/?p=join_call_page&callId="
COMMUNITY_PHOTO = "https://vk.com/images/community_{size}.png"  # what VK gives a community without a photo
MAX_CONVERSATIONS = 200  # messages.getConversations: the schema's maximum for count
FILTERS = ("all", "unread", "important", "unanswered", "archive", "sorted_chats")  # the schema's enum


def _secret() -> str:
    return secrets.token_hex(16)


@dataclass
class Token:
    """An access token the sandbox knows: a staff Сферум profile's (`user`: owner_id is the VK user id), a
    community's (`group`: owner_id is the positive group id) or an application's service token (`service`:
    owner_id is the application id; it may call users.get and groups.getById, nothing of messages.* or calls.*)."""
    kind: TokenKind
    owner_id: int
    value: str = field(default_factory=_secret)
    expired: bool = False

    @property
    def peer(self) -> int:
        """Who acts: the user id, or minus the group id (how VK writes a community as a chat member); an
        application's service token acts for nobody (0)."""
        if self.kind == "service":
            return 0
        return self.owner_id if self.kind == "user" else -self.owner_id


@dataclass
class Person:
    """A VK user the site knows, with the educational profile Сферум shows (role: student or teacher)."""
    id: int
    first_name: str
    last_name: str
    role: str = "student"
    organization: str = "Песочница: школа № 1"


@dataclass
class Member:
    member_id: int
    invited_by: int
    join_date: int
    is_admin: bool = False


@dataclass
class Message:
    id: int
    peer_id: int
    from_id: int
    text: str
    random_id: int
    date: int
    conversation_message_id: int


@dataclass
class Former:
    """Someone who was in a chat: removed by another (`kicked`) or gone by themself (`left`), and how the chat
    looked to them at that moment (messages.getConversations shows them the chat as it was)."""
    state: str
    activity: int
    last_message: Message | None
    messages: int


@dataclass
class Chat:
    chat_id: int
    title: str
    owner_id: int  # the creator: a user id or minus a group id
    members: dict[int, Member] = field(default_factory=dict)
    disabled: bool = False
    invite: str = ""  # the current invite link's token ("" until someone asks for it)
    messages: int = 0  # conversation_message_id of the last message
    activity: int = 0  # the sandbox-wide sequence number of its creation or of its last message (the order of lists)
    last_message: Message | None = None
    former: dict[int, Former] = field(default_factory=dict)  # members who were removed or left

    @property
    def peer_id(self) -> int:
        return CHAT_PEER + self.chat_id

    def is_admin(self, peer: int) -> bool:
        member = self.members.get(peer)
        return peer == self.owner_id or (member is not None and member.is_admin)


@dataclass
class Call:
    call_id: str
    join: str  # the token in join_link
    started_by: int
    group_id: int | None
    started_at: float
    finished_at: float | None = None


@dataclass
class ErrorRule:
    """An API error the sandbox answers instead of running the method (9 flood control, 10, 29, 14 captcha...):
    for `count` requests (or a `rate` share of them, seeded), after letting `skip` through; `method` narrows it."""
    code: int
    method: str | None = None
    count: int | None = None
    rate: float | None = None
    skip: int = 0


def _default_tokens() -> dict[str, Token]:
    return {"teacher": Token("user", 1001), "school": Token("group", 501), "app": Token("service", 51_000_001)}


def _default_communities() -> dict[int, str]:
    return {501: "Песочница: школа № 1"}


def _default_people() -> list[Person]:
    return [Person(1001, "Анна", "Петрова", "teacher")]


@dataclass
class SandboxConfig:
    """The knobs. Where the real VK's behaviour is known the default is that behaviour; where it is not
    (docs/portals/sferum.md, "Choices"), the default is the reading that is harder on a client."""
    admin_token: str = field(default_factory=_secret)      # X-Sandbox-Token of /sandbox/admin
    tokens: dict[str, Token] = field(default_factory=_default_tokens)
    people: list[Person] = field(default_factory=_default_people)
    communities: dict[int, str] = field(default_factory=_default_communities)  # id -> name; group tokens' are added
    clock: float | None = None         # a stopped clock (epoch seconds) that the admin `clock` action moves; None: wall
    min_version: str = "5.0"           # a lower `v` is error 8
    rate_user: int = 3                 # requests per second per user token (0: no limit) ...
    rate_group: int = 20               # ... per community token ...
    rate_service: int = 3              # ... and per application service token; over it: error 6
    max_members: int = 250             # a chat a user made holds this many members, its creator included ...
    max_members_community: int = 3000  # ... one a community made this many; over it: error 103
    add_existing: str | int = 15       # addChatUser of a member: "ok" (answer 1) or this error code
    finish_finished: str | int = 104   # calls.forceFinish of a finished call: "ok" (answer 1) or this error code
    count_over_max: str = "clamp"      # count over the maximum (getConversationMembers 1000, getConversations 200):
    #                                    "clamp" to it or "error" (100)
    users_unknown: str = "deleted"     # users.get of an id the sandbox does not know: a "deleted" stub or "omit" it
    groups_object_from: str = "5.199"  # groups.getById answers {groups, profiles} from this v on, a plain list below
    main_roles: str = "string"         # educational_profile.edu_roles.main_roles: "string" or "list"
    expired_code: int = 1117           # the answer to an expired token (older clients saw 5)
    execute_max_calls: int = 25        # API calls one execute may make; the next one is error 13 ...
    execute_partial: bool = True       # ... after the ones before it took effect (False: nothing runs)
    captcha_answer: str = "sandbox"    # the captcha_key that solves any captcha the sandbox asks
    random_id_window: float = 3600.0   # messages.send keeps a (sender, random_id) this long
    seed: int = 1                      # for `rate` error rules

    def knobs(self) -> dict[str, Any]:
        """The scalar knobs (what the admin `set` action may change)."""
        lists = ("tokens", "people", "communities")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in lists}


class Params:
    """A request's parameters (strings, as VK receives them), read with VK's error 100 for a bad one."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None or (required and value == ""):
            if required:
                raise missing(name)
            return None
        return value

    def integer(self, name: str, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.text(name, required)
        if value is None or value == "":
            if required:
                raise missing(name)
            return None
        try:
            number = int(value.strip())
        except ValueError:
            raise invalid(name, "not integer") from None
        if minimum is not None and number < minimum:
            raise invalid(name, f"should be greater or equal to {minimum}")
        if maximum is not None and number > maximum:
            raise invalid(name, f"should be less or equal to {maximum}")
        return number

    def integers(self, name: str) -> list[int]:
        value = self.text(name)
        if not value:
            return []
        try:
            return [int(item) for item in value.split(",") if item.strip()]
        except ValueError:
            raise invalid(name, "should be a list of integers") from None

    def flag(self, name: str) -> bool:
        return (self.text(name) or "").strip().lower() in ("1", "true")


class _Rules:
    """The injected API errors, picked per request like the transport faults (faults.py)."""

    def __init__(self, seed: int) -> None:
        self.rules: list[ErrorRule] = []
        self.fired: Counter[int] = Counter()
        self._random = random.Random(seed)

    def pick(self, method: str) -> ErrorRule | None:
        for rule in list(self.rules):
            if fires(self.rules, rule, rule.method, method, self._random):
                self.fired[rule.code] += 1
                return rule
        return None


Handler = Callable[[Token, Params], Any]


class VkApi(StoppableClock):
    """One emulated VK API: its state, its methods, its limits."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.lock = threading.RLock()
        self.clock = self.config.clock
        self.people: dict[int, Person] = {p.id: p for p in self.config.people}
        self.chats: dict[int, Chat] = {}
        self.calls: dict[str, Call] = {}
        self.messages: list[Message] = []
        self.sent: dict[tuple[int, int], tuple[float, Any]] = {}  # (sender, random_id) -> (when, answer)
        self.rules = _Rules(self.config.seed)
        self.captchas: set[str] = set()  # captcha_sid asked and not yet answered
        self.windows: dict[str, deque[float]] = {}  # token value -> times of its recent requests
        self.by_method: Counter[str] = Counter()
        self.by_token: Counter[str] = Counter()
        self.inner: Counter[str] = Counter()  # calls made inside execute, per method
        self.errors: Counter[int] = Counter()
        self._next_chat = 1
        self._next_message = 1
        self._activity = 0
        self.methods: dict[str, tuple[tuple[TokenKind, ...], Handler]] = {
            "messages.createChat": (("user", "group"), self._create_chat),
            "messages.addChatUser": (("user",), self._add_chat_user),
            "messages.removeChatUser": (("user", "group"), self._remove_chat_user),
            "messages.getConversationMembers": (("user", "group"), self._members),
            "messages.getInviteLink": (("user", "group"), self._invite_link),
            "messages.editChat": (("user", "group"), self._edit_chat),
            "messages.send": (("user", "group"), self._send),
            "calls.start": (("user",), self._start_call),
            "calls.forceFinish": (("user",), self._finish_call),
            "messages.getConversations": (("user", "group"), self._conversations),
            "users.get": (TOKEN_KINDS, self._users),
            "groups.getById": (TOKEN_KINDS, self._groups_by_id),
        }

    # -- one request ----------------------------------------------------------------------------
    def request(self, method: str, values: dict[str, str], token_value: str | None) -> dict[str, Any]:
        """The JSON answer to one call of `method`, as VK gives it (always HTTP 200)."""
        with self.lock:
            self.by_method[method] += 1
            try:
                return self._request(method, values, token_value)
            except ApiError as error:
                self.errors[error.code] += 1
                shown = [{"key": "oauth", "value": "1"}, {"key": "method", "value": method}]
                shown += [{"key": k, "value": v} for k, v in values.items()]
                return {"error": error.body(shown)}

    def _request(self, method: str, values: dict[str, str], token_value: str | None) -> dict[str, Any]:
        if method != "execute" and method not in self.methods:
            raise ApiError(3)
        token = self._token(token_value)
        self._version(values.get("v"))
        self._rate(token)
        self._injected(method, values)
        params = Params(values)
        if method == "execute":
            return self._execute(token, params)
        return {"response": self._run(method, token, params)}

    def _token(self, value: str | None) -> Token:
        if not value:
            raise ApiError(5, "no access_token passed.")
        for name, token in self.config.tokens.items():
            if secrets.compare_digest(token.value, value):
                self.by_token[name] += 1
                if token.expired:
                    if self.config.expired_code == 5:
                        raise ApiError(5, "access_token has expired.")
                    raise ApiError(self.config.expired_code)
                return token
        raise ApiError(5, "invalid access_token (4).")

    def _version(self, value: str | None) -> None:
        if not value:
            raise ApiError(8, "v (version) is required")
        try:
            given = tuple(int(part) for part in value.split("."))
            least = tuple(int(part) for part in self.config.min_version.split("."))
        except ValueError:
            given = ()
        if len(given) != 2:
            raise ApiError(8, f"invalid v (version): {value}")
        if given < least:
            raise ApiError(8, f"versions below {self.config.min_version} are no longer supported")

    def _rate(self, token: Token) -> None:
        """At most rate_user (rate_group) requests in any clock second per token; a refused one is not counted."""
        limit = {"user": self.config.rate_user, "group": self.config.rate_group,
                 "service": self.config.rate_service}[token.kind]
        if limit <= 0:
            return
        now = self.now()
        window = self.windows.setdefault(token.value, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            raise ApiError(6)
        window.append(now)

    def _injected(self, method: str, values: dict[str, str]) -> None:
        """A solved captcha lets its request through; otherwise an error rule may answer instead of the method."""
        sid = values.get("captcha_sid")
        if sid and sid in self.captchas:
            self.captchas.discard(sid)
            if values.get("captcha_key") == self.config.captcha_answer:
                return
            raise self._captcha()
        rule = self.rules.pick(method)
        if rule is None:
            return
        if rule.code == 14:
            raise self._captcha()
        raise ApiError(rule.code)

    def _captcha(self) -> ApiError:
        sid = str(random.randrange(10**11, 10**12))
        self.captchas.add(sid)
        return ApiError(14, captcha_sid=sid, captcha_img=f"https://api.vk.com/captcha.php?sid={sid}&s=1")

    def _run(self, method: str, token: Token, params: Params) -> Any:
        kinds, handler = self.methods[method]
        if token.kind not in kinds:  # every method takes a user token; community and service tokens are turned away
            raise _wrong_kind(token)
        return handler(token, params)

    # -- execute --------------------------------------------------------------------------------
    def _execute(self, token: Token, params: Params) -> dict[str, Any]:
        if token.kind == "service":  # execute is a user or community method
            raise _wrong_kind(token)
        program = vkscript.parse(params.text("code", required=True) or "")
        limit = self.config.execute_max_calls
        if len(program.calls) > limit and not self.config.execute_partial:
            raise ApiError(13, "Too many API calls")
        results: list[Any] = []
        failures: list[dict[str, Any]] = []
        for index, call in enumerate(program.calls):
            if index >= limit:  # the calls before this one took effect
                raise ApiError(13, "Too many API calls")
            self.inner[call.method] += 1
            inner = {k: v for k, value in call.args.items() if (v := vkscript.param_value(value)) is not None}
            inner.setdefault("v", params.values.get("v", ""))  # inner calls answer in the request's version
            try:
                if call.method not in self.methods:
                    raise ApiError(3)
                results.append(self._run(call.method, token, Params(inner)))
            except ApiError as error:
                self.errors[error.code] += 1
                results.append(False)
                failures.append({"method": call.method, "error_code": error.code, "error_msg": error.message})
        answer: dict[str, Any] = {"response": results if program.many else results[0]}
        if failures:
            answer["execute_errors"] = failures
        return answer

    # -- chats ----------------------------------------------------------------------------------
    def _own_group(self, token: Token, params: Params) -> None:
        """group_id may only name the token's own community (the sandbox's staff profiles run none)."""
        group_id = params.integer("group_id", minimum=0)
        if group_id is None:
            return
        if token.kind == "user":
            raise ApiError(15, "the user does not manage this community")
        if group_id != token.owner_id:
            raise invalid("group_id", "is not the token's community")

    def _chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ApiError(927)
        return chat

    def _chat_by_peer(self, peer_id: int) -> Chat:
        if peer_id <= CHAT_PEER:
            raise invalid("peer_id", "is not a chat peer (2000000000 + chat_id)")
        return self._chat(peer_id - CHAT_PEER)

    def _capacity(self, chat: Chat) -> int:
        return self.config.max_members if chat.owner_id > 0 else self.config.max_members_community

    def _create_chat(self, token: Token, params: Params) -> dict[str, Any]:
        self._own_group(token, params)
        asked = params.integers("user_ids")
        title = params.text("title") or ""
        added = []
        for user_id in asked:
            if user_id in self.people and user_id != token.peer and user_id not in added:
                added.append(user_id)  # unknown ids are skipped, as VK skips whom it cannot add
        if asked and not added:
            raise ApiError(936)
        chat = Chat(self._next_chat, title, token.peer)
        if len(added) + 1 > self._capacity(chat):
            raise ApiError(103, "too many members for one chat")
        self._next_chat += 1
        now = int(self.now())
        chat.members[token.peer] = Member(token.peer, token.peer, now, is_admin=True)
        for user_id in added:
            chat.members[user_id] = Member(user_id, token.peer, now)
        chat.activity = self._touch()
        self.chats[chat.chat_id] = chat
        return {"chat_id": chat.chat_id, "peer_ids": added}

    def _add_chat_user(self, token: Token, params: Params) -> int:
        chat_id = params.integer("chat_id", True, 0, MAX_CHAT_ID)
        user_id = params.integer("user_id", True, 0)
        params.integer("visible_messages_count", minimum=0, maximum=1000)
        assert chat_id is not None and user_id is not None  # required
        chat = self._chat(chat_id)
        if chat.disabled:
            raise ApiError(945)
        if not chat.is_admin(token.peer):
            raise ApiError(925)
        if user_id not in self.people:
            raise ApiError(936)
        if user_id in chat.members:
            if self.config.add_existing == "ok":
                return 1
            raise ApiError(int(self.config.add_existing), "the user is already in the chat")
        if len(chat.members) >= self._capacity(chat):
            raise ApiError(103, "the chat is full")
        chat.members[user_id] = Member(user_id, token.peer, int(self.now()))
        chat.former.pop(user_id, None)
        return 1

    def _remove_chat_user(self, token: Token, params: Params) -> int:
        chat_id = params.integer("chat_id", True, 0, MAX_CHAT_ID)
        target = params.integer("member_id")
        if target is None:
            target = params.integer("user_id")
        if target is None:
            raise missing("user_id")
        assert chat_id is not None  # required
        chat = self._chat(chat_id)
        if chat.disabled:
            raise ApiError(945)
        if target != token.peer and not chat.is_admin(token.peer):
            raise ApiError(925)
        if target > 0 and target not in self.people:
            raise ApiError(936)
        if target not in chat.members:
            raise ApiError(935)
        if target == chat.owner_id and target != token.peer:
            raise ApiError(15, "the chat's creator cannot be removed")
        del chat.members[target]
        chat.former[target] = Former("left" if target == token.peer else "kicked", chat.activity, chat.last_message,
                                     chat.messages)
        return 1

    def _members(self, token: Token, params: Params) -> dict[str, Any]:
        self._own_group(token, params)
        chat = self._chat_by_peer(params.integer("peer_id", required=True) or 0)
        if token.peer not in chat.members:
            raise ApiError(917)
        offset = params.integer("offset", minimum=0) or 0
        count = params.integer("count", minimum=1)
        if count is None:
            count = 20
        if count > 1000:
            if self.config.count_over_max == "error":
                raise invalid("count", "should be less or equal to 1000")
            count = 1000
        wanted = set(params.integers("member_ids"))
        members = [m for m in chat.members.values() if not wanted or m.member_id in wanted]
        page = members[offset:offset + count]
        caller_admin = chat.is_admin(token.peer)
        items = []
        for member in page:
            item: dict[str, Any] = {"member_id": member.member_id, "invited_by": member.invited_by,
                                    "join_date": member.join_date, "is_owner": member.member_id == chat.owner_id,
                                    "is_admin": chat.is_admin(member.member_id),
                                    "can_kick": caller_admin and member.member_id not in (chat.owner_id, token.peer)}
            items.append(item)
        answer: dict[str, Any] = {"count": len(members), "items": items}
        if params.flag("extended"):
            requested = {f.strip() for f in (params.text("fields") or "").split(",")}
            answer["profiles"] = [self._profile(m.member_id, requested) for m in page if m.member_id > 0]
            answer["groups"] = [self._community(-m.member_id) for m in page if m.member_id < 0]
        return answer

    def _person(self, user_id: int) -> Person | None:
        """A person the sandbox knows, or the owner of one of its user tokens (a staff profile VK surely has)."""
        person = self.people.get(user_id)
        if person is None and any(t.kind == "user" and t.owner_id == user_id for t in self.config.tokens.values()):
            person = Person(user_id, "Сотрудник", f"id{user_id}", "teacher")
        return person

    def _profile(self, user_id: int, requested: set[str]) -> dict[str, Any]:
        person = self._person(user_id)
        if person is None:  # VK's stub for a deleted page: no optional fields
            return {"id": user_id, "first_name": "DELETED", "last_name": "", "deactivated": "deleted"}
        profile: dict[str, Any] = {"id": person.id, "first_name": person.first_name, "last_name": person.last_name,
                                   "can_access_closed": True, "is_closed": False}
        if "educational_profile" in requested:
            roles: str | list[str] = person.role if self.config.main_roles == "string" else [person.role]
            profile["educational_profile"] = {"edu_roles": {
                "main_roles": roles, "organizations": [{"organization_name": person.organization}]}}
        return profile

    def _invite_link(self, token: Token, params: Params) -> dict[str, str]:
        self._own_group(token, params)
        chat = self._chat_by_peer(params.integer("peer_id", required=True) or 0)
        if token.peer not in chat.members:
            raise ApiError(919)
        if chat.disabled:
            raise ApiError(945)
        if params.flag("reset"):
            if not chat.is_admin(token.peer):
                raise ApiError(931)
            chat.invite = ""  # the old link stops working
        if not chat.invite:
            chat.invite = secrets.token_urlsafe(18)
        return {"link": f"https://vk.me/join/{chat.invite}"}

    def _edit_chat(self, token: Token, params: Params) -> int:
        chat_id = params.integer("chat_id", True, 0, MAX_CHAT_ID)
        title = params.text("title", required=True) or ""
        assert chat_id is not None  # required
        chat = self._chat(chat_id)
        if chat.disabled:
            raise ApiError(945)
        if not chat.is_admin(token.peer):
            raise ApiError(925)
        chat.title = title
        return 1

    # -- messages ---------------------------------------------------------------------------------
    def _send(self, token: Token, params: Params) -> Any:
        self._own_group(token, params)
        random_id = params.integer("random_id", required=True)
        assert random_id is not None  # required
        text = params.text("message", required=True) or ""
        if len(text) > 9000:
            raise ApiError(914)
        many = params.text("peer_ids") is not None
        if many:
            peers = params.integers("peer_ids")
            if not peers or len(peers) > 100:
                raise invalid("peer_ids", "should hold 1 to 100 peers")
        else:
            peer = params.integer("peer_id")
            if peer is None:
                peer = params.integer("user_id")
            if peer is None and (chat_id := params.integer("chat_id", minimum=0, maximum=MAX_CHAT_ID)) is not None:
                peer = CHAT_PEER + chat_id
            if peer is None:
                raise missing("peer_id")
            peers = [peer]
        key = (token.peer, random_id)
        now = self.now()
        if random_id != 0 and key in self.sent and now - self.sent[key][0] < self.config.random_id_window:
            return self.sent[key][1]  # the same message again: its id, nothing sent twice
        if not many:
            answer: Any = self._deliver(token, peers[0], text, random_id).id
        else:
            answer = []
            for peer in peers:
                try:
                    message = self._deliver(token, peer, text, random_id)
                    answer.append({"peer_id": peer, "message_id": message.id,
                                   "conversation_message_id": message.conversation_message_id})
                except ApiError as error:
                    answer.append({"peer_id": peer, "error": {"code": error.code, "description": error.message}})
        if random_id != 0:
            self.sent[key] = (now, answer)
        return answer

    def _deliver(self, token: Token, peer: int, text: str, random_id: int) -> Message:
        chat = self.chats.get(peer - CHAT_PEER) if peer > CHAT_PEER else None
        if peer > CHAT_PEER:
            if chat is None or token.peer not in chat.members:
                raise ApiError(917)
            if chat.disabled:
                raise ApiError(945)
            chat.messages += 1
            conversation_id = chat.messages
        elif peer > 0 and peer in self.people:
            conversation_id = 1 + sum(1 for m in self.messages if m.peer_id == peer and m.from_id == token.peer)
        else:
            raise ApiError(936)
        message = Message(self._next_message, peer, token.peer, text, random_id, int(self.now()), conversation_id)
        self._next_message += 1
        self.messages.append(message)
        if chat is not None:
            chat.last_message = message
            chat.activity = self._touch()
        return message

    def _touch(self) -> int:
        """The next number of the sandbox-wide activity sequence (a chat's creation, a message in it)."""
        self._activity += 1
        return self._activity

    # -- calls ------------------------------------------------------------------------------------
    def _start_call(self, token: Token, params: Params) -> dict[str, Any]:
        group_id = params.integer("group_id", minimum=0)
        call = Call(str(uuid.uuid4()), secrets.token_urlsafe(24), token.peer, group_id, self.now())
        self.calls[call.call_id] = call
        short = str(random.randrange(10**8, 10**9))
        password = f"{random.randrange(10**5, 10**6)}"
        return {"call_id": call.call_id, "join_link": f"{JOIN_CALL}{call.join}",
                "ok_join_link": f"https://ok.ru/videochat/{call.join}",
                "short_credentials": {"id": short, "password": password,
                                      "link_without_password": f"https://vk.com/call/{short}",
                                      "link_with_password": f"https://vk.com/call/{short}?p={password}"}}

    def _finish_call(self, token: Token, params: Params) -> int:
        call_id = params.text("call_id", required=True) or ""
        if len(call_id) != 36:
            raise invalid("call_id", "should be 36 characters long")
        call = self.calls.get(call_id)
        if call is None:
            raise ApiError(104, "no such call")
        if call.started_by != token.peer:
            raise ApiError(15, "only who started the call can finish it")
        if call.finished_at is not None:
            if self.config.finish_finished == "ok":
                return 1
            raise ApiError(int(self.config.finish_finished), "the call is already finished")
        call.finished_at = self.now()
        return 1

    # -- lookups: conversations, users, communities -------------------------------------------------
    def _page_count(self, params: Params, maximum: int) -> int:
        """`count` (default 20) over the method's maximum: clamped, or error 100 (knob count_over_max)."""
        count = params.integer("count", minimum=0)
        if count is None:
            return 20
        if count > maximum:
            if self.config.count_over_max == "error":
                raise invalid("count", f"should be less or equal to {maximum}")
            return maximum
        return count

    def _conversations(self, token: Token, params: Params) -> dict[str, Any]:
        """The chats the caller is in, was kicked from or left, the latest activity first (creation or message)."""
        self._own_group(token, params)
        offset = params.integer("offset", minimum=0) or 0
        count = self._page_count(params, MAX_CONVERSATIONS)
        kind = params.text("filter") or "all"
        if kind not in FILTERS:
            raise invalid("filter", f"should be one of {', '.join(FILTERS)}")
        params.integer("start_message_id", minimum=0)  # accepted, not used (see docs/portals/sferum.md)
        me = token.peer
        views = [self._conversation(chat, me) for chat in self.chats.values()
                 if me in chat.members or me in chat.former]
        if kind != "all":  # no read marks, no important or unanswered marks, no archive in the sandbox
            views = []
        views.sort(key=lambda view: view[0], reverse=True)
        page = [item for _, item in views[offset:offset + count]]
        answer: dict[str, Any] = {"count": len(views), "items": page}
        if params.flag("extended"):
            requested = {f.strip() for f in (params.text("fields") or "").split(",")}
            named: list[int] = []
            for item in page:
                settings = item["conversation"]["chat_settings"]
                for peer in (settings["owner_id"], item.get("last_message", {}).get("from_id")):
                    if peer and peer not in named:
                        named.append(peer)
            answer["profiles"] = [self._profile(peer, requested) for peer in named if peer > 0]
            answer["groups"] = [self._community(-peer) for peer in named if peer < 0]
        return answer

    def _conversation(self, chat: Chat, me: int) -> tuple[int, dict[str, Any]]:
        """One chat as `me` sees it (its sort key, its item): a former member sees it as it was when they went."""
        former = chat.former.get(me) if me not in chat.members else None
        state = former.state if former else "in"
        activity = former.activity if former else chat.activity
        last = former.last_message if former else chat.last_message
        member = former is None
        admin = member and chat.is_admin(me)
        last_id = last.id if last else 0
        conversation: dict[str, Any] = {
            "peer": {"id": chat.peer_id, "type": "chat", "local_id": chat.chat_id},
            "last_message_id": last_id,
            "last_conversation_message_id": former.messages if former else chat.messages,
            "in_read": last_id, "out_read": last_id,  # the sandbox keeps no read marks: all is read
            "version": activity,
            "important": False, "unanswered": False,
            "can_write": {"allowed": member and not chat.disabled},
            "chat_settings": {
                "title": chat.title, "members_count": len(chat.members), "owner_id": chat.owner_id,
                "admin_ids": [m for m in chat.members if chat.is_admin(m)], "active_ids": [],
                "state": state, "is_group_channel": False, "is_disappearing": False, "is_service": False,
                "acl": {"can_change_info": admin, "can_change_invite_link": admin, "can_change_pin": admin,
                        "can_invite": admin, "can_promote_users": member and me == chat.owner_id,
                        "can_see_invite_link": member, "can_moderate": admin, "can_copy_chat": admin,
                        "can_call": member, "can_use_mass_mentions": member, "can_change_service_type": False},
            },
        }
        item: dict[str, Any] = {"conversation": conversation}
        if last is not None:
            item["last_message"] = {
                "id": last.id, "date": last.date, "peer_id": last.peer_id, "from_id": last.from_id,
                "text": last.text, "out": int(last.from_id == me),
                "conversation_message_id": last.conversation_message_id, "random_id": last.random_id,
                "version": last.id, "attachments": [], "fwd_messages": [], "important": False, "is_hidden": False}
        return activity, item

    def _users(self, token: Token, params: Params) -> list[dict[str, Any]]:
        """users.get: the caller's own profile without `user_ids` (a user token; others get []), else each id's."""
        given = [item.strip() for item in (params.text("user_ids") or "").split(",") if item.strip()]
        if len(given) > 1000:
            raise invalid("user_ids", "should hold at most 1000 ids")
        if not given:
            ids = [token.owner_id] if token.kind == "user" else []
        else:
            ids = []
            for item in given:
                user_id = _user_id(item)
                if user_id not in ids:
                    ids.append(user_id)
        requested = {f.strip() for f in (params.text("fields") or "").split(",")}
        return [self._profile(user_id, requested) for user_id in ids
                if self._person(user_id) is not None or self.config.users_unknown == "deleted"]

    def _communities(self) -> dict[int, str]:
        known = dict(self.config.communities)
        for token in self.config.tokens.values():
            if token.kind == "group":
                known.setdefault(token.owner_id, f"Сообщество {token.owner_id}")
        return known

    def _community(self, group_id: int) -> dict[str, Any]:
        name = self._communities().get(group_id, f"Сообщество {group_id}")
        return {"id": group_id, "name": name, "screen_name": f"club{group_id}", "is_closed": 0, "type": "group",
                **{f"photo_{size}": COMMUNITY_PHOTO.format(size=size) for size in (50, 100, 200)}}

    def _groups_by_id(self, token: Token, params: Params) -> Any:
        """groups.getById: the communities named (a community token's own without any), unknown ones skipped;
        none known is error 100. From `groups_object_from` on the answer is {groups, profiles}, below a list."""
        given = [item.strip() for name in ("group_ids", "group_id")
                 for item in (params.text(name) or "").split(",") if item.strip()]
        if not given:
            if token.kind != "group":
                raise missing("group_ids")
            given = [str(token.owner_id)]
        known = self._communities()
        ids: list[int] = []
        for item in given:
            group_id = _group_id(item)
            if group_id in known and group_id not in ids:
                ids.append(group_id)
        if not ids:
            raise invalid("group_ids", "is undefined")
        groups = [self._community(group_id) for group_id in ids]
        if _version(params.text("v") or "") < _version(self.config.groups_object_from):
            return groups
        return {"groups": groups, "profiles": []}

    # -- what the admin does by hand ----------------------------------------------------------------
    def admin(self, action: str, args: dict[str, Any]) -> Any:
        """One admin action (ADMIN_ACTIONS), under the lock every request takes."""
        handler = ADMIN_ACTIONS.get(action)
        if handler is None:
            raise KeyError(f"unknown sandbox admin action {action!r}; known: {', '.join(sorted(ADMIN_ACTIONS))}")
        with self.lock:
            return handler(self, **args)

    def add_people(self, people: list[dict[str, Any]]) -> int:
        for person in people:
            self.people[int(person["id"])] = Person(**person)
        return len(self.people)

    def add_token(self, name: str, kind: TokenKind, owner_id: int, value: str | None = None) -> str:
        if kind not in TOKEN_KINDS:
            raise ValueError("kind must be user, group or service")
        token = Token(kind, int(owner_id), value or _secret())
        self.config.tokens[name] = token
        return token.value

    def expire_token(self, name: str, expired: bool = True) -> bool:
        self.config.tokens[name].expired = expired
        return expired

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time (all of them checked before any is set)."""
        known = self.config.knobs()
        checked = {}
        for name, value in knobs.items():
            if name not in known or name == "admin_token":
                raise KeyError(f"unknown knob {name!r}; known: {', '.join(sorted(known))}")
            checked[name] = _knob(name, known[name], value)
        for name, value in checked.items():
            setattr(self.config, name, value)
            if name == "clock":
                self.clock = value
        return self.config.knobs()

    def set_errors(self, rules: list[dict[str, Any]] | None = None, clear: bool = False) -> int:
        if clear:
            self.rules.rules.clear()
        self.rules.rules.extend(ErrorRule(**rule) for rule in rules or [])
        return len(self.rules.rules)

    def disable_chat(self, chat_id: int, disabled: bool = True) -> bool:
        self._chat(int(chat_id)).disabled = disabled
        return disabled

    def chat_admin(self, chat_id: int, member_id: int, is_admin: bool = True) -> bool:
        """What a chat's creator does in VK's own UI: make a member an admin (or no longer one)."""
        member = self._chat(int(chat_id)).members.get(int(member_id))
        if member is None:
            raise KeyError(f"{member_id} is not in chat {chat_id}")
        member.is_admin = is_admin
        return is_admin

    def reset_counts(self) -> None:
        for counter in (self.by_method, self.by_token, self.inner, self.errors, self.rules.fired):
            counter.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything the sandbox holds, for the people trying it and for the tests."""
        with self.lock:
            return {
                "now": self.now(),
                "people": [asdict(p) for p in self.people.values()],
                "communities": {str(k): v for k, v in self._communities().items()},
                "tokens": {name: {"kind": t.kind, "owner_id": t.owner_id, "expired": t.expired, "value": t.value}
                           for name, t in self.config.tokens.items()},
                "chats": [{"chat_id": c.chat_id, "peer_id": c.peer_id, "title": c.title, "owner_id": c.owner_id,
                           "disabled": c.disabled, "activity": c.activity,
                           "former": {str(m): f.state for m, f in c.former.items()},
                           "invite_link": f"https://vk.me/join/{c.invite}" if c.invite else None,
                           "admins": [m for m in c.members if c.is_admin(m)],
                           "members": [asdict(m) for m in c.members.values()]} for c in self.chats.values()],
                "calls": [asdict(c) for c in self.calls.values()],
                "messages": [asdict(m) for m in self.messages],
                "requests": {"by_method": dict(self.by_method), "by_token": dict(self.by_token),
                             "in_execute": dict(self.inner)},
                "errors": {str(code): n for code, n in self.errors.items()},
                "injected": {str(code): n for code, n in self.rules.fired.items()},
                "knobs": {k: v for k, v in self.config.knobs().items() if k != "admin_token"},
            }


CHOICES = {"count_over_max": ("clamp", "error"), "main_roles": ("string", "list"), "users_unknown": ("deleted", "omit")}


def _wrong_kind(token: Token) -> ApiError:
    """A method the token's kind may not call: VK's own codes (errors.json) and the messages clients report."""
    if token.kind == "service":
        return ApiError(28, "method is unavailable with service token.")
    return ApiError(27, "method is unavailable with group auth.")


def _version(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in value.split("."))
    except ValueError:
        return ()


def _user_id(item: str) -> int:
    """One of users.get's `user_ids`: a number or `id<number>`; anything else (a screen name: the sandbox knows
    none, a negative or zero id) is error 113."""
    digits = item[2:] if item.startswith("id") else item
    if digits.isdigit() and int(digits) > 0:
        return int(digits)
    raise ApiError(113, f"{item} is not a user id")


def _group_id(item: str) -> int:
    """One of groups.getById's ids: a number or `club<number>` (also public, event); anything else names no
    community the sandbox knows (0)."""
    for prefix in ("club", "public", "event"):
        if item.startswith(prefix):
            item = item[len(prefix):]
            break
    return int(item) if item.isdigit() else 0


def _knob(name: str, current: Any, value: Any) -> Any:
    """A knob's new value in the type of its default, or ValueError: a typo fails loudly, not as a 500 later."""
    if name in ("add_existing", "finish_finished"):
        if value == "ok":
            return value
        return int(value)
    if name == "clock":
        return None if value is None else float(value)
    if name in ("min_version", "groups_object_from"):
        if len(_version(str(value))) != 2:
            raise ValueError(f"{name} must be a version like 5.199")
        return str(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}")
    return str(value)


ADMIN_ACTIONS: dict[str, Callable[..., Any]] = {
    "add_people": VkApi.add_people,
    "add_token": VkApi.add_token,
    "expire_token": VkApi.expire_token,
    "clock": VkApi.move_clock,
    "set": VkApi.set_knobs,
    "errors": VkApi.set_errors,
    "disable_chat": VkApi.disable_chat,
    "chat_admin": VkApi.chat_admin,
    "reset_counts": VkApi.reset_counts,
    "state": VkApi.snapshot,
}
