"""Course completion through a report builder custom report on a real Moodle 4.5 against the sandbox: the scenario of
completion_report_scenario.py is made on the real site through Moodle's own PHP API (the shipped completion_report.php
and fixtures/completion_report_scenario.php) and on a sandbox through its admin actions, and every answer of
core_reportbuilder_retrieve_report and tool_mobile_get_config it is about is compared whole (pages, uniquerows, a
suspended enrolment, a disabled instance, NULL rows, sorting, HTML escaping, dates in two time zones, refusals).

Skipped unless BUFSYNC_TEST_MOODLE_URL and BUFSYNC_TEST_MOODLE_TOKEN are set and the site's code is in
BUFSYNC_TEST_MOODLE_DIR (default /srv/moodle-real/moodle) with a php binary. The site is shared: the scenario works
under a prefix of its own (courses, users and reports) and is deleted afterwards (BUFSYNC_TEST_MOODLE_KEEP=1 keeps
it); the site's settings are never changed (the other time zone is the reading user's own).
BUFSYNC_TEST_COMPLETION_REPORT_RECORD=1 writes what the real Moodle answered to
fixtures/completion_report_scenario.json first (after a deliberate change of the scenario; review the diff).
"""

from __future__ import annotations

import os

import pytest

from tests.integration.contract import completion_report_scenario as scenario
from tests.integration.contract.grades_scenario import against_real, php_available

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


def test_the_sandbox_and_the_recording_answer_as_the_real_moodle() -> None:
    """One test (one scenario on the shared site, whichever worker runs it): every answer of the real Moodle
    against the sandbox's for the same scenario under the same prefix, and against
    fixtures/completion_report_scenario.json, which holds the sandbox to them in CI."""
    missing = php_available()
    if missing:
        pytest.skip(f"the scenario is made with Moodle's PHP API: {missing}")
    assert URL and TOKEN
    problems = against_real(scenario, lambda prefix: scenario.real_caller(URL, TOKEN, prefix),
                            "BUFSYNC_TEST_COMPLETION_REPORT_RECORD")
    assert not problems, "\n".join(problems)
