"""Groupings (core_group_create_groupings, _get_course_groupings, _assign_grouping) and a group's rename, as
the real Moodle 4.5 answers them: one script run over HTTP against the sandbox, compared with what the real
site answered (recorded below from ../shared/moodle-real, 2026-12-02), and run against the real site too
when BUFSYNC_TEST_MOODLE_URL / _TOKEN are set. Ids are replaced by their order of appearance."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.transport import Transport
from bufsync.sandbox.moodle.run import start

TOKEN = "9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a"
ERR = "error"

# What the real Moodle 4.5 answered to script() (ids normalised: #course, #1, #2 ... in order of appearance)
REAL = [
    # no idnumber: the grouping is created, then the answer fails Moodle's own check of its return value
    (ERR, "invalidresponse", "Invalid response value detected"),
    [{"id": "#1", "courseid": "#course", "name": "Второй", "description": "", "descriptionformat": 1,
      "idnumber": "gx"}],
    (ERR, "idnumbertaken", "This ID number is already in use"),
    (ERR, "invalidparameter", "Invalid parameter value detected"),        # the same name in the course
    (ERR, "invalidparameter", "Invalid parameter value detected"),        # a blank name
    (ERR, "invalidparameter", "Invalid parameter value detected"),        # tags in a PARAM_TEXT name
    (ERR, "invalidrecord", "Can't find data record in database table course."),
    [{"id": "#1", "courseid": "#course", "name": "Второй", "description": "", "descriptionformat": 1,
      "idnumber": "gx"},
     {"id": "#2", "courseid": "#course", "name": "Учебные процессы", "description": "d", "descriptionformat": 1,
      "idnumber": ""}],
    "#3",                                                                 # the group created
    None, None,                                                           # assigned, and again: no error
    (ERR, "invalidrecord", "Can't find data record in database table groupings."),
    (ERR, "invalidrecord", "Can't find data record in database table groups."),
    None,                                                                 # renamed
    [{"id": "#3", "courseid": "#course", "name": "ИС-21а", "description": "", "descriptionformat": 1,
      "enrolmentkey": None, "idnumber": "LP-1", "visibility": 0, "participation": True}],
]


def script(t: Transport) -> list[Any]:
    tag = f"g{time.time_ns() % 10**9}"
    ids: dict[tuple[str, int], str] = {}  # (kind, id): groups and groupings are numbered apart

    def norm(value: Any, kind: str, key: str | None = None) -> Any:
        if isinstance(value, list):
            return [norm(v, kind) for v in value]
        if isinstance(value, dict):
            return {k: norm(v, kind, k) for k, v in value.items()}
        if key == "id" and isinstance(value, int):
            return ids.setdefault((kind, value), f"#{len(ids) + 1}")
        if key == "courseid":
            return "#course"
        return value

    def call(function: str, params: dict[str, Any]) -> Any:
        try:
            return norm(t.call(function, params, write=True), "group" if "_groups" in function else "grouping")
        except MoodleError as exc:
            return (ERR, exc.errorcode, exc.message)

    course = t.call("core_course_create_courses", {"courses": [
        {"fullname": f"Groupings {tag}", "shortname": f"gp-{tag}", "categoryid": 1}]}, write=True)[0]["id"]
    out: list[Any] = []
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "  Учебные процессы  ", "description": "d"}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "Второй", "description": "", "idnumber": " gx "}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "Третий", "description": "", "idnumber": "gx"}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "Второй", "description": "", "idnumber": "g2"}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "   ", "description": "", "idnumber": "g3"}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": course, "name": "<b>Тег</b>", "description": "", "idnumber": "g4"}]}))
    out.append(call("core_group_create_groupings", {"groupings": [
        {"courseid": 999999, "name": "X", "description": "", "idnumber": "g5"}]}))
    groupings = call("core_group_get_course_groupings", {"courseid": course})
    out.append(groupings)
    group = t.call("core_group_create_groups", {"groups": [
        {"courseid": course, "name": "ИС-21", "description": "", "idnumber": "LP-1"}]}, write=True)[0]["id"]
    out.append(norm(group, "group", "id"))
    first = next(k for (_, k), v in ids.items() if v == "#2")  # the grouping created without an idnumber
    out.append(call("core_group_assign_grouping", {"assignments": [{"groupingid": first, "groupid": group}]}))
    out.append(call("core_group_assign_grouping", {"assignments": [{"groupingid": first, "groupid": group}]}))
    out.append(call("core_group_assign_grouping", {"assignments": [{"groupingid": 999999, "groupid": group}]}))
    out.append(call("core_group_assign_grouping", {"assignments": [{"groupingid": first, "groupid": 999999}]}))
    out.append(call("core_group_update_groups", {"groups": [{"id": group, "name": "ИС-21а"}]}))
    out.append(call("core_group_get_course_groups", {"courseid": course}))
    return out


def test_the_sandbox_answers_as_the_real_moodle() -> None:
    server = start(port=0, token=TOKEN)
    try:
        with Transport(server.url, TOKEN, timeout=30) as t:
            assert script(t) == REAL
        grouping = server.site.store.one("SELECT id FROM groupings WHERE idnumber = ''")
        from bufsync.sandbox.moodle.functions.groups import grouping_group_ids
        assert len(grouping_group_ids(server.site, grouping["id"])) == 1  # assigned once, not twice
    finally:
        server.shutdown()
        server.server_close()
        server.site.close()


@pytest.mark.moodle
@pytest.mark.skipif(not (os.environ.get("BUFSYNC_TEST_MOODLE_URL") and os.environ.get("BUFSYNC_TEST_MOODLE_TOKEN")),
                    reason="no real Moodle: run ../shared/moodle-real/up and export BUFSYNC_TEST_MOODLE_URL / "
                           "BUFSYNC_TEST_MOODLE_TOKEN from its test.env")
def test_the_real_moodle_still_answers_so() -> None:
    with Transport(os.environ["BUFSYNC_TEST_MOODLE_URL"], os.environ["BUFSYNC_TEST_MOODLE_TOKEN"], timeout=60) as t:
        missing = [f for f in ("core_group_create_groupings", "core_group_get_course_groupings",
                               "core_group_assign_grouping", "core_group_update_groups")
                   if f not in {x["name"] for x in t.call("core_webservice_get_site_info")["functions"]}]
        if missing:
            pytest.skip(f"the real Moodle's service lacks {', '.join(missing)}: add them to the bufsync service")
        assert script(t) == REAL
