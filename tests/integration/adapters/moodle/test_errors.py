"""How Moodle's refusals are classified and worded (adapters/moodle/errors.py, messages.py): what the operator must
fix (never the token itself), what is worth another run, and the Russian text for rows a write never confirmed.
The answers are Moodle 4.5's own (webservice/lib.php; ../shared/moodle-ws/errors-debug.json)."""

from __future__ import annotations

import pytest

from bufsync.adapters.moodle import messages
from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable, OutcomeUnknown

ACCESS = "webservice_access_exception"


def refusal(code: str, message: str, debuginfo: str | None = None, function: str | None = None,
            exception: str = "core\\exception\\moodle_exception") -> MoodleError:
    return MoodleError(exception, code, message, debuginfo, function)


@pytest.mark.parametrize("error, says", [
    (refusal("invalidtoken", "Invalid token - token not found"), "the site has no token equal to BUFSYNC_MOODLE_TOKEN"),
    (refusal("accessexception", "Access control exception",
             "Invalid token - token expired - check validuntil time for the token", exception=ACCESS),
     "BUFSYNC_MOODLE_TOKEN (moodle.token) has expired"),
    (refusal("accessexception", "Access control exception",
             "Invalid service - IP:10.0.0.5 is not supported - check this allowed user", exception=ACCESS),
     "is not allowed from this machine's address"),
    (refusal("accessexception", "Access control exception", None, "core_webservice_get_site_info", ACCESS),
     "its external service is disabled or lacks core_webservice_get_site_info"),
    (refusal("accessexception", "Access control exception", None, "core_user_create_users", ACCESS),
     "Add core_user_create_users to the bufsync service"),
    (refusal("wsaccessusersuspended", "Refused web service access for suspended username: sync"),
     "the user BUFSYNC_MOODLE_TOKEN (moodle.token) belongs to is suspended"),
])
def test_configuration_refusals_say_what_to_fix(error: MoodleError, says: str) -> None:
    assert error.is_access_error and error.is_config_error and not error.is_unavailable
    assert error.fix().startswith(f"Moodle refused: {error.message} ({error.errorcode})")
    assert says in error.fix()


def test_maintenance_and_a_failing_database_are_worth_another_run() -> None:
    closed = refusal("sitemaintenance", "The site is undergoing maintenance and is currently not available")
    assert closed.is_access_error and not closed.is_config_error and closed.is_unavailable
    database = MoodleError("dml_read_exception", "dmlreadexception", "Error reading from database")
    assert database.is_unavailable and not database.is_access_error


def test_an_unknown_outcome_says_the_status_not_an_exception_class() -> None:
    unknown = OutcomeUnknown("core_user_create_users", status=503)
    assert isinstance(unknown, MoodleUnavailable) and unknown.status == 503
    assert str(unknown) == ("core_user_create_users: Moodle answered HTTP 503 (Service Unavailable) after the request "
                            "was sent; whether it was applied is unknown")
    lost = OutcomeUnknown("enrol_manual_enrol_users", TimeoutError())
    assert str(lost).startswith("enrol_manual_enrol_users: no answer came (TimeoutError) after the request was sent")


def test_rows_a_write_never_confirmed_get_a_russian_reason_with_the_status() -> None:
    """For the rows in flight when a run stops as unavailable (nothing recorded: the next run reads Moodle first)."""
    assert messages.unavailable(OutcomeUnknown("core_user_create_users", status=503)) == (
        "Moodle ответил HTTP 503 (Service Unavailable) на запись; применена ли она, неизвестно. Строка не отмечена: "
        "следующий запуск сначала прочитает, что есть в Moodle, и доделает только недостающее (http503)")
    assert messages.unavailable(MoodleUnavailable("x")).endswith("(noanswer)")
    assert messages.unavailable(MoodleUnavailable("x")).startswith("Moodle не ответил на запись")


def test_moodle_codes_without_a_local_rule_are_explained() -> None:
    text = messages.from_moodle(MoodleError("dml_write_exception", "dmlwriteexception", "Error writing to database"))
    assert text.startswith("Moodle не смог записать запись в свою базу данных") and text.endswith("(dmlwriteexception)")
    assert messages.from_moodle(refusal("categorytoolong", "Category name too long")) == \
        "Наименование категории длиннее 255 символов (categorytoolong)"
