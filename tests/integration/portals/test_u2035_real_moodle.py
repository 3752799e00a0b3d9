"""Университет 2035 against a real Moodle 4.5 (../shared/moodle-real/up): the learners' footprint read from what
Moodle itself made (fixtures/u2035_setup.php, through Moodle's PHP API: a UNTI id in the custom user profile field
`unti_id`, an assignment completed on submission with a pass grade, a passing and a failing grade, a submission of
two files, one named in Cyrillic, a course completion), sent by `bufsync u2035 run` and the dispatcher to real
peers — ralph-malph's LRS and moto's S3 — and read back from them: every statement's actor, verb, object (the real
Moodle's URLs), result and timestamp (the real grades and times), each fact exactly once, the files' bytes as
Moodle holds them; and a second run queues nothing.

One buffer (SQLite): the footprint reads every course with an idnumber on the shared site (`courses: idnumber`),
so two of these worlds built at once would each see the other's learners."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.schema import build_metadata
from bufsync.state.tables import add_state_tables
from tests.integration.portals.test_u2035 import HOME, U2035World
from tests.peers import MotoS3, RalphLrs

URL = os.environ.get("BUFSYNC_TEST_MOODLE_URL")
TOKEN = os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")
MOODLE_DIR = Path(os.environ.get("BUFSYNC_TEST_MOODLE_DIR", "/srv/moodle-real/moodle"))
SETUP_PHP = Path(__file__).resolve().parents[1] / "contract" / "fixtures" / "u2035_setup.php"
VERBS = "http://adlnet.gov/expapi/verbs/"
pytestmark = [pytest.mark.moodle, pytest.mark.skipif(
    not (URL and TOKEN), reason="no real Moodle: run ../shared/moodle-real/up and export "
                                "BUFSYNC_TEST_MOODLE_URL / BUFSYNC_TEST_MOODLE_TOKEN from its test.env")]


def php(*args: str) -> Any:
    """u2035_setup.php run with the site's PHP settings (its php/ directory next to moodle/, as the lab has it)."""
    if shutil.which("php") is None or not (MOODLE_DIR / "config.php").is_file():
        pytest.skip(f"no php or no Moodle code at {MOODLE_DIR} (BUFSYNC_TEST_MOODLE_DIR) to run u2035_setup.php")
    ini = os.environ.get("BUFSYNC_TEST_MOODLE_PHP_INI_SCAN_DIR", f":{MOODLE_DIR.parent / 'php'}")
    done = subprocess.run(["php", str(SETUP_PHP), *args], cwd=MOODLE_DIR, capture_output=True, text=True,
                          timeout=300, check=False,
                          env=dict(os.environ, PHP_INI_SCAN_DIR=ini, BUFSYNC_TEST_MOODLE_DIR=str(MOODLE_DIR)))
    assert done.returncode == 0, f"u2035_setup.php {args[0]} failed: {done.stdout}{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def moment(seconds: int | str) -> str:
    """A Moodle time as the statement's timestamp says it."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def by_agent(lrs: RalphLrs, unti_id: str) -> list[dict[str, Any]]:
    """Every statement the LRS holds whose actor is this UNTI account (xAPI's agent filter)."""
    agent = json.dumps({"objectType": "Agent", "account": {"homePage": HOME, "name": unti_id}})
    answer = httpx.get(f"{lrs.base_url}/statements", params={"agent": agent, "limit": "100"},
                       auth=(lrs.key, lrs.secret), timeout=30)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["statements"]
    return found


@pytest.fixture
def real_world(_upgraded_buffer: None, buffer_url: str, tmp_path: Path, ralph_lrs: RalphLrs, moto_s3: MotoS3):
    assert URL and TOKEN
    prefix = f"u35{uuid.uuid4().hex[:8]}"  # the real site keeps what earlier runs made: names of this run's own
    made = php("create", prefix)
    config = tmp_path / "bufsync.yaml"
    config.write_text("portals:\n  u2035:\n    organisation: ГБПОУ «Колледж связи»\n    contact: it@college.example\n"
                      "    project: Цифровой след\n    courses: idnumber\n    actor:\n      source: profile_field\n"
                      "      field: unti_id\n    statements_per_post: 4\n", encoding="utf-8")
    env = {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": URL, "BUFSYNC_MOODLE_TOKEN": TOKEN}
    loaded = load_settings(config, env)
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    tables = dict(build_metadata(mappings).tables) | add_state_tables(sa.MetaData())
    w = U2035World(loaded, engine, tables, None, ralph_lrs, moto_s3, env, config, made)  # type: ignore[arg-type]
    try:
        yield w
    finally:
        engine.dispose()
        php("delete", prefix)


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_the_footprint_of_a_real_moodle_in_the_lrs_and_s3(real_world: U2035World) -> None:
    w, made = real_world, real_world.ids
    course, users, unti, cmid = made["course"], made["users"], made["unti"], made["cmid"]
    item, total, ann, bob = made["itemid"], made["totalid"], users["ann"], users["bob"]
    w.activate()
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    done = w.cli("u2035", "run", "--json")
    after = datetime.now(UTC).replace(tzinfo=None)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "ok" and report["problems"] == [], report
    assert report["counts"]["learners.without_unti"] >= 1  # gleb (and any other course's learners without one)
    # each fact of the course, once: the teacher's UNTI id and gleb (none) give nothing; bob's draft is no submission
    facts = {k: r for k, r in w.statements().items() if r["moodle_course_id"] == course}
    # and bob's fail of «Тест А», which asks for the pass grade, completes nothing (Moodle: not overall complete)
    test_a, test_b = made["tests"]["A"], made["tests"]["B"]
    expected = {f"enrolment:{course}:{users[n]}": n for n in ("ann", "bob", "vera")} | {
        f"activity:{cmid}:{ann}": "ann", f"activity:{test_a['cmid']}:{ann}": "ann",
        f"activity:{test_b['cmid']}:{ann}": "ann", f"activity:{test_b['cmid']}:{bob}": "bob",
        f"completion:{course}:{ann}": "ann", f"submission:{made['submissions']['ann']}": "ann"} | {
        f"grade:{i}:{users[n]}": n for i in (item, test_a["itemid"], test_b["itemid"], total) for n in ("ann", "bob")}
    assert {k: r["unti_id"] for k, r in facts.items()} == {k: unti[n] for k, n in expected.items()}
    assert {r["state"] for r in facts.values()} == {"queued"}

    dispatched = w.dispatch()
    assert dispatched.outcome == "ok" and dispatched.counts.get("dead", 0) == 0, dispatched.problems
    facts = {k: r for k, r in w.statements().items() if r["moodle_course_id"] == course}
    assert {r["state"] for r in facts.values()} == {"sent"}, {k: r["last_error"] for k, r in facts.items()}

    # what the LRS holds, read back: exactly the facts' statements under each learner's UNTI account, each once
    held: dict[str, dict[str, Any]] = {}
    for name in ("ann", "bob", "vera"):
        statements = by_agent(w.lrs, unti[name])
        assert sorted(s["id"] for s in statements) == sorted(
            r["statement_id"] for k, r in facts.items() if expected[k] == name)
        held |= {s["id"]: s for s in statements}
    assert by_agent(w.lrs, unti["tom"]) == []
    assert all(w.lrs.copies(r["statement_id"]) == 1 for r in facts.values())
    stored = {k: held[r["statement_id"]] for k, r in facts.items()}
    for key, statement in stored.items():
        assert statement["actor"]["account"] == {"homePage": HOME, "name": unti[expected[key]]}
        assert statement["verb"]["id"] == facts[key]["verb"]
        assert statement["context"]["platform"] == "Moodle"

    site = made["site"].rstrip("/")
    course_url, assign_url = f"{site}/course/view.php?id={course}", f"{site}/mod/assign/view.php?id={cmid}"
    assert site == URL.rstrip("/")  # type: ignore[union-attr]
    # enrolments: Moodle keeps no time for them through web services: the time the run first saw them
    for name in ("ann", "bob", "vera"):
        enrolment = stored[f"enrolment:{course}:{users[name]}"]
        assert enrolment["verb"]["id"] == VERBS + "registered" and enrolment["object"]["id"] == course_url
        assert enrolment["object"]["definition"]["name"] == {"ru-RU": made["course_fullname"]}
        seen = datetime.strptime(enrolment["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert before <= seen <= after
        assert "contextActivities" not in enrolment["context"]  # the course is the object: no parent of itself
    # the assignment completed on submission, at the time Moodle recorded
    activity = stored[f"activity:{cmid}:{ann}"]
    assert activity["verb"]["id"] == VERBS + "completed" and activity["object"]["id"] == assign_url
    assert activity["object"]["definition"]["name"] == {"ru-RU": "Лабораторная работа №1"}
    assert [p["id"] for p in activity["context"]["contextActivities"]["parent"]] == [course_url]
    assert activity["result"] == {"completion": True}
    assert activity["timestamp"] == moment(made["activity_completed"])
    # the tests, completed by their grade: a pass completes both (success), a fail only the one asking any grade
    for test, name, success in ((test_a, "ann", True), (test_b, "ann", True), (test_b, "bob", False)):
        done_test = stored[f"activity:{test['cmid']}:{users[name]}"]
        assert done_test["verb"]["id"] == VERBS + "completed"
        assert done_test["object"]["id"] == f"{site}/mod/assign/view.php?id={test['cmid']}"
        assert done_test["object"]["definition"]["name"] == {"ru-RU": test["name"]}
        assert done_test["result"] == {"completion": True, "success": success}
        assert done_test["timestamp"] == moment(test["completion"][name]["time"])
    assert made["tests"]["A"]["completion"]["bob"]["state"] == 3  # failed: complete to Moodle's table, not overall
    # grades against the pass grade of 6: ann passed the lab with 8, bob failed with 4; the tests 7 and 3; each at
    # its grading time
    graded = [(item, assign_url, made["grademax"], made["grades"]["item"], made["dategraded"]["item"])] + [
        (t["itemid"], f"{site}/mod/assign/view.php?id={t['cmid']}", 10.0, {"ann": 7.0, "bob": 3.0}, t["dategraded"])
        for t in (test_a, test_b)]
    for itemid, url, grademax, grades, times in graded:
        for name, verb, success in (("ann", "passed", True), ("bob", "failed", False)):
            grade = stored[f"grade:{itemid}:{users[name]}"]
            raw = grades[name]
            assert grade["verb"]["id"] == VERBS + verb and grade["object"]["id"] == url
            assert grade["result"] == {"score": {"raw": raw, "min": 0, "max": grademax,
                                                 "scaled": round(raw / grademax, 4)}, "success": success}
            assert grade["timestamp"] == moment(times[name])
            assert [p["id"] for p in grade["context"]["contextActivities"]["parent"]] == [course_url]
    for name in ("ann", "bob"):
        # the course total: no pass grade, so scored; the course is its object
        course_total = stored[f"grade:{total}:{users[name]}"]
        total_raw = made["grades"]["total"][name]
        assert course_total["verb"]["id"] == VERBS + "scored" and course_total["object"]["id"] == course_url
        assert course_total["result"] == {"score": {"raw": total_raw, "min": 0, "max": made["totalmax"],
                                                    "scaled": round(total_raw / made["totalmax"], 4)}}
        assert course_total["timestamp"] == moment(made["dategraded"]["total"][name])
        assert "contextActivities" not in course_total["context"]
    # the course completed, at the time Moodle stored
    completed = stored[f"completion:{course}:{ann}"]
    assert completed["verb"]["id"] == VERBS + "completed" and completed["object"]["id"] == course_url
    assert completed["result"] == {"completion": True}
    assert completed["timestamp"] == moment(made["course_completed"])
    assert "contextActivities" not in completed["context"]
    # the submission, at its time, its files in S3 with the bytes Moodle holds, referenced by URL, hash and length
    submission = stored[f"submission:{made['submissions']['ann']}"]
    assert submission["verb"]["id"] == "http://activitystrea.ms/schema/1.0/submit"
    assert submission["object"]["id"] == assign_url and submission["result"] == {"completion": True}
    assert submission["timestamp"] == moment(made["submitted"])
    assert [p["id"] for p in submission["context"]["contextActivities"]["parent"]] == [course_url]
    attachments = {a["display"]["ru-RU"]: a for a in submission["attachments"]}
    assert set(attachments) == set(made["files"]) and "отчёт по лабораторной №1.pdf" in attachments
    s3 = w.s3.client()
    for filename, file in made["files"].items():
        attachment = attachments[filename]
        assert (attachment["sha2"], attachment["length"], attachment["contentType"]) == (
            file["sha256"], file["size"], file["mimetype"])
        key = attachment["fileUrl"].split(f"/{w.s3.bucket}/", 1)[1]
        assert key == f"footprint/{file['sha256']}{Path(filename).suffix}"  # the content names it, no learner
        body = s3.get_object(Bucket=w.s3.bucket, Key=key)["Body"].read()
        assert len(body) == file["size"] and hashlib.sha256(body).hexdigest() == file["sha256"]
    assert {r["sha256"] for r in w.rows("sync_u2035_files")} >= {f["sha256"] for f in made["files"].values()}

    # nothing new in Moodle: the next run queues nothing and its dispatch posts nothing
    again = w.run()
    assert again.outcome == "ok" and again.problems == []
    assert again.counts.get("queued", 0) == 0 and again.counts.get("statements.new", 0) == 0
    assert again.counts.get("statements.changed", 0) == 0
    assert w.dispatch().counts.get("claimed", 0) == 0
    assert all(w.lrs.copies(r["statement_id"]) == 1 for r in facts.values())
