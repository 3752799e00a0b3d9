"""The VK API as Сферум uses it (docs/portals/sferum.md): form POSTs to /method/<name>, VK's errors typed by
what a caller must do about them, VK's rate limit kept on the client's side, `execute` bundles.

- Retried, with growing waits (tenacity), for any call: 6 (too many requests per second), 9 (flood control),
  29 (a method's quota): VK did not execute the request. 10 (internal server error) and a lost answer are
  retried only for a call that is safe to repeat (`safe=True`: reads, removals, edits): a create
  (messages.createChat, calls.start) may have happened, so it raises AnswerLost and the caller looks it up.
- TokenRefused (5, 1117): the token is wrong or expired; a dispatcher stops and kills no item.
- CaptchaNeeded (14): a person must answer it in VK; said so, never retried.
- Every other code is VkError with the code and VK's message, and a Russian reason for `last_error`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from bufsync import tls

log = logging.getLogger("bufsync.sferum")
VERSION = "5.199"
EXECUTE_MAX = 25            # calls VK runs in one `execute`
BACKOFF = 0.5               # seconds before the first retry of a call; the waits grow from it
CHAT_PEER = 2_000_000_000   # a chat's peer_id is this plus its chat_id
NOT_EXECUTED = (6, 9, 29)   # VK refused before doing anything: any call may be sent again
AMBIGUOUS = (10,)           # VK may have done it: only a call safe to repeat is sent again
REASONS = {  # what a 1C developer or an operator reads in last_error (the code stays beside it)
    15: "доступ запрещён", 27: "метод недоступен с токеном сообщества: нужен токен сотрудника",
    100: "неверный параметр", 103: "превышен лимит (например, участников беседы)", 104: "не найдено",
    113: "неверный идентификатор пользователя", 917: "нет доступа к беседе", 925: "токен не администратор беседы",
    927: "беседа не существует", 935: "пользователя нет в беседе", 936: "пользователь VK не найден",
    945: "беседа отключена", 946: "беседа не поддерживается", 947: "пользователь не может быть добавлен",
}


class VkError(Exception):
    """One VK API error: `code` and VK's `message`; `reason` is the Russian text with the code."""

    def __init__(self, method: str, code: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{method}: VK error {code}: {message}")
        self.method, self.code, self.message, self.extra = method, code, message, extra or {}

    @property
    def reason(self) -> str:
        text = REASONS.get(self.code, self.message)
        return f"VK {self.method}: {text} (VK {self.code}: {self.message})"


class TokenRefused(VkError):
    """5 or 1117: the token is wrong, revoked or expired; nothing is worth another try until it is replaced."""


class CaptchaNeeded(VkError):
    """14: VK wants a person to solve a captcha (captcha_sid, captcha_img in `extra`)."""


class AnswerLost(Exception):
    """A call that is not safe to repeat got no answer (or VK's internal error): whether it took effect is
    unknown, so the caller reads back (a chat by its title and members) instead of sending it again."""

    def __init__(self, method: str, cause: str) -> None:
        super().__init__(f"{method}: no answer ({cause}); whether VK did it is unknown: read back before a retry")
        self.method = method


def typed(method: str, error: dict[str, Any]) -> VkError:
    code = int(error.get("error_code") or 0)
    message = str(error.get("error_msg") or "")
    extra = {k: v for k, v in error.items() if k not in ("error_code", "error_msg", "request_params")}
    kind = TokenRefused if code in (5, 1117) else CaptchaNeeded if code == 14 else VkError
    return kind(method, code, message, extra)


class RateLimit:
    """At most `rate` requests in any second, for every thread of this client (VK: 3 a second on a user token,
    20 on a community's). `clock` and `sleep` are the test's to drive."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            while True:
                now = self.clock()
                while self._sent and now - self._sent[0] >= 1.0:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    self._sent.append(now)
                    return
                self.sleep(1.0 - (now - self._sent[0]))


class Limiter(Protocol):
    def wait(self) -> None: ...


class _Again(Exception):
    """A refusal worth another send (the error inside)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class VkClient:
    """One token's client. `attempts` bounds the sends of one call; waits grow from `backoff` seconds."""

    def __init__(self, url: str, token: str, *, version: str = VERSION, rate: int = 3, timeout: float = 30.0,
                 attempts: int = 4, backoff: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, limit: Limiter | None = None) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.version = version
        # `limit`: one shared with other processes using the token (bufsync.queue.limiter); else this client's own
        self.limit: Limiter = limit if limit is not None else RateLimit(rate, clock, sleep)
        self.attempts, self.sleep = attempts, sleep
        self.backoff = BACKOFF if backoff is None else backoff  # read now: a test's sandbox may shorten it
        self.http = httpx.Client(timeout=timeout, verify=tls.verify())
        self.requests = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> VkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None, *, safe: bool = True) -> Any:
        """The method's `response`; `safe`: the call may be repeated when its answer is lost."""
        return self._sent(method, params or {}, safe).get("response")

    def _sent(self, method: str, params: dict[str, Any], safe: bool) -> dict[str, Any]:
        """The whole answer of one request, sent again while VK did nothing (and, when safe, when the answer was
        lost or VK failed inside)."""
        retrying = Retrying(stop=stop_after_attempt(self.attempts), reraise=True, sleep=self.sleep,
                            wait=wait_exponential(multiplier=self.backoff, max=30),
                            retry=retry_if_exception(lambda e: isinstance(e, _Again)),
                            before_sleep=lambda state: log.warning("VK %s: %s; sending again", method,
                                                                   state.outcome.exception() if state.outcome
                                                                   else "?"))
        try:
            for attempt in retrying:
                with attempt:
                    return self._send(method, params, safe)
        except _Again as again:
            raise again.cause from None
        raise AssertionError("unreachable: tenacity returns or raises")

    def _send(self, method: str, params: dict[str, Any], safe: bool) -> dict[str, Any]:
        self.limit.wait()
        form = {k: _form(v) for k, v in params.items() if v is not None}
        form.update(v=self.version, access_token=self._token)
        self.requests += 1
        try:
            answer = self.http.post(f"{self.url}/method/{method}", data=form)
            body: dict[str, Any] = answer.json()
        except (httpx.TransportError, ValueError) as exc:
            cause = f"{type(exc).__name__}: {exc}".replace(self._token, "***")
            if safe:
                raise _Again(AnswerLost(method, cause)) from None
            raise AnswerLost(method, cause) from None
        if "error" in body:
            error = typed(method, body["error"])
            if error.code in NOT_EXECUTED or (safe and error.code in AMBIGUOUS):
                raise _Again(error)
            if error.code in AMBIGUOUS:
                raise AnswerLost(method, f"VK error {error.code}: {error.message}")
            raise error
        return body

    def execute(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Many calls in `execute` bundles of EXECUTE_MAX: each call's response, or its VkError, in order.
        Only for calls safe to repeat: a bundle VK refused before running it (6, 9, 29), or whose answer was lost,
        is sent again whole, as `call` does for a safe call."""
        out: list[Any] = []
        for start in range(0, len(calls), EXECUTE_MAX):
            bundle = calls[start:start + EXECUTE_MAX]
            code = "return [" + ",".join(f"API.{m}({json.dumps(p, ensure_ascii=False)})" for m, p in bundle) + "];"
            # `execute` keeps execute_errors beside the response: the whole answer is wanted
            answer = self._sent("execute", {"code": code}, True)
            failures = iter(answer.get("execute_errors") or [])
            for (method, _), result in zip(bundle, answer.get("response") or [], strict=True):
                if result is False:
                    failure = next(failures, {"error_code": 0, "error_msg": "failed inside execute"})
                    out.append(typed(method, failure))
                else:
                    out.append(result)
        return out


def _form(value: Any) -> str:
    """A parameter as VK takes it in a form: lists comma-joined, booleans 1/0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set)):
        return ",".join(str(v) for v in value)
    return str(value)
