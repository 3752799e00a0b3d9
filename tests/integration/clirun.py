"""`bufsync ARGS` run inside the test process, for tests that check what a command prints and its exit code.

A `bufsync` process pays Python's start and every import again (about a second on CI): tests that only read a
command's output and exit code call the click command here instead, with what a process would get — the
arguments, BUFSYNC_* variables (others' unset, as the autouse `_clean_env` leaves them) and the exit code
of `bufsync.cli:main` (the console script), stdout and stderr apart. Tests where the process itself matters
(signals, daemons, a killed process, the console script's own exit code) still start real processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Mapping

from click.testing import CliRunner

from bufsync.cli import cli

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def bufsync_in_process(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What `subprocess.run(["bufsync", *args], capture_output=True, text=True)` returns, with `env`'s
    BUFSYNC_* variables set and every other BUFSYNC_* variable unset for the call."""
    environ: dict[str, str | None] = {name: None for name in os.environ
                                       if name.startswith("BUFSYNC_") and not name.startswith("BUFSYNC_TEST_")}
    environ.update({k: v for k, v in (env or {}).items() if k.startswith("BUFSYNC_")})
    # the command sets up logging on its stderr and may take SIGINT/SIGTERM (queue dispatch): both are the
    # process's in a real run, so they are put back for the next test
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    handlers_before = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        result = CliRunner().invoke(cli, list(args), env=environ, prog_name="bufsync", catch_exceptions=False)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for sig, handler in handlers_before.items():
            signal.signal(sig, handler)
    return subprocess.CompletedProcess(["bufsync", *args], result.exit_code, result.stdout, result.stderr)
