"""What can go wrong when talking to Moodle, as types the engine can act on."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

TOKEN_SETTING = "BUFSYNC_MOODLE_TOKEN (moodle.token)"
TOKENS_PAGE = "Site administration > Server > Web services > Manage tokens"
SERVICES_PAGE = "Site administration > Server > Web services > External services"

# Refusals that concern every call made with this token, never one record: bisection must not split them.
# Real Moodle 4.5: webservice/lib.php authenticate_user() and load_function_info().
ACCESS_CODES = frozenset({
    "invalidtoken", "accessexception", "wsaccessuserdeleted", "wsaccessuserunconfirmed", "wsaccessusersuspended",
    "wsaccessuserexpired", "wsaccessusernologin", "sitemaintenance",
})
# a person or record deleted in Moodle has no membership left to remove: leaving it is done, not an error
GONE = ("invaliduser", "invalidrecord")

_USER_REFUSALS = {
    "wsaccessuserdeleted": "has been deleted",
    "wsaccessuserunconfirmed": "is not confirmed",
    "wsaccessusersuspended": "is suspended",
    "wsaccessuserexpired": "has an expired password",
    "wsaccessusernologin": "has the auth method 'nologin'",
}


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
        """The token, its user or its service is refused (or the site is closed): every call fails alike."""
        return self.errorcode in ACCESS_CODES

    @property
    def is_unavailable(self) -> bool:
        """Moodle is closed or its database failed a read: another run later may succeed."""
        return self.errorcode in ("sitemaintenance", "dmlreadexception")

    @property
    def is_config_error(self) -> bool:
        """Refused for a reason the administrator must fix (token, service, the token's user); retrying won't help."""
        return self.is_access_error and self.errorcode != "sitemaintenance"

    def fix(self) -> str:
        """For the operator, in English: what Moodle refused and what to change. Never the token itself."""
        said = f"Moodle refused: {self.message} ({self.errorcode})"
        debug = (self.debuginfo or "").strip()
        if self.errorcode == "invalidtoken":
            return (f"{said}: the site has no token equal to {TOKEN_SETTING}: it is mistyped, was deleted, or has "
                    "expired (Moodle deletes an expired token when it is next used). Create a token for the bufsync "
                    f"service under {TOKENS_PAGE} and set {TOKEN_SETTING} to it")
        if self.errorcode in _USER_REFUSALS:
            return (f"{said}: the user {TOKEN_SETTING} belongs to {_USER_REFUSALS[self.errorcode]}. Fix that "
                    f"user, or create a token of an active user for the bufsync service under {TOKENS_PAGE}")
        if self.errorcode == "sitemaintenance":
            return f"{said}: the site is in maintenance mode; run again when it is open"
        if self.errorcode != "accessexception":
            return said
        if self.function == "webservice/pluginfile.php":
            return (f"{said} on a file download: the external service of {TOKEN_SETTING} may not download files "
                    f"(or the token has expired). Tick \"Can download files\" of the bufsync service under "
                    f"{SERVICES_PAGE} > Edit, and check the token under {TOKENS_PAGE}")
        if "token expired" in debug:
            return (f"{said}: {TOKEN_SETTING} has expired ({debug}). Create a new token for the bufsync service "
                    f"under {TOKENS_PAGE}")
        if "IP:" in debug and "not supported" in debug:
            return (f"{said}: {TOKEN_SETTING} is not allowed from this machine's address ({debug}). Allow the "
                    f"address in the token's IP restriction under {TOKENS_PAGE}")
        if self.function in (None, "core_webservice_get_site_info"):
            return (f"{said} for {TOKEN_SETTING} on {self.function or 'its first call'}. Moodle says why only in "
                    "debug mode; one of: the token has expired, its external service is disabled or lacks "
                    "core_webservice_get_site_info, the service is restricted to other users, or the token to "
                    f"other IP addresses. Check the bufsync service under {SERVICES_PAGE} and the token under "
                    f"{TOKENS_PAGE}")
        return (f"{said} on {self.function}: the external service of {TOKEN_SETTING} does not allow it. Add "
                f"{self.function} to the bufsync service under {SERVICES_PAGE} > Functions (`bufsync check` lists "
                "every function the service lacks)")


class MoodleUnavailable(Exception):
    """Moodle cannot be reached or answers 5xx / non-Moodle text after retries (exit code 4)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MoodleConfigError(Exception):
    """The address answers but is not a usable Moodle web-service endpoint (web services or REST off, a
    wrong URL): the administrator must fix the site or the configuration (exit code 2)."""


def http_status_text(status: int) -> str:
    """'HTTP 503 (Service Unavailable)': the status with its standard reason, for messages."""
    try:
        return f"HTTP {status} ({HTTPStatus(status).phrase})"
    except ValueError:
        return f"HTTP {status}"


class OutcomeUnknown(MoodleUnavailable):
    """A write was sent but no usable answer came back: it may or may not have happened.

    A MoodleUnavailable too: when the client cannot settle it (read back, resend a full-state write),
    the run stops with exit 4 and marks nothing, and the next run finds out what Moodle holds.
    """

    def __init__(self, function: str, cause: BaseException | None = None, *, status: int | None = None) -> None:
        if status is not None:
            self.what = f"Moodle answered {http_status_text(status)}"
        else:
            self.what = f"no answer came ({type(cause).__name__ if cause else 'connection closed'})"
        super().__init__(f"{function}: {self.what} after the request was sent; whether it was applied is unknown",
                         status=status)
        self.function = function
        self.cause = cause
