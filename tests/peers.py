"""Real peers on loopback for the Университет 2035 clients: ralph-malph's LRS (`ralph_lrs`) and moto's S3
(`moto_s3`). Imported by tests/conftest.py, so any test can ask for them.

ralph-malph 5.1 lives in a virtualenv of its own (its `lrs` extra pins fastapi, uvicorn, bcrypt and httpx, which
clash with bufsync's): BUFSYNC_TEST_RALPH_VENV, else <repo>/.ralph-venv. .ci/run builds it in the background while
the main install runs; a developer's first run builds it here (under a file lock: every xdist worker starts its own
ralph, and only one of them may install). Nothing is waited for by a fixed sleep: ports are polled to a deadline.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
# .ci/run installs the same (keep the two alike). `requests`: ralph 5.1's API imports it (its OIDC module) but
# no extra of ralph-malph requires it
RALPH_PACKAGES = ("ralph-malph[cli,lrs]==5.1.*", "requests")
RALPH_READY = ".bufsync-ready"   # written once the venv's install has finished
RALPH_USER = "lrs-client-u2035"  # not a word the suite prints: a key is masked wherever it appears
INSTALL_TIMEOUT = 900.0
START_TIMEOUT = 90.0             # ralph's import takes seconds on a loaded 2-core machine


def ralph_venv() -> Path:
    return Path(os.environ.get("BUFSYNC_TEST_RALPH_VENV") or REPO / ".ralph-venv")


def ensure_ralph_venv(venv: Path) -> Path:
    """The venv's python, the venv created and ralph installed first when it has not been. One installer at a
    time (a lock file beside the venv); the others wait and find it ready."""
    python = venv / "bin" / "python"
    if (venv / RALPH_READY).exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / RALPH_READY).exists():
            return python
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], "creating ralph's virtualenv")
        _run([str(python), "-m", "pip", "install", "--quiet", *RALPH_PACKAGES], "installing ralph-malph")
        (venv / RALPH_READY).write_text("installed by tests/peers.py\n")
    return python


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}", pytrace=False)


def free_port() -> int:
    """A loopback port nobody listens on now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RalphLrs:
    """A running ralph: its xAPI root (`http://127.0.0.1:PORT/xAPI`), a key:secret with statements/read and
    statements/write, and the folder of its file backend. Statements are never removed (ralph's file backend
    deletes nothing): a test keeps apart by minting its own statement ids and actor."""

    base_url: str
    key: str
    secret: str
    directory: Path

    @property
    def statements_file(self) -> Path:
        return self.directory / "fs_lrs.jsonl"

    def copies(self, statement_id: str) -> int:
        """How many times ralph wrote this statement to its file (1 after any number of resends)."""
        if not self.statements_file.exists():
            return 0
        with self.statements_file.open(encoding="utf-8") as lines:
            return sum(1 for line in lines if line.strip() and json.loads(line).get("id") == statement_id)


class RalphServer:
    """One ralph process on a loopback port: started by `start`, stopped by `stop`."""

    def __init__(self, python: Path, home: Path) -> None:
        self.python, self.home = python, home
        self.directory = home / "statements"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log = home / "ralph.log"
        self.secret = secrets.token_urlsafe(18)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RALPH_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update(RALPH_APP_DIR=str(self.home), RALPH_AUTH_FILE=str(self.home / "auth.json"),
                   RALPH_HISTORY_FILE=str(self.home / "history.json"), RALPH_RUNSERVER_BACKEND="fs",
                   RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH=str(self.directory),
                   RALPH_BACKENDS__DATA__FS__DEFAULT_DIRECTORY_PATH=str(self.directory))
        return env

    def start(self) -> RalphLrs:
        env = self.environment()
        self.port = free_port()
        with self.log.open("ab") as log:
            # cwd: ralph reads a .env from its working directory
            self.process = subprocess.Popen([str(self.python), str(Path(__file__).with_name("ralph_serve.py")),
                                             str(self.port)], cwd=self.home, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        # the credentials are written while the server imports: ralph reads its auth file at the first
        # authenticated request, not at start
        if not (self.home / "auth.json").exists():
            ralph = self.python.with_name("ralph")
            done = subprocess.run([str(ralph), "auth", "-w", "-u", RALPH_USER, "-p", self.secret,
                                   "-s", "statements/read", "-s", "statements/write",
                                   "-M", f"mailto:{RALPH_USER}@example.org"],
                                  cwd=self.home, env=env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                self.stop()
                pytest.fail(f"ralph auth failed: {done.stderr[-2000:]}", pytrace=False)
        self._wait_ready()
        return RalphLrs(f"http://127.0.0.1:{self.port}/xAPI", RALPH_USER, self.secret, self.directory)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        url = f"http://127.0.0.1:{self.port}/__heartbeat__"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"ralph exited ({self.process.returncode}): {self._log_tail()}", pytrace=False)
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # the polling interval, not a wait for an outcome
        self.stop()
        pytest.fail(f"ralph did not answer on port {self.port} within {START_TIMEOUT:.0f} s: {self._log_tail()}",
                    pytrace=False)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


@pytest.fixture(scope="session")
def ralph_lrs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RalphLrs]:
    """ralph-malph 5.1 on a loopback port of its own (one per xdist worker), with its file backend in a temporary
    folder; stopped at the end of the session."""
    python = ensure_ralph_venv(ralph_venv())
    server = RalphServer(python, tmp_path_factory.mktemp("ralph"))
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass(frozen=True)
class MotoS3:
    """A bucket of its own on moto's S3 server: endpoint (`http://127.0.0.1:PORT`), bucket and keys (moto takes
    any keys and checks no ACL: `client()` reads back what was sent, e.g. get_object_acl)."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


@pytest.fixture(scope="session")
def _moto_endpoint() -> Iterator[str]:
    """moto's S3 server in this process (one per xdist worker), on a loopback port the OS picks: never its
    default 0.0.0.0."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_s3(_moto_endpoint: str) -> MotoS3:
    """A fresh bucket for this test on the worker's moto server."""
    store = MotoS3(_moto_endpoint, f"bufsync-{uuid.uuid4().hex[:12]}", "AKIABUFSYNCTEST", secrets.token_hex(20))
    store.client().create_bucket(Bucket=store.bucket)
    return store
