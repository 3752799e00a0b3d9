"""One Moodle REST endpoint over httpx: PHP-style form encoding, typed errors, safe retries.

Reads and requests that never left the machine are retried with backoff (the policy of retry.py);
a write whose request was sent but whose answer was lost raises OutcomeUnknown instead of being
resent here — the client resends it by the same policy, reading back first where that is needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import httpx

from bufsync import secrets, tls
from bufsync.adapters.moodle import retry
from bufsync.adapters.moodle.errors import (
    MoodleConfigError,
    MoodleError,
    MoodleUnavailable,
    OutcomeUnknown,
    http_status_text,
)
from bufsync.adapters.moodle.retry import ATTEMPTS, RetryPolicy
from bufsync.adapters.moodle.retry import Transient as _Transient

log = logging.getLogger("bufsync.moodle")
REST_PATH = "/webservice/rest/server.php"
PLUGINFILE_PATH = "/webservice/pluginfile.php/"
PLUGINFILE = "webservice/pluginfile.php"  # the `function` of a download in stats, errors and logs
CHUNK = 256 * 1024  # bytes read from a download at a time
CONTROL_FIELDS = 3  # wstoken, wsfunction, moodlewsrestformat


def encode(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """{'users': [{'username': 'x'}]} -> [('users[0][username]', 'x')]; bools as 0/1; None omitted."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "1" if value else "0"))
        else:
            pairs.append((prefix, str(value)))

    walk("", params)
    return pairs


