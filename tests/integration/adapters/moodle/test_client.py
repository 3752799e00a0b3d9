"""The Moodle client against the sandbox over real HTTP, under each fault."""

from __future__ import annotations

import pytest

from bufsync.adapters.moodle.client import REQUIRED_FUNCTIONS, MoodleClient
from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable
from bufsync.adapters.moodle.rules import PasswordPolicy
from bufsync.adapters.moodle.transport import encode
from tests.integration.adapters.moodle.conftest import TOKEN


def people(n: int, prefix: str = "u") -> list[dict]:
    return [{"username": f"{prefix}{i:05d}", "firstname": "Иван", "lastname": f"Иванов{i}",
             "email": f"{prefix}{i:05d}@example.edu", "idnumber": f"EXT-{prefix}-{i}", "createpassword": True}
            for i in range(n)]


def test_encoding_is_php_style() -> None:
    assert encode({"users": [{"username": "a", "suspended": True, "customfields": [{"type": "snils", "value": "1"}],
                              "skip": None}]}) == [
        ("users[0][username]", "a"), ("users[0][suspended]", "1"),
        ("users[0][customfields][0][type]", "snils"), ("users[0][customfields][0][value]", "1")]


def test_site_info_and_missing_functions(client: MoodleClient) -> None:
    info = client.site_info()
    assert info["release"].startswith("4.5")
    missing = client.missing_functions(REQUIRED_FUNCTIONS + ("local_nosuch_function",))
    assert "local_nosuch_function" in missing


def test_typed_error_carries_code_message_and_debuginfo(sandbox_factory) -> None:
    sandbox = sandbox_factory(debug=True)
    with MoodleClient.connect(sandbox.url, TOKEN) as client:
        with pytest.raises(MoodleError) as err:
            client.call("core_user_get_users_by_field", {"field": "username", "values": ["IVANOV"]})
    assert err.value.errorcode == "invalidparameter"
    assert err.value.message == "Invalid parameter value detected"
    assert "cleaned value: ivanov" in err.value.debuginfo


def test_wrong_token_is_an_access_error(sandbox) -> None:
    with MoodleClient.connect(sandbox.url, "0" * 32) as client:
        with pytest.raises(MoodleError) as err:
            client.create_users(people(3))
    assert err.value.errorcode == "invalidtoken"


def test_one_bad_row_in_a_batch_of_200_fails_alone(sandbox, client: MoodleClient) -> None:
    client.create_users([{"username": "taken", "firstname": "A", "lastname": "B", "email": "Dup@Example.edu",
                          "createpassword": True}])
    batch = people(200)
    batch[137]["email"] = "dup@example.EDU"  # duplicate, case-insensitively: only Moodle can tell
    before = sandbox.calls("core_user_create_users")
    results = client.create_users(batch)
    calls = sandbox.calls("core_user_create_users") - before
    assert [i for i, r in enumerate(results) if not r.ok] == [137]
    assert results[137].error == ("Адрес почты «dup@example.EDU» уже используется другой учётной записью Moodle "
                                  "(регистр букв не различается); в Moodle адрес должен быть уникальным "
                                  "(invalidparameter)")
    assert all(r.remote_id for i, r in enumerate(results) if i != 137)
    assert len(sandbox.users()) == 2 + 1 + 199
    assert calls <= 2 * 8 + 1  # bisection: grows with log2(200), not with 200


def test_local_rules_give_exact_reasons_without_a_call(sandbox, client: MoodleClient) -> None:
    batch = people(4)
    batch[0]["username"] = "Иванов"
    batch[1]["email"] = "not-an-email"
    batch[2]["lastname"] = " "
    batch[3]["username"] = batch[3]["username"]
    client.password_policy = PasswordPolicy()
    weak = people(1, "w")[0] | {"password": "abc", "createpassword": False}
    results = client.create_users(batch + [weak])
    assert results[0].error == ("Логин «Иванов» недопустим: Moodle принимает только строчную латиницу, цифры "
                                "и символы _-.@ (invalidparameter)")
    assert results[1].error.startswith("Адрес почты «not-an-email» недопустим")
    assert results[2].error == "Не заполнено обязательное поле «Фамилия» (lastname) (invalidparameter)"
    assert results[3].ok
    assert results[4].code == "passwordpolicy" and "не короче 8 символов" in results[4].error
    assert not any(r.sent for r in (results[0], results[1], results[2], results[4]))


