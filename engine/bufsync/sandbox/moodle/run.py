"""Start the sandbox Moodle for a user: print the variables to paste, then serve until stopped."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from bufsync.errors import BufsyncError
from bufsync.sandbox.faults import FaultRule, Faults
from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.sandbox.moodle.site import Site, SiteConfig

DEFAULT_PORT = 18081       # high ports that rarely clash with a developer's own services (8080/8081)
DEFAULT_SCOS_PORT = 18082


class PortInUse(BufsyncError):
    """A busy port is a usage problem (exit 2) with one line of advice, not a traceback."""


def _port_error(port: int, what: str, option: str) -> PortInUse:
    return PortInUse(f"port {port} ({what}) on 127.0.0.1 is in use: pick another with {option} N "
                     f"(0: any free port)")


def check_ports(ports: list[tuple[int, str, str]], host: str = "127.0.0.1") -> None:
    """Every (port, what, option) is free, checked before anything starts or prints."""
    for port, what, option in ports:
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server binds
            try:
                probe.bind((host, port))
                probe.listen(1)
            except OSError:
                raise _port_error(port, what, option) from None


def env_lines(variables: dict[str, str], export: bool = True) -> str:
    """`export VAR=value` lines a POSIX shell takes as pasted; without export, an env file's `VAR=value`."""
    if export:
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
    return "".join(f"{name}={value}\n" for name, value in variables.items())


def parse_env_line(line: str) -> tuple[str, str]:
    """(name, value) of a line `serve` prints, for the scripts and tests that start it."""
    name, value = line.strip().removeprefix("export ").split("=", 1)
    return name, (shlex.split(value) or [""])[0]


def start(port: int = DEFAULT_PORT, data: Path | None = None, token: str | None = None, debug: bool = False,
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
          faults: list[FaultRule], out: TextIO = sys.stdout, env_file: Path | None = None,
          portal_options: dict[str, Any] | None = None) -> None:
    """Every server bound before a line is printed: a busy port fails alone, with nothing to paste.

    Each portal's emulator starts beside the Moodle one when its options (from `bufsync sandbox`) ask for it."""
    from bufsync.portals import portals
    options = portal_options or {}
    chosen = {name: portal for name, portal in portals().items() if portal.sandbox_ports(options)}
    check_ports([(port, "sandbox Moodle", "--port")]
                + [bound for p in chosen.values() for bound in p.sandbox_ports(options)])
    try:
        server = start(port, data, token, debug, max_input_vars, faults)
    except OSError:  # taken between the check and the start
        raise _port_error(port, "sandbox Moodle", "--port") from None
    variables = {"BUFSYNC_MOODLE_URL": server.url, "BUFSYNC_MOODLE_TOKEN": server.site.config.token}
    emulators: list[Any] = []
    for portal in chosen.values():
        try:
            emulator = portal.start_sandbox(options, data)
        except OSError:
            for running in emulators + [server]:
                running.shutdown()
                running.server_close()
            server.site.close()
            ports = portal.sandbox_ports(options)
            check_ports(ports)  # the one taken between the check and the start, when it is still taken
            raise _port_error(*ports[0]) from None
        emulators.append(emulator)
        variables.update(emulator.variables)
    if env_file is not None:  # systemd EnvironmentFile= and docker --env-file take VAR=value, no export
        env_file.touch(mode=0o600)  # it holds the sandbox's token and keys: the owner's to read
        env_file.write_text(env_lines(variables, export=False), encoding="utf-8")
    out.write(env_lines(variables))
    names = " and ".join(["Moodle"] + [e.title for e in emulators])
    where = " and ".join([str(data / "moodle.db")] + [e.state for e in emulators]) if data else "in memory"
    written = f"; also written to {env_file}" if env_file is not None else ""
    out.write(f"# sandbox {names} {'(debug) ' if debug else ''}serving; state: {where}{written}; Ctrl-C stops\n")
    out.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for running in [server] + emulators:
        running.shutdown()
        running.server_close()
    server.site.close()


def spawn(token: str, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    """`bufsync sandbox` in its own process (as users run it, and as benchmarks measure it); its URL."""
    exe = os.path.join(os.path.dirname(sys.executable), "bufsync")
    proc = subprocess.Popen([exe, "sandbox", "--port", str(port), "--token", token, "--no-scos", "--no-u2035"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    url = parse_env_line(proc.stdout.readline())[1]  # export BUFSYNC_MOODLE_URL=...
    proc.stdout.readline()  # export BUFSYNC_MOODLE_TOKEN=...
    return proc, url
