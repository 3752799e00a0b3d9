"""The client names what Moodle refuses: a token or service the administrator must fix, a 5xx on a write, and
record values Moodle 4.5 would refuse (checked locally, so each such row fails alone with the field, what was
found and what is allowed, and its batch goes on). Each test reads back what the sandbox now holds."""

from __future__ import annotations

import pytest

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleConfigError, MoodleError, MoodleUnavailable
from tests.integration.adapters.moodle.conftest import TOKEN
from tests.integration.adapters.moodle.test_client import people


def usernames(sandbox) -> set[str]:
    return {u["username"] for u in sandbox.users()}


# -- the token, its service, the protocol: configuration errors that say what to fix ----------------------------

def test_a_wrong_token_says_which_setting_to_fix_and_never_shows_the_token(sandbox) -> None:
    wrong = "0123456789abcdef" * 2
    with MoodleClient.connect(sandbox.url, wrong) as client:
        with pytest.raises(MoodleError) as err:
            client.site_info()
    assert err.value.is_config_error and err.value.errorcode == "invalidtoken"
    fix = err.value.fix()
    assert fix.startswith("Moodle refused: Invalid token - token not found (invalidtoken)")
    assert "BUFSYNC_MOODLE_TOKEN (moodle.token)" in fix and "Manage tokens" in fix and wrong not in fix


def test_an_expired_token_is_named_when_moodle_says_so(sandbox_factory) -> None:
    sandbox = sandbox_factory(debug=True)
    sandbox.admin("add_token", token="e" * 32, validuntil=1)
    with MoodleClient.connect(sandbox.url, "e" * 32) as client:
        with pytest.raises(MoodleError) as err:
            client.site_info()
        assert err.value.is_config_error and "has expired" in err.value.fix()
        with pytest.raises(MoodleError) as again:  # Moodle deleted it on first use
            client.site_info()
    assert again.value.errorcode == "invalidtoken"


def test_a_disabled_service_lists_the_possible_causes(sandbox) -> None:
    sandbox.admin("service", enabled=False)
    with MoodleClient.connect(sandbox.url, TOKEN) as client:
        with pytest.raises(MoodleError) as err:
            client.site_info()
    fix = err.value.fix()
    assert err.value.is_config_error and err.value.errorcode == "accessexception"
    assert "its external service is disabled" in fix and "has expired" in fix and "External services" in fix


def test_a_function_missing_from_the_service_is_named(sandbox, client: MoodleClient) -> None:
    sandbox.admin("service", remove=["core_user_create_users"])
    assert client.missing_functions() == ["core_user_create_users"]
    with pytest.raises(MoodleError) as err:  # concerns every record: not split by bisection
        client.create_users(people(4))
    assert err.value.is_config_error
    assert "Add core_user_create_users to the bufsync service" in err.value.fix()
    assert sandbox.calls("core_user_create_users") == 1


def test_web_services_off_is_a_configuration_error(sandbox, client: MoodleClient) -> None:
    sandbox.admin("service", rest=False)
    with pytest.raises(MoodleConfigError, match=r"HTTP 403 \(Forbidden\): web services or the REST protocol are "
                                                r"disabled"):
        client.site_info()


# -- a 5xx on a write: the status and that the outcome is unknown, never a blind resend -----------------------------

def test_a_503_on_every_create_stops_with_the_status_and_creates_nothing_twice(sandbox) -> None:
    sandbox.fault(kind="http_503", function="core_user_create_users", count=100)
    with MoodleClient.connect(sandbox.url, TOKEN, timeout=5, backoff=0.01) as client:
        with pytest.raises(MoodleUnavailable) as err:
            client.create_users(people(3))
    text = str(err.value)
    assert err.value.status == 503 and "RuntimeError" not in text
    assert "Moodle answered HTTP 503 (Service Unavailable) to 3 attempts" in text
    assert "whether the last one was applied is unknown" in text and "the next run reads Moodle first" in text
    assert sandbox.calls("core_user_get_users_by_field") == 3  # each attempt after reading back
    assert usernames(sandbox) == {"guest", "admin"}


