"""Issue 15's grade and completion behaviours on a real Moodle 4.5 against the sandbox: the scenario of
grades_scenario.py is made on the real site through Moodle's own PHP API (fixtures/grades_scenario.php) and on a
sandbox through its admin actions, and every answer of the Web Services it is about is compared whole
(suspended and unenrolled students, scale, letters, pass grades, an overridden total, dates, completion).

Skipped unless BUFSYNC_TEST_MOODLE_URL and BUFSYNC_TEST_MOODLE_TOKEN are set and the site's code is in
BUFSYNC_TEST_MOODLE_DIR (default /srv/moodle-real/moodle) with a php binary to run the fixture script. The site is
shared: the scenario works under a prefix of its own and is deleted afterwards (BUFSYNC_TEST_MOODLE_KEEP=1 keeps it).
BUFSYNC_TEST_GRADES_RECORD=1 writes what the real Moodle answered to fixtures/grades_scenario.json first (after a
deliberate change of the scenario; review the diff).
"""

from __future__ import annotations

import os

import pytest

from tests.integration.contract import grades_scenario as scenario
from tests.integration.contract.grades_scenario import against_real

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


def test_the_sandbox_and_the_recording_answer_as_the_real_moodle() -> None:
    """One test (one scenario on the shared site, whichever worker runs it): every answer of the real Moodle
    against the sandbox's for the same scenario under the same prefix, and against fixtures/grades_scenario.json,
    which holds the sandbox to them in CI."""
    missing = scenario.php_available()
    if missing:
        pytest.skip(f"the scenario is made with Moodle's PHP API: {missing}")
    assert URL and TOKEN
    problems = against_real(scenario, lambda prefix: scenario.real_call(URL, TOKEN, prefix),
                            "BUFSYNC_TEST_GRADES_RECORD")
    assert not problems, "\n".join(problems)
