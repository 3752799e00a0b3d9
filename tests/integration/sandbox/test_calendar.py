"""Calendar group events (core_calendar_create_calendar_events, _delete_calendar_events, _get_calendar_events): an
online lesson's join link posted into a course as an event of the lesson's course group, read back, deleted.

One script, through MoodleClient over HTTP, run against the sandbox and compared with what the real Moodle 4.5
answered to it (REAL below, recorded from ../shared/moodle-real), and run against the real site too when
BUFSYNC_TEST_MOODLE_URL / _TOKEN are set (its service must hold the three functions, and a second, non-admin
token is made by fixtures/calendar_setup.php: see test_the_real_moodle_still_answers_so). Ids are replaced by
their order of appearance, times by their offset from the scenario's start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.transport import Transport
from bufsync.sandbox.moodle.run import start

TOKEN = "ca1e0da2ca1e0da2ca1e0da2ca1e0da2"
STUDENT_TOKEN = "5707e575707e575707e575707e57e57e"
ERR = "error"
T0 = 1767261600  # 2026-01-01 10:00 UTC: the lesson
SETUP_PHP = Path(__file__).resolve().parents[1] / "contract" / "fixtures" / "calendar_setup.php"
FUNCTIONS = ("core_calendar_create_calendar_events", "core_calendar_delete_calendar_events",
             "core_calendar_get_calendar_events")

# What the real Moodle 4.5 answered to script() (normalised), in order: the lesson's group event; a group of
# another course and a group that does not exist, both accepted (a site admin's token); a missing course and an
# unknown format, exceptions; three events at once (FORMAT_MOODLE stored as FORMAT_HTML, a series of 2 answered
# as rows with repeatid); reads (with userevents/siteevents off the group event is still found: the admin's
# calendar filters give no category, so Moodle's priority sub-query spans the whole event table); as a student
# of the course in g1: a group event refused with a warning, an own event made; a read with warnings (a course
# not entered, with PHP's trace, and a group not joined); a deletion refused (exception); deletions all or
# nothing, twice the same (invalidrecord), a series at once.
REAL: list[Any] = [{'id': '#event1',
      'name': 'Математика: онлайн-занятие',
      'description': '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>',
      'format': 1,
      'courseid': '#course1',
      'groupid': '#group1',
      'userid': '#user2',
      'modulename': '',
      'instance': 0,
      'eventtype': 'group',
      'timestart': 'T0+0',
      'timeduration': 5400,
      'visible': 1,
      'uuid': '',
      'sequence': 1,
      'timemodified': 'now',
      'subscriptionid': None},
     {'id': '#event2',
      'name': 'Группа чужого курса',
      'description': '',
      'format': 1,
      'courseid': '#course1',
      'groupid': '#group3',
      'userid': '#user2',
      'modulename': '',
      'instance': 0,
      'eventtype': 'group',
      'timestart': 'T0+60',
      'timeduration': 0,
      'visible': 1,
      'uuid': '',
      'sequence': 1,
      'timemodified': 'now',
      'subscriptionid': None},
     {'id': '#event3',
      'name': 'Группы нет',
      'description': '',
      'format': 1,
      'courseid': '#course1',
      'groupid': '#group4',
      'userid': '#user2',
      'modulename': '',
      'instance': 0,
      'eventtype': 'group',
      'timestart': 'T0+120',
      'timeduration': 0,
      'visible': 1,
      'uuid': '',
      'sequence': 1,
      'timemodified': 'now',
      'subscriptionid': None},
     (ERR, 'invalidrecord', "Can't find data record in database table course."),
     (ERR, 'formatnotsupported', 'webservice/formatnotsupported'),
     {'events': [{'id': '#event4',
                  'name': 'Moodle-формат',
                  'description': 'текст',
                  'format': 1,
                  'courseid': '#course1',
                  'groupid': '#group2',
                  'userid': '#user2',
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'group',
                  'timestart': 'T0+180',
                  'timeduration': 0,
                  'visible': 0,
                  'uuid': '',
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event5',
                  'name': 'Серия',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'groupid': '#group2',
                  'userid': '#user2',
                  'repeatid': '#event5',
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'group',
                  'timestart': 'T0+240',
                  'timeduration': 0,
                  'visible': 1,
                  'uuid': '',
                  'sequence': 3,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event6',
                  'name': 'Серия',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'groupid': '#group2',
                  'userid': '#user2',
                  'repeatid': '#event5',
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'group',
                  'timestart': 'T0+605040',
                  'timeduration': 0,
                  'visible': 1,
                  'uuid': '',
                  'sequence': 3,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event7',
                  'name': 'Курс целиком',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'groupid': 0,
                  'userid': '#user2',
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'course',
                  'timestart': 'T0+300',
                  'timeduration': 0,
                  'visible': 1,
                  'uuid': '',
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': []},
     {'events': [{'id': '#event1',
                  'name': 'Математика: онлайн-занятие',
                  'description': '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group1',
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+0',
                  'timeduration': 5400,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': []},
     {'events': [{'id': '#event1',
                  'name': 'Математика: онлайн-занятие',
                  'description': '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group1',
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+0',
                  'timeduration': 5400,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': []},
     {'events': [{'id': '#event4',
                  'name': 'Moodle-формат',
                  'description': 'текст',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group2',
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+180',
                  'timeduration': 0,
                  'visible': 0,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event5',
                  'name': 'Серия',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group2',
                  'userid': '#user2',
                  'repeatid': '#event5',
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+240',
                  'timeduration': 0,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event7',
                  'name': 'Курс целиком',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': None,
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'course',
                  'timestart': 'T0+300',
                  'timeduration': 0,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event6',
                  'name': 'Серия',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group2',
                  'userid': '#user2',
                  'repeatid': '#event5',
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+605040',
                  'timeduration': 0,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': []},
     {'events': [{'id': '#event1',
                  'name': 'Математика: онлайн-занятие',
                  'description': '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': 0,
                  'groupid': '#group1',
                  'userid': '#user2',
                  'repeatid': 0,
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'group',
                  'timestart': 'T0+0',
                  'timeduration': 5400,
                  'visible': 1,
                  'uuid': '',
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': []},
     {'events': [], 'warnings': []},
     {'events': [{'id': '#event8',
                  'name': 'Студент: своё',
                  'description': '',
                  'format': 1,
                  'courseid': 0,
                  'groupid': 0,
                  'userid': '#user1',
                  'modulename': '',
                  'instance': 0,
                  'eventtype': 'user',
                  'timestart': 'T0+30',
                  'timeduration': 0,
                  'visible': 1,
                  'uuid': '',
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': [{'item': 'Студент: группа',
                    'warningcode': 'nopermissions',
                    'message': 'you do not have permissions to create this event'}]},
     {'events': [{'id': '#event1',
                  'name': 'Математика: онлайн-занятие',
                  'description': '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': '#group1',
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'group',
                  'timestart': 'T0+0',
                  'timeduration': 5400,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event8',
                  'name': 'Студент: своё',
                  'description': '',
                  'format': 1,
                  'courseid': 0,
                  'categoryid': None,
                  'groupid': None,
                  'userid': '#user1',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'user',
                  'timestart': 'T0+30',
                  'timeduration': 0,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None},
                 {'id': '#event7',
                  'name': 'Курс целиком',
                  'description': '',
                  'format': 1,
                  'courseid': '#course1',
                  'categoryid': None,
                  'groupid': None,
                  'userid': '#user2',
                  'repeatid': None,
                  'modulename': None,
                  'instance': None,
                  'eventtype': 'course',
                  'timestart': 'T0+300',
                  'timeduration': 0,
                  'visible': 1,
                  'sequence': 1,
                  'timemodified': 'now',
                  'subscriptionid': None}],
      'warnings': [{'item': 'course',
                    'itemid': '#course2',
                    'warningcode': 'nopermissions',
                    'message': 'No access rights in course context Course or activity not accessible.#0 '
                               '/var/www/moodle/lib/external/classes/external_api.php(521): require_login()\n'
                               '#1 /var/www/moodle/calendar/externallib.php(201): '
                               'core_external\\external_api::validate_context()\n'
                               '#2 /var/www/moodle/webservice/lib.php(1504): '
                               'core_calendar_external::get_calendar_events()\n'
                               '#3 /var/www/moodle/webservice/lib.php(1350): webservice_base_server->execute()\n'
                               '#4 /var/www/moodle/webservice/rest/server.php(44): webservice_base_server->run()\n'
                               '#5 {main}'},
                   {'item': '#group2',
                    'warningcode': 'nopermissions',
                    'message': 'you do not have permissions to access this group'}]},
     (ERR, 'nopermissions', 'Sorry, but you do not currently have permissions to do that (Delete event).'),
     (ERR, 'invalidrecord', "Can't find data record in database table event."),
     ['Математика: онлайн-занятие'],
     None,
     (ERR, 'invalidrecord', "Can't find data record in database table event."),
     None,
     [{'name': 'Группа чужого курса', 'groupid': '#group3'},
      {'name': 'Группы нет', 'groupid': '#group4'},
      {'name': 'Moodle-формат', 'groupid': '#group2'},
      {'name': 'Курс целиком', 'groupid': None}]]


class Normaliser:
    """Ids by kind in order of appearance (#course1, #group2, #event1, #user1), times as T0+offset."""

    def __init__(self, now: int) -> None:
        self.ids: dict[tuple[str, int], str] = {}
        self.now = now

    def name(self, kind: str, value: int) -> str:
        if not value:
            return str(value)
        key = (kind, value)
        if key not in self.ids:
            self.ids[key] = f"#{kind}{sum(1 for k, _ in self.ids if k == kind) + 1}"
        return self.ids[key]

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, int) and not isinstance(value, bool) and value:
            if key in ("id", "repeatid"):
                return self.name("event", value)
            if key == "itemid":  # the warnings that carry an itemid are about a course
                return self.name("course", value)
            if key in ("courseid", "groupid", "userid", "categoryid"):
                return self.name(key[:-2], value)
            if key == "timemodified":
                return "now" if abs(value - self.now) < 600 else value
            if key == "timestart":
                return f"T0{value - T0:+d}"
        if isinstance(value, str) and "#0 " in value:  # a PHP trace: the site's directory as the sandbox's
            value = re.sub(r"#(\d) \S*?/(lib/external|calendar|webservice)/", r"#\1 /var/www/moodle/\2/", value)
        if key == "item" and isinstance(value, str) and value.isdigit():
            return self.name("group" if value in self.groupids else "event", int(value))
        return value

    groupids: set[str] = set()