@dataclass
class CallStats:
    """Counted under a lock: several calls may be in flight (moodle.concurrency)."""

    calls: int = 0
    retries: int = 0
    seconds: float = 0.0
    by_function: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def called(self, function: str) -> None:
        with self._lock:
            self.calls += 1
            self.by_function[function] = self.by_function.get(function, 0) + 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def spent(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


class Transport:
    def __init__(self, url: str, token: str, *, timeout: float = 30.0, verify: bool = True,
                 attempts: int = ATTEMPTS, backoff: float | None = None, client: httpx.Client | None = None) -> None:
        self.endpoint = url.rstrip("/") + REST_PATH
        self._token = token
        secrets.register(token)  # whoever made this transport, no log line or error text carries its token
        self.attempts = attempts
        self.backoff = retry.BACKOFF if backoff is None else backoff  # read now: a test's sandbox may shorten it
        self.stats = CallStats()
        self._timeout, self._verify = timeout, verify
        self._http = client
        self._opening = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        """Opened at the first call: a run with nothing to do neither imports httpx nor opens a connection."""
        with self._opening:
            if self._http is None:
                import httpx
                self._http = httpx.Client(
                    timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)),
                    verify=tls.verify(self._verify),
                    limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
                    headers={"User-Agent": "bufsync"})
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, function: str, params: Mapping[str, Any] | None = None, *, write: bool = False) -> Any:
        """The decoded JSON result; MoodleError for a Moodle exception body."""
        fields = [("wstoken", self._token), ("wsfunction", function), ("moodlewsrestformat", "json")]
        fields += encode(params or {})
        return self.call_fields(function, fields, write=write)

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of this endpoint (retry.py): its attempts and backoff, for the client's writes too."""
        return RetryPolicy(attempts=self.attempts, backoff=self.backoff)

    def call_fields(self, function: str, fields: Iterable[tuple[str, str]], *, write: bool) -> Any:
        import httpx
        body = str(httpx.QueryParams(list(fields)))
        return self.policy.transient(function, lambda: self._once(function, body, write), self.stats.retried)

    def _once(self, function: str, body: str, write: bool) -> Any:
        import httpx
        started = time.perf_counter()
        self.stats.called(function)
        try:
            response = self._client.post(self.endpoint, content=body.encode("ascii"),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(f"cannot connect to {self._host()}: {type(exc).__name__}") from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if write:
                raise OutcomeUnknown(function, exc) from None
            raise _Transient(f"no answer from {self._host()}: {type(exc).__name__}") from None
        finally:
            self.stats.spent(time.perf_counter() - started)
        status = response.status_code
        if status >= 500:
            if write:
                # PHP may have committed before failing; the caller must read back
                raise OutcomeUnknown(function, status=status)
            raise _Transient(f"{self._host()} answered {http_status_text(status)}", status)
        if status in (401, 403, 404):
            # Moodle's REST endpoint answers 403 with no body when web services or the REST protocol are off
            why = ("web services or the REST protocol are disabled on the site: enable both under Site "
                   "administration > Server > Web services > Overview" if status in (401, 403) else
                   "there is no Moodle web-service endpoint at this address: BUFSYNC_MOODLE_URL (moodle.url) "
                   "must be the site's root URL, the one in front of /webservice/rest/server.php")
            raise MoodleConfigError(f"{function}: {self._host()}{REST_PATH} answered {http_status_text(status)}: "
                                    f"{why}")
        if status != 200:
            raise MoodleUnavailable(f"{function}: {self._host()} answered {http_status_text(status)} "
                                    "(is this the Moodle site URL?)", status=status)
        try:
            result = response.json()
        except ValueError:
            snippet = response.text[:120].replace("\n", " ")
            raise MoodleUnavailable(f"{function}: {self._host()} did not answer Moodle JSON: {snippet!r}") from None
        if isinstance(result, dict) and "exception" in result and "message" in result:
            raise MoodleError(result["exception"], result.get("errorcode"), result["message"],
                              result.get("debuginfo"), function)
        return result

    def download(self, fileurl: str, sink: BinaryIO) -> tuple[int, str]:
        """A file Moodle listed (a submission's fileurl), streamed into sink: (bytes written, SHA-256 hex).

        The token goes in the POST body (webservice/pluginfile.php reads `token` from GET or POST), so it is in
        no URL that httpx or a proxy logs; it is only ever sent to this transport's own site. A failure before
        Moodle answers, or a 5xx, is retried like a read, from the start (the sink is rewound: it must be
        seekable, else the first failure after bytes were written is final). Moodle's refusals raise MoodleError
        (function webservice/pluginfile.php): invalidtoken, accessexception (the service may not download files),
        invalidrecord (no such submission or context), filenotfound (HTTP 404)."""
        url = self.pluginfile_url(fileurl)
        start = sink.tell() if sink.seekable() else None

        def once() -> tuple[int, str]:
            if start is not None:
                sink.seek(start)
                sink.truncate()
            return self._download_once(url, sink, start is not None)

        return self.policy.transient(PLUGINFILE, once, self.stats.retried)

    def pluginfile_url(self, fileurl: str) -> str:
        """fileurl as webservice/pluginfile.php on this transport's site; ValueError for another site's URL
        (the token must never leave for it). A /pluginfile.php/ URL (as the web pages give) is mapped to the
        web-service one, which takes a token instead of a session."""
        from urllib.parse import urlsplit
        site = self._host()
        if fileurl.startswith(site + "/pluginfile.php/"):
            fileurl = site + "/webservice" + fileurl[len(site):]
        if not fileurl.startswith(site + PLUGINFILE_PATH):
            where = urlsplit(fileurl)
            raise ValueError(f"not a file of {site}: {where.scheme}://{where.netloc}{where.path}")
        return fileurl

    def _download_once(self, url: str, sink: BinaryIO, rewindable: bool) -> tuple[int, str]:
        import hashlib

        import httpx
        started = time.perf_counter()
        self.stats.called(PLUGINFILE)
        written = 0
        digest = hashlib.sha256()
        try:
            with self._client.stream("POST", url, data={"token": self._token}) as response:
                status = response.status_code
                if status >= 500:
                    raise _Transient(f"{self._host()} answered {http_status_text(status)}", status)
                if "content-disposition" not in response.headers:
                    # Moodle's AJAX error body: {error, errorcode, stacktrace, debuginfo, reproductionlink}
                    response.read()
                    raise _pluginfile_error(response.status_code, response.text, self._host())
                for chunk in response.iter_bytes(CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(f"cannot connect to {self._host()}: {type(exc).__name__}") from None
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if written and not rewindable:
                raise MoodleUnavailable(f"{PLUGINFILE}: the download broke off after {written} bytes "
                                        f"({type(exc).__name__}) and the sink cannot be rewound") from None
            raise _Transient(f"no whole answer from {self._host()}: {type(exc).__name__}") from None
        finally:
            self.stats.spent(time.perf_counter() - started)
        return written, digest.hexdigest()

    def _host(self) -> str:
        return self.endpoint.rsplit(REST_PATH, 1)[0]


def _pluginfile_error(status: int, text: str, host: str) -> Exception:
    """Moodle's answer to a download it refused, as MoodleError; anything else (a proxy's page) MoodleUnavailable."""
    import json
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "error" not in body:
        snippet = text[:120].replace("\n", " ")
        return MoodleUnavailable(f"{PLUGINFILE}: {host} answered {http_status_text(status)} without the file: "
                                 f"{snippet!r}", status=status)
    exception = "core\\exception\\moodle_exception"
    if body.get("errorcode") == "accessexception":
        exception = "webservice_access_exception"
    elif body.get("errorcode") == "invalidrecord":
        exception = "dml_missing_record_exception"
    return MoodleError(exception, body.get("errorcode"), str(body.get("error") or ""), body.get("debuginfo"),
                       PLUGINFILE)
