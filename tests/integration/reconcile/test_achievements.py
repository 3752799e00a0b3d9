"""Achievements (buf_achievements) end to end on SQLite and PostgreSQL against the sandbox Moodle over HTTP:
a cohort per kind (for a badge by cohort criterion) and each person's list in a custom profile field. What Moodle
holds is read back through Web Services (core_user_get_users_by_field, core_cohort_get_cohort_members)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from bufsync import commands
from bufsync.config import load_settings
from bufsync.errors import ConfigError
from bufsync.paths import shipped_mappings_dir
from tests.integration.reconcile.conftest import TOKEN, WRITES, World, people
from tests.integration.reconcile.test_contingent import cohorts, counts

FIELD = "achievements"
COHORT_WRITES = ("core_cohort_create_cohorts", "core_cohort_update_cohorts", "core_cohort_delete_cohorts",
                 "core_cohort_add_cohort_members", "core_cohort_delete_cohort_members")
KINDS = {"OLYMP": "Олимпиады", "SPORT": "Спорт"}


def name_the_field(world: World, field: str | None = FIELD, **env: str) -> None:
    """The settings a site gives: moodle.achievements.profile_field (and any other BUFSYNC_* of env)."""
    world.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": world.loaded.buffer_url, "BUFSYNC_MOODLE_URL":
                                        world.moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN, **env,
                                        **({"BUFSYNC_MOODLE_ACHIEVEMENTS_PROFILE_FIELD": field} if field else {})})


def create_field(world: World) -> None:
    """What the site's administrator does once (no Web Service makes a profile field)."""
    world.moodle.site.admin("create_profile_field", {"shortname": FIELD, "name": "Достижения", "datatype": "textarea"})


def achievement(person: int, kind: str, ident: str, title: str, on: str | None = None, level: str | None = None,
                document: str | None = None, points: str | None = None, status: str = "active") -> dict[str, Any]:
    return {"person_external_id": f"P{person:05d}", "type_code": kind, "achievement_id": ident,
            "type_name": KINDS[kind], "title": title, "achieved_on": date.fromisoformat(on) if on else None,
            "level": level, "document": document, "points": Decimal(points) if points else None, "status": status}


def listed(world: World, username: str) -> str | None:
    """The person's profile field as Moodle answers core_user_get_users_by_field (None: no value)."""
    user = world.ws_user(username=username)
    assert user is not None
    return next((c["value"] for c in user.get("customfields", []) if c["shortname"] == FIELD), None)


def members(world: World) -> dict[str, list[str]]:
    return {idnumber: c["members"] for idnumber, c in cohorts(world).items()}


def writes(world: World) -> int:
    calls = world.moodle.stats()["calls"]
    return sum(calls.get(name, 0) for name in WRITES + COHORT_WRITES)


def statuses(world: World) -> dict[str, tuple[str, str | None]]:
    return {r["achievement_id"]: (r["sync_status"], r["sync_error"]) for r in world.rows("buf_achievements")}


