"""What the listing commands say when there is nothing, `runs` columns, `status` of a new job, JSON fatal errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync.state import runs
from bufsync.state.tables import add_state_tables
from tests.integration.clirun import bufsync_in_process
from tests.integration.test_cli import bufsync


@pytest.fixture
def buffer_dir(tmp_path: Path, _sqlite_upgraded_template: Path) -> Path:
    """A directory whose ./bufsync.db is what `bufsync db upgrade` leaves there (a copy of the buffer upgraded
    once per worker; test_cli runs the command itself in a real process)."""
    shutil.copyfile(_sqlite_upgraded_template, tmp_path / "bufsync.db")
    return tmp_path


def listing(*args: str, cwd: Path):
    """The command's output and exit code, in-process (tests/clirun.py); the fixture chdir'ed to tmp_path."""
    assert Path.cwd() == cwd
    return bufsync_in_process(*args)


@pytest.mark.parametrize("args, said", [
    (("status",), "no jobs configured (`jobs:` in the config)"),
    (("jobs",), "no jobs configured (`jobs:` in the config)"),
    (("queue", "stats"), "no queue items"),
    (("queue", "list"), "no queue items"),
    (("queue", "list", "--portal", "scos", "--status", "dead"), "no queue items (portal scos, status dead)"),
    (("scos", "courses"), "no courses published to СЦОС"),
    (("runs",), "no runs"),
])
def test_nothing_is_said_in_one_line(buffer_dir: Path, args: tuple[str, ...], said: str) -> None:
    result = listing(*args, cwd=buffer_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == said + "\n"


def test_runs_show_kind_reactivated_and_repaired(buffer_dir: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{buffer_dir / 'bufsync.db'}")
    table = add_state_tables(sa.MetaData())["sync_runs"]
    run_id = runs.start(engine, table, "sync", {}, False)
    runs.finish(engine, table, run_id, "ok", {"users": {"reactivated": 2, "repaired": 1, "unchanged": 7},
                                              "subscriptions": {"created": 3, "reactivated": 1}})
    dispatch = runs.start(engine, table, "dispatch", {}, False)
    runs.finish(engine, table, dispatch, "ok", {"claimed": 4, "done": 4, "dead": 0})
    engine.dispose()
    result = listing("runs", cwd=buffer_dir)
    assert result.returncode == 0, result.stderr
    dispatch_line, sync_line = result.stdout.splitlines()
    assert sync_line.split()[3:5] == ["sync", "ok"]
    assert "created=3 reactivated=3 repaired=1" in sync_line and "unchanged" not in sync_line
    assert dispatch_line.split()[3:5] == ["dispatch", "ok"] and "claimed=4 done=4" in dispatch_line


def test_status_of_a_job_that_never_ran(buffer_dir: Path) -> None:
    (buffer_dir / "bufsync.yaml").write_text("jobs:\n  nightly:\n    schedule: daily at 02:00\n"
                                             "    mappings: [users]\n", encoding="utf-8")
    result = listing("status", cwd=buffer_dir)
    line = result.stdout.strip()
    assert line.split()[1] == "nightly" and "never ran" in line and "lag=" not in line, line
    as_json = json.loads(listing("status", "--json", cwd=buffer_dir).stdout)
    assert as_json[0]["lag_seconds"] is None


@pytest.mark.parametrize("how", [("--log-format", "json"), ()])
def test_fatal_errors_are_json_lines_when_logs_are(tmp_path: Path, how: tuple[str, ...]) -> None:
    env = {"BUFSYNC_MOODLE_MAX_INPUT_VARS": "lots"} | ({} if how else {"BUFSYNC_LOG_FORMAT": "json"})
    result = bufsync(*how, "run", cwd=tmp_path, env=env)  # the config itself fails: the environment still says
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "critical" and entry["exit_code"] == 2
    assert "BUFSYNC_MOODLE_MAX_INPUT_VARS" in entry["message"] and "found 'lots'" in entry["message"]


def test_fatal_error_after_the_config_loaded_is_json(tmp_path: Path) -> None:
    result = bufsync("--log-format", "json", "run", cwd=tmp_path)  # no Moodle configured
    assert result.returncode == 2
    entries = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses, the migrations' too
    assert entries[-1]["exit_code"] == 2 and "BUFSYNC_MOODLE_URL" in entries[-1]["message"]
    text = bufsync("run", cwd=tmp_path)
    assert text.returncode == 2 and text.stderr.startswith("bufsync: configuration error:")
