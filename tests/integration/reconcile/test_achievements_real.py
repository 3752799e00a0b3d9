"""Achievements against a real Moodle 4.5 (../shared/moodle-real/up), where Moodle's own behaviour decides the
outcome: a list of several lines written into a custom profile field by core_user_update_users and returned as
sent by core_user_get_users_by_field, an emptied field gone from the answer, and the cohort per kind.

Skipped unless BUFSYNC_TEST_MOODLE_URL and BUFSYNC_TEST_MOODLE_TOKEN are set (CI has no Moodle). The lab site has
one custom profile field, `snils` (text): the list is written there (no Web Service creates a profile field). The
kinds carry the test's own prefix, so its cohorts never meet another test's; the people are deleted afterwards.
"""

from __future__ import annotations

from typing import Any

from bufsync.adapters.moodle.errors import MoodleError
from bufsync.config import load_settings
from tests.integration.reconcile import test_trust_real as real
from tests.integration.reconcile.test_achievements import achievement
from tests.integration.reconcile.test_trust_real import TOKEN, URL, RealWorld, people

pytestmark = real.pytestmark
world = real.world  # the real Moodle's buffer fixture, with its prefix and clean-up
FIELD = "snils"


def listed(world: RealWorld, person: str) -> str | None:
    user = world.ws_user(idnumber=world.key(person))
    assert user is not None
    return next((c["value"] for c in user.get("customfields", []) if c["shortname"] == FIELD), None)


def members(world: RealWorld) -> dict[str, list[int]]:
    """This test's cohorts (1c-ach-<its kinds>) -> member ids, as Moodle answers."""
    with world.ws() as client:
        mine = {int(c["id"]): c["idnumber"] for c in client.call("core_cohort_get_cohorts", {})
                if str(c["idnumber"]).startswith(f"1c-ach-{world.tag}")}
        found = client.call("core_cohort_get_cohort_members", {"cohortids": sorted(mine)}) if mine else []
    return {mine[int(m["cohortid"])]: sorted(int(u) for u in m["userids"]) for m in found}


def row(world: RealWorld, kind: str, ident: str, title: str, **more: Any) -> dict[str, Any]:
    data = achievement(0, "OLYMP", ident, title, **more)
    return data | {"person_external_id": world.key("P00000"), "type_code": f"{world.tag}{kind}"}


def test_a_list_and_a_cohort_per_kind_on_a_real_moodle(world: RealWorld) -> None:
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url, "BUFSYNC_MOODLE_URL": URL,
                                        "BUFSYNC_MOODLE_TOKEN": TOKEN, "BUFSYNC_MOODLE_TIMEOUT": "120",
                                        "BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD": FIELD})
    world.insert("buf_users", people(world, 1))
    world.insert("buf_achievements", [
        row(world, "O", "A1", "Победитель олимпиады по математике", on="2026-05-12", level="региональный",
            document="диплом №123", points="10"),
        row(world, "S", "A2", "Первое место в лыжной гонке", on="2025-12-01", points="2.5")])
    try:
        report = world.run("users", "achievements")
        assert report.outcome == "ok", report.render()
        userid = int(world.rows("buf_users")[0]["lms_id"])
        assert listed(world, "P00000") == (
            "2025-12-01 — Первое место в лыжной гонке (2,5 балла)\n"
            "2026-05-12 — Победитель олимпиады по математике (региональный уровень, 10 баллов), диплом №123")
        assert members(world) == {f"1c-ach-{world.tag}O": [userid], f"1c-ach-{world.tag}S": [userid]}
        assert {r["sync_status"] for r in world.rows("buf_achievements")} == {"ok"}

        world.update("buf_achievements", lambda t: t.c.achievement_id == "A1", status="cancelled")
        world.delete("buf_achievements", lambda t: t.c.achievement_id == "A2")
        report = world.run("users", "achievements")
        assert report.outcome == "ok", report.render()
        assert listed(world, "P00000") is None  # emptied: Moodle leaves an empty field out of its answer
        assert members(world) == {f"1c-ach-{world.tag}O": [], f"1c-ach-{world.tag}S": []}
        report = world.run("users", "achievements", full=True)  # Moodle holds what the rows say: no repair
        assert next(m.counts for m in report.mappings if m.mapping == "achievements")["repaired"] == 0
    finally:
        with world.ws() as client:
            ids = [int(c["id"]) for c in client.call("core_cohort_get_cohorts", {})
                   if str(c["idnumber"]).startswith(f"1c-ach-{world.tag}")]
            try:
                if ids:
                    client.call("core_cohort_delete_cohorts", {"cohortids": ids}, write=True)
            except MoodleError:
                pass  # the lab's service may lack core_cohort_delete_cohorts: the cohorts stay, under this prefix