def test_a_persons_achievements_are_a_list_in_their_profile_and_a_cohort_per_kind(world: World) -> None:
    create_field(world)
    name_the_field(world)
    world.insert("buf_users", people(3))
    world.insert("buf_achievements", [
        achievement(0, "OLYMP", "A1", "Победитель олимпиады по математике", "2026-05-12", "региональный",
                    "диплом №123", "10"),
        achievement(0, "SPORT", "A2", "Первое место в лыжной гонке", "2025-12-01", "вузовский", None, "2.5"),
        achievement(0, "OLYMP", "A3", "Призёр олимпиады по физике", "2026-05-12", "Всероссийский уровень",
                    "диплом №7", "1"),
        achievement(0, "OLYMP", "A4", "Участник олимпиады", status="cancelled"),
        achievement(1, "SPORT", "B1", "Сдал нормы ГТО\n(золотой знак)"),  # no date: last; a line break: one line
        achievement(1, "SPORT", "B2", "Кубок колледжа по волейболу", "2026-02-01", points="0"),
        achievement(2, "OLYMP", "C1", "Аннулированное", "2026-01-01", status="cancelled"),
        achievement(9, "OLYMP", "D1", "Чужое достижение", "2026-01-01")])  # a person not in buf_users
    report = world.run("users", "achievements")
    assert counts(report, "achievements") == {"created": 7, "rejected": 1}, report.render()
    assert listed(world, "user00000") == (
        "2025-12-01 — Первое место в лыжной гонке (вузовский уровень, 2,5 балла)\n"
        "2026-05-12 — Победитель олимпиады по математике (региональный уровень, 10 баллов), диплом №123\n"
        "2026-05-12 — Призёр олимпиады по физике (Всероссийский уровень, 1 балл), диплом №7")
    assert listed(world, "user00001") == ("2026-02-01 — Кубок колледжа по волейболу (0 баллов)\n"
                                          "Сдал нормы ГТО (золотой знак)")
    assert listed(world, "user00002") is None  # only a cancelled one: nothing to list
    assert members(world) == {"1c-ach-OLYMP": ["user00000"], "1c-ach-SPORT": ["user00000", "user00001"]}
    rows = statuses(world)
    assert {k: s for k, (s, _) in rows.items() if k != "D1"} == dict.fromkeys(
        ["A1", "A2", "A3", "A4", "B1", "B2", "C1"], "ok")
    assert rows["D1"][0] == "error" and "Пользователь «P00009» не найден(а)" in str(rows["D1"][1])
    assert str(rows["D1"][1]).endswith("(notfound)")

    before = writes(world)
    assert counts(world.run("users", "achievements"), "achievements") == {"unchanged": 7, "failing": 1}
    assert writes(world) == before  # nothing to do: not a single write

    # 1C cancels one, deletes a row, edits a title
    world.update("buf_achievements", lambda t: t.c.achievement_id == "A1", status="cancelled")
    world.delete("buf_achievements", lambda t: t.c.achievement_id == "A2")
    world.update("buf_achievements", lambda t: t.c.achievement_id == "B2", title="Кубок колледжа по баскетболу")
    report = world.run("users", "achievements")
    assert report.outcome == "rejected" and counts(report, "achievements") == {
        "updated": 1, "suspended": 1, "deleted": 1, "unchanged": 4, "failing": 1}, report.render()
    assert listed(world, "user00000") == ("2026-05-12 — Призёр олимпиады по физике (Всероссийский уровень, 1 балл), "
                                          "диплом №7")
    assert listed(world, "user00001") == ("2026-02-01 — Кубок колледжа по баскетболу (0 баллов)\n"
                                          "Сдал нормы ГТО (золотой знак)")
    assert members(world) == {"1c-ach-OLYMP": ["user00000"], "1c-ach-SPORT": ["user00001"]}  # A2 was P0's sport
    assert {s for k, (s, _) in statuses(world).items() if k != "D1"} == {"ok"}

    # the last active one cancelled: the field is emptied and the person leaves the kind's cohort
    world.update("buf_achievements", lambda t: t.c.achievement_id == "A3", status="cancelled")
    assert counts(world.run("users", "achievements"), "achievements")["suspended"] == 1
    assert listed(world, "user00000") is None
    assert members(world) == {"1c-ach-OLYMP": [], "1c-ach-SPORT": ["user00001"]}
    before = writes(world)
    world.run("users", "achievements")
    assert writes(world) == before


def test_without_the_setting_no_list_is_written_and_a_full_run_fills_a_field_named_later(world: World) -> None:
    create_field(world)
    world.insert("buf_users", people(2))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12"),
                                      achievement(1, "SPORT", "B1", "Чемпион города", "2026-03-01", "городской")])
    assert world.run("users", "achievements").outcome == "ok"
    assert world.moodle.stats()["calls"].get("core_user_update_users", 0) == 0  # the people's own are created
    assert listed(world, "user00000") is None and listed(world, "user00001") is None
    assert members(world) == {"1c-ach-OLYMP": ["user00000"], "1c-ach-SPORT": ["user00001"]}

    name_the_field(world)
    assert counts(world.run("users", "achievements"), "achievements") == {"unchanged": 2}  # no row changed
    report = world.run("users", "achievements", full=True)
    assert counts(report, "achievements")["repaired"] == 2, report.render()
    assert listed(world, "user00000") == "2026-05-12 — Победитель олимпиады"
    assert listed(world, "user00001") == "2026-03-01 — Чемпион города (городской уровень)"
    before = writes(world)
    assert counts(world.run("users", "achievements", full=True), "achievements") == {"unchanged": 2}
    assert writes(world) == before