def test_a_503_then_success_creates_each_user_once(sandbox) -> None:
    sandbox.fault(kind="http_503", function="core_user_create_users", count=2)
    with MoodleClient.connect(sandbox.url, TOKEN, timeout=5, backoff=0.01) as client:
        results = client.create_users(people(3))
    assert all(r.ok for r in results)
    assert usernames(sandbox) == {"guest", "admin", "u00000", "u00001", "u00002"}


# -- record values Moodle refuses: each fails alone, named exactly -------------------------------------------------

def test_auth_must_be_an_installed_plugin(sandbox, client: MoodleClient) -> None:
    batch = people(6)
    batch[1]["auth"] = "ldapx"         # not installed: Moodle says only "Invalid parameter value detected"
    batch[2]["auth"] = "ldap"          # standard: no question asked
    batch[3]["auth"] = "mnet"          # installed, but not for new accounts
    batch[4]["auth"] = "Manual"        # not a plugin name
    batch[5]["auth"] = "ldapx"
    results = client.create_users(batch)
    assert [r.ok for r in results] == [True, False, True, False, False, False]
    assert results[1].error == (
        "Способ входа (auth) «ldapx»: такого плагина аутентификации в Moodle нет. Допустимы установленные в Moodle "
        "плагины аутентификации; стандартные в Moodle 4.5: manual, nologin, email, cas, db, ldap, lti, none, "
        "oauth2, shibboleth; пусто — manual (invalidparameter)")
    assert "нельзя назначить новой учётной записи" in results[3].error
    assert "не имя плагина аутентификации" in results[4].error
    assert not any(r.sent for r in results if not r.ok)
    assert sandbox.calls("core_user_update_users") == 1  # one question for ldapx, asked once
    assert sandbox.calls("core_user_create_users") == 1  # the valid ones in one call
    assert {u["username"]: u["auth"] for u in sandbox.users() if u["id"] > 2} == {"u00000": "manual",
                                                                                  "u00002": "ldap"}
    update = client.update_users([{"id": results[0].remote_id, "auth": "ldapx"}])
    assert update[0].code == "invalidparameter" and "«ldapx»" in update[0].error
    assert client.get_users_by_field("id", [results[0].remote_id])[0]["auth"] == "manual"


def test_tags_in_names_and_long_values_fail_alone(sandbox, client: MoodleClient) -> None:
    batch = people(5)
    batch[1]["firstname"] = "Иван <b>x</b>"
    batch[2]["phone1"] = "+7 (912) 345-67-89 доб. 1234"   # 28 characters, mdl_user.phone1 holds 20
    batch[3]["firstname"] = "Иван < Пётр"                  # "< " is no tag: Moodle stores it as it is
    batch[4]["lastname"] = "Я" * 101
    results = client.create_users(batch)
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert results[1].error == (
        "Поле «Имя» (firstname) содержит HTML-разметку <b>, </b>: Moodle принимает в этом поле только текст без тегов "
        "и отвергает значение целиком (знак < допустим, если за ним пробел: «a < b»). Уберите разметку в 1С "
        "(invalidparameter)")
    assert results[2].error == ("Поле «Телефон» (phone1) длиннее, чем его хранит Moodle: 28 симв., допустимо не "
                                "больше 20. Сократите значение в 1С (toolong)")
    assert results[2].code == "toolong" and "«Фамилия» (lastname)" in results[4].error and "101" in results[4].error
    held = {u["username"]: u["firstname"] for u in sandbox.users() if u["id"] > 2}
    assert held == {"u00000": "Иван", "u00003": "Иван < Пётр"}
    assert sandbox.calls("core_user_create_users") == 1
    update = client.update_users([{"id": results[0].remote_id, "phone1": "8" * 21},
                                  {"id": results[3].remote_id, "phone1": "8" * 20}])
    assert [r.ok for r in update] == [False, True] and update[0].code == "toolong"


