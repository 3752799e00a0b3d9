"""SQLite run locks: a file beside the buffer while held, none left after a run (beside it or in the cwd)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bufsync.dialects import dialect_named
from bufsync.dialects.base import LockHeld
from tests.integration.reconcile.conftest import TOKEN, World, people
from tests.integration.reconcile.test_cli_run import bufsync


def test_bufsync_run_leaves_no_lock_file(world: World, tmp_path: Path) -> None:
    if world.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL and MS SQL lock in the database session")
    buffer_dir = Path(world.engine.url.database).parent
    before = set(buffer_dir.iterdir())
    world.insert("buf_users", people(3))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for args in (("run", "users"), ("runs",), ("status",)):
        result = subprocess.run([str(Path(sys.executable).with_name("bufsync")), *args], capture_output=True,
                                text=True, env=_env(world), cwd=cwd, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
    assert list(cwd.iterdir()) == []
    assert [p.name for p in set(buffer_dir.iterdir()) - before if p.name.endswith(".lock")] == []
    assert bufsync(world, "runs").stdout.count(" ok ") == 1


def _env(world: World) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")}
    env.update({"BUFSYNC_BUFFER_URL": world.engine.url.render_as_string(hide_password=False),
                "BUFSYNC_MOODLE_URL": world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN})
    return env


HOLD = """
import sys, sqlalchemy as sa
from bufsync.dialects import dialect_named
engine = sa.create_engine(sys.argv[1])
with dialect_named("sqlite").lock(engine, "run"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_lock_excludes_another_process_and_is_removed_when_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bufsync.db'}"
    engine = sa.create_engine(url)
    sqlite = dialect_named("sqlite")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert (tmp_path / "bufsync.db.run.lock").is_file()  # beside the buffer while held
        with pytest.raises(LockHeld):
            with sqlite.lock(engine, "run"):
                pass
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert list(tmp_path.iterdir()) == []  # released: the file went with it
    with sqlite.lock(engine, "run"):
        with pytest.raises(LockHeld):  # a second taker in this process is refused as well
            with sqlite.lock(engine, "run"):
                pass
    assert list(tmp_path.iterdir()) == []