def test_a_full_run_puts_back_a_list_edited_by_hand(world: World) -> None:
    create_field(world)
    name_the_field(world)
    world.insert("buf_users", people(2))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12"),
                                      achievement(0, "SPORT", "A2", "Чемпион города", "2026-03-01"),
                                      achievement(1, "SPORT", "B1", "Чемпион области", status="cancelled")])
    world.run("users", "achievements")
    wanted = "2026-03-01 — Чемпион города\n2026-05-12 — Победитель олимпиады"
    assert listed(world, "user00000") == wanted
    users = {r["external_id"]: int(r["lms_id"]) for r in world.rows("buf_users")}
    with world.ws() as client:  # someone edits both fields in Moodle: a line added, a cancelled one typed in
        client.update_users([{"id": users["P00000"], "customfields": [{"type": FIELD, "value": wanted + "\nРуками"}]},
                             {"id": users["P00001"], "customfields": [{"type": FIELD, "value": "Чемпион области"}]}])
    report = world.run("users", "achievements", full=True)
    assert counts(report, "achievements")["repaired"] == 3, report.render()
    assert listed(world, "user00000") == wanted and listed(world, "user00001") is None
    before = writes(world)
    assert counts(world.run("users", "achievements", full=True), "achievements") == {"unchanged": 3}
    assert writes(world) == before


def test_a_field_moodle_lacks_is_a_warning_until_the_admin_creates_it(world: World) -> None:
    name_the_field(world)
    world.insert("buf_users", people(1))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12")])
    report = world.run("users", "achievements")
    assert report.outcome == "ok" and counts(report, "achievements") == {"created": 1, "warnings": 1}
    status, error = statuses(world)["A1"]
    assert status == "warning" and f"поля профиля «{FIELD}» в Moodle нет" in str(error)
    assert str(error).endswith("(profilefieldmissing)")
    assert members(world) == {"1c-ach-OLYMP": ["user00000"]}  # the cohort is there all the same
    create_field(world)
    report = world.run("users", "achievements", full=True)
    assert counts(report, "achievements")["repaired"] == 1, report.render()
    assert listed(world, "user00000") == "2026-05-12 — Победитель олимпиады"
    assert statuses(world)["A1"] == ("ok", None)


def test_check_says_whether_moodle_has_the_named_field(world: World) -> None:
    def profile() -> Any:
        items = {item.name: item for item in commands.check(world.loaded)}
        assert items["moodle"].ok, items["moodle"].detail
        return items.get("profile")

    assert FIELD not in profile().detail  # no field named: no list to check (users' snils is checked as ever)
    name_the_field(world)
    item = profile()  # nothing synced yet: no evidence either way
    assert item.ok is None and f"not verifiable yet: {FIELD}, snils" in item.detail
    world.insert("buf_users", people(2))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12"),
                                      achievement(1, "OLYMP", "B1", "Призёр олимпиады", status="cancelled")])
    world.run("users", "achievements")
    item = profile()
    assert item.ok is False and item.detail.startswith(
        f"Moodle has no custom profile field {FIELD} (none of 1 linked users with a value holds one in Moodle)")
    create_field(world)
    world.run("users", "achievements", full=True)
    item = profile()
    assert item.ok is None and item.detail.startswith(f"Moodle holds values of {FIELD}; not verifiable yet: snils")


def test_a_person_deleted_in_moodle_fails_with_the_reason(world: World) -> None:
    create_field(world)
    name_the_field(world)
    world.insert("buf_users", people(2))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12"),
                                      achievement(1, "OLYMP", "B1", "Призёр олимпиады", "2026-05-12")])
    world.run("users", "achievements")
    gone = next(int(r["lms_id"]) for r in world.rows("buf_users") if r["external_id"] == "P00001")
    with world.ws() as client:
        client.delete_users([gone])
    world.insert("buf_achievements", [achievement(1, "SPORT", "B2", "Чемпион города", "2026-06-01"),
                                      achievement(0, "SPORT", "A2", "Чемпион области", "2026-06-01")])
    report = world.run("achievements")
    assert counts(report, "achievements") == {"created": 1, "rejected": 1, "unchanged": 2}, report.render()
    status, error = statuses(world)["B2"]
    assert status == "error" and str(error).startswith("Moodle не включил человека в когорту")
    assert str(error).endswith(")")  # the remote's code
    assert statuses(world)["A2"] == ("ok", None)  # the other person's group went through
    assert listed(world, "user00000") == "2026-05-12 — Победитель олимпиады\n2026-06-01 — Чемпион области"
    # the deleted person's rows removed (B2 never was in Moodle): leaving and emptying what Moodle no longer holds
    # for someone it deleted is done, not an error
    world.delete("buf_achievements", lambda t: t.c.person_external_id == "P00001")
    report = world.run("achievements")
    assert report.outcome == "ok", report.render()
    assert counts(report, "achievements") == {"deleted": 1, "unchanged": 2}


