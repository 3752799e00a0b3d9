"""The one retry policy of the Moodle client, on tenacity: how often, how long to wait, what is logged, when to stop.

Three kinds of retry, each safe for what it resends:

- transient: a request that never reached Moodle, or a read (connection refused, 5xx on a read, a read that
  timed out): sent again as is, up to the transport's `attempts`;
- resend: a write that states the wanted end state (an update, an enrolment) whose answer was lost
  (OutcomeUnknown): the same full state is sent again, up to WRITE_ATTEMPTS sends;
- settle: a create whose answer was lost: what Moodle holds is read back first and only what is missing is
  sent again, up to WRITE_ATTEMPTS sends; nothing is created twice.

Every retry is logged with its cause and its wait (a retry is never silent); waits grow exponentially from the
transport's `backoff`, with jitter so that parallel calls do not come back in step. A Retrying object is made
per call: the policy holds no state and is shared by the client's threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from bufsync.adapters.moodle.errors import MoodleUnavailable, OutcomeUnknown

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying
    from tenacity.wait import wait_base

log = logging.getLogger("bufsync.moodle")
T = TypeVar("T")
R = TypeVar("R")
ATTEMPTS = 4  # a transient failure: at most this many sends (Transport's `attempts`)
BACKOFF = 0.5  # seconds before the first retry; doubled for each next one (Transport's `backoff`)
WRITE_ATTEMPTS = 3  # a write whose answer is lost: read back, send what is missing, at most this often


class Transient(Exception):
    """Worth another try: connection refused, 5xx, a read that timed out."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def gave_up(unknown: OutcomeUnknown, attempts: int) -> MoodleUnavailable:
    """Still no confirmed answer after every safe attempt: stop, record nothing; the next run reads Moodle first."""
    return MoodleUnavailable(
        f"{unknown.function}: {unknown.what} to {attempts} attempts (each resent only after reading back what "
        "Moodle holds, or as a full-state write that is safe to resend); whether the last one was applied is "
        "unknown. Nothing unconfirmed was marked ok: the next run reads Moodle first and finishes the rest",
        status=unknown.status)


def unavailable(function: str, transient: Transient, attempts: int) -> MoodleUnavailable:
    """Every attempt failed before Moodle could answer: the last cause, with its HTTP status."""
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    return MoodleUnavailable(f"{function}: {transient}{tries}", status=transient.status)


def _cause(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _wait(state: RetryCallState) -> float:
    return state.next_action.sleep if state.next_action else 0.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF
    write_attempts: int = WRITE_ATTEMPTS

    def wait(self) -> wait_base:
        from tenacity import wait_exponential_jitter
        return wait_exponential_jitter(multiplier=self.backoff, max=10 * self.backoff, jitter=self.backoff)

    def _retrying(self, attempts: int, on: type[BaseException],
                  said: Callable[[RetryCallState], None]) -> Retrying:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
        return Retrying(stop=stop_after_attempt(attempts), wait=self.wait(), retry=retry_if_exception_type(on),
                        reraise=True, before_sleep=said)

    def transient(self, function: str, send: Callable[[], R], retried: Callable[[], None] | None = None) -> R:
        """send() again after a Transient failure; MoodleUnavailable with the last status when none succeeds.
        Any other error (OutcomeUnknown for a write whose answer was lost) is raised at once."""
        def said(state: RetryCallState) -> None:
            log.warning("%s: %s; retry %d of %d in %.1f s", function, _cause(state), state.attempt_number,
                        self.attempts - 1, _wait(state))

        try:
            for attempt in self._retrying(self.attempts, Transient, said):
                with attempt:
                    if retried is not None and attempt.retry_state.attempt_number > 1:
                        retried()
                    return send()
        except Transient as exc:
            raise unavailable(function, exc, self.attempts) from None
        raise AssertionError("unreachable")

    def resend(self, write: Callable[[], R]) -> R:
        """A write that states the wanted end state: when its answer is lost, the same full state is sent again."""
        def said(state: RetryCallState) -> None:
            log.warning("%s; the same full state is sent again (%d of %d) in %.1f s", _cause(state),
                        state.attempt_number, self.write_attempts - 1, _wait(state))

        try:
            for attempt in self._retrying(self.write_attempts, OutcomeUnknown, said):
                with attempt:
                    return write()
        except OutcomeUnknown as unknown:
            raise gave_up(unknown, self.write_attempts) from None
        raise AssertionError("unreachable")

    def settle(self, items: list[T], write: Callable[[list[T]], R],
               read_back: Callable[[list[T]], list[T]], what: str) -> tuple[list[T], R | None]:
        """write(items); when its answer is lost, read_back(sent) finds out which are still missing (the caller
        keeps what it found) and only those are sent again, after the wait.

        Returns the items of the last send and its answer, or ([], None) when reading back found all of them;
        MoodleUnavailable (gave_up) when some are still missing after `write_attempts` sends. `what` names the
        read-back in the log: "users by username" -> "...; reading back 3 users by username".
        """
        pending = list(items)

        def said(state: RetryCallState) -> None:
            log.warning("%s: %d not found on reading back: only those are sent again (%d of %d) in %.1f s",
                        getattr(_cause(state), "function", "?"), len(pending), state.attempt_number,
                        self.write_attempts - 1, _wait(state))

        try:
            for attempt in self._retrying(self.write_attempts, OutcomeUnknown, said):
                with attempt:
                    try:
                        return pending, write(pending)
                    except OutcomeUnknown as unknown:
                        log.warning("%s; reading back %d %s", unknown, len(pending), what)
                        pending = read_back(pending)
                        if not pending:
                            return [], None
                        raise
        except OutcomeUnknown as unknown:
            raise gave_up(unknown, self.write_attempts) from None
        raise AssertionError("unreachable")
