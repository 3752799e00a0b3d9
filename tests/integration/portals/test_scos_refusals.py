"""`bufsync scos run` with credentials a remote refuses: a Moodle token (or a function its service lacks) or a
СЦОС key refused stops the run as a configuration error (exit 2) naming the setting and never its value;
no course is skipped in silence, no course row keeps the refusal as its own error, nothing is queued for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.integration.clirun import bufsync_in_process
from tests.integration.portals.conftest import KEY, PASSPORT_DEFAULTS, TOKEN, ScosWorld

WRONG_TOKEN = "0123456789abcdef0123456789abcdef"
WRONG_KEY = "wrong-key-" + "0" * 22


def scos_run(w: ScosWorld, tmp_path: Path, *, token: str = TOKEN, key: str = KEY, identity: str = "esia_id",
             in_process: bool = False) -> subprocess.CompletedProcess[str]:
    """`bufsync scos run --json` as a site runs it, with the credentials given; `in_process`: its output and
    exit code without a process start (tests/clirun.py), for the runs after the credentials are fixed."""
    config = tmp_path / "refusals.yaml"
    config.write_text(json.dumps({"scos": {"passport": PASSPORT_DEFAULTS, "identity": identity}}), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "BUFSYNC_BUFFER_URL": w.loaded.buffer_url, "BUFSYNC_MOODLE_URL": w.moodle.url,
           "BUFSYNC_MOODLE_TOKEN": token, "BUFSYNC_SCOS_URL": f"{w.portal.url}/api/v2", "BUFSYNC_SCOS_KEY": key,
           "BUFSYNC_SCOS_PARTNER_ID": "sandbox-partner", "BUFSYNC_SCOS_INSTITUTION": "inst-1"}
    if in_process:
        return bufsync_in_process("--config", str(config), "scos", "run", "--json", env=env)
    exe = Path(sys.executable).with_name("bufsync")
    return subprocess.run([str(exe), "--config", str(config), "scos", "run", "--json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def last_run(w: ScosWorld) -> dict[str, Any]:
    runs = w.tables["sync_runs"]
    with w.engine.connect() as conn:
        return dict(conn.execute(sa.select(runs).where(runs.c.kind == "scos").order_by(runs.c.id.desc())
                                 ).mappings().first())


def published(w: ScosWorld, shortname: str = "py-101") -> int:
    """Mark, publish, let moderation pass (right credentials): `published` on both sides, learners enrolled."""
    w.mark(shortname, scos_description="Курс программирования на Python")
    for _ in range(4):
        w.cycle()
    course_id = w.course_id(shortname)
    assert w.courses()[course_id]["state"] == "published"
    return course_id


def test_a_wrong_moodle_token_is_a_configuration_error(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    result = scos_run(w, tmp_path, token=WRONG_TOKEN)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("bufsync: configuration error:\n  moodle.token: Moodle refused:")
    assert "(invalidtoken)" in result.stderr and "BUFSYNC_MOODLE_TOKEN" in result.stderr
    assert WRONG_TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert w.courses() == {} and w.queue() == [] and w.state()["courses"] == []
    recorded = last_run(w)
    assert recorded["outcome"] == "failed" and "(invalidtoken)" in recorded["error"]
    assert WRONG_TOKEN not in recorded["error"]
    # the token fixed: the same course goes out
    assert scos_run(w, tmp_path, in_process=True).returncode == 0
    assert [q["payload"]["title"] for q in w.queue("course_publish")] == ["Python для всех"]


def test_a_function_the_service_lacks_stops_the_run_instead_of_skipping_each_course(
        seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    # the passport needs the course's teachers: the per-course read is refused for the token, not for this course
    w.admin("service", remove=["core_enrol_get_enrolled_users"])
    result = scos_run(w, tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "moodle.token: Moodle refused:" in result.stderr and "(accessexception)" in result.stderr
    assert "Add core_enrol_get_enrolled_users to the bufsync service" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    # nothing recorded as this course's problem, nothing queued, nothing on the portal
    assert w.courses() == {} and w.queue() == [] and w.state()["courses"] == []
    recorded = last_run(w)
    assert recorded["outcome"] == "failed" and "core_enrol_get_enrolled_users" in recorded["error"]
    assert "courses.moodle_error" not in json.loads(recorded["counts"] or "{}")

    w.admin("service", add=["core_enrol_get_enrolled_users"])
    fixed = scos_run(w, tmp_path, in_process=True)
    assert fixed.returncode == 0, fixed.stderr
    [item] = w.queue("course_publish")
    assert [t["display_name"] for t in item["payload"]["teachers"]] == ["Анна Преподаватель"]


def test_a_function_refused_on_a_published_course_stops_the_run(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    py = published(w)
    enrolled = {p["user_id"] for p in w.state()["participation"]}
    learners = w.learners()
    w.admin("service", remove=["core_enrol_get_enrolled_users"])
    result = scos_run(w, tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Add core_enrol_get_enrolled_users to the bufsync service" in result.stderr
    # no learner unenrolled for a list Moodle refused to give: the portal and the state rows are as they were
    assert {p["user_id"] for p in w.state()["participation"]} == enrolled and len(enrolled) == 8
    assert w.learners() == learners and w.queue("participation_remove") == []
    assert w.courses()[py]["state"] == "published" and w.courses()[py]["last_error"] is None


def test_a_refused_scos_key_on_the_moderation_poll_stops_with_exit_2(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    w.cycle()  # publish queued and delivered with the right key
    py = w.course_id("py-101")
    w.scenarios()  # settled: in moderation; the first status poll answered in_progress
    before = w.courses()[py]
    assert before["state"] == "moderation" and before["moderation"] == "in_progress"

    result = scos_run(w, tmp_path, key=WRONG_KEY)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[:2] == [
        "bufsync: configuration error:",
        '  scos.key: the portal refused the key BUFSYNC_SCOS_KEY (scos.key): HTTP 403 {"error": "invalid X-CN-UUID"}; '
        "the scenarios stopped at the first refused call (operations queued before it wait for a dispatcher, which "
        "refuses them alike without using their attempts): fix the key, then run `bufsync scos run` again"]
    assert WRONG_KEY not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr
    # the course keeps its state and no error of its own; the portal still has it in moderation
    assert w.courses()[py] == before
    [course] = w.state()["courses"]
    assert course["moderation"] == "in_progress"
    recorded = last_run(w)
    assert recorded["outcome"] == "failed" and "BUFSYNC_SCOS_KEY" in recorded["error"]
    assert WRONG_KEY not in recorded["error"]

    assert scos_run(w, tmp_path, in_process=True).returncode == 0  # the key fixed: the moderators' verdict is read
    assert w.courses()[py]["state"] == "published" and w.courses()[py]["last_error"] is None


def test_a_refused_scos_key_on_the_email_lookup_stops_with_exit_2(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    w.configure_scos(identity="email")
    py = published(w)  # no student has a portal account yet: every lookup answers 404, nobody is enrolled
    assert w.learners() == {} and w.state()["participation"] == []
    httpx.post(f"{w.portal.url}/sandbox/users", headers={"X-CN-UUID": KEY},
               json={"student003@college.example": "sso-3", "student004@college.example": "sso-4"})
    queued = len(w.queue())

    result = scos_run(w, tmp_path, key=WRONG_KEY, identity="email")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "  scos.key: the portal refused the key BUFSYNC_SCOS_KEY (scos.key): HTTP 403" in result.stderr
    assert WRONG_KEY not in result.stdout + result.stderr
    # nobody taken for "no portal account": no learner row, no enrolment queued, none on the portal
    assert w.learners() == {} and len(w.queue()) == queued and w.state()["participation"] == []
    assert w.courses()[py]["last_error"] is None
    assert "enrol.lookup_failed" not in json.loads(last_run(w)["counts"] or "{}")

    assert scos_run(w, tmp_path, identity="email", in_process=True).returncode == 0  # the key fixed
    w.dispatch()
    assert {p["user_id"] for p in w.state()["participation"]} == {"sso-3", "sso-4"}