def test_courses_and_categories_too(sandbox, client: MoodleClient) -> None:
    courses = client.create_courses([
        {"shortname": "ok", "fullname": "Курс", "categoryid": 1},
        {"shortname": "long", "fullname": "Я" * 255, "categoryid": 1},
        {"shortname": "<i>x</i>", "fullname": "Курс", "categoryid": 1},
        {"shortname": "idn", "fullname": "Курс", "categoryid": 1, "idnumber": "x" * 101}])
    assert [r.ok for r in courses] == [True, False, False, False]
    assert "«Полное название» (fullname)" in courses[1].error and "255 симв., допустимо не больше 254" in \
        courses[1].error
    assert "«Краткое название» (shortname) содержит HTML-разметку <i>, </i>" in courses[2].error
    assert "(idnumber)" in courses[3].error and "не больше 100" in courses[3].error
    assert [c["shortname"] for c in client.get_courses_by_field("shortname", "ok")] == ["ok"]
    update = client.update_courses([{"id": courses[0].remote_id, "fullname": "Я" * 300}])
    assert update[0].code == "toolong" and client.get_courses_by_field("id", courses[0].remote_id)[0]["fullname"] \
        == "Курс"
    categories = client.create_categories([{"name": "Кафедра", "idnumber": "K1"},
                                           {"name": "Я" * 256, "idnumber": "K2"}])
    assert [r.ok for r in categories] == [True, False]
    assert "«Наименование» (name)" in categories[1].error and categories[1].sent is False
    assert [c["idnumber"] for c in client.get_categories([{"key": "idnumber", "value": "K2"}])] == []


def test_email_is_required_by_moodle(sandbox, client: MoodleClient) -> None:
    batch = people(2)
    batch[1]["email"] = None
    results = client.create_users(batch)
    assert results[1].error == ("Не заполнен адрес почты (email): Moodle не создаёт учётную запись без адреса почты "
                                "(core_user_create_users требует действующий адрес). Заполните email в 1С "
                                "(invalidparameter)")
    update = client.update_users([{"id": results[0].remote_id, "email": "", "lastname": "Новая"}])
    assert update[0].code == "useremailinvalid" and "очищен" in update[0].error
    user = client.get_users_by_field("id", [results[0].remote_id])[0]
    assert (user["email"], user["lastname"]) == ("u00000@example.edu", "Иванов0")


# -- custom profile fields Moodle drops without a word ----------------------------------------------------------------

def test_a_value_moodle_did_not_store_is_a_warning(sandbox, client: MoodleClient) -> None:
    batch = people(3)
    for user in batch[:2]:
        user["customfields"] = [{"type": "snils", "value": "123-456-789 01"}]
    results = client.create_users(batch)
    assert all(r.ok for r in results)
    assert results[0].warning == results[1].warning
    assert results[0].warning.startswith("Учётная запись сохранена в Moodle, но значение дополнительного поля "
                                         "профиля «snils» Moodle не сохранил: такого поля профиля в Moodle нет")
    assert results[0].warning.endswith("(profilefieldmissing)") and results[2].warning is None
    assert "customfields" not in client.get_users_by_field("id", [results[0].remote_id])[0]


def test_a_field_moodle_has_is_confirmed_once(sandbox, client: MoodleClient) -> None:
    sandbox.admin("create_profile_field", shortname="snils", name="СНИЛС")
    first = people(2, "a")
    for user in first:
        user["customfields"] = [{"type": "snils", "value": "123-456-789 01"}]
    assert all(r.ok and r.warning is None for r in client.create_users(first))
    reads = sandbox.calls("core_user_get_users_by_field")
    second = people(2, "b")
    for user in second:
        user["customfields"] = [{"type": "snils", "value": "987-654-321 00"}, {"type": "group", "value": "ИВТ-21"}]
    results = client.create_users(second)
    assert all("«group»" in r.warning and "«snils»" not in r.warning for r in results)
    assert sandbox.calls("core_user_get_users_by_field") == reads + 1  # only group was still unconfirmed
    held = client.get_users_by_field("id", [results[0].remote_id])[0]["customfields"]
    assert [(c["shortname"], c["value"]) for c in held] == [("snils", "987-654-321 00")]


def test_a_profile_field_name_moodle_refuses(sandbox, client: MoodleClient) -> None:
    batch = people(2)
    batch[1]["customfields"] = [{"type": "учебная группа", "value": "ИВТ-21"}]
    results = client.create_users(batch)
    assert [r.ok for r in results] == [True, False] and not results[1].sent
    assert results[1].error.startswith("Краткое имя дополнительного поля профиля «учебная группа» недопустимо")
    assert usernames(sandbox) == {"guest", "admin", "u00000"}
