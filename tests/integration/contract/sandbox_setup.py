"""The recorded site's PHP-CLI setup steps, done on the sandbox through its admin API."""

from __future__ import annotations

from typing import Any

import httpx

from bufsync import tls

# setup step name -> admin actions (name, args) that leave the sandbox in the same state
SETUP_ACTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "setup_custom_fields": [
        ("create_profile_field", {"shortname": "snils", "name": "SNILS", "datatype": "text"}),
        ("create_course_customfield", {"shortname": "scos_publish", "name": "Publish to SCOS", "type": "checkbox"}),
        ("create_course_customfield", {"shortname": "scos_id", "name": "SCOS id", "type": "text"}),
    ],
    "setup_delete_manual_instance": [("delete_enrol_instance", {"shortname": "NOMAN-301", "enrol": "manual"})],
    "setup_mail_broken_for_one_call": [("break_mail", {"calls": 1})],
    # The assignment's idnumber is set after the manual item exists: the order core_grades_get_gradeitems
    # shows (the table's physical order) says the essay's row was written last.
    "setup_grades_php": [
        ("create_assignment", {"courseid": 5, "name": "Essay 1", "grademax": 100, "cmid": 10}),
        ("create_grade_item", {"courseid": 5, "itemname": "Exam", "grademax": 100, "idnumber": "EXAM1"}),
        ("update_grade_item", {"courseid": 5, "item_name": "Essay 1", "idnumber": "ESSAY1"}),
        ("set_grade", {"courseid": 5, "itemname": "Essay 1", "username": "ivanov", "grade": 87.5}),
        ("set_grade", {"courseid": 5, "idnumber": "EXAM1", "username": "ivanov", "grade": 92,
                       "feedback": "Good work, молодец"}),
        ("set_grade", {"courseid": 5, "itemname": "Essay 1", "username": "petrova", "grade": 64}),
    ],
    "setup_completion_php": [
        ("set_completion_criteria", {"courseid": 5, "aggregation": "all",
                                     "criteria": [{"type": "self"}, {"type": "role", "role": "editingteacher"}]}),
        ("mark_completion", {"courseid": 5, "username": "ivanov", "criteria": ["self", "role"],
                             "complete_course": True}),
        ("mark_completion", {"courseid": 5, "username": "petrova", "criteria": ["self"]}),
    ],
}


class SandboxSetup:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def admin(self, action: str, **args: Any) -> Any:
        response = httpx.post(f"{self.url}/sandbox/admin", json={"action": action, "args": args},
                              headers={"X-Sandbox-Token": self.token}, timeout=30,
                              verify=tls.verify())
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
