"""Contract: the recorded exchanges replayed against a real Moodle 4.5, to keep the recording,
the client and the sandbox honest. Needs a freshly reset site (ids must start where the
recording's did): `../shared/moodle-real/up --reset`, then export its test.env.

Setup steps the recording did with PHP CLI are done here with SQL on the site's database where
that is exact (an expired token, deleting a manual enrolment instance); the exchanges after a
step that needs real PHP (grades, completion criteria) are skipped with that reason.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from tests.integration.contract import replay

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
DB = os.environ.get("BUFSYNC_TEST_MOODLE_DB", "dbname=moodle_real user=postgres host=127.0.0.1")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up --reset and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]

# Differences that come from the site, not the protocol: names the lab gave its custom fields,
# where Moodle is installed (it shows in PHP error texts). Applied to the real answers.
ALIASES = {"СНИЛС": "SNILS", "Публиковать в СЦОС": "Publish to SCOS", "ID в СЦОС": "SCOS id",
           "/srv/moodle-real/moodle/": "/var/www/moodle/"}
SITE_SPECIFIC = {
    "protocol/site_info": "the service's function list, versions and site name belong to the site",
    "protocol/site_info_via_get": "the service's function list, versions and site name belong to the site",
    "courses/get_by_field_no_args": "includes the site course (id 1), whose names are the site's",
    "enrolments/mail_failure_after_commit": "the recording broke the site's mail for this one call; "
                                            "the real test site's mail is off",
}


def _sql(statement: str, params: tuple = ()) -> list[tuple]:
    import psycopg2
    with psycopg2.connect(DB) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


class RealSetup:
    def __call__(self, step: dict[str, Any]) -> str | None:
        name = step["name"]
        if name == "setup_custom_fields":
            return None  # ../shared/moodle-real/up creates snils, scos_publish, scos_id
        if name == "setup_delete_manual_instance":
            _sql("DELETE FROM mdl_enrol WHERE enrol = 'manual' AND courseid = "
                 "(SELECT id FROM mdl_course WHERE shortname = %s OR idnumber = %s LIMIT 1)",
                 ("NOMAN-301", "NOMAN-301"))
            return None
        topic = {"setup_grades_php": "grades", "setup_completion_php": "completion"}.get(name, "?")
        return f"{topic}: the recording's setup step {name} needs Moodle's PHP API"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, replay.Outcome]:
    # fresh: the guest and the admin, the site course and the default category, nothing else (a site other tests
    # use for a moment may hold two users alone, and the replay would then write into it)
    users, courses, categories = _sql("SELECT (SELECT count(*) FROM mdl_user WHERE deleted = 0), (SELECT count(*) "
                                      "FROM mdl_course), (SELECT count(*) FROM mdl_course_categories)")[0]
    if (users, courses, categories) != (2, 1, 1):
        pytest.skip(f"the site is not fresh ({users} users, {courses} courses, {categories} categories): run "
                    "../shared/moodle-real/up --reset first")
    service = _sql("SELECT externalserviceid FROM mdl_external_tokens WHERE token = %s", (TOKEN,))[0][0]
    _sql("INSERT INTO mdl_external_tokens (token, tokentype, userid, externalserviceid, contextid, creatorid, "
         "validuntil, timecreated, name) VALUES (%s, 0, 2, %s, 1, 2, %s, %s, 'expired') ON CONFLICT DO NOTHING",
         (replay.EXPIRED_TOKEN, service, int(time.time()) - 86400, int(time.time())))
    result = replay.replay(URL, TOKEN, replay.TOPICS, RealSetup(), aliases=ALIASES)
    report = os.environ.get("BUFSYNC_TEST_REPLAY_REPORT")
    if report:  # the site must be reset before the next run: keep what this one saw
        import json
        with open(report, "w", encoding="utf-8") as f:
            json.dump({f"{o.topic}/{o.name}": {"skipped": o.skipped, "problems": o.problems} for o in result},
                      f, ensure_ascii=False, indent=1)
    return {f"{o.topic}/{o.name}": o for o in result}


def _ids() -> list[str]:
    return [f"{t}/{e['name']}" for t in replay.TOPICS for e in replay.load(t)["exchanges"]]


@pytest.mark.parametrize("key", _ids())
def test_exchange_on_real_moodle(outcomes: dict[str, replay.Outcome], key: str) -> None:
    outcome = outcomes[key]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    if key in SITE_SPECIFIC and outcome.problems:
        pytest.skip(SITE_SPECIFIC[key])
    assert not outcome.problems, "\n".join(outcome.problems)
