"""`bufsync run` and `bufsync runs` as an administrator's cron job runs them: exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.integration.clirun import bufsync_in_process
from tests.integration.reconcile.conftest import TOKEN, World, people


def bufsync(world: World, *args: str, in_process: bool = False, **env: str) -> subprocess.CompletedProcess:
    """The console script in a real process; `in_process`: the same command's output and exit code without a
    process start (tests/clirun.py)."""
    settings = {"BUFSYNC_BUFFER_URL": world.engine.url.render_as_string(hide_password=False),
                "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN, **env}
    if in_process:
        return bufsync_in_process(*args, env=settings)
    full = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_") or k.startswith("BUFSYNC_TEST")}
    full.update(settings)
    exe = Path(sys.executable).with_name("bufsync")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full, timeout=120)


def test_exit_codes_and_outputs(world: World) -> None:
    rows = people(20)
    rows[3]["username"] = "Кузнецова"
    world.insert("buf_users", rows)
    dry = bufsync(world, "run", "users", "--dry-run", in_process=True)
    # the dry run checks each row as the real run does: the same rejection, the same exit code
    assert dry.returncode == 1 and "DRY RUN — nothing was changed" in dry.stdout
    assert "Логин «кузнецова» недопустим" in dry.stdout and "would create" in dry.stdout
    result = bufsync(world, "run", "users", "--json", in_process=True)
    assert result.returncode == 1  # finished with a rejected row
    report = json.loads(result.stdout)
    users = report["mappings"][0]
    assert users["counts"]["created"] == 19 and users["counts"]["rejected"] == 1
    assert "Логин «кузнецова» недопустим" in users["errors"][0]["reason"]
    assert TOKEN not in result.stdout + result.stderr
    world.delete("buf_users", lambda t: t.c.external_id > "P00005")
    refused = bufsync(world, "run", "users")  # exit 3 from the console script itself
    assert refused.returncode == 3
    assert "--allow-removals 14" in refused.stderr + refused.stdout
    # (the guards are weighed before Moodle is first called: past them, an unreachable Moodle is exit 4)
    down = bufsync(world, "run", "users", "--allow-removals", "14", in_process=True,
                  BUFSYNC_MOODLE_URL="http://127.0.0.1:9")
    assert down.returncode == 4 and "Moodle" in down.stderr
    missing = bufsync(world, "run", "users", in_process=True, BUFSYNC_MOODLE_TOKEN="")
    assert missing.returncode == 2 and "BUFSYNC_MOODLE_TOKEN" in missing.stderr
    history = bufsync(world, "runs", "--json", in_process=True)
    outcomes = [r["outcome"] for r in json.loads(history.stdout)]
    assert outcomes[:3] == ["failed", "refused", "rejected"]
    assert bufsync(world, "run", "nosuchmapping", in_process=True).returncode == 2
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sync_runs WHERE dry_run")).scalar_one() == 1


def test_a_long_phase_reports_its_progress_per_batch(world: World) -> None:
    world.insert("buf_users", people(2500))
    result = bufsync(world, "run", "users")
    assert result.returncode == 0, result.stderr
    lines = [line for line in (result.stderr + result.stdout).splitlines() if " of 2500 rows (" in line]
    assert [line.split("users: ")[1].split(" of")[0] for line in lines] == ["1000", "2000", "2500"], lines
    assert all("rows/s" in line and "Moodle calls" in line for line in lines)
