"""What can go wrong when talking to Moodle, as types the engine can act on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MoodleError(Exception):
    """Moodle answered with an exception body (HTTP 200 with {exception, errorcode, message})."""

    exception: str
    errorcode: str | None
    message: str
    debuginfo: str | None = None
    function: str | None = None

    def __str__(self) -> str:
        code = f" ({self.errorcode})" if self.errorcode else ""
        where = f"{self.function}: " if self.function else ""
        debug = f" [{self.debuginfo}]" if self.debuginfo else ""
        return f"{where}{self.message}{code}{debug}"

    @property
    def code(self) -> str:
        """The errorcode, or the exception class when there is none (a PHP TypeError)."""
        if self.errorcode and len(self.errorcode) <= 64 and "<" not in self.errorcode:
            return self.errorcode
        if self.errorcode:
            return "passwordpolicy" if "assword" in self.errorcode else "error"
        return self.exception.rsplit("\\", 1)[-1]

    @property
    def is_access_error(self) -> bool:
        return self.errorcode in ("invalidtoken", "accessexception")


class MoodleUnavailable(Exception):
    """Moodle cannot be reached or answers 5xx / non-Moodle text after retries (exit code 4)."""


class OutcomeUnknown(Exception):
    """A write was sent but no answer came back: it may or may not have happened."""

    def __init__(self, function: str, cause: BaseException) -> None:
        super().__init__(f"{function}: no answer after sending ({type(cause).__name__}); outcome unknown")
        self.function = function
        self.cause = cause
