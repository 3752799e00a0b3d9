"""The Университет 2035 LRS (an xAPI 1.0.3 Learning Record Store) over httpx: HTTP Basic key:secret, JSON, the
`X-Experience-API-Version` header on every request (docs/portals/u2035.md).

What a caller does with an answer is the dispatcher's business, so `post` hands back every answer that says
something about the statements (200, 204, 400, 409, 413, 422, 429) as a `PostAnswer` and raises only for what is
not about them:

- LrsRefused (401, 403): the key or secret is wrong, or lacks the scope; every call will fail the same way, so a
  dispatcher stops and kills no statement.
- LrsUnavailable (no connection, a timeout, a lost answer, 5xx): worth another try later. `sent` tells whether the
  request may have reached the LRS: then the statements may be stored, and the resend must carry the same ids
  (an LRS answers a known id with 204 or leaves it out of the 200's list: never stored twice).
- LrsFailed: any other status (404 or 405 on POST: the base URL is not an LRS's); neither the data's fault nor
  worth a quick retry.

The client does not retry by itself: a POST's answer (which ids were new) matters to the caller, the outbox resends
with the same ids and its own backoff, and a connection check wants the first answer, not the fourth.

Peers differ (tests/integration/portals/test_u2035_peers.py has what ralph 5.1 does): Learning Locker answers
errors as `{errorId, message}`, ralph as `{detail}` and ralph's schema errors as 422; ralph sends no
`X-Experience-API-Version` back (never required here); ralph answers a GET by an unknown `statementId` with
200 `{"statements": []}` where the spec says 404 (both are None here).
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from bufsync import tls
from bufsync.secrets import redact, register

VERSION = "1.0.3"
BODY_KEPT = 500          # characters of an answer's body kept for messages and last_error
POST_ANSWERED = frozenset({200, 204, 400, 409, 413, 422, 429})  # answers about the statements: the caller's to read

# the request may have reached the LRS (and been done there) and only the answer is missing
_ANSWER_LOST = (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class LrsError(Exception):
    """Any failure of an LRS call (the subclasses say what to do about it)."""

    def __init__(self, text: str, *, status: int | None = None, message: str = "", body: str = "") -> None:
        super().__init__(redact(text))
        self.status = status
        self.message = redact(message)
        self.body = redact(body)


class LrsRefused(LrsError):
    """401/403: the LRS refused the key:secret (or its scopes), not the statements; `message` is the LRS's own."""