def script(admin: MoodleClient, student: MoodleClient, studentid: int) -> list[Any]:
    tag = f"c{time.time_ns() % 10**9}"
    norm = Normaliser(int(time.time()))
    out: list[Any] = []

    def step(work: Callable[[], Any]) -> Any:
        try:
            result = work()
        except MoodleError as exc:
            out.append((ERR, exc.errorcode, exc.message))
            return None
        out.append(norm(result))
        return result

    course, other = (admin.call("core_course_create_courses", {"courses": [
        {"fullname": f"Calendar {tag} {n}", "shortname": f"cal-{tag}-{n}", "categoryid": 1}]}, write=True)[0]["id"]
        for n in (1, 2))
    norm.name("course", course)
    norm.name("course", other)
    g1, g2 = (admin.call("core_group_create_groups", {"groups": [
        {"courseid": course, "name": name, "description": ""}]}, write=True)[0]["id"] for name in ("ИС-21", "ИС-22"))
    g3 = admin.call("core_group_create_groups", {"groups": [
        {"courseid": other, "name": "Чужая", "description": ""}]}, write=True)[0]["id"]
    for g in (g1, g2, g3):
        norm.name("group", g)
    norm.groupids = {str(g1), str(g2), str(g3), "999999"}
    norm.name("user", studentid)
    admin.call("enrol_manual_enrol_users", {"enrolments": [{"roleid": 5, "userid": studentid, "courseid": course}]},
               write=True)
    admin.call("core_group_add_group_members", {"members": [{"groupid": g1, "userid": studentid}]}, write=True)
    link = '<p>Онлайн-занятие: <a href="https://meet.example/j/1">войти</a></p>'

    # a group event for the lesson's course group, read back, then the edge cases of creation
    lesson = step(lambda: admin.create_group_event(course, g1, "Математика: онлайн-занятие", T0,
                                                   timeduration=5400, description=link))
    step(lambda: admin.create_group_event(course, g3, "Группа чужого курса", T0 + 60))
    step(lambda: admin.create_group_event(course, 999999, "Группы нет", T0 + 120))
    step(lambda: admin.create_group_event(999999, g1, "Курса нет", T0))
    step(lambda: admin.create_calendar_events([{"name": "Формат 3", "courseid": course, "groupid": g1,
                                                "eventtype": "group", "timestart": T0, "format": 3}]))
    step(lambda: admin.create_calendar_events([
        {"name": "Moodle-формат", "description": "текст", "format": 0, "courseid": course, "groupid": g2,
         "eventtype": "group", "timestart": T0 + 180, "visible": 0},
        {"name": "Серия", "courseid": course, "groupid": g2, "eventtype": "group", "timestart": T0 + 240,
         "repeats": 2, "sequence": 3},
        {"name": "Курс целиком", "courseid": course, "eventtype": "course", "timestart": T0 + 300}]))
    step(lambda: admin.get_calendar_events(groupids=[g1]))
    step(lambda: admin.get_calendar_events(groupids=[g1], userevents=False, siteevents=False))
    step(lambda: admin.get_calendar_events(courseids=[course], groupids=[g2], ignorehidden=False))
    step(lambda: admin.get_calendar_events(eventids=[lesson["id"] if lesson else 0], userevents=False,
                                           siteevents=False))
    step(lambda: admin.get_calendar_events(groupids=[g1], timestart=T0 + 6000))

    # a student of the course, member of g1: warnings where Moodle gives warnings, exceptions elsewhere
    step(lambda: student.create_calendar_events([
        {"name": "Студент: группа", "courseid": course, "groupid": g1, "eventtype": "group", "timestart": T0},
        {"name": "Студент: своё", "timestart": T0 + 30}]))
    step(lambda: student.get_calendar_events(courseids=[course, other], groupids=[g1, g2]))
    step(lambda: student.delete_calendar_events([lesson["id"] if lesson else 0]))

    # deletion: all or nothing, series
    series = [e["id"] for e in admin.group_events(g2) if e["name"] == "Серия"]
    step(lambda: admin.delete_calendar_events([lesson["id"] if lesson else 0, 999999]))
    step(lambda: [e["name"] for e in admin.group_events(g1)])
    step(lambda: admin.delete_calendar_events([lesson["id"] if lesson else 0]))
    step(lambda: admin.delete_calendar_events([lesson["id"] if lesson else 0]))
    step(lambda: admin.delete_calendar_events(series[:1], repeat=True))
    step(lambda: [{"name": e["name"], "groupid": e["groupid"]} for e in admin.get_calendar_events(
        courseids=[course], groupids=[g1, g2, g3, 999999], ignorehidden=False)["events"]])

    # the shared site keeps no event of the scenario (its courses stay: the service cannot delete courses)
    own = [e["id"] for e in student.get_calendar_events(siteevents=False)["events"] if e["userid"] == studentid]
    if own:
        student.delete_calendar_events(own)
    left = [e["id"] for e in admin.get_calendar_events(courseids=[course], groupids=[g1, g2, g3, 999999],
                                                       ignorehidden=False)["events"]]
    if left:
        admin.delete_calendar_events(left)
    return out


