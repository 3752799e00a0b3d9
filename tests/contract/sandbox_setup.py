"""The recorded site's PHP-CLI setup steps, done on the sandbox through its admin API."""

from __future__ import annotations

from typing import Any

import httpx

# setup step name -> admin actions (name, args) that leave the sandbox in the same state
SETUP_ACTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "setup_custom_fields": [
        ("create_profile_field", {"shortname": "snils", "name": "SNILS", "datatype": "text"}),
        ("create_course_customfield", {"shortname": "scos_publish", "name": "Publish to SCOS", "type": "checkbox"}),
        ("create_course_customfield", {"shortname": "scos_id", "name": "SCOS id", "type": "text"}),
    ],
    "setup_delete_manual_instance": [("delete_enrol_instance", {"shortname": "NOMAN-301", "enrol": "manual"})],
    "setup_mail_broken_for_one_call": [("break_mail", {"calls": 1})],
}


class SandboxSetup:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def admin(self, action: str, **args: Any) -> Any:
        response = httpx.post(f"{self.url}/sandbox/admin", json={"action": action, "args": args},
                              headers={"X-Sandbox-Token": self.token}, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"sandbox admin {action}: {response.text}")
        return response.json()["result"]

    def __call__(self, step: dict[str, Any]) -> str | None:
        actions = SETUP_ACTIONS.get(step["name"])
        if actions is None:
            raise RuntimeError(f"no sandbox equivalent of setup step {step['name']}")
        for action, args in actions:
            self.admin(action, **args)
        return None
