"""`bufsync sandbox` as users start it: Moodle and the portals' emulators beside it, the lines to paste, the knobs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bufsync.sandbox.moodle.run import parse_env_line


def test_sandbox_prints_both_and_serves_both() -> None:
    exe = Path(sys.executable).with_name("bufsync")
    proc = subprocess.Popen([str(exe), "sandbox", "--port", "0", "--scos-port", "0", "--scos-validation-status", "422",
                             "--scos-fault", "latency:1:0.3", "--scos-moderation", "0", "--vk-port", "0",
                             "--vk-people", "50", "--lrs-port", "0", "--s3-port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        env = dict(parse_env_line(proc.stdout.readline()) for _ in range(19))
        assert set(env) == {"BUFSYNC_MOODLE_URL", "BUFSYNC_MOODLE_TOKEN", "BUFSYNC_SCOS_URL", "BUFSYNC_SCOS_KEY",
                            "BUFSYNC_SCOS_PARTNER_ID", "BUFSYNC_SCOS_INSTITUTION", "BUFSYNC_SFERUM_URL",
                            "BUFSYNC_SFERUM_USER_TOKEN", "BUFSYNC_SFERUM_ORGANISER_ID",
                            "BUFSYNC_U2035_TEST_LRS_URL", "BUFSYNC_U2035_TEST_KEY", "BUFSYNC_U2035_TEST_SECRET",
                            "BUFSYNC_U2035_LRS_URL", "BUFSYNC_U2035_KEY", "BUFSYNC_U2035_SECRET",
                            "BUFSYNC_U2035_S3_ENDPOINT", "BUFSYNC_U2035_S3_BUCKET", "BUFSYNC_U2035_S3_ACCESS_KEY",
                            "BUFSYNC_U2035_S3_SECRET_KEY"}
        # Университет 2035: the LRS takes a statement with the printed key and secret; S3 keeps a public file
        statement = {"actor": {"account": {"homePage": "https://my.2035.university", "name": "1"}},
                     "verb": {"id": "http://adlnet.gov/expapi/verbs/registered"},
                     "object": {"id": "https://lms.example/course/view.php?id=2"}}
        posted = httpx.post(f"{env['BUFSYNC_U2035_LRS_URL']}/statements", json=[statement],
                            auth=(env["BUFSYNC_U2035_KEY"], env["BUFSYNC_U2035_SECRET"]),
                            headers={"X-Experience-API-Version": "1.0.3"})
        assert posted.status_code == 200 and len(posted.json()) == 1
        s3 = _s3(env)
        s3.put_object(Bucket=env["BUFSYNC_U2035_S3_BUCKET"], Key="a/b.txt", Body=b"hello", ACL="public-read")
        public = httpx.get(f"{env['BUFSYNC_U2035_S3_ENDPOINT']}/{env['BUFSYNC_U2035_S3_BUCKET']}/a/b.txt")
        assert (public.status_code, public.content) == (200, b"hello")
        vk = {"access_token": env["BUFSYNC_SFERUM_USER_TOKEN"], "v": "5.199"}
        me = httpx.post(f"{env['BUFSYNC_SFERUM_URL']}/method/users.get", data=vk).json()["response"]
        assert me[0]["id"] == int(env["BUFSYNC_SFERUM_ORGANISER_ID"])
        chat = httpx.post(f"{env['BUFSYNC_SFERUM_URL']}/method/messages.createChat",
                          data={**vk, "title": "ИВТ-21", "user_ids": "1,2,50,51"}).json()["response"]
        assert sorted(chat["peer_ids"]) == [1, 2, 50]  # --vk-people 50: VK users 1..50 exist
        info = httpx.post(f"{env['BUFSYNC_MOODLE_URL']}/webservice/rest/server.php", data={
            "wstoken": env["BUFSYNC_MOODLE_TOKEN"], "wsfunction": "core_webservice_get_site_info",
            "moodlewsrestformat": "json"}).json()
        assert info["release"].startswith("4.5")
        scos, key = env["BUFSYNC_SCOS_URL"], {"X-CN-UUID": env["BUFSYNC_SCOS_KEY"]}
        checked = httpx.get(f"{scos}/connections/check", headers=key)
        assert checked.status_code == 200 and checked.elapsed.total_seconds() >= 0.3  # the latency knob
        refused = httpx.post(f"{scos}/registry/courses", headers=key, json={
            "partner_id": env["BUFSYNC_SCOS_PARTNER_ID"], "package": {"items": [{"title": "x"}]}})
        assert refused.status_code == 422 and "description" in refused.json()["errors"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_with_data_both_keep_their_state_across_restarts(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("bufsync")

    def start() -> tuple[subprocess.Popen[str], dict[str, str]]:
        proc = subprocess.Popen([str(exe), "sandbox", "--port", "0", "--scos-port", "0", "--data", str(tmp_path),
                                 "--scos-moderation-polls", "1", "--vk-port", "0", "--lrs-port", "0", "--s3-port",
                                 "0"], stdout=subprocess.PIPE, text=True)
        return proc, dict(parse_env_line(proc.stdout.readline()) for _ in range(19))

    proc, env = start()
    try:
        key = {"X-CN-UUID": env["BUFSYNC_SCOS_KEY"]}
        created = httpx.post(f"{env['BUFSYNC_SCOS_URL']}/registry/courses", headers=key, json={
            "partner_id": env["BUFSYNC_SCOS_PARTNER_ID"], "package": {"items": [{
                "title": "T", "description": "d", "content": "c", "results": "r", "external_url": "https://lms/1",
                "institution": "i", "started_at": "2026-09-01", "image": "https://lms/i.png", "competences": "k",
                "requirements": ["r"], "direction": ["09.03.01"], "duration": {"code": "week", "value": 1},
                "cert": "false", "teachers": [{"display_name": "t"}], "business_version": 1, "credits": 1}]}})
        course_id = created.json()["course_id"]
        moderation = f"{env['BUFSYNC_SCOS_URL']}/registry/courses/moderation_status"
        assert httpx.get(moderation, params={"course_id": course_id}, headers=key).json() == {"status": "in_progress"}
        httpx.post(f"{env['BUFSYNC_SCOS_URL'].rsplit('/api/', 1)[0]}/sandbox/users", headers=key,
                   json={"A@B.example": "sso-1"}).raise_for_status()
        _s3(env).put_object(Bucket=env["BUFSYNC_U2035_S3_BUCKET"], Key="kept.txt", Body=b"kept")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, again = start()
    try:
        assert again["BUFSYNC_SCOS_KEY"] == env["BUFSYNC_SCOS_KEY"]  # what the user pasted stays valid
        assert again["BUFSYNC_SFERUM_USER_TOKEN"] == env["BUFSYNC_SFERUM_USER_TOKEN"]
        assert {k: v for k, v in again.items() if k.startswith("BUFSYNC_U2035_") and "URL" not in k
                and "ENDPOINT" not in k} == {k: v for k, v in env.items() if k.startswith("BUFSYNC_U2035_")
                                             and "URL" not in k and "ENDPOINT" not in k}
        kept = _s3(again).get_object(Bucket=again["BUFSYNC_U2035_S3_BUCKET"], Key="kept.txt")
        assert kept["Body"].read() == b"kept"
        assert httpx.post(f"{again['BUFSYNC_SFERUM_URL']}/method/users.get", data={
            "access_token": again["BUFSYNC_SFERUM_USER_TOKEN"], "v": "5.199"}).json()["response"][0]["id"] == 1001
        scos, key = again["BUFSYNC_SCOS_URL"], {"X-CN-UUID": again["BUFSYNC_SCOS_KEY"]}
        assert httpx.get(f"{scos}/registry/courses/{course_id}", headers=key).json()["title"] == "T"
        # --scos-moderation-polls 1: the poll made before the restart counted, so this one has the verdict
        assert httpx.get(f"{scos}/registry/courses/moderation_status", params={"course_id": course_id},
                         headers=key).json() == {"status": "ok"}
        assert httpx.get(f"{scos}/users/id", params={"email": "a@b.example"}, headers=key).json() == {
            "user_id": "sso-1"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_printed_lines_work_pasted_into_a_shell_and_env_file(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("bufsync")
    env_file = tmp_path / "sandbox.env"
    proc = subprocess.Popen([str(exe), "sandbox", "--port", "0", "--scos-port", "0", "--vk-port", "0", "--lrs-port",
                             "0", "--s3-port", "0", "--token", "t0k'en $x", "--env-file", str(env_file)],
                            stdout=subprocess.PIPE, text=True)
    try:
        pasted = "".join(proc.stdout.readline() for _ in range(20))  # nineteen exports and the comment line
        assert pasted.startswith("export BUFSYNC_MOODLE_URL=http://127.0.0.1:")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_")}
        shell = subprocess.run(["sh", "-c", pasted + "env"], capture_output=True, text=True, env=clean, check=True)
        got = dict(line.split("=", 1) for line in shell.stdout.splitlines() if line.startswith("BUFSYNC_"))
        assert got["BUFSYNC_MOODLE_TOKEN"] == "t0k'en $x"  # quoted for the shell, taken literally
        assert set(got) == {"BUFSYNC_MOODLE_URL", "BUFSYNC_MOODLE_TOKEN", "BUFSYNC_SCOS_URL", "BUFSYNC_SCOS_KEY",
                            "BUFSYNC_SCOS_PARTNER_ID", "BUFSYNC_SCOS_INSTITUTION", "BUFSYNC_SFERUM_URL",
                            "BUFSYNC_SFERUM_USER_TOKEN", "BUFSYNC_SFERUM_ORGANISER_ID",
                            "BUFSYNC_U2035_TEST_LRS_URL", "BUFSYNC_U2035_TEST_KEY", "BUFSYNC_U2035_TEST_SECRET",
                            "BUFSYNC_U2035_LRS_URL", "BUFSYNC_U2035_KEY", "BUFSYNC_U2035_SECRET",
                            "BUFSYNC_U2035_S3_ENDPOINT", "BUFSYNC_U2035_S3_BUCKET", "BUFSYNC_U2035_S3_ACCESS_KEY",
                            "BUFSYNC_U2035_S3_SECRET_KEY"}
        # the env file: VAR=value, no export, no shell quoting (systemd EnvironmentFile=, docker --env-file)
        lines = env_file.read_text(encoding="utf-8").splitlines()
        assert dict(line.split("=", 1) for line in lines) == got
        assert env_file.stat().st_mode & 0o077 == 0
        info = httpx.post(f"{got['BUFSYNC_MOODLE_URL']}/webservice/rest/server.php", data={
            "wstoken": got["BUFSYNC_MOODLE_TOKEN"], "wsfunction": "core_webservice_get_site_info",
            "moodlewsrestformat": "json"}).json()
        assert info["release"].startswith("4.5")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("busy", ["--port", "--scos-port", "--vk-port", "--lrs-port", "--s3-port"])
def test_busy_port_is_one_line_and_exit_2(busy: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        free = []
        for _ in range(5):  # free ports for the other servers (0 would not show the order)
            with socket.socket() as other:
                other.bind(("127.0.0.1", 0))
                free.append(other.getsockname()[1])
        ports = {"--port": str(free[0]), "--scos-port": str(free[1]), "--vk-port": str(free[2]),
                 "--lrs-port": str(free[3]), "--s3-port": str(free[4])} | {busy: str(port)}
        exe = Path(sys.executable).with_name("bufsync")
        result = subprocess.run([str(exe), "sandbox", *[x for kv in ports.items() for x in kv]],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""  # nothing to paste when a server could not start
    what = {"--port": "sandbox Moodle", "--scos-port": "sandbox СЦОС", "--vk-port": "sandbox VK API",
            "--lrs-port": "sandbox LRS", "--s3-port": "sandbox S3"}[busy]
    assert result.stderr == (f"bufsync: port {port} ({what}) on 127.0.0.1 is in use: pick another with {busy} N "
                             f"(0: any free port)\n")


def _s3(env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.session.Session().client(
        "s3", endpoint_url=env["BUFSYNC_U2035_S3_ENDPOINT"], aws_access_key_id=env["BUFSYNC_U2035_S3_ACCESS_KEY"],
        aws_secret_access_key=env["BUFSYNC_U2035_S3_SECRET_KEY"], region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}))
