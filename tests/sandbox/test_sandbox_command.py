"""`bufsync sandbox` as users start it: Moodle and the СЦОС beside it, the lines to paste, the knobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx


def test_sandbox_prints_both_and_serves_both() -> None:
    exe = Path(sys.executable).with_name("bufsync")
    proc = subprocess.Popen([str(exe), "sandbox", "--port", "0", "--scos-port", "0", "--scos-validation-status", "422",
                             "--scos-fault", "latency:1:0.3", "--scos-moderation", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(6))
        assert set(env) == {"BUFSYNC_MOODLE_URL", "BUFSYNC_MOODLE_TOKEN", "BUFSYNC_SCOS_URL", "BUFSYNC_SCOS_KEY",
                            "BUFSYNC_SCOS_PARTNER_ID", "BUFSYNC_SCOS_INSTITUTION"}
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