class LrsUnavailable(LrsError):
    """No connection, a timeout, a lost answer or a 5xx: worth another try later.

    sent: the request may have reached the LRS and been done there (the answer was lost, or the LRS failed while
    storing): the resend must carry the same statement ids. False when it never left (connection refused, a
    connect timeout). retry_after: seconds the LRS asked to wait (a 503's Retry-After), if it said."""

    def __init__(self, text: str, *, sent: bool, status: int | None = None, message: str = "", body: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(text, status=status, message=message, body=body)
        self.sent = sent
        self.retry_after = retry_after


class LrsFailed(LrsError):
    """Any other answer (404/405 on POST: the base URL does not lead to an LRS; 400 to a GET): a setting or a
    programming error, not something a statement or a quick retry can change."""


@dataclass(frozen=True)
class PostAnswer:
    """One POST /statements answer the caller interprets.

    status: 200 (stored; `ids` are the new ones, in input order: ralph leaves out ids it already had), 204 (all
    were known and identical: nothing stored anew, ralph sends no body), 400 (a statement is invalid, or an id
    repeats in the batch), 409 (a known id holds a different statement), 413 (too large: split the batch),
    422 (ralph: a statement fails its schema), 429 (too many requests: wait `retry_after`).
    ids: the ids the LRS listed (possibly empty, possibly only part of the batch).
    message: the LRS's own error text (`message` of `{errorId, message}`, ralph's `detail`), "" on success.
    retry_after: seconds from the Retry-After header, None without one.
    body: the answer's text, cut to BODY_KEPT characters."""

    status: int
    ids: list[str] = field(default_factory=list)
    message: str = ""
    retry_after: float | None = None
    body: str = ""

    @property
    def stored(self) -> bool:
        """The LRS holds every statement of the batch now (200, or 204 when it had them all already)."""
        return self.status in (200, 204)


class LrsClient:
    """One LRS endpoint and key. `base_url` is the xAPI root (`https://lrs-external.u2035test.ru/data/xAPI`,
    ralph's `http://127.0.0.1:PORT/xAPI`); a URL ending in /statements is taken as well. `requests` counts the
    HTTP requests sent."""

    def __init__(self, base_url: str, key: str, secret: str, *, timeout: float = 30.0,
                 version: str = VERSION) -> None:
        register(secret)
        base = base_url.rstrip("/")
        if base.endswith("/statements"):
            base = base[: -len("/statements")]
        self.base = base
        self.statements_url = f"{base}/statements"
        self.version = version
        self.requests = 0
        self._http = httpx.Client(timeout=timeout, verify=tls.verify(), auth=httpx.BasicAuth(key, secret),
                                  headers={"X-Experience-API-Version": version, "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LrsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------------------------
    def post(self, statements: list[dict[str, Any]]) -> PostAnswer:
        """POST a batch (each statement should carry its own `id` and `timestamp`: without a timestamp the LRS
        stamps one, and ralph then answers a resend of the same statement with 409)."""
        # serialised here, not by httpx: UTF-8 as is (Cyrillic names stay short), and no NaN, which is not JSON
        content = json.dumps(statements, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        answer = self._send("POST", content=content, headers={"Content-Type": "application/json"})
        text = answer.text
        if answer.status_code not in POST_ANSWERED:
            self._raise(answer, "POST")
        ids: list[str] = []
        parsed = _json(text)
        if answer.status_code == 200 and isinstance(parsed, list):
            ids = [str(i) for i in parsed]
        return PostAnswer(status=answer.status_code, ids=ids,
                          message="" if answer.status_code in (200, 204) else _message(parsed, text),
                          retry_after=_retry_after(answer), body=redact(text[:BODY_KEPT]))

    def get(self, statement_id: str) -> dict[str, Any] | None:
        """The statement the LRS holds under this id; None when it has none (a 404, or ralph's empty list)."""
        answer = self._send("GET", params={"statementId": statement_id})
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            self._raise(answer, "GET")
        parsed = _json(answer.text)
        if isinstance(parsed, dict) and isinstance(parsed.get("statements"), list) and "id" not in parsed:
            found = [s for s in parsed["statements"] if isinstance(s, dict) and s.get("id") == statement_id]
            return found[0] if found else None
        if isinstance(parsed, dict):
            return parsed
        raise LrsFailed(f"GET statementId: not a statement: {answer.text[:BODY_KEPT]}", status=200,
                        body=answer.text[:BODY_KEPT])

    def recent(self, limit: int = 1) -> dict[str, Any]:
        """GET /statements?limit=N: `{statements, more}`. The cheapest call that needs valid credentials (the
        connection check's first stage); ralph caps `limit` at 100."""
        answer = self._send("GET", params={"limit": str(limit)})
        if answer.status_code != 200:
            self._raise(answer, "GET")
        parsed = _json(answer.text)
        if not isinstance(parsed, dict):
            raise LrsFailed(f"GET statements: not a statement result: {answer.text[:BODY_KEPT]}", status=200,
                            body=answer.text[:BODY_KEPT])
        return parsed

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _send(self, method: str, *, content: bytes | None = None, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        self.requests += 1
        try:
            answer = self._http.request(method, self.statements_url, content=content, params=params, headers=headers)
        except httpx.HTTPError as exc:
            sent = isinstance(exc, _ANSWER_LOST)
            raise LrsUnavailable(f"{method} {self.statements_url}: {type(exc).__name__}: {exc}"
                                 + ("; the LRS may have stored it" if sent and method == "POST" else ""),
                                 sent=sent) from None
        if answer.status_code >= 500:
            text = answer.text
            raise LrsUnavailable(f"{method} {self.statements_url}: HTTP {answer.status_code}: "
                                 f"{_message(_json(text), text)}", sent=True, status=answer.status_code,
                                 message=_message(_json(text), text), body=text[:BODY_KEPT],
                                 retry_after=_retry_after(answer))
        if answer.status_code in (401, 403):
            self._raise(answer, method)
        return answer

    def _raise(self, answer: httpx.Response, method: str) -> NoReturn:
        text = answer.text
        message = _message(_json(text), text)
        kind = LrsRefused if answer.status_code in (401, 403) else LrsFailed
        raise kind(f"{method} {self.statements_url}: HTTP {answer.status_code}: {message}",
                   status=answer.status_code, message=message, body=text[:BODY_KEPT])


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _message(parsed: Any, text: str) -> str:
    """The LRS's own words: `message` (xAPI, Learning Locker), `detail` (ralph: a text, or FastAPI's list of
    schema errors), else the body itself, cut."""
    if isinstance(parsed, dict):
        for key in ("message", "detail", "error", "errorMessage"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value[:BODY_KEPT]
            if isinstance(value, list) and value:
                return "; ".join(_schema_error(v) for v in value)[:BODY_KEPT]
    return text.strip()[:BODY_KEPT]


def _schema_error(error: Any) -> str:
    if isinstance(error, dict) and "msg" in error:
        where = ".".join(str(p) for p in error.get("loc") or [])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return str(error)


def _retry_after(answer: httpx.Response) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date from now (never negative); None without a usable one."""
    value = answer.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
