"""`bufsync scos run`, `bufsync queue dispatch` and the scheduler's scos / dispatch jobs, as users run them
(processes for the daemon and the portal's own commands; output and exit codes in-process, tests/clirun.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.clirun import bufsync_in_process
from tests.integration.portals.conftest import KEY, PASSPORT_DEFAULTS, TOKEN, ScosWorld


def bufsync(w: ScosWorld, tmp_path: Path, *args: str, every: str = "every 1 minute", wait: bool = True,
            in_process: bool = False) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    config = tmp_path / "cli.yaml"
    config.write_text(json.dumps({"heartbeat_seconds": 1, "scos": {"passport": PASSPORT_DEFAULTS}, "jobs": {
        "scos": {"kind": "scos", "schedule": every},
        "scos-dispatch": {"kind": "dispatch", "portal": "scos", "schedule": every}}}), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "BUFSYNC_BUFFER_URL": w.loaded.buffer_url, "BUFSYNC_MOODLE_URL": w.moodle.url,
           "BUFSYNC_MOODLE_TOKEN": TOKEN, "BUFSYNC_SCOS_URL": f"{w.portal.url}/api/v2", "BUFSYNC_SCOS_KEY": KEY,
           "BUFSYNC_SCOS_PARTNER_ID": "sandbox-partner", "BUFSYNC_SCOS_INSTITUTION": "inst-1"}
    if in_process:  # the command's output and exit code, without a process start (tests/clirun.py)
        return bufsync_in_process("--config", str(config), *args, env=env)
    exe = Path(sys.executable).with_name("bufsync")
    if not wait:
        return subprocess.Popen([str(exe), "--config", str(config), *args], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run([str(exe), "--config", str(config), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_commands_and_jobs(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    w.mark("db-201")  # no description: the run reports it and exits 1
    first = bufsync(w, tmp_path, "scos", "run", "--json")  # a real process; the rest in-process
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    assert report["counts"]["publish.queued"] == 1 and report["counts"]["publish.invalid"] == 1
    assert "db-201" in report["problems"][0] and "description" in report["problems"][0]
    assert KEY not in first.stdout + first.stderr
    sent = bufsync(w, tmp_path, "queue", "dispatch", "--portal", "scos", in_process=True)
    assert sent.returncode == 0, sent.stderr
    assert "claimed=1 done=1 retried=0 dead=0" in sent.stdout
    # the site gives up on db-201 (unmarks it); then the same through the scheduler's job kinds
    w.mark("db-201", publish=False)
    # in moderation: the first status poll, in_progress
    done = bufsync(w, tmp_path, "jobs", "run", "scos", in_process=True)
    assert done.returncode == 0, done.stderr
    assert w.courses()[w.course_id("py-101")]["moderation"] == "in_progress"
    for job in ("scos", "scos-dispatch", "scos"):  # the second poll: ok; learners queued, delivered, settled
        assert bufsync(w, tmp_path, "jobs", "run", job, in_process=True).returncode == 0
    assert w.courses()[w.course_id("py-101")]["state"] == "published"
    assert len(w.state()["participation"]) == 8
    assert w.course_id("db-201") not in w.courses()  # never published: its error row withdrawn
    runs = {(r["kind"], r["job"]) for r in w.rows("sync_runs")}
    assert {("scos", None), ("dispatch", None), ("scos", "scos"), ("dispatch", "scos-dispatch")} <= runs
    listed = bufsync(w, tmp_path, "queue", "stats", "--portal", "scos", in_process=True)
    assert "done" in listed.stdout
    listed = bufsync(w, tmp_path, "scos", "courses", in_process=True)
    assert listed.returncode == 0 and "py-101" in listed.stdout and "published" in listed.stdout
    assert "learners: enrolled=8" in listed.stdout
    [course] = json.loads(bufsync(w, tmp_path, "scos", "courses", "--json", in_process=True).stdout)
    assert course["state"] == "published" and course["learners"] == {"enrolled": 8}
    purged = bufsync(w, tmp_path, "queue", "purge", "--older-than", "1", in_process=True)
    assert purged.returncode == 0 and purged.stdout.strip() == "0 finished item(s) deleted"  # all are recent
    checked = bufsync(w, tmp_path, "check", in_process=True)
    assert "ok    scos       " in checked.stdout
    assert "the key and partner sandbox-partner are accepted" in checked.stdout


def test_missing_portal_settings_fail_at_start_with_the_key(seeded: ScosWorld, tmp_path: Path) -> None:
    w = seeded
    config = tmp_path / "bare.yaml"
    config.write_text("{}", encoding="utf-8")
    exe = Path(sys.executable).with_name("bufsync")
    result = subprocess.run([str(exe), "--config", str(config), "scos", "run"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "BUFSYNC_BUFFER_URL": w.loaded.buffer_url}, timeout=60)
    assert result.returncode == 2
    assert "scos.url is not set" in result.stderr and "BUFSYNC_SCOS_KEY" in result.stderr


def test_the_daemon_runs_scenarios_and_dispatch_unattended(seeded: ScosWorld, tmp_path: Path) -> None:
    """`bufsync schedule` with the two jobs every second: the course goes through publication and
    moderation and its learners reach the portal with nobody running a command."""
    import signal
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    daemon = bufsync(w, tmp_path, "schedule", "--tick", "0.2", every="every 1 second", wait=False)
    try:
        deadline = time.monotonic() + 120  # a bound, not a wait: it ends as soon as all 8 are there
        while time.monotonic() < deadline and len(w.state()["participation"]) < 8:
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert len(w.state()["participation"]) == 8
    assert w.courses()[w.course_id("py-101")]["state"] == "published"
    runs = [r for r in w.rows("sync_runs") if r["kind"] != "sync"]  # the fixture's own bufsync run aside
    assert {r["job"] for r in runs} == {"scos", "scos-dispatch"} and all(r["triggered_by"] == "schedule" for r in runs)
    assert all(r["outcome"] in ("ok", "interrupted") for r in runs), [(r["job"], r["outcome"], r["error"])
                                                                      for r in runs]
    assert KEY not in out + err
