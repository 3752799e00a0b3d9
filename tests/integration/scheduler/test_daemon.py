"""The scheduler with real processes, on PostgreSQL and SQLite: two daemons, SIGTERM, SIGKILL, overrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.reconcile.context import CHUNK
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.moodle.run import start
from bufsync.schema import build_metadata
from tests.integration.clirun import bufsync_in_process

TOKEN = "5c4ed5c4ed5c4ed5c4ed5c4ed5c4ed00"


def wait_until(condition, seconds: float, step: float) -> None:
    """Poll instead of sleeping a fixed time: these tests run on slow and loaded machines too."""
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(step)


@pytest.fixture
def site(_upgraded_buffer: None, buffer_url: str, tmp_path: Path):
    server = start(port=0, token=TOKEN)
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    tables = build_metadata(mappings).tables

    def people(n: int, start: int = 0) -> None:
        with engine.begin() as conn:
            conn.execute(tables["buf_users"].insert(), [
                {"external_id": f"S{i:05d}", "username": f"s{i:05d}", "email": f"s{i:05d}@x.example",
                 "last_name": "Петров", "first_name": "Пётр", "status": "active"} for i in range(start, start + n)])

    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_") or k.startswith("BUFSYNC_TEST")}
    env.update({"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": server.url, "BUFSYNC_MOODLE_TOKEN": TOKEN})

    class Site:
        pass

    s = Site()
    s.server, s.engine, s.env, s.dir, s.people, s.tables = server, engine, env, tmp_path, people, tables

    def config(text: str) -> Path:
        path = tmp_path / "bufsync.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def bufsync(*args: str, wait: bool = True, **popen):
        exe = Path(sys.executable).with_name("bufsync")
        proc = subprocess.Popen([str(exe), "--config", str(tmp_path / "bufsync.yaml"), *args], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        if wait:
            out, err = proc.communicate(timeout=120)
            proc.stdout_text, proc.stderr_text = out, err
        return proc

    def runs(job: str) -> list[dict]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, outcome, options, error FROM sync_runs WHERE job = :j ORDER BY id"),
                                {"j": job}).mappings().all()
        return [dict(r) | {"options": json.loads(r["options"])} for r in rows]

    def in_process(*args: str):
        """`bufsync ARGS` in the test's process (tests/clirun.py), for a follow-up whose subject is not the process:
        its output as stdout_text/stderr_text, as bufsync() gives them."""
        done = bufsync_in_process("--config", str(tmp_path / "bufsync.yaml"), *args, env=env)
        done.stdout_text, done.stderr_text = done.stdout, done.stderr
        return done

    s.config, s.bufsync, s.runs, s.in_process = config, bufsync, runs, in_process
    yield s
    engine.dispose()
    server.shutdown()
    server.server_close()
    server.site.close()


def test_two_daemons_run_each_due_time_exactly_once(site) -> None:
    site.people(3)
    # every second: four due times in about four seconds (two runs of one job may overlap: the job's lock lets
    # one through, and the due times stay distinct either way)
    site.config("jobs:\n  users:\n    schedule: every 1 second\n    mappings: [users]\nheartbeat_seconds: 1\n")
    daemons = [site.bufsync("schedule", "--tick", "0.2", wait=False) for _ in range(2)]
    wait_until(lambda: len(site.runs("users")) >= 4, 60, 0.1)
    for d in daemons:
        d.send_signal(signal.SIGTERM)
    for d in daemons:
        assert d.wait(60) == 0, d.stderr.read()
    runs = site.runs("users")
    dues = [r["options"]["due"] for r in runs]
    assert len(dues) >= 3
    assert len(set(dues)) == len(dues), dues  # never twice for one due time
    assert all(r["outcome"] == "ok" for r in runs)
    assert len(site.server.site.store.q("SELECT id FROM user WHERE id > 2")) == 3


def test_sigterm_lets_the_batch_finish_and_the_next_run_completes(site) -> None:
    total = CHUNK + 500  # more people than one batch: the stop falls between the first batch and the next
    site.people(total)
    site.server.faults.add(FaultRule(kind="latency", function="core_user_create_users", seconds=1.0))
    site.config("jobs:\n  users:\n    schedule: every 1 second\n    mappings: [users]\n")
    daemon = site.bufsync("schedule", "--tick", "0.2", wait=False)

    def created() -> int:
        with site.server.site.store.lock:  # what the sandbox committed, read between its transactions
            return len(site.server.site.store.q("SELECT id FROM user WHERE id > 2"))

    wait_until(lambda: created() > 0, 60, 0.05)  # inside the first batch: Moodle has it, its answer is 1 s away
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    first = site.runs("users")[-1]
    assert first["outcome"] == "interrupted", first
    assert 0 < created() < total
    site.server.faults.clear()
    done = site.in_process("jobs", "run", "users")  # the next run: the daemon's stop is what needed a process
    assert "run" in done.stdout_text and done.returncode == 0, done.stderr_text
    users = site.server.site.store.q("SELECT username FROM user WHERE id > 2")
    assert len(users) == total and len({u["username"] for u in users}) == total


def test_sigkill_of_a_holder_frees_the_lock(site) -> None:
    site.people(1500)
    # the holder's first batch is never answered before it is killed: it holds the lock however slow the machine
    site.server.faults.add(FaultRule(kind="latency", function="core_user_create_users", seconds=600.0))
    site.config("jobs:\n  users:\n    schedule: daily at 03:00\n    mappings: [users]\n")
    holder = site.bufsync("jobs", "run", "users", wait=False)
    wait_until(lambda: bool(site.runs("users")), 30, 0.1)
    busy = site.in_process("jobs", "run", "users")  # another process than the holder, as a second run would be
    assert "running elsewhere" in busy.stdout_text or "another process runs this job" in busy.stdout_text
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    site.server.faults.clear()
    again = site.in_process("jobs", "run", "users")
    assert again.returncode == 0 and "done" in again.stdout_text, again.stdout_text + again.stderr_text
    assert len(site.server.site.store.q("SELECT id FROM user WHERE id > 2")) == 1500


def test_an_overrunning_job_is_stopped_and_recorded(site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon in-process with its time-limit clock in the test's hand: the limit runs out once the job's run
    has started (never while the job's process is still starting up, however slow the machine), and the job
    stops at the end of its batch. The daemon as a process (signals, exit code) is the other tests' part."""
    import threading

    from bufsync.scheduler.daemon import serve
    site.people(2000)  # two batches of 2 s each at least: the run cannot end before the test moves the clock
    site.server.faults.add(FaultRule(kind="latency", function="core_user_create_users", seconds=2.0))
    config = site.config("jobs:\n  users:\n    schedule: every 1 second\n    mappings: [users]\n    time_limit: 1\n")
    for name in ("BUFSYNC_BUFFER_URL", "BUFSYNC_MOODLE_URL", "BUFSYNC_MOODLE_TOKEN"):  # the job processes' settings
        monkeypatch.setenv(name, site.env[name])
    now = [0.0]
    stop = threading.Event()
    exit_code: list[int] = []
    daemon = threading.Thread(target=lambda: exit_code.append(serve(load_settings(config), config, 0.2, stop,
                                                                    clock=lambda: now[0])))
    daemon.start()
    try:
        wait_until(lambda: any(r["outcome"] == "running" for r in site.runs("users")), 60, 0.05)
        assert [r["outcome"] for r in site.runs("users")] == ["running"]  # the job's run has started
        now[0] += 1.5  # past the limit of 1 s
        wait_until(lambda: any(r["outcome"] == "timeout" for r in site.runs("users")), 60, 0.1)
    finally:
        stop.set()
        daemon.join(90)
    assert exit_code == [0]  # stopped cleanly
    timed_out = [r for r in site.runs("users") if r["outcome"] == "timeout"]
    assert timed_out and "time limit of 1 s" in timed_out[0]["error"]
    status = bufsync_in_process("--config", str(config), "status", env=site.env)
    assert status.returncode == 1 and "users" in status.stdout


