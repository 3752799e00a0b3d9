"""A portal is one folder that registers itself: the core (config, runs, jobs, CLI, checks, state tables, DBA
views) learns of it from the registry and never by name.

The proof: a new portal written as a folder outside the package, added to `bufsync.portals` as a namespace
portion in a fresh interpreter, appears in every one of those places with no core file touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from bufsync.config import load_settings
from tests.conftest import REPO

CORE = ["config.py", "cli.py", "commands.py", "check.py", "runner.py", "schema.py", "portals/runs.py",
        "portals/__init__.py", "scheduler", "state", "queue", "reconcile", "mapping", "dialects", "buffer"]

ECHO = textwrap.dedent('''
    """A toy portal for the registry test: one setting, one state table, one command, one check."""
    from typing import ClassVar

    import sqlalchemy as sa
    from pydantic import Field, SecretStr, field_validator

    from bufsync.portals import Portal, PortalSettings, register
    from bufsync.validation import http_url


    class EchoSettings(PortalSettings):
        url: str | None = Field(None, description="where the echo lives")
        token: SecretStr | None = None

        _http_url = field_validator("url")(classmethod(lambda cls, value: http_url(value)))


    class EchoPortal(Portal):
        name: ClassVar[str] = "echo"
        title: ClassVar[str] = "Эхо"
        settings_model = EchoSettings
        required: ClassVar[tuple[str, ...]] = ("url", "token")
        view_fields: ClassVar[tuple[tuple[str, str], ...]] = (("text", "text"),)

        def add_tables(self, metadata):
            return {"sync_echo_said": sa.Table("sync_echo_said", metadata,
                                               sa.Column("id", sa.Integer, primary_key=True))}

        def check(self, loaded):
            settings = self.configured(loaded)
            return True, f"echo at {settings.url}"

        def cli_group(self):
            import click

            from bufsync.cli import pass_state

            @click.group("echo")
            def group():
                """The echo portal."""

            @group.command("hello")
            @pass_state
            def hello(state):
                click.echo(f"hello from {self.configured(state.loaded).url}")

            return group


    register(EchoPortal())
''')

PROGRAM = textwrap.dedent('''
    import json, sys
    import bufsync.portals
    bufsync.portals.__path__.append(sys.argv[1])  # the new folder, as if it were shipped
    if sys.argv[2] == "cli":
        from bufsync.cli import main
        sys.argv = ["bufsync", *sys.argv[3:]]
        main()
    from bufsync.config import load_settings
    from bufsync.portals import portals
    from bufsync.schema import build_metadata
    from bufsync.mapping import load_mappings
    from bufsync.state.views import queue_views
    from bufsync.state.tables import add_state_tables
    import sqlalchemy as sa
    loaded = load_settings()
    echo = loaded.settings.portals.echo
    print(json.dumps({
        "portals": sorted(portals()),
        "url": echo.url,
        "job": loaded.settings.jobs["say"].kind,
        "tables": sorted(add_state_tables(sa.MetaData())),
        "views": sorted(v.name for v in queue_views(add_state_tables(sa.MetaData())["sync_queue"], "sqlite")),
    }))
''')


def _echo(tmp_path: Path) -> Path:
    folder = tmp_path / "portals"
    (folder / "echo").mkdir(parents=True)
    (folder / "echo" / "__init__.py").write_text(ECHO, encoding="utf-8")
    return folder


def _run(tmp_path: Path, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")}
    environ.update(env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", PROGRAM, str(folder), *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_a_new_portal_folder_is_known_to_config_jobs_tables_views_cli_and_check(tmp_path: Path) -> None:
    folder = _echo(tmp_path)
    (tmp_path / "bufsync.yaml").write_text(json.dumps({
        "portals": {"echo": {"url": "https://echo.example"}},
        "jobs": {"say": {"kind": "echo", "schedule": "every 15 minutes"},
                 "deliver": {"kind": "dispatch", "portal": "echo", "schedule": "every 5 minutes"}}}), encoding="utf-8")
    result = _run(tmp_path, folder, "settings", BUFSYNC_ECHO_TOKEN="s3cret-echo")
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["portals"] == ["echo", "scos", "sferum", "u2035"]
    assert seen["url"] == "https://echo.example" and seen["job"] == "echo"
    assert "sync_echo_said" in seen["tables"] and "sync_scos_courses" in seen["tables"]
    assert seen["views"] == ["v_queue_echo", "v_queue_scos", "v_queue_sferum", "v_queue_u2035"]
    # its own command, from its folder; listed in the help with the core's
    hello = _run(tmp_path, folder, "cli", "echo", "hello", BUFSYNC_ECHO_TOKEN="s3cret-echo")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from https://echo.example", hello.stderr
    listed = _run(tmp_path, folder, "cli", "--help")
    assert re.search(r"^\s+echo\s+The echo portal\.", listed.stdout, re.M)
    assert re.search(r"^\s+scos\s", listed.stdout, re.M)
    # its settings' keys and environment variables in messages, its secret never printed
    missing = _run(tmp_path, folder, "cli", "echo", "hello")
    assert missing.returncode == 2
    assert "portals.echo.token is not set" in missing.stderr and "BUFSYNC_ECHO_TOKEN" in missing.stderr
    (tmp_path / "bufsync.yaml").write_text(json.dumps({"portals": {"echo": {"url": "ftp://x"}}}), encoding="utf-8")
    bad = _run(tmp_path, folder, "cli", "echo", "hello", BUFSYNC_ECHO_TOKEN="s3cret-echo")
    assert bad.returncode == 2 and "portals.echo" in bad.stderr and "s3cret-echo" not in bad.stderr + bad.stdout


def test_a_job_kind_or_dispatch_portal_that_no_folder_provides_is_a_config_error(tmp_path: Path) -> None:
    import pytest

    from bufsync.errors import ConfigError
    config = tmp_path / "bufsync.yaml"
    config.write_text("jobs:\n  x:\n    kind: gisnone\n    schedule: every 5 minutes\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(config, {})
    assert "jobs.x.kind" in str(err.value) and "expected one of sync, dispatch, import, export, scos, sferum, u2035" \
        in str(err.value)
    config.write_text("jobs:\n  x:\n    kind: dispatch\n    portal: gisnone\n    schedule: every 5 minutes\n",
                      encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(config, {})
    assert "jobs.x.portal" in str(err.value) and ":4:" in str(err.value)  # the file's line of the key


def test_the_older_top_level_scos_section_and_variables_still_work(tmp_path: Path) -> None:
    import pytest

    from bufsync.errors import ConfigError
    config = tmp_path / "bufsync.yaml"
    config.write_text("scos:\n  url: https://online.edu.ru/api/v2/\n  partner_id: p-1\n", encoding="utf-8")
    loaded = load_settings(config, {"BUFSYNC_SCOS_KEY": "k-legacy"})
    scos = loaded.settings.portals.scos
    assert (scos.url, scos.partner_id, scos.key.get_secret_value()) == ("https://online.edu.ru/api/v2", "p-1",
                                                                          "k-legacy")
    loaded = load_settings(config, {"BUFSYNC_PORTALS_SCOS_KEY": "k-new"})
    assert loaded.settings.portals.scos.key.get_secret_value() == "k-new"
    config.write_text("scos:\n  url: https://a\nportals:\n  scos:\n    url: https://b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="given twice"):
        load_settings(config, {})
    config.write_text("scos:\n  batch: lots\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:  # the line of the key as the file has it
        load_settings(config, {})
    assert ":2:" in str(err.value) and "portals.scos.batch" in str(err.value)


def test_the_core_names_no_portal() -> None:
    """The core learns portals from the registry; only the queue's column comment lists today's portals."""
    package = REPO / "engine" / "bufsync"
    offending = []
    for entry in CORE:
        path = package / entry
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"scos|sferum|u2035", line, re.I) and "Портал: scos, sferum, u2035" not in line \
                        and "`scos:`" not in line and "`bufsync scos ...`" not in line:
                    offending.append(f"{file.relative_to(package)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def test_state_tables_of_every_portal_are_in_the_migrated_schema() -> None:
    from bufsync.portals import portals
    from bufsync.state.tables import add_state_tables
    tables = add_state_tables(sa.MetaData())
    for portal in portals().values():
        assert set(portal.add_tables(sa.MetaData())) <= set(tables)
