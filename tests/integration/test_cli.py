"""The command line as users run it: help everywhere, exit codes, nothing created on bad input."""

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from bufsync.cli import cli
from bufsync.paths import shipped_mappings_dir


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [()] + list(all_commands(cli)), ids=lambda p: " ".join(p) or "bufsync")
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def bufsync(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed console script, in a real process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_") or k.startswith("BUFSYNC_TEST")}
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("bufsync")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, cwd=cwd)


def test_first_commands_on_an_empty_directory(tmp_path: Path) -> None:
    result = bufsync("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bufsync.db").is_file()
    result = bufsync("check", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the mappings" in result.stdout


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    assert bufsync("db", "downgrade", cwd=tmp_path).returncode == 2
    assert bufsync("no-such-command", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize("breakage, expected", [
    (lambda d: d["table"].update(name="users; drop table x"), "table.name: expected an identifier"),
    (lambda d: d["sync"].update(depends_on=["ghosts"]), "unknown mapping 'ghosts'"),
    (lambda d: d["sync"]["fields"].update(email={"source": "e_mail"}), "no column 'e_mail'"),
    (lambda d: d["sync"].update(on_missing=["suspend"]), "sync.on_missing: Input should be"),
])
def test_bad_mapping_exits_2_and_creates_nothing(tmp_path: Path, pg_url: str, breakage, expected: str) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    for file in shipped_mappings_dir().glob("*.yaml"):
        (maps / file.name).write_bytes(file.read_bytes())
    data = yaml.safe_load((maps / "users.yaml").read_text(encoding="utf-8"))
    breakage(data)
    (maps / "users.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = bufsync("db", "upgrade", env={"BUFSYNC_MAPPINGS_DIR": str(maps), "BUFSYNC_BUFFER_URL": pg_url},
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr and expected in result.stderr
    assert "users.yaml" in result.stderr and "Traceback" not in result.stderr
    engine = sa.create_engine(pg_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bufsync.yaml").write_text("moodle:\n  timeout: -1\n")
    result = bufsync("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "bufsync.yaml:2: moodle.timeout: Input should be greater than 0" in result.stderr
    assert not (tmp_path / "bufsync.db").exists()


def test_unreachable_buffer_is_exit_4_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://bufsync:Pa55-SECRET-word@127.0.0.1:9/buffer"
    result = bufsync("db", "upgrade", env={"BUFSYNC_BUFFER_URL": url}, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "cannot connect to the buffer database" in result.stderr
    assert "Pa55-SECRET-word" not in result.stderr + result.stdout
    assert "bufsync:***@127.0.0.1:9/buffer" in result.stderr


def test_check_never_prints_secrets(tmp_path: Path, pg_url: str) -> None:
    token = "moodle-TOKEN-SECRET-0123456789"
    env = {"BUFSYNC_BUFFER_URL": pg_url, "BUFSYNC_MOODLE_URL": "http://127.0.0.1:9",
           "BUFSYNC_MOODLE_TOKEN": token}
    result = bufsync("--log-format", "json", "check", env=env, cwd=tmp_path)
    assert result.returncode == 1  # schema missing, Moodle unreachable
    assert "FAIL  moodle" in result.stdout and "FAIL  schema" in result.stdout
    assert token not in result.stdout + result.stderr


def test_check_against_the_sandbox_names_missing_functions(tmp_path: Path) -> None:
    from bufsync.sandbox.moodle.run import start
    server = start(port=0, token="c0ffee" * 6)
    try:
        env = {"BUFSYNC_MOODLE_URL": server.url, "BUFSYNC_MOODLE_TOKEN": "c0ffee" * 6}
        assert bufsync("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
        result = bufsync("check", env=env, cwd=tmp_path)
        assert "Moodle 4.5dev+ (Build: 20240903) as admin" in result.stdout, result.stdout
        assert "c0ffee" * 6 not in result.stdout + result.stderr
        bad = bufsync("check", env={**env, "BUFSYNC_MOODLE_TOKEN": "0" * 32}, cwd=tmp_path)
        assert bad.returncode == 1 and "Moodle refused: Invalid token - token not found (invalidtoken)" in bad.stdout
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()
