"""Against a real Moodle 4.5 (../shared/moodle-real/up): what it refuses and how, and the sandbox answering the same
calls the same way; the client's local reasons for the same records. Skipped without BUFSYNC_TEST_MOODLE_URL /
BUFSYNC_TEST_MOODLE_TOKEN. Fresh usernames per run; users created are deleted (courses and categories are only
ever refused here: the site's service cannot delete them)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleError
from tests.integration.adapters.moodle.conftest import TOKEN

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
REAL_TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and REAL_TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                     "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]
RUN = f"r{int(time.time() * 1000) % 10**9}"


@pytest.fixture
def both(sandbox_factory) -> Iterator[tuple[MoodleClient, MoodleClient, list[int]]]:
    """The real site and a sandbox with the same profile field (snils); users created on the real one are deleted."""
    sandbox = sandbox_factory()
    sandbox.admin("create_profile_field", shortname="snils", name="СНИЛС")
    created: list[int] = []
    with MoodleClient.connect(URL, REAL_TOKEN, timeout=120) as real, \
            MoodleClient.connect(sandbox.url, TOKEN, timeout=30) as emulated:
        yield real, emulated, created
        if created:
            real.delete_users(created)


def answer(client: MoodleClient, function: str, params: dict[str, Any]) -> Any:
    """What Moodle answered, errors as (exception, errorcode, message): debuginfo is off on a production site."""
    try:
        return client.call(function, params, write=True)
    except MoodleError as error:
        return (error.exception, error.errorcode, error.message)


def user(tag: str, **fields: Any) -> dict[str, Any]:
    return {"username": f"{RUN}{tag}", "firstname": "Иван", "lastname": "Иванов", "email": f"{RUN}{tag}@example.edu",
            "createpassword": 1, **fields}


DML = ("dml_write_exception", "dmlwriteexception", "Error writing to database")
INVALID = ("core\\exception\\invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected")

CREATE_REFUSED = [
    ("phone1 of 28 characters (column: 20)", {"phone1": "+7 (912) 345-67-89 доб. 1234"}, DML),
    ("firstname of 101 characters", {"firstname": "Я" * 101}, DML),
    ("idnumber of 256 characters", {"idnumber": "x" * 256}, DML),
    ("city of 121 characters", {"city": "Я" * 121}, DML),
    ("an e-mail of 109 characters (column: 100)", {"email": "a" * 64 + "@" + "b" * 40 + ".edu"}, DML),
    ("an e-mail with a 65-character local part", {"email": "a" * 65 + "@b.edu"}, INVALID),
    ("tags in a name", {"lastname": "Иванов <b>x</b>"}, INVALID),
    ("a lone '<' before a letter", {"middlename": "a<b"}, INVALID),
    ("an auth plugin that is not installed", {"auth": "ldapx"}, INVALID),
    ("mnet for a new user", {"auth": "mnet"}, INVALID),
    ("an empty e-mail", {"email": ""}, INVALID),
]


@pytest.mark.parametrize("what, fields, refusal", CREATE_REFUSED, ids=[c[0] for c in CREATE_REFUSED])
def test_create_refused_alike(both, what: str, fields: dict[str, Any], refusal: tuple[str, str, str]) -> None:
    real, emulated, _ = both
    record = user("x", **fields)
    assert answer(real, "core_user_create_users", {"users": [record]}) == refusal
    assert answer(emulated, "core_user_create_users", {"users": [record]}) == refusal
    assert real.get_users_by_field("username", [record["username"]]) == []
    result = real.create_users([record])[0]  # the client names the reason and never sends it
    assert not result.ok and not result.sent and result.error.endswith(")")


def test_no_email_at_all_is_refused_alike(both) -> None:
    real, emulated, _ = both
    record = user("noemail")
    del record["email"]
    assert answer(real, "core_user_create_users", {"users": [record]}) == INVALID
    assert answer(emulated, "core_user_create_users", {"users": [record]}) == INVALID


def test_accepted_alike_and_stored_as_sent(both) -> None:
    real, emulated, created = both
    fields = {"phone1": "8" * 20, "firstname": "Иван < Пётр", "lastname": "Б & В", "city": "Я" * 120,
              "auth": "ldap", "customfields": [{"type": "snils", "value": "123-456-789 01"},
                                               {"type": "bufsyncnosuchfield", "value": "x"}]}
    for client in (real, emulated):
        ids = answer(client, "core_user_create_users", {"users": [user("ok", **fields)]})
        assert isinstance(ids, list), ids
        if client is real:
            created.append(int(ids[0]["id"]))
        held = client.get_users_by_field("id", [ids[0]["id"]])[0]
        assert (held["phone1"], held["firstname"], held["lastname"], held["city"], held["auth"]) == (
            "8" * 20, "Иван < Пётр", "Б & В", "Я" * 120, "ldap")
        # the unknown profile field is dropped without a word
        assert [(c["shortname"], c["value"]) for c in held["customfields"]] == [("snils", "123-456-789 01")]


def test_updates_refused_alike(both) -> None:
    real, emulated, created = both
    for client in (real, emulated):
        userid = int(answer(client, "core_user_create_users", {"users": [user("upd")]})[0]["id"])
        if client is real:
            created.append(userid)
        assert answer(client, "core_user_update_users", {"users": [{"id": userid, "phone1": "8" * 28}]}) == {
            "warnings": [{"item": "user", "itemid": userid, "warningcode": "dmlwriteexception",
                          "message": "Error writing to database"}]}
        assert answer(client, "core_user_update_users", {"users": [{"id": userid, "email": ""}]}) == {
            "warnings": [{"item": "user", "itemid": userid, "warningcode": "useremailinvalid",
                          "message": "error/useremailinvalid"}]}
        assert answer(client, "core_user_update_users", {"users": [{"id": userid, "auth": "ldapx"}]}) == INVALID
        assert answer(client, "core_user_update_users", {"users": [{"id": userid, "firstname": "<i>x</i>"}]}) == \
            INVALID
        assert answer(client, "core_user_update_users", {"users": [{"id": userid, "customfields": [
            {"type": "bufsyncnosuchfield", "value": "x"}]}]}) == {"warnings": []}
        # what the client asks to learn whether an auth plugin is installed: nothing is written
        assert answer(client, "core_user_update_users", {"users": [{"id": 0, "auth": "shibboleth"}]}) == {
            "warnings": [{"item": "user", "itemid": 0, "warningcode": "invaliduserid", "message": "Invalid user ID"}]}
        held = client.get_users_by_field("id", [userid])[0]
        assert (held.get("phone1"), held["email"], held["auth"], held["firstname"]) == (
            None, f"{RUN}upd@example.edu", "manual", "Иван")


COURSE_REFUSED = [
    ("core_course_create_courses", {"courses": [{"shortname": f"{RUN}-fn", "fullname": "Я" * 255, "categoryid": 1}]},
     DML),
    ("core_course_create_courses", {"courses": [{"shortname": f"{RUN}-" + "x" * 250, "fullname": "F",
                                                 "categoryid": 1}]}, DML),
    ("core_course_create_courses", {"courses": [{"shortname": f"{RUN}-id", "fullname": "F", "categoryid": 1,
                                                 "idnumber": "x" * 101}]}, DML),
    ("core_course_create_courses", {"courses": [{"shortname": f"{RUN}-h", "fullname": "Курс <b>x</b>",
                                                 "categoryid": 1}]}, INVALID),
    ("core_course_create_categories", {"categories": [{"name": "Я" * 256}]},
     ("core\\exception\\moodle_exception", "categorytoolong", "Category name too long")),
    ("core_course_create_categories", {"categories": [{"name": f"{RUN}", "idnumber": "x" * 101}]},
     ("core\\exception\\moodle_exception", "idnumbertoolong", "ID number is too long")),
    ("core_course_create_categories", {"categories": [{"name": "Кафедра <b>x</b>"}]}, INVALID),
]


@pytest.mark.parametrize("function, params, refusal", COURSE_REFUSED)
def test_courses_and_categories_refused_alike(both, function: str, params: dict[str, Any],
                                              refusal: tuple[str, str, str]) -> None:
    real, emulated, _ = both
    assert answer(real, function, params) == refusal
    assert answer(emulated, function, params) == refusal
    record = next(iter(params.values()))[0]
    check = real.prevalidate_course if function.endswith("courses") else real.prevalidate_category
    assert check(record) is not None  # the client refuses it before Moodle sees it


def test_the_client_on_the_real_site(both) -> None:
    """A batch with every kind of bad row: the good ones are created, each bad one fails alone with its reason,
    and the dropped profile field is reported on the row it concerns."""
    real, _, created = both
    batch = [user(f"c{i}") for i in range(6)]
    batch[1]["phone1"] = "8" * 28
    batch[2]["auth"] = "ldapx"
    batch[3]["firstname"] = "Иван <b>"
    batch[4]["email"] = None
    batch[5]["customfields"] = [{"type": "snils", "value": "123-456-789 01"},
                                {"type": "bufsyncnosuchfield", "value": "x"}]
    results = real.create_users(batch)
    created += [r.remote_id for r in results if r.ok]
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert [r.code for r in results[1:5]] == ["toolong", "invalidparameter", "invalidparameter", "invalidparameter"]
    assert results[5].warning is not None and "«bufsyncnosuchfield»" in results[5].warning
    assert "«snils»" not in results[5].warning and results[0].warning is None
    held = {u["username"] for u in real.get_users_by_field("username", [u["username"] for u in batch])}
    assert held == {batch[0]["username"], batch[5]["username"]}


def test_token_and_service_refusals_name_what_to_fix(both) -> None:
    real, _, _ = both
    with MoodleClient.connect(URL, "f" * 32) as wrong:
        with pytest.raises(MoodleError) as err:
            wrong.site_info()
    assert err.value.is_config_error and "BUFSYNC_MOODLE_TOKEN (moodle.token)" in err.value.fix()
    with pytest.raises(MoodleError) as err:
        real.call("core_course_delete_modules", {"cmids": [0]}, write=True)
    assert err.value.is_config_error
    assert "Add core_course_delete_modules to the bufsync service" in err.value.fix()
