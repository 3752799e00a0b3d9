"""A dry run rejects what Moodle would refuse exactly as the real run does: the client's own checks of courses and
categories (Moodle's column lengths, tags in names) run on the record the run would send, in both; the dry run
changes nothing in Moodle or in the buffer. Moodle is read through Web Services, the buffer rows directly."""

from __future__ import annotations

from typing import Any

from tests.integration.reconcile.conftest import World

FULLNAME_255 = "Основы программирования на Python: " + "я" * (255 - len("Основы программирования на Python: "))


def counts(report: Any, mapping: str) -> dict[str, int]:
    return next(m.counts for m in report.mappings if m.mapping == mapping)


def reasons(report: Any) -> dict[tuple[str, str], str]:
    return {(m.mapping, e["key"]): e["reason"] for m in report.mappings for e in m.errors}


def rows(world: World, table: str) -> dict[str, dict[str, Any]]:
    return {r["external_id"]: r for r in world.rows(table)}


def moodle(world: World) -> dict[str, dict[str, str]]:
    """What Moodle holds, read through Web Services: categories and courses by idnumber -> their name."""
    with world.ws() as client:
        categories = {c["idnumber"]: c["name"] for c in client.get_categories() if c.get("idnumber")}
        courses = {c["idnumber"]: c["fullname"] for c in client.get_courses_by_field() if c.get("idnumber")}
    return {"categories": categories, "courses": courses}


def both(world: World, *names: str) -> tuple[Any, Any]:
    """A dry run then the real run: the dry one changes nothing in Moodle or in the buffer."""
    before_moodle, before_rows = moodle(world), {t: rows(world, t) for t in ("buf_departments", "buf_courses")}
    writes = world.writes()
    dry = world.run(*names, dry_run=True)
    assert world.writes() == writes
    assert moodle(world) == before_moodle
    assert {t: rows(world, t) for t in ("buf_departments", "buf_courses")} == before_rows
    real = world.run(*names)
    for name in names:
        assert counts(dry, name) == counts(real, name), (name, counts(dry, name), counts(real, name))
    assert reasons(dry) == reasons(real)
    return dry, real


def test_a_dry_run_rejects_a_too_long_course_name_and_a_refused_category_as_the_run_does(
        world: World, buffer_url: str) -> None:
    departments = [
        {"external_id": "ROOT", "parent_external_id": None, "name": "Колледж", "status": "active"},
        {"external_id": "TAGS", "parent_external_id": None, "name": "Кафедра <b>ПО</b>", "status": "active"}]
    if buffer_url.startswith("sqlite"):  # only SQLite lets a value longer than the column's 255 into the buffer
        departments.append({"external_id": "LONG", "parent_external_id": None, "name": "Кафедра " + "о" * 250,
                            "status": "active"})
    world.insert("buf_departments", departments)
    world.insert("buf_courses", [
        {"external_id": "C-OK", "shortname": "py-101", "fullname": "Python", "category_external_id": "ROOT"},
        {"external_id": "C-LONG", "shortname": "py-long", "fullname": FULLNAME_255, "category_external_id": "ROOT"},
        {"external_id": "C-IN-TAGS", "shortname": "po-1", "fullname": "ПО", "category_external_id": "TAGS"}])
    assert len(FULLNAME_255) == 255

    dry, real = both(world, "departments", "courses")
    refused = 2 if buffer_url.startswith("sqlite") else 1
    assert counts(real, "departments")["created"] == 1 and counts(real, "departments")["rejected"] == refused
    assert counts(real, "courses")["created"] == 1
    assert counts(real, "courses")["rejected"] + counts(real, "courses")["skipped"] == 2
    why = reasons(real)
    assert "TAGS" in why[("courses", "C-IN-TAGS")]  # the course waits for its refused department, in both runs
    assert why[("courses", "C-LONG")] == (
        "Поле «Полное название» (fullname) длиннее, чем его хранит Moodle: 255 симв., допустимо не больше 254. "
        "Сократите значение в 1С (toolong)")
    assert why[("departments", "TAGS")].startswith("Поле «Наименование» (name) содержит HTML-разметку")
    assert why[("departments", "TAGS")].endswith("(invalidparameter)")
    if buffer_url.startswith("sqlite"):
        assert why[("departments", "LONG")] == (
            "Поле «Наименование» (name) длиннее, чем его хранит Moodle: 258 симв., допустимо не больше 255. "
            "Сократите значение в 1С (toolong)")
    # Moodle holds what was valid, nothing else; the buffer rows say why the rest was not applied
    assert moodle(world) == {"categories": {"ROOT": "Колледж"}, "courses": {"C-OK": "Python"}}
    courses, departments_now = rows(world, "buf_courses"), rows(world, "buf_departments")
    assert (courses["C-LONG"]["sync_status"], courses["C-LONG"]["lms_id"]) == ("error", None)
    assert courses["C-LONG"]["sync_error"] == why[("courses", "C-LONG")]
    assert departments_now["TAGS"]["sync_status"] == "error" and departments_now["TAGS"]["lms_id"] is None
    assert courses["C-OK"]["sync_status"] == "ok" and departments_now["ROOT"]["sync_status"] == "ok"


