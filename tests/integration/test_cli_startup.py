"""Start-up: `--version` and `--help` import no heavy library (checked by module, never by the clock)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy.engine", "alembic", "httpx", "pydantic")


def imported_modules(*args: str) -> set[str]:
    """The modules the installed console script imports, from Python's own -X importtime report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    exe = Path(sys.executable).with_name("bufsync")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("run", "--help"), ("sandbox", "--help")])
def test_no_heavy_import(args: tuple[str, ...]) -> None:
    modules = imported_modules(*args)
    assert "click" in modules  # the report was read
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []
