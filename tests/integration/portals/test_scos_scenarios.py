"""The nine СЦОС scenarios end to end: buffer -> bufsync run -> sandbox Moodle; scenarios -> queue -> dispatcher
-> sandbox СЦОС over HTTP; changes between runs. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import httpx
import sqlalchemy as sa

from bufsync.queue import outbox
from bufsync.sandbox.faults import FaultRule
from tests.integration.portals.conftest import ScosWorld


def published(w: ScosWorld, shortname: str = "py-101", **fields) -> int:
    """Mark, publish, let moderation pass: the course is `published` on both sides."""
    w.mark(shortname, scos_description="Курс программирования на Python", **fields)
    w.cycle()          # publish queued and delivered
    w.scenarios()      # settled: moderation; the first status poll answers in_progress
    w.cycle()          # the second poll: moderation ok -> published; learners queued and delivered
    w.cycle()          # learners settled
    course_id = w.course_id(shortname)
    assert w.courses()[course_id]["state"] == "published"
    return course_id


def test_publish_moderation_and_the_portal_id_written_back_to_moodle(seeded: ScosWorld) -> None:
    w = seeded
    w.mark("py-101", scos_description="Курс программирования на Python")
    w.mark("db-201")  # no description anywhere: refused locally, with the reason
    report = w.scenarios()
    assert report.outcome == "rejected" and report.counts["publish.queued"] == 1
    py, db = w.course_id("py-101"), w.course_id("db-201")
    rows = w.courses()
    assert rows[py]["state"] == "publishing" and rows[py]["business_version"] == 1
    assert rows[db]["state"] == "error"
    assert "не заполнено поле паспорта СЦОС «description»" in rows[db]["last_error"]
    assert "scos_description" in rows[db]["last_error"]
    assert w.dispatch().counts["done"] == 1
    w.scenarios()
    rows = w.courses()
    portal_id = rows[py]["scos_id"]
    assert rows[py]["state"] == "moderation" and rows[py]["moderation"] == "in_progress"
    assert w.course_field("py-101", "scos_id") == portal_id  # written into the course's custom field
    passport = w.portal.portal.courses[portal_id]["passport"]
    assert passport["title"] == "Python для всех" and passport["institution"] == "inst-1"
    assert passport["started_at"] == "2026-09-01" and passport["finished_at"] == "2026-12-25"
    assert passport["duration"] == {"code": "week", "value": 17}
    assert passport["teachers"][0]["display_name"] == "Анна Преподаватель"
    assert passport["external_url"].endswith(f"/course/view.php?id={py}")
    w.scenarios()  # the next status poll: the moderators are done
    assert w.courses()[py]["state"] == "published" and w.courses()[py]["published_at"] is not None
    # nothing changed: nothing queued
    before = len(w.queue())
    w.cycle()
    assert len(w.queue()) == before
    assert len(w.queue("course_publish")) == 1
    # the site fixes the other course: it goes out on the next run
    w.mark("db-201", scos_description="Реляционные базы данных", scos_duration_weeks=10)
    w.cycle()
    assert w.courses()[db]["state"] in ("publishing", "moderation"), w.courses()[db]["last_error"]
    w.scenarios()
    assert w.courses()[db]["scos_id"] and w.courses()[db]["last_error"] is None
    assert len(w.state()["courses"]) == 2


def test_changed_course_goes_out_as_a_new_version_and_back_through_moderation(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)
    w.ws("core_course_update_courses", courses=[{"id": py, "fullname": "Python для всех (осень)"}])
    report = w.cycle()
    assert report.counts["update.queued"] == 1
    update = w.queue("course_update")[0]["payload"]
    assert update["business_version"] == 2 and update["id"] == w.courses()[py]["scos_id"]
    w.scenarios()
    row = w.courses()[py]
    assert row["state"] == "moderation" and row["business_version"] == 2
    portal = w.portal.portal.courses[row["scos_id"]]
    assert portal["passport"]["title"] == "Python для всех (осень)" and portal["moderation"] == "in_progress"
    w.scenarios()  # the next status poll: the moderators are done
    assert w.courses()[py]["state"] == "published"
    w.cycle()
    assert len(w.queue("course_update")) == 1  # no change since: no new version


def test_moderation_rejection_is_recorded_and_a_fixed_course_goes_again(seeded: ScosWorld) -> None:
    w = seeded
    py = w.course_id("py-101")
    w.ws("core_course_update_courses", courses=[{"id": py, "fullname": "Python [reject]"}])
    w.mark("py-101", scos_description="Курс")
    w.cycle()
    w.scenarios()  # in moderation: in_progress
    assert w.courses()[py]["moderation"] == "in_progress"
    w.scenarios()  # the next status poll: the moderators' verdict
    row = w.courses()[py]
    assert row["state"] == "rejected" and row["moderation"] == "rejected"
    assert "Модерация СЦОС не пропустила паспорт" in row["last_error"]
    assert w.learners() == {}  # never approved: nobody is enrolled
    w.ws("core_course_update_courses", courses=[{"id": py, "fullname": "Python"}])
    w.cycle()
    w.scenarios()
    w.scenarios()  # the next status poll: the moderators are done
    assert w.courses()[py]["state"] == "published" and w.courses()[py]["business_version"] == 2


def test_unmarked_course_is_archived_and_a_marked_again_one_comes_back(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)
    scos_id = w.courses()[py]["scos_id"]
    w.mark("py-101", publish=False)
    assert w.cycle().counts["archive.queued"] == 1
    w.scenarios()
    assert w.courses()[py]["state"] == "archived"
    assert w.portal.portal.courses[scos_id]["status"] == "ARCHIVE"
    learners = len(w.portal.portal.participation)
    w.cycle()
    assert len(w.queue("course_status")) == 1 and len(w.portal.portal.participation) == learners
    w.mark("py-101", publish=True)
    assert w.cycle().counts["activate.queued"] == 1
    w.scenarios()
    assert w.courses()[py]["state"] == "published"
    assert w.portal.portal.courses[scos_id]["status"] == "ACTIVE"


def test_enrol_those_with_an_esia_id_unenrol_leavers_and_enrol_them_again(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)
    scos_id = w.courses()[py]["scos_id"]
    on_portal = {p["user_id"] for p in w.state()["participation"]}
    assert on_portal == {f"esia-{i:03d}" for i in range(10) if i % 5 != 4}  # S004, S009 have no ЕСИА id
    assert all(r["state"] == "enrolled" for r in w.learners().values())
    # 1C adds S004's ЕСИА id; bufsync run carries nothing to Moodle for it, the scenario reads the buffer
    w.update("buf_users", lambda t: t.c.external_id == "S004", esia_id="esia-004")
    assert w.cycle().counts["enrol.queued"] == 1
    w.scenarios()
    assert "esia-004" in {p["user_id"] for p in w.state()["participation"]}
    # S001 leaves the course (1C suspends the subscription; bufsync run suspends the enrolment)
    w.update("buf_subscriptions", lambda t: (t.c.user_external_id == "S001") & (t.c.course_external_id == "C-PY"),
             status="suspended")
    w.sync()
    assert w.cycle().counts["unenrol.queued"] == 1
    w.scenarios()
    s001 = w.user_id("student001")
    assert w.learners()[(py, s001)]["state"] == "unenrolled"
    assert (scos_id, "C-PY", "esia-001") not in w.portal.portal.participation
    # and comes back: a second enrolment, a new queue item
    w.update("buf_subscriptions", lambda t: (t.c.user_external_id == "S001") & (t.c.course_external_id == "C-PY"),
             status="active")
    w.sync()
    assert w.cycle().counts["enrol.queued"] == 1
    w.scenarios()
    assert w.learners()[(py, s001)]["state"] == "enrolled" and w.learners()[(py, s001)]["enrolment_no"] == 2
    assert (scos_id, "C-PY", "esia-001") in w.portal.portal.participation
    assert w.portal.portal.deliveries[f"enrol:{scos_id}:C-PY:esia-001"] == 2
    assert max(w.portal.portal.deliveries.values()) <= 2


def test_results_per_grade_item_and_the_course_total_as_progress(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)
    graded = w.admin("clock")["now"]  # the sandbox Moodle's clock stops: the test says when grades are given
    essay = w.admin("create_grade_item", courseid=py, itemname="Эссе", grademax=50)["itemid"]
    exam = w.admin("create_grade_item", courseid=py, itemname="Экзамен", grademax=100)["itemid"]
    w.admin("set_grade", itemid=essay, username="student000", grade=40)
    w.admin("set_grade", itemid=exam, username="student000", grade=90)
    w.admin("set_grade", itemid=essay, username="student004", grade=10)  # no ЕСИА id: nothing sent
    w.admin("regrade_course", courseid=py)
    report = w.cycle()
    assert report.counts["results.queued"] == 2 and report.counts["progress.queued"] == 1
    state = w.state()
    results = {r["checkpoint_name"]: r for r in state["results"]}
    assert results["Эссе"]["rating"] == 80.0 and results["Экзамен"]["rating"] == 90.0
    assert results["Эссе"]["user_id"] == "esia-000" and results["Эссе"]["checkpoint_id"] == f"{py}-{essay}"
    assert datetime.fromisoformat(results["Эссе"]["date"]).timestamp() == graded  # dated when it was given
    assert state["progress"] == [{"course_id": w.courses()[py]["scos_id"], "user_id": "esia-000",
                                  "progress": round(130 / 150 * 100, 2)}]
    # nothing changed: nothing new
    assert w.cycle().counts.get("results.queued", 0) == 0
    # a changed grade is sent again, dated when it was changed; the portal keeps the newest
    regraded = w.admin("clock", advance=3600)["now"]  # an hour later on the site's clock (its stamps are seconds)
    w.admin("set_grade", itemid=essay, username="student000", grade=45)
    w.admin("regrade_course", courseid=py)
    report = w.cycle()
    assert report.counts["results.queued"] == 1 and report.counts["progress.queued"] == 1
    results = {r["checkpoint_name"]: r for r in w.state()["results"]}
    assert results["Эссе"]["rating"] == 90.0
    assert datetime.fromisoformat(results["Эссе"]["date"]).timestamp() == regraded
    assert w.state()["progress"][0]["progress"] == round(135 / 150 * 100, 2)
    # the view DBAs read: the JSON unpacked
    with w.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT operation, moodle_course_id, user_id, checkpoint_name, rating "
                                    "FROM v_queue_scos WHERE operation = 'result' ORDER BY id")).all()
    assert [(r.operation, str(r.moodle_course_id), r.user_id, r.checkpoint_name) for r in rows] == [
        ("result", str(py), "esia-000", "Эссе"), ("result", str(py), "esia-000", "Экзамен"),
        ("result", str(py), "esia-000", "Эссе")]
    assert [float(r.rating) for r in rows] == [80.0, 90.0, 90.0]
    # what was sent is the scenarios' own record: purging the finished queue sends nothing again
    sent = {(r["item"], float(r["value"]), r["sends"]) for r in w.rows("sync_scos_results")}
    assert sent == {(str(essay), 90.0, 2), (str(exam), 90.0, 1), ("course", 90.0, 2)}
    assert outbox.purge(w.engine, w.tables["sync_queue"], datetime(2100, 1, 1)) > 0
    assert w.queue() == []
    report = w.cycle()
    assert not any(k.endswith(".queued") for k in report.counts) and w.queue() == []
    # back to the first value (A -> B -> A): sent again, and the portal has it
    w.admin("set_grade", itemid=essay, username="student000", grade=40)
    w.admin("regrade_course", courseid=py)
    assert w.cycle().counts["results.queued"] == 1
    assert {r["checkpoint_name"]: r["rating"] for r in w.state()["results"]}["Эссе"] == 80.0


def test_certificate_on_course_completion_once(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w, scos_cert=1)
    w.admin("set_completion_criteria", courseid=py, criteria=[{"type": "self"}], enable=True)
    w.admin("mark_completion", courseid=py, username="student002", complete_course=True)
    w.admin("mark_completion", courseid=py, username="student004", complete_course=True)  # no ЕСИА id
    assert w.cycle().counts["certificates.queued"] == 1
    certificates = w.state()["certificates"]
    assert len(certificates) == 1 and certificates[0]["user_id"] == "esia-002"
    assert certificates[0]["description"] == "Python для всех"
    assert w.learners()[(py, w.user_id("student002"))]["certified_at"] is not None
    assert w.cycle().counts.get("certificates.queued", 0) == 0
    assert len(w.queue("certificate")) == 1


def test_no_certificate_when_the_passport_promises_none(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)  # scos_cert not set, no default: cert "false"
    w.admin("set_completion_criteria", courseid=py, criteria=[{"type": "self"}], enable=True)
    w.admin("mark_completion", courseid=py, username="student002", complete_course=True)
    assert w.cycle().counts.get("certificates.queued", 0) == 0
    assert w.portal.portal.courses[w.courses()[py]["scos_id"]]["passport"]["cert"] == "false"


def test_a_portal_refusal_is_kept_with_its_reason_and_a_retry_after_the_fix_is_picked_up(seeded: ScosWorld) -> None:
    w = seeded
    w.configure_scos(partner_id="not-our-partner")  # a mistyped platform id
    w.mark("py-101", scos_description="Курс")
    w.scenarios()
    assert w.dispatch().counts["dead"] == 1  # 400: permanent, dead at once
    w.scenarios()
    py = w.course_id("py-101")
    row = w.courses()[py]
    assert row["state"] == "error" and "СЦОС не принял публикацию паспорта" in row["last_error"]
    assert "partner_id" in row["last_error"] and row["pending_key"]
    w.cycle()
    assert len(w.queue("course_publish")) == 1  # nothing changed: not resent by itself
    # the operator fixes the config and retries the dead item, as docs/queue.md says
    w.configure_scos(partner_id="sandbox-partner")
    assert outbox.retry(w.engine, w.tables["sync_queue"], portal="scos", status="dead") == 1
    w.dispatch()
    w.scenarios()
    row = w.courses()[py]
    assert row["state"] == "moderation" and row["scos_id"] and row["last_error"] is None


def test_a_publish_whose_answer_was_lost_is_adopted_not_duplicated(seeded: ScosWorld) -> None:
    w = seeded
    w.portal.faults.add(FaultRule(kind="drop_after_write", function="/api/v2/registry/courses", count=1))
    w.mark("py-101", scos_description="Курс")
    w.scenarios()
    first = w.dispatch()
    assert first.counts["retried"] == 1 and len(w.portal.portal.courses) == 1
    assert outbox.retry(w.engine, w.tables["sync_queue"], portal="scos", status="failed") == 1  # backoff skipped
    assert w.dispatch().counts["done"] == 1
    w.scenarios()
    item = w.queue("course_publish")[0]
    assert '"adopted": true' in item["response"]
    assert len(w.portal.portal.courses) == 1
    assert w.courses()[w.course_id("py-101")]["scos_id"] == next(iter(w.portal.portal.courses))


def test_identity_by_email_lookup_on_the_portal(seeded: ScosWorld) -> None:
    w = seeded
    w.configure_scos(identity="email")
    httpx.post(f"{w.portal.url}/sandbox/users",
               headers={"X-CN-UUID": w.loaded.settings.portals.scos.key.get_secret_value()},
               json={"student003@college.example": "sso-3", "STUDENT004@college.example": "sso-4"})
    py = published(w)
    assert {p["user_id"] for p in w.state()["participation"]} == {"sso-3", "sso-4"}
    assert w.learners()[(py, w.user_id("student004"))]["scos_user_id"] == "sso-4"


def test_a_moodle_error_on_one_course_skips_that_course_alone(seeded: ScosWorld) -> None:
    w = seeded
    py = published(w)
    w.mark("db-201", scos_description="Базы данных", scos_duration_weeks=8)
    w.cycle()
    w.scenarios()
    w.scenarios()  # the next status poll: the moderators are done
    db = w.course_id("db-201")
    assert w.courses()[db]["state"] == "published"
    w.cycle()
    w.scenarios()  # db-201's learners enrolled on the portal
    for course in (py, db):
        item = w.admin("create_grade_item", courseid=course, itemname="Тест")["itemid"]
        w.admin("set_grade", itemid=item, username="student000", grade=70)
    # Moodle's database fails one read: that course waits for the next run, the other goes on
    w.moodle.faults.add(FaultRule(kind="db_error", function="gradereport_user_get_grade_items", count=1))
    report = w.scenarios()
    assert report.outcome == "rejected" and report.counts["learners.moodle_error"] == 1
    assert report.counts["results.queued"] == 1
    assert "данные курса не прочитаны из Moodle, курс пропущен до следующего запуска: " \
           "Moodle ответил «Error reading from database» (dmlreadexception)" in report.problems[0]
    again = w.scenarios()
    assert again.outcome == "ok" and again.counts["results.queued"] == 1
    assert len(w.queue("result")) == 2