def test_a_dry_run_rejects_an_update_moodle_would_refuse_as_the_run_does(world: World) -> None:
    world.insert("buf_departments", [
        {"external_id": "ROOT", "parent_external_id": None, "name": "Колледж", "status": "active"}])
    world.insert("buf_courses", [
        {"external_id": "C-OK", "shortname": "py-101", "fullname": "Python", "category_external_id": "ROOT"},
        {"external_id": "C-2", "shortname": "db-201", "fullname": "Базы данных", "category_external_id": "ROOT"}])
    assert world.run("departments", "courses").outcome == "ok"
    # 1C renames: one course name grows past Moodle's 254, one category name gets markup, one course is fine
    world.update("buf_courses", lambda t: t.c.external_id == "C-OK", fullname=FULLNAME_255)
    world.update("buf_courses", lambda t: t.c.external_id == "C-2", fullname="Базы данных (весна)")
    world.update("buf_departments", lambda t: t.c.external_id == "ROOT", name="<i>Колледж</i>")

    dry, real = both(world, "departments", "courses")
    assert counts(real, "courses")["updated"] == 1 and counts(real, "courses")["rejected"] == 1
    assert counts(real, "departments")["rejected"] == 1
    assert reasons(real)[("courses", "C-OK")].endswith("допустимо не больше 254. Сократите значение в 1С (toolong)")
    assert moodle(world) == {"categories": {"ROOT": "Колледж"},
                             "courses": {"C-OK": "Python", "C-2": "Базы данных (весна)"}}
    courses = rows(world, "buf_courses")
    assert courses["C-OK"]["sync_status"] == "error" and courses["C-OK"]["lms_id"] is not None
    assert courses["C-2"]["sync_status"] == "ok"
    assert rows(world, "buf_departments")["ROOT"]["sync_status"] == "error"
    # 1C shortens the name and fixes the department: both go through, the dry run again saying so first
    world.update("buf_courses", lambda t: t.c.external_id == "C-OK", fullname=FULLNAME_255[:254])
    world.update("buf_departments", lambda t: t.c.external_id == "ROOT", name="Колледж связи")
    dry, real = both(world, "departments", "courses")
    assert counts(real, "courses")["updated"] == 1 and counts(real, "departments")["updated"] == 1
    assert reasons(real) == {}
    assert moodle(world) == {"categories": {"ROOT": "Колледж связи"},
                             "courses": {"C-OK": FULLNAME_255[:254], "C-2": "Базы данных (весна)"}}
    assert rows(world, "buf_courses")["C-OK"]["sync_status"] == "ok"


def test_a_dry_run_rejects_a_refused_category_under_a_parent_it_creates(world: World) -> None:
    world.insert("buf_departments", [
        {"external_id": "ROOT", "parent_external_id": None, "name": "Колледж", "status": "active"},
        {"external_id": "TAGS", "parent_external_id": "ROOT", "name": "Кафедра <b>ПО</b>", "status": "active"}])
    dry, real = both(world, "departments")
    assert counts(real, "departments")["rejected"] == 1