def test_a_username_twice_in_one_call(client: MoodleClient) -> None:
    batch = people(3)
    batch[2]["username"] = batch[0]["username"]
    results = client.create_users(batch)
    assert results[0].ok and results[1].ok and not results[2].ok
    assert "повторяется" in results[2].error


def test_batch_size_follows_max_input_vars(sandbox_factory) -> None:
    sandbox = sandbox_factory(max_input_vars=500)
    with MoodleClient.connect(sandbox.url, TOKEN, max_input_vars=500) as client:
        results = client.create_users(people(300))
    assert all(r.ok for r in results)
    calls = sandbox.calls("core_user_create_users")
    assert calls == -(-300 * 6 // (int(500 * 0.95) - 3))  # ceil(fields / budget): no call is truncated


@pytest.mark.parametrize("site_limit, how", [
    (398, "the cut falls between users: fewer ids come back, no error"),
    (400, "the cut falls inside a user: a misleading invalidparameter for the whole call"),
])
def test_truncation_by_a_lower_site_limit_is_survived(sandbox_factory, caplog, site_limit: int, how: str) -> None:
    """The site's max_input_vars is lower than configured: PHP drops the tail of the form."""
    sandbox = sandbox_factory(max_input_vars=site_limit)
    with caplog.at_level("WARNING", logger="bufsync.moodle"), \
            MoodleClient.connect(sandbox.url, TOKEN, max_input_vars=5000) as client:
        results = client.create_users(people(250))
    if site_limit == 398:
        assert "Moodle created 66 of 250 users" in caplog.text
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    names = [u["username"] for u in sandbox.users()]
    assert len(names) == 2 + 250 and len(set(names)) == len(names)
    assert len({r.remote_id for r in results}) == 250


def test_5xx_mid_batch_is_retried_without_duplicates(sandbox_factory) -> None:
    sandbox = sandbox_factory()
    sandbox.fault(kind="http_503", function="core_user_create_users", skip=1, count=1)
    with MoodleClient.connect(sandbox.url, TOKEN, max_input_vars=300, backoff=0.01) as client:
        results = client.create_users(people(120))
    assert all(r.ok for r in results)
    assert len(sandbox.users()) == 2 + 120
    assert sandbox.server.faults.fired == {"http_503": 1}


def test_timeout_after_a_committed_create_reads_back(sandbox_factory) -> None:
    sandbox = sandbox_factory()
    sandbox.fault(kind="timeout_after_write", function="core_user_create_users", count=1, seconds=1.5)
    with MoodleClient.connect(sandbox.url, TOKEN, timeout=0.5, backoff=0.01) as client:
        results = client.create_users(people(10))
    assert all(r.ok for r in results)
    assert len(sandbox.users()) == 2 + 10  # committed once, never created twice
    assert sandbox.calls("core_user_create_users") == 1
    assert sandbox.calls("core_user_get_users_by_field") == 1  # read back once: all found, nothing resent


def test_dropped_connection_before_the_write_resends(sandbox_factory) -> None:
    sandbox = sandbox_factory()
    sandbox.fault(kind="drop", function="core_user_create_users", count=1)
    with MoodleClient.connect(sandbox.url, TOKEN, backoff=0.01) as client:
        results = client.create_users(people(5))
    assert all(r.ok for r in results)
    assert len(sandbox.users()) == 2 + 5


def test_reads_retry_through_5xx(sandbox_factory) -> None:
    sandbox = sandbox_factory()
    sandbox.fault(kind="http_500", function="core_user_get_users_by_field", count=2)
    with MoodleClient.connect(sandbox.url, TOKEN, backoff=0.01) as client:
        assert client.get_users_by_field("username", ["admin"])[0]["id"] == 2
        assert client.transport.stats.retries == 2


def test_unreachable_moodle_is_unavailable() -> None:
    with MoodleClient.connect("http://127.0.0.1:9", TOKEN, attempts=2, backoff=0.01) as client:
        with pytest.raises(MoodleUnavailable, match="cannot connect"):
            client.site_info()


def test_update_users_reads_per_item_warnings(sandbox, client: MoodleClient) -> None:
    created = client.create_users(people(3))
    ids = [r.remote_id for r in created]
    results = client.update_users([
        {"id": ids[0], "city": "Казань"},
        {"id": 999999, "city": "Nowhere"},
        {"id": ids[2], "email": people(3)[1]["email"]},
    ])
    assert results[0].ok and not results[1].ok and not results[2].ok
    assert results[1].code == "invaliduserid"
    assert results[2].error == ("Адрес почты уже используется другой учётной записью Moodle "
                                "(useremailduplicate)")
    assert sandbox.server.site.store.one("SELECT city FROM user WHERE id = ?", (ids[0],))["city"] == "Казань"


def test_update_with_a_weak_password_is_isolated(sandbox, client: MoodleClient) -> None:
    """Moodle crashes building its own warning (invalid_response): bisection isolates the user."""
    ids = [r.remote_id for r in client.create_users(people(4))]
    results = client.update_users([{"id": ids[0], "city": "A"}, {"id": ids[1], "password": "abc"},
                                   {"id": ids[2], "city": "C"}])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code == "invalidresponse"


def test_delete_courses_reports_each_course(sandbox, client: MoodleClient) -> None:
    created = client.create_courses([{"fullname": f"Курс {i}", "shortname": f"del-{i}", "categoryid": 1}
                                     for i in range(2)])
    ids = [r.remote_id for r in created]
    results = client.delete_courses([ids[0], 1, ids[1]])  # the site course (1) cannot be deleted
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].code == "cannotdeletecourse"
    assert all(r.ok for r in client.delete_courses([ids[0]]))  # already gone: nothing left to do
    assert sandbox.server.site.store.q("SELECT id FROM course WHERE id IN (?, ?)", tuple(ids)) == []


