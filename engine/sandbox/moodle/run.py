"""Start the sandbox Moodle for a user: print the variables to paste, then serve until stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from bufsync.sandbox.faults import FaultRule, Faults
from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.sandbox.moodle.site import Site, SiteConfig


def start(port: int = 8081, data: Path | None = None, token: str | None = None, debug: bool = False,
          max_input_vars: int = 5000, faults: list[FaultRule] | None = None,
          host: str = "127.0.0.1") -> SandboxServer:
    """A running sandbox (in a background thread); the caller shuts it down."""
    config = SiteConfig(debug=debug, max_input_vars=max_input_vars)
    if token:
        config.token = token
    path = None
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        path = str(data / "moodle.db")
    site = Site(config, path)
    server = SandboxServer(site, host, port, Faults(list(faults or [])))
    server.serve_in_thread()
    return server


def serve(port: int, data: Path | None, token: str | None, debug: bool, max_input_vars: int,
          faults: list[FaultRule], out: TextIO = sys.stdout, scos_port: int | None = None,
          scos: dict[str, Any] | None = None, scos_faults: list[FaultRule] | None = None) -> None:
    server = start(port, data, token, debug, max_input_vars, faults)
    out.write(f"BUFSYNC_MOODLE_URL={server.url}\nBUFSYNC_MOODLE_TOKEN={server.site.config.token}\n")
    portal = None
    if scos_port is not None:  # the СЦОС beside it, as `bufsync scos run` expects to find it
        from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
        state = str(data / "scos.json") if data is not None else None
        portal = PortalServer(Portal(SandboxConfig(**(scos or {})), state), port=scos_port,
                              faults=Faults(list(scos_faults or [])))
        portal.serve_in_thread()
        config = portal.portal.config
        out.write(f"BUFSYNC_SCOS_URL={portal.url}/api/v2\nBUFSYNC_SCOS_KEY={config.key}\n"
                  f"BUFSYNC_SCOS_PARTNER_ID={config.partner_id}\nBUFSYNC_SCOS_INSTITUTION=sandbox-institution\n")
    where = f"{data / 'moodle.db'}" + (f" and {data / 'scos.json'}" if portal else "") if data else "in memory"
    out.write(f"# sandbox Moodle{' and СЦОС' if portal else ''} {'(debug) ' if debug else ''}serving; "
              f"state: {where}; Ctrl-C stops\n")
    out.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for running in (server, portal):
        if running is not None:
            running.shutdown()
            running.server_close()
    server.site.close()


def spawn(token: str, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """`bufsync sandbox` in its own process (as users run it, and as benchmarks measure it); its URL."""
    exe = os.path.join(os.path.dirname(sys.executable), "bufsync")
    proc = subprocess.Popen([exe, "sandbox", "--port", str(port), "--token", token, "--no-scos"], stdout=subprocess.PIPE,
                            text=True)
    url = proc.stdout.readline().strip().split("=", 1)[1]  # BUFSYNC_MOODLE_URL=...
    proc.stdout.readline()  # BUFSYNC_MOODLE_TOKEN=...
    return proc, url
