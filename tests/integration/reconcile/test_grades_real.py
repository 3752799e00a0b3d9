"""Grades back to 1C from a real Moodle 4.5: the scenario of tests/integration/contract/grades_scenario.py (a
scale, the course's letters, pass grades, an overridden total, a suspended and an unenrolled student) made through
Moodle's own PHP API, the course linked by the courses mapping, then `bufsync run grades`: buf_grades must hold
what the real report says, word and verdict included. Skipped without the real Moodle (CI has none)."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bufsync.config import load_settings
from tests.integration.contract import grades_scenario as scenario
from tests.integration.reconcile import test_trust_real as real
from tests.integration.reconcile.test_trust_real import RealWorld

pytestmark = real.pytestmark
world = real.world


def completion_report() -> int:
    """The custom report, made by the script bufsync ships, as a site's administrator runs it."""
    from bufsync.adapters.moodle import completion
    script = Path(completion.__file__).with_name("php") / "completion_report.php"
    env = dict(os.environ, PHP_INI_SCAN_DIR=f":{scenario.MOODLE_DIR.parent / 'php'}")
    done = subprocess.run(["php", str(script), f"--moodle={scenario.MOODLE_DIR}"], env=env, capture_output=True,
                          text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_grades_of_a_real_gradebook_land_in_the_buffer(world: RealWorld) -> None:
    missing = scenario.php_available()
    if missing:
        pytest.skip(f"the scenario is made with Moodle's PHP API: {missing}")
    prefix = world.tag
    scenario.real_scenario(prefix)
    try:
        with world.ws() as client:
            course = client.get_courses_by_field("idnumber", f"{prefix}-GR")[0]
        world.insert("buf_courses", [{"external_id": course["idnumber"], "shortname": course["shortname"],
                                      "fullname": course["fullname"]}])
        assert world.run("courses").outcome == "ok"  # adopted by its idnumber: a course bufsync manages
        report = world.run("grades")
        assert report.outcome == "ok", report.render()
        rows = {(r["user_external_id"].removeprefix(f"{prefix}-"), r["item"].removeprefix(f"{prefix}-")): r
                for r in world.rows("buf_grades")}
        # the admin's report lists the active students only: ann and gleb; bob (suspended) and vera (unenrolled)
        # are not in it, so they have no rows (and would keep any they had)
        assert {user for user, _ in rows} == {"ANN", "GLEB"}

        def of(user: str, item: str) -> tuple[object, ...]:
            row = rows[(user, item)]
            return row["grade"], row["grade_text"], row["passed"]

        assert of("ANN", "NUM") == (Decimal("75"), None, True)              # a number, pass grade 50
        assert of("GLEB", "NUM") == (Decimal("30"), None, False)
        assert of("ANN", "SCALE") == (Decimal("4"), "отлично", True)        # the scale's word
        assert of("ANN", "LET")[:2] == (Decimal("88"), "отлично")           # the item shown as letters
        assert of("ANN", "course") == (Decimal("207"), "хорошо", True)      # the total as a letter, pass 127
        assert of("GLEB", "course") == (Decimal("150"), "удовлетворительно", True)  # overridden by hand
        assert rows[("ANN", "ESSAY")]["graded_at"] is not None and rows[("ANN", "course")]["percent"] == Decimal("81.5")
        assert world.run("grades").mappings[0].counts["unchanged"] == len(rows)  # nothing changed: nothing written

        # completed_at: ann completed the course (gleb did not). Per student (the default) it is the latest time
        # of the criteria, which is what Moodle's aggregation stores; the scenario stored the course's own time a
        # day later (as no real flow does), so the report, which reads that stored time, tells the two routes apart
        zone = ZoneInfo(world.loaded.settings.timezone)
        assert {key for key, row in rows.items() if row["completed_at"] is not None} == {
            key for key in rows if key[0] == "ANN"}
        assert rows[("ANN", "course")]["completed_at"] == datetime.fromtimestamp(
            scenario.SELF_DONE, zone).replace(tzinfo=None)
        reportid = completion_report()
        world.loaded = load_settings(None, {
            "BUFSYNC_BUFFER_URL": world.loaded.buffer_url, "BUFSYNC_MOODLE_URL": real.URL,
            "BUFSYNC_MOODLE_TOKEN": real.TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "120",
            "BUFSYNC_MOODLE_GRADES_COMPLETION": "report", "BUFSYNC_MOODLE_GRADES_COMPLETION_REPORT": str(reportid)})
        report = world.run("grades")
        assert report.outcome == "ok", report.render()
        by_report = {(r["user_external_id"].removeprefix(f"{prefix}-"), r["item"].removeprefix(f"{prefix}-")): r
                     for r in world.rows("buf_grades")}
        assert {key for key, row in by_report.items() if row["completed_at"] is not None} == {
            key for key in rows if key[0] == "ANN"}
        assert by_report[("ANN", "ESSAY")]["completed_at"] == datetime.fromtimestamp(
            scenario.COMPLETED, zone).replace(tzinfo=None)
        rows = by_report

        # ann's enrolment suspended, gleb unenrolled in Moodle: the report leaves both out; Moodle deleted gleb's
        # grades, so his rows are marked removed (with leave: 7 of 14 rows), and ann's stay as they were
        with world.ws() as client:
            users = {u["idnumber"]: int(u["id"]) for u in client.get_users_by_field(
                "idnumber", [f"{prefix}-ANN", f"{prefix}-GLEB"])}
            assert all(o.ok for o in client.enrol([{"roleid": 5, "userid": users[f"{prefix}-ANN"],
                                                     "courseid": course["id"], "suspend": 1}]))
            assert all(o.ok for o in client.unenrol([{"userid": users[f"{prefix}-GLEB"], "courseid": course["id"]}]))
        gleb = sum(1 for user, _ in rows if user == "GLEB")
        report = world.run("grades", allow_removals=gleb)
        assert report.outcome == "ok", report.render()
        after = {(r["user_external_id"].removeprefix(f"{prefix}-"), r["item"].removeprefix(f"{prefix}-")): r
                 for r in world.rows("buf_grades")}
        assert {key for key, row in after.items() if row["removed_at"] is not None} == {
            key for key in rows if key[0] == "GLEB"}
        assert all(row["grade"] is None for key, row in after.items() if key[0] == "GLEB")
        assert {key: row for key, row in after.items() if key[0] == "ANN"} == {
            key: row for key, row in rows.items() if key[0] == "ANN"}
    finally:
        if not os.environ.get("BUFSYNC_TEST_MOODLE_KEEP"):
            scenario.real_delete(prefix)
