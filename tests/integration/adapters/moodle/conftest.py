"""A sandbox Moodle on real HTTP per test, and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bufsync import tls
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.sandbox.faults import FaultRule
from bufsync.sandbox.moodle.run import start
from bufsync.sandbox.moodle.server import SandboxServer

TOKEN = "feedfacefeedfacefeedfacefeedface"


class Sandbox:
    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url

    def fault(self, **rule) -> None:
        self.server.faults.add(FaultRule(**rule))

    def calls(self, function: str) -> int:
        return self.server.stats()["calls"].get(function, 0)

    def users(self) -> list:
        return self.server.site.store.q("SELECT * FROM user WHERE deleted = 0 ORDER BY id")

    def admin(self, action: str, **args):
        response = httpx.post(f"{self.url}/sandbox/admin", json={"action": action, "args": args},
                              headers={"X-Sandbox-Token": TOKEN}, verify=tls.verify())
        assert response.status_code == 200, response.text
        return response.json()["result"]


@pytest.fixture
def sandbox_factory():
    servers: list[SandboxServer] = []

    def make(**kwargs) -> Sandbox:
        server = start(port=0, token=TOKEN, **kwargs)
        servers.append(server)
        return Sandbox(server)

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()
        server.site.close()


@pytest.fixture
def sandbox(sandbox_factory) -> Sandbox:
    return sandbox_factory()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[MoodleClient]:
    with MoodleClient.connect(sandbox.url, TOKEN, timeout=5, backoff=0.01) as c:
        yield c