def test_update_categories_in_one_call_a_bad_one_alone(sandbox, client: MoodleClient) -> None:
    created = client.create_categories([{"name": f"Кафедра {i}", "parent": 0, "idnumber": f"K{i}"} for i in range(3)])
    ids = [r.remote_id for r in created]
    before = sandbox.calls("core_course_update_categories")
    results = client.update_categories([{"id": ids[0], "name": "Кафедра А"}, {"id": 99999, "name": "Нет такой"},
                                        {"id": ids[2], "name": "Кафедра В"}])
    assert [r.ok for r in results] == [True, False, True] and results[1].error
    names = {r["id"]: r["name"] for r in sandbox.server.site.store.q("SELECT id, name FROM course_categories")}
    assert names[ids[0]] == "Кафедра А" and names[ids[2]] == "Кафедра В"
    before = sandbox.calls("core_course_update_categories")
    assert all(r.ok for r in client.update_categories([{"id": i, "description": "Обновлено"} for i in ids]))
    assert sandbox.calls("core_course_update_categories") - before == 1  # all valid: one call, not one each


def test_each_retry_is_logged_with_its_cause(sandbox, client, caplog) -> None:
    import logging
    sandbox.fault(kind="http_503", function="core_user_get_users_by_field", count=2)
    caplog.set_level(logging.WARNING, logger="bufsync.moodle")
    assert client.get_users_by_field("username", ["admin"])[0]["username"] == "admin"
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2, retries
    assert all("core_user_get_users_by_field" in m and "503" in m for m in retries)
    import re
    assert re.search(r"retry 1 of \d+ in \d+\.\d s$", retries[0]), retries  # which retry, and its wait
    assert re.search(r"retry 2 of \d+ in \d+\.\d s$", retries[1]), retries
