"""The sandbox's enrolments and roles (functions/enrol.py).

The recorded `enrolments` exchanges are replayed in-process on a site prepared by replaying the
earlier topics (users, and categories/courses when those modules exist; a minimal stand-in for the
course rows otherwise), checking each body and the stored state (`db_after`) in both debug modes.
Further tests cover what the recording does not show, following Moodle 4.5.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bufsync.sandbox.moodle.functions import enrol
from bufsync.sandbox.moodle.site import Site, SiteConfig
from tests.integration.contract import replay
from tests.integration.contract.sandbox_setup import SETUP_ACTIONS

TOKEN = "feedfacefeedfacefeedfacefeedface"
TEACHER_TOKEN = "7eac7eac7eac7eac7eac7eac7eac7eac"
STUDENT_TOKEN = "57d57d57d57d57d57d57d57d57d57d57"


def _pairs(function: str, params: list[tuple[str, str]] | list[list[str]], token: str = TOKEN) -> list[tuple[str, str]]:
    return [("wstoken", token), ("wsfunction", function), ("moodlewsrestformat", "json")] + [
        (k, v) for k, v in params]


def call(site: Site, function: str, params: list[tuple[str, str]] | list[list[str]] | None = None,
         token: str = TOKEN) -> Any:
    response = site.call(_pairs(function, params or [], token))
    return json.loads(response.body) if response.body != b"null" else None


def _setup(site: Site, step: dict[str, Any]) -> None:
    for action, args in SETUP_ACTIONS[step["name"]]:
        site.admin(action, args)


def _replay_topic(site: Site, topic: str) -> None:
    """Run a recorded topic for its side effects (state and ids), as the contract replay does."""
    data = replay.load(topic)
    for exchange in data["exchanges"]:
        for step in data.get("setup_steps") or []:
            if step["before_exchange"] == exchange["name"]:
                _setup(site, step)
        request = exchange["request"]
        if "params" in request and request.get("wsfunction"):
            site.call(_pairs(request["wsfunction"], request["params"]))


def prepared_site(debug: bool = False) -> Site:
    """A site in the state the enrolments topic starts from."""
    site = Site(SiteConfig(token=TOKEN, debug=debug))
    for topic in ("users", "categories", "courses"):
        _replay_topic(site, topic)
    return site


def db_after(site: Site, courseid: int) -> list[dict[str, Any]]:
    """The recording's db_after: user_enrolments of the course + the user's role shortnames there."""
    rows = site.store.q(
        "SELECT ue.userid, u.username, e.enrol, ue.status, ue.timestart, ue.timeend FROM user_enrolments ue "
        "JOIN enrol e ON e.id = ue.enrolid JOIN user u ON u.id = ue.userid WHERE e.courseid = ? ORDER BY ue.userid",
        (courseid,))
    out = []
    for r in rows:
        roles = [x["shortname"] for x in enrol.user_roles_in_course(site, r["userid"], courseid)]
        out.append({**dict(r), "roles": sorted(roles)})
    return out


def _debug_bodies() -> dict[str, Any]:
    return replay.debug_bodies()


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_recorded_enrolments(debug: bool) -> None:
    site = prepared_site(debug)
    data = replay.load("enrolments")
    debug_bodies = _debug_bodies() if debug else {}
    problems = []
    for exchange in data["exchanges"]:
        for step in data["setup_steps"]:
            if step["before_exchange"] == exchange["name"]:
                _setup(site, step)
        for step in replay.NOTED_STEPS.get("enrolments", []):
            if step["before_exchange"] == exchange["name"]:
                _setup(site, step)
        request = exchange["request"]
        got = call(site, request["wsfunction"], request["params"])
        want = debug_bodies.get(f"enrolments/{exchange['name']}", exchange["response"]["body"])
        if replay.normalise(got, site.config.site_url) != replay.normalise(want, site.config.site_url):
            problems.append(f"{exchange['name']}:\n  got  {json.dumps(got, ensure_ascii=False)[:600]}\n"
                            f"  want {json.dumps(want, ensure_ascii=False)[:600]}")
        if "db_after" in exchange:
            courseid = int(dict(request["params"])["enrolments[0][courseid]"])
            state = db_after(site, courseid)
            if state != exchange["db_after"]:
                problems.append(f"{exchange['name']} db_after:\n  got  {state}\n  want {exchange['db_after']}")
    site.close()
    assert not problems, "\n".join(problems)


# --- beyond the recording --------------------------------------------------------------------------

@pytest.fixture()
def site() -> Any:
    site = prepared_site()
    yield site
    site.close()


def _enrol(site: Site, userid: int, courseid: int, roleid: int = 5, token: str = TOKEN, **extra: str) -> Any:
    params = [("enrolments[0][roleid]", str(roleid)), ("enrolments[0][userid]", str(userid)),
              ("enrolments[0][courseid]", str(courseid))] + [(f"enrolments[0][{k}]", v) for k, v in extra.items()]
    return call(site, "enrol_manual_enrol_users", params, token)


def test_helpers_see_enrolments(site: Site) -> None:
    assert _enrol(site, 3, 2) is None
    assert _enrol(site, 4, 2, suspend="1") is None
    assert _enrol(site, 5, 2, timestart=str(int(time.time()) + 86400)) is None
    assert enrol.enrolled_user_ids(site, 2) == [3, 4, 5]
    assert enrol.enrolled_user_ids(site, 2, active_only=True) == [3]
    assert enrol.is_enrolled(site, 4, 2) and not enrol.is_enrolled(site, 4, 2, active_only=True)
    assert not enrol.is_enrolled(site, 7, 2)
    assert enrol.enabled_enrol_methods(site, 2) == ["manual"]
    assert enrol.user_course_ids(site, 3) == [2]


def test_deleting_a_user_removes_enrolments_and_roles(site: Site) -> None:
    _enrol(site, 7, 2)
    _enrol(site, 7, 2, roleid=3)
    cleaned: list[tuple[int, int]] = []
    enrol.UNENROL_HOOKS.append(lambda s, courseid, userid: cleaned.append((courseid, userid)))
    try:
        assert call(site, "core_user_delete_users", [("userids[0]", "7")]) is None
    finally:
        enrol.UNENROL_HOOKS.pop()
    assert cleaned == [(2, 7)]
    assert not enrol.is_enrolled(site, 7, 2)
    assert site.store.one("SELECT COUNT(*) AS n FROM role_assignments WHERE userid = 7")["n"] == 0


def test_enrolled_users_sort_errors_and_userfields(site: Site) -> None:
    _enrol(site, 3, 2)
    bad = call(site, "core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "sortby"),
                                                        ("options[0][value]", "email")])
    assert bad["errorcode"] == "invalidparameter"
    bad = call(site, "core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "userfields"),
                                                        ("options[0][value]", "id,nosuch")])
    assert bad == {"exception": "core\\exception\\moodle_exception", "errorcode": "invaliduserfield",
                   "message": "Invalid user field: nosuch"}
    only = call(site, "core_enrol_get_enrolled_users", [("courseid", "2"), ("options[0][name]", "userfields"),
                                                         ("options[0][value]", "id")])
    assert only == [{"id": 3, "fullname": "Иван Иванов-Петров"}]


def test_unenrol_unknown_course_is_a_missing_record(site: Site) -> None:
    got = call(site, "enrol_manual_unenrol_users", [("enrolments[0][userid]", "3"),
                                                     ("enrolments[0][courseid]", "99999")])
    assert got["exception"] == "dml_missing_record_exception" and got["errorcode"] == "invalidrecord"


def test_assign_and_unassign_roles(site: Site) -> None:
    _enrol(site, 3, 2)
    assert call(site, "core_role_assign_roles", [
        ("assignments[0][roleid]", "4"), ("assignments[0][userid]", "3"),
        ("assignments[0][contextlevel]", "course"), ("assignments[0][instanceid]", "2")]) is None
    assert [r["shortname"] for r in enrol.user_roles_in_course(site, 3, 2)] == ["teacher", "student"]
    # a role that cannot be assigned at course level (authenticated user)
    got = call(site, "core_role_assign_roles", [
        ("assignments[0][roleid]", "7"), ("assignments[0][userid]", "3"),
        ("assignments[0][contextlevel]", "course"), ("assignments[0][instanceid]", "2")])
    assert got["errorcode"] == "invalidparameter"
    # an unknown course: the context does not exist
    got = call(site, "core_role_assign_roles", [
        ("assignments[0][roleid]", "5"), ("assignments[0][userid]", "3"),
        ("assignments[0][contextlevel]", "course"), ("assignments[0][instanceid]", "99999")])
    assert got["errorcode"] == "invalidparameter"
    got = call(site, "core_role_assign_roles", [
        ("assignments[0][roleid]", "5"), ("assignments[0][userid]", "3"), ("assignments[0][contextlevel]", "galaxy"),
        ("assignments[0][instanceid]", "2")])
    assert got["errorcode"] == "invalidparameter"
    assert call(site, "core_role_unassign_roles", [
        ("unassignments[0][roleid]", "4"), ("unassignments[0][userid]", "3"),
        ("unassignments[0][contextlevel]", "course"), ("unassignments[0][instanceid]", "2")]) is None
    assert [r["shortname"] for r in enrol.user_roles_in_course(site, 3, 2)] == ["student"]
    # a role without an enrolment does not make the user enrolled
    call(site, "core_role_assign_roles", [
        ("assignments[0][roleid]", "5"), ("assignments[0][userid]", "4"),
        ("assignments[0][contextlevel]", "course"), ("assignments[0][instanceid]", "2")])
    assert not enrol.is_enrolled(site, 4, 2)


def test_enabled_self_and_guest_are_listed(site: Site) -> None:
    site.admin("set_enrol_instance_status", {"courseid": 2, "enrol": "self", "status": 0})
    site.admin("set_enrol_instance_status", {"courseid": 2, "enrol": "guest", "status": 0})
    got = call(site, "core_enrol_get_course_enrolment_methods", [("courseid", "2")])
    assert [(m["type"], m["name"], m["status"]) for m in got] == [
        ("guest", "Guest access", True), ("self", "Self enrolment (Student)", True)]
    assert got[0]["wsfunction"] == "enrol_guest_get_instance_info" and "wsfunction" not in got[1]
    assert enrol.enabled_enrol_methods(site, 2) == ["manual", "guest", "self"]


def test_teacher_and_student_tokens(site: Site) -> None:
    _enrol(site, 3, 2, roleid=3)  # ivanov teaches PY-101
    _enrol(site, 4, 2)
    site.admin("add_token", {"token": TEACHER_TOKEN, "userid": 3})
    site.admin("add_token", {"token": STUDENT_TOKEN, "userid": 4})
    assert _enrol(site, 5, 2, token=TEACHER_TOKEN) is None
    got = _enrol(site, 8, 2, roleid=1, token=TEACHER_TOKEN)
    assert got["errorcode"] == "wsusercannotassign"
    got = _enrol(site, 8, 3, token=TEACHER_TOKEN)  # not enrolled in (hidden) DB-201
    assert got["exception"] == "core\\exception\\require_login_exception"
    got = _enrol(site, 8, 2, token=STUDENT_TOKEN)
    assert got == {"exception": "core\\exception\\required_capability_exception", "errorcode": "nopermissions",
                   "message": "Sorry, but you do not currently have permissions to do that (Enrol users)."}
    listed = call(site, "core_enrol_get_enrolled_users", [("courseid", "2")], token=STUDENT_TOKEN)
    assert [u["id"] for u in listed] == [3, 4, 5]
    assert "username" not in listed[0] and listed[1]["username"] == "petrova"  # only one's own username


def test_mail_breaks_only_where_a_teacher_sends_it(site: Site) -> None:
    site.admin("break_mail", {"calls": 1})
    assert _enrol(site, 3, 2) is None  # no course contact yet: no message, the break is not used up
    _enrol(site, 4, 2, roleid=3)
    got = _enrol(site, 5, 2)
    assert got["errorcode"] == "Message was not sent."
    assert enrol.is_enrolled(site, 5, 2)  # saved before the mail failed
    assert _enrol(site, 7, 2) is None  # one call only


def test_course_contacts(site: Site) -> None:
    _enrol(site, 3, 2, roleid=3)
    _enrol(site, 4, 2, roleid=3, suspend="1")
    assert enrol.course_contacts(site, 2) == [3, 4]  # who may send the welcome message
    assert enrol.course_contacts(site, 2, active_only=True) == [3]  # who course listings show