def test_a_bad_schedule_fails_at_start(site) -> None:
    site.config("jobs:\n  users:\n    mappings: [users]\n    schedule: every fortnight\n")
    result = site.bufsync("schedule")
    assert result.returncode == 2
    assert "bufsync.yaml:4: jobs.users.schedule: 'every fortnight' is not a schedule; accepted forms:" \
           in result.stderr_text


def test_the_daemon_takes_a_folders_files_and_runs_the_mappings(site) -> None:
    """An import job under `bufsync schedule`: a file dropped into incoming/ is loaded, moved to done/, and the
    job's mapping takes it to Moodle (read back through its Web Services)."""
    from bufsync.adapters.moodle.client import MoodleClient
    folder = site.dir / "exchange"
    site.config(f"jobs:\n  files-in:\n    kind: import\n    schedule: every 1 second\n    folder: {folder}\n"
                f"    files: {{'users*.csv': users}}\n    mappings: [users]\n    settle_seconds: 0\n")
    (folder / "incoming").mkdir(parents=True)
    (folder / "incoming" / "users-01.csv").write_bytes(
        "Код;Фамилия;Имя;Логин;Почта\r\nD001;Орлова;Дарья;d001;d001@example.edu\r\n".encode("cp1251"))
    daemon = site.bufsync("schedule", "--tick", "0.2", wait=False)
    try:
        wait_until(lambda: (folder / "done" / "users-01.csv").exists() and any(
            r["outcome"] == "ok" and r["options"].get("mappings") == ["users"] for r in site.runs("files-in")), 90, 0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    with MoodleClient.connect(site.server.url, TOKEN) as client:
        assert client.get_users_by_field("username", ["d001"])[0]["lastname"] == "Орлова"
