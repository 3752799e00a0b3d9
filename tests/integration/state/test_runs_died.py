"""Killed runs do not stay `running` in sync_runs (issue 11, defect 9): the next run, `bufsync runs` and
`bufsync status` mark them `died` once their process (on this host) and their lock (on PostgreSQL, from any
host) are gone. Real processes, killed with SIGKILL, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync import migrations
from bufsync.config import load_settings
from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from bufsync.mapping import load_mappings
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.moodle.run import start
from bufsync.state import runs
from bufsync.state.ledger import now_utc
from bufsync.state.tables import add_state_tables
from tests.integration.clirun import bufsync_in_process

TOKEN = "9d9d9d9d9d9d9d9d9d9d9d9d9d9d9d9d"
HOST = socket.gethostname()


@pytest.fixture
def buffer(_upgraded_buffer: None, buffer_url: str):
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    yield engine, add_state_tables(sa.MetaData())
    engine.dispose()


class Cli:
    def __init__(self, buffer_url: str, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")} | {
            "BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_SCOS_URL": "http://127.0.0.1:9/api/v2",  # never called
            "BUFSYNC_SCOS_KEY": "k" * 32, "BUFSYNC_SCOS_PARTNER_ID": "p", **env}

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(Path(sys.executable).with_name("bufsync")), *args], env=self.env, cwd=self.cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        """`bufsync ARGS` run in the test's process (tests/clirun.py): what is checked is the command's output and
        its judgement of another process's run, not a process of its own (the victims are real processes)."""
        return bufsync_in_process(*args, env=self.env)

    def runs(self) -> dict[int, dict]:
        result = self("runs", "--json")
        assert result.returncode == 0, result.stderr
        return {r["id"]: r for r in json.loads(result.stdout)}


def wait_for(condition, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def running_run(engine: sa.Engine, table: sa.Table, pid: int) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.id).where(table.c.pid == pid, table.c.outcome == "running")).scalar()


def beat_names(engine: sa.Engine, table: sa.Table, job: str, run_id: int) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.run_id).where(table.c.job == job)).scalar() == run_id


def lock_free(engine: sa.Engine, run_id: int) -> bool:
    """Whether the database has let go of the killed run's lock (the server notices a dead client by itself)."""
    if engine.dialect.name == "sqlite":
        return True
    try:
        with dialect_named(engine.dialect.name).lock(engine, runs.run_lock(run_id)):
            return True
    except LockHeld:
        return False


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # collected: no zombie keeps the pid
    assert process.returncode == -signal.SIGKILL


def test_a_killed_scheduled_sync_is_died_for_runs_and_status_and_the_next_run_finishes(
        buffer, buffer_url: str, tmp_path: Path) -> None:
    engine, tables = buffer
    moodle = start(port=0, token=TOKEN)
    try:
        from bufsync.schema import build_metadata
        users = build_metadata(load_mappings(load_settings(None, {}).mappings_dir)).tables["buf_users"]
        with engine.begin() as conn:
            conn.execute(users.insert(), [{"external_id": f"S{i}", "username": f"s{i}", "email": f"s{i}@x.example",
                                           "last_name": "Петров", "first_name": "Пётр", "status": "active"}
                                          for i in range(20)])
        (tmp_path / "bufsync.yaml").write_text("jobs:\n  users:\n    schedule: daily at 03:00\n    mappings: [users]\n",
                                               encoding="utf-8")
        cli = Cli(buffer_url, tmp_path, BUFSYNC_MOODLE_URL=moodle.url, BUFSYNC_MOODLE_TOKEN=TOKEN)
        moodle.faults.add(FaultRule(kind="latency", function="core_user_create_users", seconds=600.0))
        due = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # as the daemon starts it: not late, so died shows
        victim = cli.start("jobs", "run", "users", "--due", due, "--trigger", "schedule")
        run_id = wait_for(lambda: running_run(engine, tables["sync_runs"], victim.pid), "the job's run to start")
        # the job names its run in its heartbeat just after the run's row is made: killed before that, the
        # heartbeat could not say which run died
        wait_for(lambda: beat_names(engine, tables["sync_heartbeat"], "users", run_id), "the heartbeat to name the run")
        assert cli.runs()[run_id]["outcome"] == "running"  # alive: left alone
        kill(victim)
        def died_run() -> dict | None:  # one `bufsync runs` per poll
            run = cli.runs()[run_id]
            return run if run["outcome"] == "died" else None
        died = wait_for(died_run, "`bufsync runs` to mark the killed run died")
        assert died["finished_at"] is not None
        assert died["error"].startswith(f"died: the process {HOST}:{victim.pid} ended without recording")
        with engine.connect() as conn:
            beat = conn.execute(sa.select(tables["sync_heartbeat"]).where(
                tables["sync_heartbeat"].c.job == "users")).one()
        assert (beat.state, beat.run_id) == ("died", run_id) and beat.last_error == died["error"]
        status = cli("status")
        assert status.returncode == 1
        line = status.stdout.strip()
        assert line.startswith("FAIL  users") and " died " in line and "last=died" in line, line
        assert "last run died — died: the process" in line
        moodle.faults.clear()
        again = cli("jobs", "run", "users")
        assert again.returncode == 0, again.stderr
        assert len(moodle.site.store.q("SELECT id FROM user WHERE id > 2")) == 20
        outcomes = {i: r["outcome"] for i, r in cli.runs().items()}
        assert outcomes[run_id] == "died" and sorted(outcomes.values()) == ["died", "ok"]
    finally:
        moodle.shutdown()
        moodle.server_close()
        moodle.site.close()


