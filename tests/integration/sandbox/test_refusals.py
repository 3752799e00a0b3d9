"""What the sandbox refuses, as the real Moodle 4.5 does (checked there by tests/adapters/moodle/test_refusals_real.py):
values longer than Moodle's columns, tags in text fields, auth plugins that are not installed, an empty e-mail,
unknown custom profile fields (dropped without a word), and tokens Moodle refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bufsync.adapters.moodle.transport import encode
from bufsync.sandbox.moodle.site import Site
from tests.integration.sandbox.test_cohorts_groups import TOKEN


def call(site: Site, function: str, params: dict[str, Any] | None = None, token: str = TOKEN) -> Any:
    pairs = [("wstoken", token), ("wsfunction", function), ("moodlewsrestformat", "json")] + encode(params or {})
    body = site.call(pairs).body
    return None if body == b"null" else json.loads(body)


def user(name: str, **fields: Any) -> dict[str, Any]:
    return {"username": name, "firstname": "Иван", "lastname": "Иванов", "email": f"{name}@example.edu",
            "createpassword": 1, **fields}


def created(site: Site, **fields: Any) -> int:
    answer = call(site, "core_user_create_users", {"users": [user(f"u{len(fields)}x{abs(hash(str(fields)))}",
                                                                  **fields)]})
    assert isinstance(answer, list), answer
    return int(answer[0]["id"])


def read(site: Site, userid: int) -> dict[str, Any]:
    return call(site, "core_user_get_users_by_field", {"field": "id", "values": [userid]})[0]


# -- column lengths: the real database refuses, Moodle answers dmlwriteexception ------------------------------------

@pytest.mark.parametrize("field, ok, too_long", [
    ("phone1", "8" * 20, "8" * 28), ("firstname", "Я" * 100, "Я" * 101), ("lastname", "Я" * 100, "Я" * 101),
    ("idnumber", "x" * 255, "x" * 256), ("middlename", "Я" * 255, "Я" * 256), ("city", "Я" * 120, "Я" * 121),
    ("institution", "x" * 255, "x" * 256), ("department", "x" * 255, "x" * 256),
])
def test_user_values_longer_than_their_column_fail_the_insert(site: Site, field: str, ok: str, too_long: str) -> None:
    answer = call(site, "core_user_create_users", {"users": [user("longer", **{field: too_long})]})
    assert {k: answer[k] for k in ("exception", "errorcode", "message")} == {
        "exception": "dml_write_exception", "errorcode": "dmlwriteexception", "message": "Error writing to database"}
    assert answer["debuginfo"].startswith("ERROR:  value too long for type character varying(")
    assert not site.store.q("SELECT id FROM user WHERE username = 'longer'")  # all or nothing
    userid = created(site, **{field: ok})
    update = call(site, "core_user_update_users", {"users": [{"id": userid, field: too_long}]})
    assert update == {"warnings": [{"item": "user", "itemid": userid, "warningcode": "dmlwriteexception",
                                    "message": "Error writing to database"}]}
    assert site.store.one("SELECT * FROM user WHERE id = ?", (userid,))[field] == ok


def test_long_username_and_email(site: Site) -> None:
    answer = call(site, "core_user_create_users", {"users": [user("x" * 101, email="a@example.edu")]})
    assert answer["errorcode"] == "dmlwriteexception"
    local_64 = "a" * 64 + "@" + "b" * 40 + ".edu"  # a valid address of 109 characters: the column holds 100
    assert call(site, "core_user_create_users", {"users": [user("mail", email=local_64)]})["errorcode"] == \
        "dmlwriteexception"
    local_65 = "a" * 65 + "@b.edu"  # PHP's filter_var refuses a local part over 64 characters
    answer = call(site, "core_user_create_users", {"users": [user("mail", email=local_65)]})
    assert answer["errorcode"] == "invalidparameter" and answer["debuginfo"] == f"Email address is invalid: {local_65}"


def test_course_and_category_lengths(site: Site) -> None:
    def course(**fields: Any) -> Any:
        return call(site, "core_course_create_courses", {"courses": [{"shortname": "c", "fullname": "C",
                                                                      "categoryid": 1, **fields}]})
    assert course(fullname="Я" * 255)["errorcode"] == "dmlwriteexception"
    assert course(shortname="x" * 256)["errorcode"] == "dmlwriteexception"
    assert course(idnumber="x" * 101)["errorcode"] == "dmlwriteexception"
    courseid = course(fullname="Я" * 254, shortname="x" * 255, idnumber="x" * 100)[0]["id"]
    update = call(site, "core_course_update_courses", {"courses": [{"id": courseid, "fullname": "Я" * 255}]})
    assert update["warnings"][0]["warningcode"] == "dmlwriteexception"
    category = call(site, "core_course_create_categories", {"categories": [{"name": "Я" * 256}]})
    assert (category["errorcode"], category["message"]) == ("categorytoolong", "Category name too long")
    category = call(site, "core_course_create_categories", {"categories": [{"name": "K", "idnumber": "x" * 101}]})
    assert (category["errorcode"], category["message"]) == ("idnumbertoolong", "ID number is too long")


def test_deleting_a_user_with_a_long_email_still_fits_the_username(site: Site) -> None:
    userid = created(site, email="a" * 64 + "@" + "b" * 31 + ".edu")  # 100 characters
    assert call(site, "core_user_delete_users", {"userids": [userid]}) is None
    row = site.store.one("SELECT username, deleted FROM user WHERE id = ?", (userid,))
    assert row["deleted"] == 1 and len(row["username"]) == 100 and row["username"].startswith("a" * 64 + "@")


# -- tags: PARAM_NOTAGS / PARAM_TEXT refuse a value that cleaning would change ----------------------------------------

def test_tags_in_names_are_refused_not_cleaned(site: Site) -> None:
    answer = call(site, "core_user_create_users", {"users": [user("html", firstname="Иван <b>x</b>")]})
    assert answer["errorcode"] == "invalidparameter"
    assert answer["debuginfo"] == ('users => Invalid parameter value detected: firstname => Invalid parameter value '
                                   'detected: Invalid external api parameter: the value is "Иван <b>x</b>", the '
                                   'server was expecting "notags" type')
    userid = created(site, firstname="Иван < Пётр", lastname="Б & В")  # "< " is no tag for PHP's strip_tags
    assert read(site, userid)["firstname"] == "Иван < Пётр"
    answer = call(site, "core_user_update_users", {"users": [{"id": userid, "lastname": "<i>Б</i>"}]})
    assert answer["errorcode"] == "invalidparameter"  # the whole call, not a warning
    course = call(site, "core_course_create_courses", {"courses": [{"shortname": "c", "fullname": "Курс <b>x</b>",
                                                                    "categoryid": 1}]})
    assert course["errorcode"] == "invalidparameter" and '"text" type' in course["debuginfo"]
    multilang = '<span lang="ru" class="multilang">Курс</span><span lang="en" class="multilang">Course</span>'
    assert isinstance(call(site, "core_course_create_courses", {"courses": [{"shortname": "m", "fullname": multilang,
                                                                            "categoryid": 1}]}), list)


# -- auth: PARAM_AUTH is an installed auth plugin -------------------------------------------------------------------

def test_auth_must_be_an_installed_plugin(site: Site) -> None:
    answer = call(site, "core_user_create_users", {"users": [user("a1", auth="ldapx")]})
    assert answer["errorcode"] == "invalidparameter" and 'expecting "auth" type' in answer["debuginfo"]
    answer = call(site, "core_user_create_users", {"users": [user("a2", auth="mnet")]})
    assert answer["debuginfo"] == "Invalid authentication type: mnet"
    userid = created(site, auth="ldap")
    answer = call(site, "core_user_update_users", {"users": [{"id": userid, "auth": "ldapx"}]})
    assert answer["errorcode"] == "invalidparameter" and 'expecting "auth" type' in answer["debuginfo"]
    assert read(site, userid)["auth"] == "ldap"
    # Moodle validates auth before it looks the user up: id 0 asks "installed?" and writes nothing
    probe = call(site, "core_user_update_users", {"users": [{"id": 0, "auth": "webservice"}]})
    assert probe == {"warnings": [{"item": "user", "itemid": 0, "warningcode": "invaliduserid",
                                   "message": "Invalid user ID"}]}


# -- e-mail: required and valid on create; an update cannot empty it ------------------------------------------------

def test_email_is_required(site: Site) -> None:
    no_email = user("nomail")
    del no_email["email"]
    answer = call(site, "core_user_create_users", {"users": [no_email]})
    assert answer["debuginfo"] == "users => Invalid parameter value detected: Missing required key in single " \
                                  "structure: email"
    answer = call(site, "core_user_create_users", {"users": [user("nomail", email="")]})
    assert answer["debuginfo"] == "Email address is invalid: "
    userid = created(site)
    assert call(site, "core_user_update_users", {"users": [{"id": userid, "email": ""}]}) == {"warnings": [
        {"item": "user", "itemid": userid, "warningcode": "useremailinvalid", "message": "error/useremailinvalid"}]}


# -- custom profile fields: an unknown one is dropped without a word ------------------------------------------------

def test_unknown_profile_fields_are_dropped_silently(site: Site) -> None:
    site.admin("create_profile_field", {"shortname": "snils", "name": "СНИЛС"})
    userid = created(site, customfields=[{"type": "snils", "value": "123-456-789 01"},
                                         {"type": "nosuchfield", "value": "x"}])
    assert [(c["shortname"], c["value"]) for c in read(site, userid)["customfields"]] == [("snils", "123-456-789 01")]
    answer = call(site, "core_user_update_users", {"users": [{"id": userid, "customfields": [
        {"type": "nosuchfield", "value": "y"}]}]})
    assert answer == {"warnings": []}
    answer = call(site, "core_user_update_users", {"users": [{"id": userid, "customfields": [
        {"type": "no such", "value": "y"}]}]})
    assert answer["errorcode"] == "invalidparameter"  # type is PARAM_ALPHANUMEXT


# -- tokens -----------------------------------------------------------------------------------------------------------

def test_an_expired_token_is_refused_once_then_unknown(site: Site) -> None:
    site.admin("add_token", {"token": "e" * 32, "validuntil": site.now() - 60})
    answer = call(site, "core_webservice_get_site_info", token="e" * 32)
    assert (answer["exception"], answer["errorcode"], answer["debuginfo"]) == (
        "webservice_access_exception", "accessexception",
        "Invalid token - token expired - check validuntil time for the token")
    assert call(site, "core_webservice_get_site_info", token="e" * 32)["errorcode"] == "invalidtoken"


def test_disabled_service_and_removed_functions(site: Site) -> None:
    site.admin("service", {"remove": ["core_user_create_users"]})
    info = call(site, "core_webservice_get_site_info")
    assert "core_user_create_users" not in {f["name"] for f in info["functions"]}
    answer = call(site, "core_user_create_users", {"users": [user("x")]})
    assert answer["errorcode"] == "accessexception"
    assert answer["debuginfo"].startswith("Access to the function core_user_create_users() is not allowed.")
    site.admin("service", {"enabled": False})
    answer = call(site, "core_webservice_get_site_info")
    assert answer["errorcode"] == "accessexception" and "core_webservice_get_site_info()" in answer["debuginfo"]
    site.admin("service", {"enabled": True, "add": ["core_user_create_users"]})
    assert isinstance(call(site, "core_user_create_users", {"users": [user("x")]}), list)


def test_a_suspended_token_user_is_refused(site: Site) -> None:
    userid = created(site)
    site.admin("add_token", {"token": "f" * 32, "userid": userid})
    site.store.x("UPDATE user SET suspended = 1 WHERE id = ?", (userid,))
    answer = call(site, "core_webservice_get_site_info", token="f" * 32)
    assert (answer["errorcode"], answer["message"]) == (
        "wsaccessusersuspended", f"Refused web service access for suspended username: {read(site, userid)['username']}")