def _run(url: str, token: str, student_token: str, studentid: int) -> list[Any]:
    with MoodleClient(Transport(url, token, timeout=60)) as admin, \
            MoodleClient(Transport(url, student_token, timeout=60)) as student:
        return script(admin, student, studentid)


def test_the_sandbox_answers_as_the_real_moodle() -> None:
    server = start(port=0, token=TOKEN)
    try:
        with MoodleClient(Transport(server.url, TOKEN, timeout=30)) as admin:
            studentid = admin.call("core_user_create_users", {"users": [
                {"username": "calstudent", "password": "Lab#Pass2026", "firstname": "Студент",
                 "lastname": "Календарный", "email": "calstudent@example.com"}]}, write=True)[0]["id"]
        server.site.admin("add_token", {"token": STUDENT_TOKEN, "userid": studentid})
        assert _run(server.url, TOKEN, STUDENT_TOKEN, studentid) == REAL
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()


def _real_setup() -> dict[str, Any]:
    """fixtures/calendar_setup.php: the functions in the bufsync service, a student with a token of it."""
    moodle = Path(os.environ.get("BUFSYNC_TEST_MOODLE_DIR", "/srv/moodle-real/moodle"))
    if not (moodle / "config.php").is_file():
        pytest.skip(f"no Moodle code at {moodle} (BUFSYNC_TEST_MOODLE_DIR) to run calendar_setup.php")
    env = dict(os.environ, PHP_INI_SCAN_DIR=f":{moodle.parent / 'php'}")
    done = subprocess.run(["php", str(SETUP_PHP)], cwd=moodle, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.moodle
@pytest.mark.skipif(not (os.environ.get("BUFSYNC_TEST_MOODLE_URL") and os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")),
                    reason="no real Moodle: run ../shared/moodle-real/up and export BUFSYNC_TEST_MOODLE_URL / "
                           "BUFSYNC_TEST_MOODLE_TOKEN from its test.env")
def test_the_real_moodle_still_answers_so() -> None:
    setup = _real_setup()
    assert _run(os.environ["BUFSYNC_TEST_MOODLE_URL"], os.environ["BUFSYNC_TEST_MOODLE_TOKEN"], setup["token"],
                int(setup["userid"])) == REAL
