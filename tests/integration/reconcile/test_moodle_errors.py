"""Moodle's refusals end to end: buffer -> bufsync run -> the sandbox Moodle over HTTP -> what Moodle holds (read
back over its Web Services) and what each buffer row says. A bad row fails alone with the field, what was found
and what is allowed; a refused token or service stops the run as a configuration error (exit 2) saying what to
fix; a Moodle answering 503 to writes stops it as unavailable (exit 4) saying so, and nothing is marked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bufsync import commands, tls
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.config import load_settings
from bufsync.errors import ConfigError
from bufsync.runner import RunBusy
from bufsync.sandbox.faults import FaultRule
from tests.integration.reconcile.conftest import TOKEN, World, people
from tests.integration.reconcile.test_cli_run import bufsync


def moodle(world: World) -> MoodleClient:
    return MoodleClient.connect(world.moodle.url, TOKEN, timeout=10)


def held(world: World, usernames: list[str]) -> dict[str, dict[str, Any]]:
    """The users Moodle holds now, read over its Web Services."""
    with moodle(world) as client:
        return {u["username"]: u for u in client.get_users_by_field("username", usernames)}


def rows(world: World, table: str = "buf_users") -> dict[str, dict[str, Any]]:
    return {r["external_id"]: r for r in world.rows(table)}


def admin(world: World, action: str, **args: Any) -> Any:
    response = httpx.post(f"{world.moodle.url}/sandbox/admin", json={"action": action, "args": args},
                          headers={"X-Sandbox-Token": TOKEN}, verify=tls.verify())
    assert response.status_code == 200, response.text
    return response.json()["result"]


def test_each_bad_row_fails_alone_naming_the_field(world: World) -> None:
    batch = [row | {"phone": None, "auth": None} for row in people(6)]  # one insert: every row has the same keys
    batch[1]["phone"] = "+7 (912) 345-67-89 доб. 1234"   # 28 characters: mdl_user.phone1 holds 20
    batch[2]["auth"] = "ldapx"
    batch[3]["first_name"] = "Иван <b>x</b>"
    batch[4]["email"] = None
    batch[5]["first_name"] = "Иван < Пётр"              # no tag for Moodle: stored as it is
    world.insert("buf_users", batch)
    report = world.run("users")
    assert report.outcome == "rejected"
    got = rows(world)
    assert {k: r["sync_status"] for k, r in got.items()} == {
        "P00000": "ok", "P00001": "error", "P00002": "error", "P00003": "error", "P00004": "error", "P00005": "ok"}
    assert got["P00001"]["sync_error"] == ("Поле «Телефон» (phone1) длиннее, чем его хранит Moodle: 28 симв., "
                                           "допустимо не больше 20. Сократите значение в 1С (toolong)")
    assert got["P00002"]["sync_error"].startswith("Способ входа (auth) «ldapx»: такого плагина аутентификации в "
                                                  "Moodle нет. Допустимы установленные в Moodle плагины")
    assert got["P00003"]["sync_error"].startswith("Поле «Имя» (firstname) содержит HTML-разметку <b>, </b>")
    assert got["P00004"]["sync_error"].startswith("Не заполнен адрес почты (email): Moodle не создаёт учётную "
                                                  "запись без адреса почты")
    assert all(r["sync_error"].endswith(")") and r["lms_id"] is None for k, r in got.items() if k in
               ("P00001", "P00002", "P00003", "P00004"))
    users = held(world, [b["username"] for b in batch])
    assert set(users) == {"user00000", "user00005"}
    assert users["user00005"]["firstname"] == "Иван < Пётр" and got["P00005"]["lms_id"] == users["user00005"]["id"]
    # fixed in 1C: only the fixed rows go again, and are created
    world.update("buf_users", lambda t: t.c.external_id == "P00001", phone="+7 912 345-67-89")
    world.update("buf_users", lambda t: t.c.external_id == "P00002", auth="ldap")
    world.run("users")
    got = rows(world)
    assert got["P00001"]["sync_status"] == got["P00002"]["sync_status"] == "ok"
    users = held(world, ["user00001", "user00002"])
    assert users["user00001"]["phone1"] == "+7 912 345-67-89" and users["user00002"]["auth"] == "ldap"


def test_clearing_the_email_of_a_person_is_refused_with_the_reason(world: World) -> None:
    world.insert("buf_users", people(2))
    world.run("users")
    world.update("buf_users", lambda t: t.c.external_id == "P00001", email=None, last_name="Петрова")
    report = world.run("users")
    assert report.outcome == "rejected"
    got = rows(world)["P00001"]
    assert got["sync_status"] == "error" and got["sync_error"].endswith("(useremailinvalid)")
    assert "Moodle не позволяет оставить учётную запись без адреса почты" in got["sync_error"]
    user = held(world, ["user00001"])["user00001"]
    assert (user["email"], user["lastname"]) == ("user00001@college.example", "Иванов1")  # nothing half-applied


def test_a_course_name_longer_than_moodle_holds(world: World) -> None:
    world.insert("buf_courses", [{"external_id": "C-OK", "shortname": "ok-101", "fullname": "Курс"},
                                 {"external_id": "C-LONG", "shortname": "long-101", "fullname": "Я" * 255}])
    report = world.run("courses")
    assert report.outcome == "rejected"
    got = rows(world, "buf_courses")
    assert got["C-OK"]["sync_status"] == "ok"
    assert got["C-LONG"]["sync_error"] == ("Поле «Полное название» (fullname) длиннее, чем его хранит Moodle: 255 "
                                           "симв., допустимо не больше 254. Сократите значение в 1С (toolong)")
    with moodle(world) as client:
        assert client.get_courses_by_field("shortname", "long-101") == []
        assert [c["idnumber"] for c in client.get_courses_by_field("shortname", "ok-101")] == ["C-OK"]


def _run_with(world: World, **env: str) -> Any:
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.engine.url.render_as_string(hide_password=False),
                                  "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN, **env})
    return commands.run(loaded, ["users"])


def test_a_wrong_token_is_a_configuration_error(world: World) -> None:
    world.insert("buf_users", people(3))
    wrong = "0badc0de" * 4
    with pytest.raises(ConfigError) as err:
        _run_with(world, BUFSYNC_MOODLE_TOKEN=wrong)
    assert err.value.exit_code == 2
    text = str(err.value)
    assert text.startswith("moodle.token: Moodle refused: Invalid token - token not found (invalidtoken)")
    assert "set BUFSYNC_MOODLE_TOKEN (moodle.token) to it" in text and wrong not in text
    assert world.rows("sync_runs")[-1]["outcome"] == "failed" and wrong not in world.rows("sync_runs")[-1]["error"]
    assert all(r["sync_status"] is None for r in world.rows("buf_users")) and held(world, ["user00000"]) == {}
    result = bufsync(world, "run", "users", BUFSYNC_MOODLE_TOKEN=wrong)
    assert result.returncode == 2 and "configuration error" in result.stderr
    assert "BUFSYNC_MOODLE_TOKEN (moodle.token)" in result.stderr and wrong not in result.stdout + result.stderr


def test_a_run_with_nothing_to_do_makes_no_moodle_call_and_the_token_is_checked_before_the_first(world: World) -> None:
    world.insert("buf_users", people(3))
    assert world.run("users").outcome == "ok"
    world.moodle.set_faults({"reset_stats": True})
    assert world.run("users").outcome == "ok"
    assert world.moodle.stats()["total"] == 0  # not even the site's info: nothing changed, nothing to ask
    world.update("buf_users", lambda t: t.c.external_id == "P00001", last_name="Новая")
    assert world.run("users").outcome == "ok"
    calls = world.moodle.stats()["calls"]
    assert calls["core_webservice_get_site_info"] == 1 and calls["core_user_update_users"] == 1
    assert held(world, ["user00001"])["user00001"]["lastname"] == "Новая"


def test_a_function_missing_from_the_service_and_web_services_off(world: World) -> None:
    world.insert("buf_users", people(3))
    admin(world, "service", remove=["core_user_create_users"])
    with pytest.raises(ConfigError) as err:
        world.run("users")
    assert "Add core_user_create_users to the bufsync service" in str(err.value) and err.value.exit_code == 2
    admin(world, "service", add=["core_user_create_users"], rest=False)
    with pytest.raises(ConfigError) as err:
        world.run("users")
    assert str(err.value).startswith("moodle.url: core_webservice_get_site_info: ")
    assert "answered HTTP 403 (Forbidden): web services or the REST protocol are disabled" in str(err.value)
    admin(world, "service", rest=True)
    assert world.run("users").outcome == "ok" and len(held(world, ["user00000", "user00001", "user00002"])) == 3


def test_moodle_answering_503_to_writes_stops_the_run_saying_so(world: World) -> None:
    world.insert("buf_users", people(4))
    world.moodle.faults.add(FaultRule(kind="http_503", function="core_user_create_users", count=1000))
    with pytest.raises(RunBusy) as err:
        world.run("users")
    text = str(err.value)
    assert err.value.exit_code == 4 and "RuntimeError" not in text
    assert "core_user_create_users: Moodle answered HTTP 503 (Service Unavailable) to 3 attempts" in text
    assert "nothing was marked ok that did not happen" in text
    assert "HTTP 503 (Service Unavailable)" in world.rows("sync_runs")[-1]["error"]
    assert all(r["sync_status"] is None for r in world.rows("buf_users"))
    assert held(world, [f"user{i:05d}" for i in range(4)]) == {}
    world.moodle.faults.clear()
    assert world.run("users").outcome == "ok"
    assert len(held(world, [f"user{i:05d}" for i in range(4)])) == 4
    assert all(r["sync_status"] == "ok" for r in world.rows("buf_users"))


def test_a_profile_field_moodle_lacks_is_reported_on_the_row(world: World) -> None:
    batch = [row | {"snils": None} for row in people(2)]
    batch[0]["snils"] = "123-456-789 01"
    world.insert("buf_users", batch)
    world.run("users")
    got = rows(world)
    users = held(world, ["user00000", "user00001"])
    assert "customfields" not in users["user00000"]  # the sandbox, as Moodle, dropped it without a word
    assert got["P00000"]["lms_id"] == users["user00000"]["id"]
    assert "«snils»" in (got["P00000"]["sync_error"] or "") and got["P00000"]["sync_error"].endswith(
        "(profilefieldmissing)")
    assert got["P00001"]["sync_status"] == "ok" and got["P00001"]["sync_error"] is None
    assert got["P00000"]["sync_status"] == "warning"
    # a run with nothing new keeps the warning and writes nothing
    writes = world.writes()
    report = world.run("users")
    assert world.writes() == writes and rows(world)["P00000"]["sync_status"] == "warning"
    assert report.mappings[0].counts["unchanged"] == 2
    # the field created in Moodle, --full stores the value and the warning goes
    admin(world, "create_profile_field", shortname="snils", name="СНИЛС")
    world.run("users", full=True)
    assert rows(world)["P00000"]["sync_status"] == "ok" and rows(world)["P00000"]["sync_error"] is None
    user = held(world, ["user00000"])["user00000"]
    assert {c["shortname"]: c["value"] for c in user["customfields"]}["snils"] == "123-456-789 01"


def test_check_says_which_profile_fields_moodle_lacks(world: World) -> None:
    def profile() -> Any:
        items = {item.name: item for item in commands.check(world.loaded)}
        assert items["moodle"].ok, items["moodle"].detail
        return items["profile"]

    batch = [row | {"snils": None} for row in people(3)]
    world.insert("buf_users", batch)
    world.insert("buf_user_fields", [{"user_external_id": "P00001", "field": "group", "value": "ИВТ-21"}])
    item = profile()  # nothing synced yet: no evidence either way
    assert item.ok is None and "not verifiable yet: group, snils" in item.detail
    world.update("buf_users", lambda t: t.c.external_id == "P00000", snils="123-456-789 01")
    admin(world, "create_profile_field", shortname="group", name="Группа")
    world.run("users")
    item = profile()
    assert item.ok is False
    assert item.detail.startswith("Moodle has no custom profile field snils (none of 1 linked users with a value "
                                  "holds one in Moodle)")
    assert "Site administration > Users > Accounts > User profile fields" in item.detail
    assert "Moodle holds values of group" in item.detail
    admin(world, "create_profile_field", shortname="snils", name="СНИЛС")
    world.run("users", full=True)  # the value dropped before is repaired (drift)
    item = profile()
    assert item.ok is True and item.detail == "Moodle holds values of group, snils"
    assert [c["value"] for c in held(world, ["user00000"])["user00000"]["customfields"]] == ["123-456-789 01"]