def site_mappings(folder: Path, entity: str, group_by: list[str], fields: tuple[str, ...] | None = None) -> Path:
    """A site's copy of the shipped mappings, its achievements.yaml changed."""
    folder.mkdir()
    for file in shipped_mappings_dir().glob("*.yaml"):
        (folder / file.name).write_bytes(file.read_bytes())
    data = yaml.safe_load((folder / "achievements.yaml").read_text(encoding="utf-8"))
    data["sync"]["target"]["entity"] = entity
    data["sync"]["group_by"] = group_by
    if fields is not None:
        data["sync"]["fields"] = {k: v for k, v in data["sync"]["fields"].items() if k in fields}
    (folder / "achievements.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def test_a_list_per_person_and_kind_is_refused_with_the_reason(world: World, tmp_path: Path) -> None:
    """Grouped by person and kind, each kind's part of the list would overwrite the person's one field."""
    maps = site_mappings(tmp_path / "mappings", "achievement", ["person_external_id", "type_code"])
    name_the_field(world, BUFSYNC_MAPPINGS_DIR=str(maps))
    world.insert("buf_users", people(1))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12")])
    with pytest.raises(ConfigError, match=r"mapping achievements: sync.group_by: the achievement entity keeps one "
                                          r"record per person: expected group_by to be the column of the `userid`"):
        world.run("users", "achievements")
    assert members(world) == {}


def test_an_install_synced_by_the_per_kind_mapping_moves_to_one_record_per_person(world: World,
                                                                               tmp_path: Path) -> None:
    """Before the list, achievements were grouped by (person, kind) into cohort_member: the ledger's keys are the
    same rows; the first run after the upgrade applies every row again (its fields changed), and nothing else."""
    old = site_mappings(tmp_path / "mappings", "cohort_member", ["person_external_id", "type_code"],
                        ("cohort", "cohort_prefix", "cohort_name", "userid"))
    create_field(world)
    world.insert("buf_users", people(2))
    world.insert("buf_achievements", [achievement(0, "OLYMP", "A1", "Победитель олимпиады", "2026-05-12"),
                                      achievement(0, "SPORT", "A2", "Чемпион города", "2026-03-01"),
                                      achievement(1, "SPORT", "B1", "Чемпион области", "2026-06-01",
                                                  status="cancelled")])
    name_the_field(world, BUFSYNC_MAPPINGS_DIR=str(old))
    assert world.run("users", "achievements").outcome == "ok"
    assert members(world) == {"1c-ach-OLYMP": ["user00000"], "1c-ach-SPORT": ["user00000"]}

    name_the_field(world)  # bufsync upgraded: the shipped mapping
    cohort_writes = writes(world)
    report = world.run("users", "achievements")
    assert counts(report, "achievements") == {"updated": 3}, report.render()
    assert listed(world, "user00000") == "2026-03-01 — Чемпион города\n2026-05-12 — Победитель олимпиады"
    assert listed(world, "user00001") is None
    assert members(world) == {"1c-ach-OLYMP": ["user00000"], "1c-ach-SPORT": ["user00000"]}
    calls = world.moodle.stats()["calls"]
    assert calls.get("core_cohort_delete_cohort_members", 0) == 0 and calls.get("core_cohort_create_cohorts") == 1
    assert writes(world) - cohort_writes == 2  # one call joining again (a no-op), one writing the lists
    before = writes(world)
    assert counts(world.run("users", "achievements"), "achievements") == {"unchanged": 3}
    assert writes(world) == before
