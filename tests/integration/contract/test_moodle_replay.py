"""Contract: the sandbox answers every recorded exchange as the real Moodle did.

The whole recording is replayed once per mode (debug off, then debug on) against a sandbox
on real HTTP; each exchange is then its own test. Debug off must match the topic files
(and errors.json); debug on must match errors-debug.json for the error exchanges.
"""

from __future__ import annotations

import time

import pytest

from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.sandbox.moodle.site import BEYOND_RECORDED, FUNCTIONS, SERVICE_FUNCTIONS, Site, SiteConfig
from tests.integration.contract import replay
from tests.integration.contract.sandbox_setup import SandboxSetup

TOKEN = "0123456789abcdef0123456789abcdef"
EMULATED = replay.TOPICS  # the sandbox emulates every recorded topic


def _emulated(function: str) -> bool:
    """A service function the sandbox does not emulate yet; unknown names are still sent."""
    return function in FUNCTIONS or function not in dict(SERVICE_FUNCTIONS)


def _run(debug: bool) -> dict[str, replay.Outcome]:
    site = Site(SiteConfig(token=TOKEN, debug=debug))
    server = SandboxServer(site, port=0)
    server.serve_in_thread()
    try:
        setup = SandboxSetup(server.url, TOKEN)
        setup.admin("add_token", token=replay.EXPIRED_TOKEN, validuntil=int(time.time()) - 86400)
        setup.admin("service", remove=BEYOND_RECORDED)  # the recorded site's service had not these
        outcomes = replay.replay(server.url, TOKEN, EMULATED, setup,
                                 replay.debug_bodies() if debug else None, available=_emulated)
    finally:
        server.shutdown()
        server.server_close()
        site.close()
    return {f"{o.topic}/{o.name}": o for o in outcomes}


@pytest.fixture(scope="module")
def production() -> dict[str, replay.Outcome]:
    return _run(debug=False)


@pytest.fixture(scope="module")
def debugging() -> dict[str, replay.Outcome]:
    return _run(debug=True)


def _ids() -> list[str]:
    return [f"{t}/{e['name']}" for t in EMULATED for e in replay.load(t)["exchanges"]]


@pytest.mark.parametrize("key", _ids())
def test_exchange(production: dict[str, replay.Outcome], key: str) -> None:
    outcome = production[key]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert not outcome.problems, "\n".join(outcome.problems)


@pytest.mark.parametrize("key", sorted(k for k in replay.error_names() if k.split("/")[0] in EMULATED))
def test_error_exchange_in_debug_mode(debugging: dict[str, replay.Outcome], key: str) -> None:
    outcome = debugging[key]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert not outcome.problems, "\n".join(outcome.problems)
