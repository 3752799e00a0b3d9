"""The СЦОС scenarios reading a real Moodle 4.5 (../shared/moodle-real/up): its course custom fields,
enrolled users, grade report and completion answers, and the portal id written back into its
`scos_id` field. The portal is the sandbox СЦОС (no public test portal exists)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync import commands, migrations
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.portals.runs import run_dispatch, run_portal
from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
from bufsync.schema import build_metadata
from tests.integration.portals.conftest import KEY, PASSPORT_DEFAULTS

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


def test_scenarios_against_a_real_moodle(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]  # the real site keeps what earlier runs created
    portal = PortalServer(Portal(SandboxConfig(key=KEY, moderation_polls=1)), port=0)
    portal.serve_in_thread()
    config = tmp_path / "bufsync.yaml"
    config.write_text(json.dumps({"scos": {"passport": PASSPORT_DEFAULTS | {"cert": True}}}), encoding="utf-8")
    buffer = f"sqlite:///{tmp_path / 'buffer.db'}"
    loaded = load_settings(config, {
        "BUFSYNC_BUFFER_URL": buffer, "BUFSYNC_MOODLE_URL": URL, "BUFSYNC_MOODLE_TOKEN": TOKEN,
        "BUFSYNC_SCOS_URL": f"{portal.url}/api/v2", "BUFSYNC_SCOS_KEY": KEY,
        "BUFSYNC_SCOS_PARTNER_ID": "sandbox-partner", "BUFSYNC_SCOS_INSTITUTION": "inst-1"})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    tables = build_metadata(mappings).tables
    engine = sa.create_engine(buffer)
    try:
        with engine.begin() as conn:
            conn.execute(tables["buf_users"].insert(), [
                {"external_id": f"R{run}-{i}", "username": f"r{run}s{i}", "email": f"r{run}s{i}@college.example",
                 "last_name": f"Реальный{i}", "first_name": "Пётр", "status": "active",
                 "esia_id": f"esia-{run}-{i}" if i < 4 else None} for i in range(6)]
                + [{"external_id": f"R{run}-T", "username": f"r{run}t", "email": f"r{run}t@college.example",
                    "last_name": "Преподавательница", "first_name": "Анна", "status": "active", "esia_id": None}])
            conn.execute(tables["buf_courses"].insert(), [{
                "external_id": f"RC-{run}", "shortname": f"rc-{run}", "fullname": f"Реальный курс {run}",
                "start_date": date(2026, 9, 1), "end_date": date(2026, 12, 25)}])
            conn.execute(tables["buf_subscriptions"].insert(), [
                {"user_external_id": f"R{run}-{i}", "course_external_id": f"RC-{run}", "role": "student",
                 "status": "active"} for i in range(6)] + [
                {"user_external_id": f"R{run}-T", "course_external_id": f"RC-{run}", "role": "editingteacher",
                 "status": "active"}])
        assert commands.run(loaded, ["users", "courses", "subscriptions"]).outcome == "ok"
        with MoodleClient.connect(URL, TOKEN) as client:
            course = client.get_courses_by_field("shortname", f"rc-{run}")[0]
            assert client.update_courses([{"id": course["id"], "summary": "<p>Курс на реальном Moodle</p>",
                                           "customfields": [{"shortname": "scos_publish", "value": 1}]}])[0].ok
        first = run_portal(loaded, "scos")
        assert first.counts["publish.queued"] == 1, first.problems
        assert run_dispatch(loaded, "scos").counts["done"] == 1
        run_portal(loaded, "scos")               # in moderation: the first status poll answers in_progress
        report = run_portal(loaded, "scos")      # the second: moderation ok, learners queued
        assert report.counts["enrol.queued"] == 4 and report.counts["enrol.no_identity"] == 2
        run_dispatch(loaded, "scos")
        # settled; the real grade report has no graded item; no completion criteria
        report = run_portal(loaded, "scos")
        assert report.counts["settled.enrol"] == 4
        assert not report.counts.get("results.queued") and report.counts["certificates.no_criteria"] == 1
        [published] = portal.portal.courses.values()
        passport = published["passport"]
        assert passport["title"] == f"Реальный курс {run}" and passport["description"] == "Курс на реальном Moodle"
        assert passport["teachers"][0]["display_name"] == "Анна Преподавательница"
        assert passport["image"].startswith(URL) and passport["started_at"] == "2026-09-01"
        with MoodleClient.connect(URL, TOKEN) as client:
            course = client.get_courses_by_field("shortname", f"rc-{run}")[0]
        assert {f["shortname"]: f["valueraw"] for f in course["customfields"]}["scos_id"] == published["id"]
        assert {p["user_id"] for p in portal.portal.participation.values()} == {f"esia-{run}-{i}" for i in range(4)}
        # a student's enrolment suspended in the real Moodle (from the buffer): unenrolled on the portal
        with engine.begin() as conn:
            subs = tables["buf_subscriptions"]
            conn.execute(subs.update().where(subs.c.user_external_id == f"R{run}-1").values(status="suspended"))
        assert commands.run(loaded, ["subscriptions"]).outcome == "ok"
        assert run_portal(loaded, "scos").counts["unenrol.queued"] == 1
        run_dispatch(loaded, "scos")
        assert {p["user_id"] for p in portal.portal.participation.values()} == {
            f"esia-{run}-{i}" for i in (0, 2, 3)}
        # taken off the portal when the mark is removed in Moodle
        with MoodleClient.connect(URL, TOKEN) as client:
            client.update_courses([{"id": course["id"], "customfields": [{"shortname": "scos_publish", "value": 0}]}])
        assert run_portal(loaded, "scos").counts["archive.queued"] == 1
        run_dispatch(loaded, "scos")
        assert published["status"] == "ARCHIVE"
    finally:
        engine.dispose()
        portal.shutdown()
        portal.server_close()