def test_the_next_run_marks_a_killed_dispatch_died(buffer, buffer_url: str, tmp_path: Path) -> None:
    engine, tables = buffer
    cli = Cli(buffer_url, tmp_path)
    victim = cli.start("queue", "dispatch", "--portal", "scos", "--forever")
    run_id = wait_for(lambda: running_run(engine, tables["sync_runs"], victim.pid), "the dispatcher's run")
    kill(victim)
    wait_for(lambda: lock_free(engine, run_id), "the database to drop the killed session")
    with engine.connect() as conn:  # nothing looked yet: still `running`
        assert conn.execute(sa.select(tables["sync_runs"].c.outcome).where(
            tables["sync_runs"].c.id == run_id)).scalar_one() == "running"
    nxt = cli("queue", "dispatch", "--portal", "scos")
    assert nxt.returncode == 0, nxt.stderr
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(tables["sync_runs"]))}
    assert rows[run_id].outcome == "died" and rows[run_id].pid == victim.pid
    assert [r.outcome for i, r in rows.items() if i != run_id] == ["ok"]


def test_a_run_on_another_host_is_judged_by_its_lock_alone(buffer, buffer_url: str, tmp_path: Path) -> None:
    """Its pid means nothing here. PostgreSQL shows whether its session still holds the run's lock; SQLite has no
    such lock, so its row is left alone rather than guessed."""
    engine, tables = buffer
    table = tables["sync_runs"]
    cli = Cli(buffer_url, tmp_path)
    victim = cli.start("queue", "dispatch", "--portal", "scos", "--forever")
    run_id = wait_for(lambda: running_run(engine, table, victim.pid), "the dispatcher's run")
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == run_id).values(host="another-host"))
    assert runs.reap(engine, table) == []  # alive elsewhere: its lock is held (or cannot be seen)
    kill(victim)
    if engine.dialect.name == "sqlite":
        assert runs.reap(engine, table) == [] and cli.runs()[run_id]["outcome"] == "running"
        return
    wait_for(lambda: cli.runs()[run_id]["outcome"] == "died", "the lock of the killed run to be free")
    assert cli.runs()[run_id]["error"].startswith(f"died: the process another-host:{victim.pid}")


def test_a_zombie_or_a_reused_pid_is_not_the_run(buffer) -> None:
    engine, tables = buffer
    table = tables["sync_runs"]
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: runs._process_start(zombie.pid) and runs._process_start(zombie.pid)[0] == "Z",
             "the child to exit (not yet collected)")

    def row(pid: int, started_at: datetime) -> int:
        with engine.begin() as conn:
            return int(conn.execute(table.insert().values(
                kind="dispatch", triggered_by="manual", host=HOST, pid=pid, started_at=started_at,
                outcome="running", dry_run=False)).inserted_primary_key[0])

    reused = row(os.getpid(), datetime(2020, 1, 1))  # this process began long after that run
    mine = row(os.getpid(), now_utc())
    dead_child = row(zombie.pid, now_utc())
    try:
        assert sorted(runs.reap(engine, table)) == sorted([reused, dead_child])
        with engine.connect() as conn:
            outcomes = dict(conn.execute(sa.select(table.c.id, table.c.outcome)).all())
        assert outcomes == {reused: "died", mine: "running", dead_child: "died"}
    finally:
        zombie.wait()
