"""The one retry policy (retry.py): how often each kind of retry sends, what it logs, when it gives up.

Against a scripted Moodle where the exact outcome of each write matters (a create committed in part, then its
answer lost), and against the sandbox over real HTTP for the faults it can inject.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleUnavailable, OutcomeUnknown
from bufsync.adapters.moodle.retry import WRITE_ATTEMPTS, RetryPolicy, Transient, gave_up
from bufsync.adapters.moodle.transport import Transport
from tests.integration.adapters.moodle.conftest import TOKEN
from tests.integration.adapters.moodle.test_client import people

GAVE_UP_503 = (
    "core_user_create_users: Moodle answered HTTP 503 (Service Unavailable) to 3 attempts (each resent only after "
    "reading back what Moodle holds, or as a full-state write that is safe to resend); whether the last one was "
    "applied is unknown. Nothing unconfirmed was marked ok: the next run reads Moodle first and finishes the rest")


class Scripted(Transport):
    """Moodle's users as a dict; each write ends as the next scripted outcome: "ok", "lost" (committed, the
    answer lost), "unsent" (503 before anything was written) or ("partial", n) (n committed, the answer lost)."""

    def __init__(self, *outcomes: Any) -> None:
        super().__init__("http://scripted.invalid", TOKEN, backoff=0.001)
        self.outcomes = list(outcomes)
        self.users: dict[str, int] = {}
        self.writes: list[tuple[str, list[str]]] = []
        self.reads: list[list[str]] = []
        self._lock = threading.Lock()

    def call(self, function: str, params: dict[str, Any] | None = None, *, write: bool = False) -> Any:
        params = params or {}
        with self._lock:
            if function == "core_user_get_users_by_field":
                self.reads.append(list(params["values"]))
                return [{"id": self.users[name], "username": name, "idnumber": f"EXT-u-{int(name[1:])}"}
                        for name in params["values"] if name in self.users]
            names = [str(u.get("username", u.get("id"))) for u in params["users"]]
            self.writes.append((function, names))
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            if outcome == "unsent":
                raise OutcomeUnknown(function, status=503)
            committed = names[:outcome[1]] if isinstance(outcome, tuple) else names
            if function == "core_user_create_users":
                for name in committed:
                    assert name not in self.users, f"{name} created twice"
                    self.users[name] = 100 + len(self.users)
            if outcome != "ok":
                raise OutcomeUnknown(function, TimeoutError())
            if function == "core_user_create_users":
                return [{"id": self.users[name], "username": name} for name in names]
            return {"warnings": []}


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- creates: read back, then send only what is missing ---------------------------------------------------------

def test_a_create_lost_twice_is_read_back_twice_and_only_the_missing_rest_sent(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    transport = Scripted(("partial", 2), "unsent", "ok")
    results = MoodleClient(transport).create_users(people(5))
    assert [r.ok for r in results] == [True] * 5
    assert [r.remote_id for r in results] == [transport.users[f"u{i:05d}"] for i in range(5)]
    assert [len(names) for _, names in transport.writes] == [5, 3, 3]  # the two created first never again
    assert transport.writes[1][1] == ["u00002", "u00003", "u00004"]
    assert [len(names) for names in transport.reads] == [5, 3]  # each resend after reading back
    said = warnings(caplog)
    assert len(said) == 4, said
    assert said[0].endswith("; reading back 5 users by username") and "TimeoutError" in said[0]
    assert re.fullmatch(r"core_user_create_users: 3 not found on reading back: only those are sent again "
                        r"\(1 of 2\) in \d+\.\d s", said[1]), said
    assert said[2].endswith("; reading back 3 users by username") and "HTTP 503" in said[2]
    assert re.search(r"only those are sent again \(2 of 2\) in \d+\.\d s$", said[3]), said


def test_a_create_found_whole_on_reading_back_is_not_sent_again() -> None:
    transport = Scripted("lost")
    results = MoodleClient(transport).create_users(people(4))
    assert all(r.ok for r in results) and len(transport.users) == 4
    assert len(transport.writes) == 1 and len(transport.reads) == 1


def test_a_create_never_confirmed_gives_up_after_three_sends_with_the_status() -> None:
    transport = Scripted("unsent", "unsent", "unsent", "ok")
    with pytest.raises(MoodleUnavailable) as err:
        MoodleClient(transport).create_users(people(3))
    assert str(err.value) == GAVE_UP_503 and err.value.status == 503
    assert len(transport.writes) == WRITE_ATTEMPTS == 3 and len(transport.reads) == 3
    assert transport.users == {}


def test_the_last_read_back_can_still_settle_a_create() -> None:
    """The third answer is lost too, but the third send was committed: found on reading back, no give-up."""
    transport = Scripted("unsent", "unsent", "lost")
    results = MoodleClient(transport).create_users(people(3))
    assert all(r.ok for r in results) and len(transport.users) == 3
    assert len(transport.writes) == 3 and len(transport.reads) == 3


# -- full-state writes: the same state sent again ---------------------------------------------------------------

def test_a_lost_answer_on_an_update_is_resent_exactly_once(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    transport = Scripted("lost", "ok")
    results = MoodleClient(transport).update_users([{"id": 7, "city": "Казань"}, {"id": 8, "city": "Омск"}])
    assert [r.ok for r in results] == [True, True]
    assert transport.writes == [("core_user_update_users", ["7", "8"])] * 2 and transport.reads == []
    said = warnings(caplog)
    assert len(said) == 1 and re.fullmatch(
        r"core_user_update_users: no answer came \(TimeoutError\) after the request was sent; whether it was "
        r"applied is unknown; the same full state is sent again \(1 of 2\) in \d+\.\d s", said[0]), said


def test_an_update_never_confirmed_gives_up_after_three_sends() -> None:
    transport = Scripted("lost", "lost", "lost", "ok")
    with pytest.raises(MoodleUnavailable) as err:
        MoodleClient(transport).update_users([{"id": 7, "city": "Казань"}])
    assert str(err.value).startswith("core_user_update_users: no answer came (TimeoutError) to 3 attempts (each "
                                     "resent only after reading back")
    assert err.value.status is None
    assert len(transport.writes) == 3


def test_an_update_lost_once_on_the_sandbox_is_sent_twice_and_applied(sandbox, client: MoodleClient) -> None:
    ids = [r.remote_id for r in client.create_users(people(2))]
    sandbox.fault(kind="drop_after_write", function="core_user_update_users", count=1)
    results = client.update_users([{"id": ids[0], "city": "Казань"}, {"id": ids[1], "city": "Омск"}])
    assert [r.ok for r in results] == [True, True]
    assert sandbox.calls("core_user_update_users") == 2  # committed, the answer lost, the same state once more
    cities = {r["id"]: r["city"] for r in sandbox.server.site.store.q("SELECT id, city FROM user")}
    assert (cities[ids[0]], cities[ids[1]]) == ("Казань", "Омск")


def test_a_create_lost_twice_on_the_sandbox_is_read_back_twice(sandbox, client: MoodleClient, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    sandbox.fault(kind="http_503", function="core_user_create_users", count=2)
    results = client.create_users(people(3))
    assert all(r.ok for r in results)
    assert sandbox.server.faults.fired == {"http_503": 2}
    assert sandbox.calls("core_user_create_users") == 1  # the 503s wrote nothing; the third send did
    assert sandbox.calls("core_user_get_users_by_field") == 2
    assert sum("reading back 3 users by username" in m for m in warnings(caplog)) == 2
    assert len([u for u in sandbox.users() if u["username"].startswith("u")]) == 3


def test_a_course_create_lost_after_its_commit_is_found_not_resent(sandbox, client: MoodleClient, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    sandbox.fault(kind="drop_after_write", function="core_course_create_courses", count=1)
    courses = [{"fullname": f"Курс {i}", "shortname": f"lost-{i}", "categoryid": 1, "idnumber": f"L{i}"}
               for i in range(3)]
    results = client.create_courses(courses)
    assert all(r.ok for r in results)
    assert sandbox.calls("core_course_create_courses") == 1
    assert sandbox.calls("core_course_get_courses_by_field") == 3  # each course read back once
    held = sandbox.server.site.store.q("SELECT id, shortname FROM course WHERE shortname LIKE 'lost-%'")
    assert sorted(r["shortname"] for r in held) == ["lost-0", "lost-1", "lost-2"]
    assert {r.remote_id for r in results} == {r["id"] for r in held}
    assert any(m.endswith("; reading back 3 courses") for m in warnings(caplog))


def test_a_course_create_refused_twice_is_sent_a_third_time(sandbox, client: MoodleClient, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    sandbox.fault(kind="http_503", function="core_course_create_courses", count=2)
    results = client.create_courses([{"fullname": "Курс", "shortname": "again", "categoryid": 1}])
    assert results[0].ok
    assert sandbox.calls("core_course_create_courses") == 1 and sandbox.server.faults.fired == {"http_503": 2}
    assert sandbox.calls("core_course_get_courses_by_field") == 2
    assert sum("only those are sent again" in m for m in warnings(caplog)) == 2


# -- the transport's transient retries -------------------------------------------------------------------------

def test_transient_failures_are_retried_then_named_with_the_status(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    sends, retried = [], []

    def send() -> None:
        sends.append(1)
        raise Transient("site answered HTTP 502 (Bad Gateway)", 502)

    with pytest.raises(MoodleUnavailable) as err:
        RetryPolicy(attempts=3, backoff=0.001).transient("core_x", send, lambda: retried.append(1))
    assert str(err.value) == "core_x: site answered HTTP 502 (Bad Gateway) (3 attempts)" and err.value.status == 502
    assert len(sends) == 3 and len(retried) == 2
    said = warnings(caplog)
    assert [re.sub(r"in \d+\.\d s", "in _ s", m) for m in said] == [
        "core_x: site answered HTTP 502 (Bad Gateway); retry 1 of 2 in _ s",
        "core_x: site answered HTTP 502 (Bad Gateway); retry 2 of 2 in _ s"]


def test_a_lost_write_answer_is_not_retried_by_the_transport() -> None:
    sends = []

    def send() -> None:
        sends.append(1)
        raise OutcomeUnknown("core_user_create_users", status=500)

    with pytest.raises(OutcomeUnknown):
        RetryPolicy(attempts=4, backoff=0.001).transient("core_user_create_users", send)
    assert len(sends) == 1


def test_one_attempt_names_no_count() -> None:
    def send() -> None:
        raise Transient("cannot connect to http://x: ConnectError")

    with pytest.raises(MoodleUnavailable, match=r"^f: cannot connect to http://x: ConnectError$"):
        RetryPolicy(attempts=1, backoff=0.001).transient("f", send)


def test_waits_grow_from_the_backoff() -> None:
    from tenacity import RetryCallState
    wait = RetryPolicy(backoff=0.2).wait()
    for attempt, low, high in ((1, 0.2, 0.4), (2, 0.4, 0.6), (3, 0.8, 1.0), (6, 2.0, 2.0)):
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        assert low <= wait(state) <= high


def test_the_policy_is_shared_by_threads_each_call_counting_its_own() -> None:
    """Several calls in flight (moodle.concurrency) retry independently: each lost answer is resent once."""
    policy = RetryPolicy(backoff=0.001)
    sends: dict[int, int] = {}
    lock = threading.Lock()

    def call(n: int) -> int:
        def write() -> int:
            with lock:
                sends[n] = sends.get(n, 0) + 1
                first = sends[n] == 1
            if first:
                raise OutcomeUnknown(f"f{n}", TimeoutError())
            return n
        return policy.resend(write)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(call, range(32))) == list(range(32))
    assert sends == {n: 2 for n in range(32)}


def test_gave_up_keeps_the_status_of_the_lost_answer() -> None:
    error = gave_up(OutcomeUnknown("core_course_update_courses", status=502), 3)
    assert error.status == 502 and str(error).startswith(
        "core_course_update_courses: Moodle answered HTTP 502 (Bad Gateway) to 3 attempts")
