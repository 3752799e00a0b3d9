"""The nine СЦОС scenarios: read Moodle and the buffer, compare with sync_scos_*, queue what the portal must hear.

Writes to the portal only ever go through the queue; a scenario records its own state and the
operations it queued in one transaction, so a crash leaves neither without the other. Reads
(moderation status, the e-mail lookup) go to the portal directly. Each run first settles what
the dispatchers finished since the last one.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.adapters.moodle import completion
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities.grades import course_grades
from bufsync.adapters.moodle.errors import MoodleConfigError, MoodleError
from bufsync.errors import ConfigError, Problem, UnavailableError
from bufsync.portals.pending import chunks, queue_items, update_many
from bufsync.portals.scos import passport as passports
from bufsync.portals.scos.client import ScosClient, ScosKeyRefused, ScosRejected, ScosUnavailable
from bufsync.portals.scos.settings import ScosSettings
from bufsync.queue import outbox
from bufsync.report import Tally
from bufsync.state.ledger import now_utc

log = logging.getLogger("bufsync.scos")
PORTAL = "scos"
# a course in these states waits for the queue; the scenarios leave it alone
WAITING = ("publishing", "updating", "archiving", "activating")




class Scenarios:
    def __init__(self, engine: sa.Engine, tables: dict[str, sa.Table], moodle: MoodleClient, portal: ScosClient,
                 settings: ScosSettings, moodle_url: str, zone: ZoneInfo, users: sa.Table | None) -> None:
        self.engine = engine
        self.courses_t = tables["sync_scos_courses"]
        self.learners_t = tables["sync_scos_learners"]
        self.results_t = tables["sync_scos_results"]
        self.queue_t = tables["sync_queue"]
        self.moodle = moodle
        self.portal = portal
        self.settings = settings
        self.moodle_url = moodle_url
        self.zone = zone
        self.users = users
        self.enabled = set(settings.scenarios)
        self.report = Tally()
        self._enrolled: dict[int, list[dict[str, Any]]] = {}

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> Tally:
        """The scenarios once; refused credentials stop the run as `bufsync run` stops (exit 2), since every
        further call would be refused alike and a course-by-course skip would hide it."""
        try:
            return self._run()
        except ScosKeyRefused as exc:
            raise ConfigError(Problem(None, "scos.key", key_refused(exc))) from None
        except MoodleConfigError as exc:
            raise ConfigError(Problem(None, "moodle.url", str(exc))) from None
        except MoodleError as exc:
            if exc.is_config_error:
                raise ConfigError(Problem(None, "moodle.token", exc.fix())) from None
            if exc.is_access_error:  # the site is in maintenance mode: worth another run later (exit 4)
                raise UnavailableError(f"Moodle is unavailable: {exc.fix()}") from None
            raise

    def _run(self) -> Tally:
        self.settle()
        courses = {c["id"]: c for c in self.moodle.get_courses_by_field() if c.get("format") != "site"}
        self.courses(courses)
        if "moderation" in self.enabled:
            self.poll()
        self.write_back_ids(courses)
        for row in self._rows(self.courses_t):
            course = courses.get(row.course_id)
            if course is not None and row.scos_id and row.published_at and row.state not in ("archiving", "archived"):
                self._isolated(course, "learners", lambda course=course, row=row: self.learners(course, row))
        return self.report

    def _isolated(self, course: dict[str, Any], step: str, work: Any) -> None:
        """One course's Moodle error (a course deleted meanwhile, a database hiccup) stops that course alone.

        A refused token or function is no course's fault: it stops the run (see run()).
        """
        try:
            work()
        except MoodleError as exc:
            if exc.is_access_error:
                raise
            self.report.add(f"{step}.moodle_error")
            text = (f"{course.get('shortname')}: данные курса не прочитаны из Moodle, курс пропущен до следующего "
                    f"запуска: Moodle ответил «{exc.message}» ({exc.code})")
            self.report.problems.append(text)
            log.warning("%s", text)

    def _rows(self, table: sa.Table, *where: Any) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(*where)))

    def _item(self, operation: str, payload: dict[str, Any], key: str) -> outbox.Item:
        return outbox.Item(PORTAL, operation, payload, key, self.settings.max_attempts)

    # -- settle: what the dispatchers finished ---------------------------------------------------------
    def settle(self) -> None:
        courses = self._rows(self.courses_t, self.courses_t.c.pending_key.is_not(None))
        learners = self._rows(self.learners_t, self.learners_t.c.pending_key.is_not(None))
        items = self._queue_items([r.pending_key for r in courses] + [r.pending_key for r in learners])
        now = now_utc()
        finished = (outbox.DONE, outbox.DEAD, outbox.CANCELLED)
        with self.engine.begin() as conn:
            for table, rows, settle, keys in ((self.courses_t, courses, self._settle_course, ("course_id",)),
                                              (self.learners_t, learners, self._settle_learner,
                                               ("course_id", "user_id"))):
                changes = []
                for row in rows:
                    item = items.get(row.pending_key)
                    values = settle(row, item, now) if item is not None and item.status in finished else None
                    if values:  # matched on the key it waited for: a row that moved on meanwhile is left alone
                        changes.append(values | {k: getattr(row, k) for k in keys}
                                       | {"pending_key_was": row.pending_key, "updated_at": now})
                update_many(conn, table, keys + ("pending_key_was",), changes)

    def _queue_items(self, keys: list[str]) -> dict[str, sa.Row[Any]]:
        return queue_items(self.engine, self.queue_t, PORTAL, keys)

    def _settle_course(self, row: sa.Row, item: sa.Row, now: datetime) -> dict[str, Any] | None:
        kind = row.pending_key.split(":", 1)[0]
        if item.status == outbox.DONE:
            self.report.add(f"settled.{kind}")
            if kind == "publish":
                response = json.loads(item.response or "{}")
                return {"scos_id": str(response["course_id"]), "state": "moderation", "moderation": None,
                        "pending_key": None, "last_error": None}
            if kind == "update":
                return {"state": "moderation", "moderation": None, "pending_key": None, "last_error": None}
            if kind == "archive":
                return {"state": "archived", "pending_key": None, "last_error": None}
            return {"state": "published", "pending_key": None, "last_error": None}  # activate
        # dead or cancelled: the portal's reason is kept; the item stays referenced, so an operator's
        # `bufsync queue retry` that later succeeds is still picked up here
        self.report.add(f"failed.{kind}")
        what = {"publish": "публикацию паспорта", "update": "изменение паспорта", "archive": "перевод в архив",
                "activate": "возврат из архива"}[kind]
        text = f"СЦОС не принял {what}: {item.last_error or item.status}"[:2000]
        if row.last_error == text:
            return None
        return {"state": "error" if kind in ("publish", "update") else row.state, "last_error": text}

    def _settle_learner(self, row: sa.Row, item: sa.Row, now: datetime) -> dict[str, Any] | None:
        kind = row.pending_key.split(":", 1)[0]
        if item.status == outbox.DONE:
            self.report.add(f"settled.{kind}")
            if kind == "enrol":
                return {"state": "enrolled", "pending_key": None, "last_error": None, "enrolled_at": now}
            return {"state": "unenrolled", "pending_key": None, "last_error": None}
        self.report.add(f"failed.{kind}")
        text = (f"СЦОС не принял {'запись на курс' if kind == 'enrol' else 'отчисление'}: "
                f"{item.last_error or item.status}")[:2000]
        if row.last_error == text:
            return None
        return {"state": "error" if kind == "enrol" else row.state, "last_error": text}

    # -- scenarios 1, 3, 4: publish, update, archive -------------------------------------------------------
    def courses(self, courses: dict[int, dict[str, Any]]) -> None:
        rows = {r.course_id: r for r in self._rows(self.courses_t)}
        for course_id, course in courses.items():
            marked = passports.custom_fields(course).get("scos_publish") in (1, "1", True)
            row = rows.get(course_id)
            if marked:
                self._isolated(course, "courses", lambda course=course, row=row: self._marked(course, row))
            elif row is not None:
                self._unmarked(row)
        for course_id, row in rows.items():  # deleted in Moodle: taken off the portal too
            if course_id not in courses:
                self._unmarked(row)

    def _enrolled_users(self, course_id: int) -> list[dict[str, Any]]:
        if course_id not in self._enrolled:
            self._enrolled[course_id] = self.moodle.get_enrolled_users(course_id, onlyactive=True)
        return self._enrolled[course_id]

    def _with_roles(self, users: list[dict[str, Any]], roles: list[str]) -> list[dict[str, Any]]:
        wanted = set(roles)
        return [u for u in users if wanted & {r.get("shortname") for r in u.get("roles") or []}]

    def _passport(self, course: dict[str, Any], session_id: str) -> passports.Passport:
        teachers = self._with_roles(self._enrolled_users(course["id"]), self.settings.teacher_roles)
        return passports.build(course, teachers, defaults=self.settings.passport, institution=self.settings.institution,
                               moodle_url=self.moodle_url, session_id=session_id, zone=self.zone)

    def _marked(self, course: dict[str, Any], row: sa.Row | None) -> None:
        now = now_utc()
        course_id = course["id"]
        if row is None:
            adopted = passports.custom_fields(course).get("scos_id")
            if adopted:  # published before bufsync (by hand or another tool): poll it, then keep it current
                self._write_course(None, {"course_id": course_id, "shortname": course.get("shortname"),
                                          "scos_id": str(adopted), "session_id": self._session(course),
                                          "state": "moderation", "business_version": 1, "updated_at": now})
                self.report.add("publish.adopted")
                return
        if row is not None and (row.state in WAITING or row.state == "moderation"):
            return
        if row is not None and row.state == "archived":
            if "publish" in self.enabled:
                key = f"activate:{course_id}:{now:%Y%m%dT%H%M%S}"
                self._write_course(row, {"state": "activating", "pending_key": key, "updated_at": now},
                                   [self._item("course_status", {"course_id": row.scos_id, "status": "active",
                                                                 "_moodle_course_id": course_id}, key)])
                self.report.add("activate.queued")
            return
        published = row is not None and row.scos_id is not None
        if ("update" if published else "publish") not in self.enabled:
            return
        session_id = row.session_id if row is not None and row.session_id else self._session(course)
        built = self._passport(course, session_id)
        if built.fields is None:
            text = ("Курс не отправлен в СЦОС: " + "; ".join(built.problems))[:2000]
            self.report.add("publish.invalid" if not published else "update.invalid")
            self.report.problems.append(f"{course.get('shortname')}: {text}")
            if row is None:
                self._write_course(None, {"course_id": course_id, "shortname": course.get("shortname"),
                                          "session_id": session_id, "state": "error", "last_error": text,
                                          "updated_at": now})
            elif row.last_error != text:
                self._write_course(row, {"last_error": text, "updated_at": now})
            return
        digest = built.digest
        if row is not None and row.passport_hash == digest:
            return  # nothing changed since it was sent (or since it was refused)
        if not published:
            key = f"publish:{course_id}:{digest}"
            body = built.fields | {"business_version": 1, "_moodle_course_id": course_id}
            values = {"shortname": course.get("shortname"), "session_id": session_id, "state": "publishing",
                      "business_version": 1, "passport_hash": digest, "pending_key": key, "last_error": None,
                      "updated_at": now}
            self._write_course(row, values if row is not None else values | {"course_id": course_id},
                               [self._item("course_publish", body, key)])
            self.report.add("publish.queued")
            return
        assert row is not None  # published: the course has its row
        version = row.business_version + 1
        key = f"update:{course_id}:v{version}"
        body = built.fields | {"id": row.scos_id, "business_version": version, "_moodle_course_id": course_id}
        self._write_course(row, {"shortname": course.get("shortname"), "state": "updating", "business_version": version,
                                 "passport_hash": digest, "pending_key": key, "last_error": None, "updated_at": now},
                           [self._item("course_update", body, key)])
        self.report.add("update.queued")

    def _unmarked(self, row: sa.Row) -> None:
        if row.state in WAITING or row.state == "archived" or "archive" not in self.enabled:
            return
        now = now_utc()
        if not row.scos_id:  # never reached the portal: nothing to take down
            with self.engine.begin() as conn:
                conn.execute(self.courses_t.delete().where(self.courses_t.c.course_id == row.course_id))
            self.report.add("publish.withdrawn")
            return
        key = f"archive:{row.course_id}:{now:%Y%m%dT%H%M%S}"
        self._write_course(row, {"state": "archiving", "pending_key": key, "updated_at": now},
                           [self._item("course_status", {"course_id": row.scos_id, "status": "archive",
                                                         "_moodle_course_id": row.course_id}, key)])
        self.report.add("archive.queued")

    def _session(self, course: dict[str, Any]) -> str:
        """The portal session of a course run: the scos_session custom field, else the course idnumber or id."""
        custom = passports.custom_fields(course).get("scos_session")
        return str(custom or course.get("idnumber") or f"moodle-course-{course['id']}")[:100]

    def _write_course(self, row: sa.Row | None, values: dict[str, Any], items: Sequence[outbox.Item] = ()) -> None:
        with self.engine.begin() as conn:
            outbox.enqueue(conn, self.queue_t, list(items))
            if row is None:
                conn.execute(self.courses_t.insert().values(values))
            else:
                conn.execute(self.courses_t.update().where(self.courses_t.c.course_id == row.course_id).values(values))

    # -- scenario 2: moderation ----------------------------------------------------------------------
    def poll(self) -> None:
        for row in self._rows(self.courses_t, self.courses_t.c.state == "moderation"):
            try:
                status = self.portal.moderation_status(row.scos_id)
            except ScosUnavailable as exc:
                self.report.add("moderation.unavailable")
                log.warning("СЦОС moderation status of course %s: %s", row.course_id, exc)
                continue
            except ScosKeyRefused:
                raise  # the key, not this course: no course row keeps the refusal as its error
            except ScosRejected as exc:
                self._write_course(row, {"last_error": f"СЦОС не отдал статус модерации: {exc}"[:2000],
                                         "updated_at": now_utc()})
                self.report.add("moderation.error")
                continue
            values: dict[str, Any] = {"moderation": status, "updated_at": now_utc()}
            if status == "ok":
                values |= {"state": "published", "last_error": None, "published_at": row.published_at or now_utc()}
            elif status not in ("in_progress", "new", "pending"):
                values |= {"state": "rejected",
                           "last_error": f"Модерация СЦОС не пропустила паспорт курса (статус «{status}»); "
                                         "исправьте курс в Moodle — изменённый паспорт уйдёт новой версией"}
            if status != row.moderation or values.get("state", row.state) != row.state:
                self._write_course(row, values)
                self.report.add(f"moderation.{status}")

    def write_back_ids(self, courses: dict[int, dict[str, Any]]) -> None:
        """The portal id into the course's scos_id custom field, where the site has one."""
        updates = []
        for row in self._rows(self.courses_t, self.courses_t.c.scos_id.is_not(None)):
            course = courses.get(row.course_id)
            custom = passports.custom_fields(course) if course else {}
            if course is not None and "scos_id" in custom and str(custom["scos_id"] or "") != row.scos_id:
                updates.append({"id": row.course_id, "customfields": [{"shortname": "scos_id", "value": row.scos_id}]})
        if updates:
            results = self.moodle.update_courses(updates)
            self.report.add("moodle.scos_id_written", sum(1 for r in results if r.ok))
            self.report.add("moodle.scos_id_failed", sum(1 for r in results if not r.ok))

    # -- scenarios 5 to 9: learners -----------------------------------------------------------------------
    def learners(self, course: dict[str, Any], row: sa.Row) -> None:
        course_id = course["id"]
        students = self._with_roles(self._enrolled_users(course_id), self.settings.student_roles)
        existing = {r.user_id: r for r in self._rows(self.learners_t, self.learners_t.c.course_id == course_id)}
        ids = self._identities(students, existing)
        self.report.add("enrol.no_identity", len(students) - len(ids))
        now = now_utc()
        items: list[outbox.Item] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        moment = datetime.now(self.zone).isoformat(timespec="seconds")
        base = {"course_id": row.scos_id, "session_id": row.session_id, "_moodle_course_id": course_id}
        if "enrol" in self.enabled:
            for user_id, scos_user in ids.items():
                learner = existing.get(user_id)
                if learner is not None and learner.state != "unenrolled":
                    continue
                number = 1 if learner is None else learner.enrolment_no + 1
                key = f"enrol:{course_id}:{user_id}:{number}"
                items.append(self._item("participation_add", base | {"user_id": scos_user, "enroll_date": moment,
                                                                     "_moodle_user_id": user_id}, key))
                values = {"course_id": course_id, "user_id": user_id, "scos_user_id": scos_user,
                          "session_id": row.session_id, "state": "enrolling", "enrolment_no": number,
                          "pending_key": key, "last_error": None, "certified_at": None, "updated_at": now}
                (inserts if learner is None else updates).append(values)
        if "unenrol" in self.enabled:
            for user_id, learner in existing.items():
                if learner.state == "enrolled" and user_id not in ids:
                    key = f"unenrol:{course_id}:{user_id}:{learner.enrolment_no}"
                    items.append(self._item("participation_remove", base | {
                        "course_id": row.scos_id, "session_id": learner.session_id, "user_id": learner.scos_user_id,
                        "_moodle_user_id": user_id}, key))
                    updates.append({"course_id": course_id, "user_id": user_id, "state": "unenrolling",
                                    "pending_key": key, "updated_at": now})
        enrolled = {u: r for u, r in existing.items() if r.state == "enrolled" and u in ids}
        grades, sent_new, sent_changed = self._results(course, row, enrolled, now)
        certificates, certified = self._certificates(course, row, enrolled, now)
        items += grades + certificates
        with self.engine.begin() as conn:
            outbox.enqueue(conn, self.queue_t, items)
            for table, new, changed, keys in (
                    (self.learners_t, inserts, updates + certified, ("course_id", "user_id")),
                    (self.results_t, sent_new, sent_changed, ("course_id", "user_id", "item"))):
                if new:
                    conn.execute(table.insert(), new)
                update_many(conn, table, keys, changed)
        counted = Counter(i.operation for i in items)
        for operation, name in (("participation_add", "enrol"), ("participation_remove", "unenrol"),
                                ("result", "results"), ("progress", "progress"), ("certificate", "certificates")):
            self.report.add(f"{name}.queued", counted[operation])

    def _identities(self, students: list[dict[str, Any]], existing: dict[int, sa.Row]) -> dict[int, str]:
        """Moodle user id -> СЦОС user id, for the students who have one."""
        out = {u["id"]: existing[u["id"]].scos_user_id for u in students if u["id"] in existing}
        todo = [u for u in students if u["id"] not in out]
        if not todo:
            return out
        if self.settings.identity == "esia_id":
            if self.users is None:
                return out
            lms, esia = self.users.c.lms_id, self.users.c.esia_id
            with self.engine.connect() as conn:
                for chunk in chunks([u["id"] for u in todo]):
                    for user_id, esia_id in conn.execute(sa.select(lms, esia).where(
                            lms.in_(chunk), esia.is_not(None), esia != "")):
                        out[int(user_id)] = str(esia_id).strip()
            return out
        for user in todo:
            if not user.get("email"):
                continue
            try:
                found = self.portal.user_id(user["email"])
            except ScosKeyRefused:
                raise
            except (ScosUnavailable, ScosRejected) as exc:
                self.report.add("enrol.lookup_failed")
                log.warning("СЦОС user lookup failed: %s", exc)
                break  # the rest waits for the next run
            if found:
                out[user["id"]] = found
        return out

    def _results(self, course: dict[str, Any], row: sa.Row, enrolled: dict[int, sa.Row], now: datetime
                 ) -> tuple[list[outbox.Item], list[dict[str, Any]], list[dict[str, Any]]]:
        """Scenarios 7 and 8: each graded item, and the course total as progress.

        What was sent is kept in sync_scos_results, so only a changed value (or a new enrolment)
        is queued again, and old queue rows may be purged without anything being sent twice.
        """
        if not enrolled or not ({"results", "progress"} & self.enabled):
            return [], [], []
        sent = {(r.user_id, r.item): r for r in self._rows(self.results_t, self.results_t.c.course_id == course["id"])}
        items: list[outbox.Item] = []
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for grade in course_grades(self.moodle, course["id"]):
            learner = enrolled.get(grade.userid)
            rating = grade.percent
            if learner is None or rating is None or grade.kind == "category" or \
                    ("progress" if grade.total else "results") not in self.enabled:
                continue
            base = {"course_id": row.scos_id, "session_id": learner.session_id, "user_id": learner.scos_user_id,
                    "_moodle_course_id": course["id"], "_moodle_user_id": learner.user_id}
            total = grade.total
            item = "course" if total else str(grade.itemid)
            previous = sent.get((learner.user_id, item))
            if previous is not None and previous.enrolment_no == learner.enrolment_no and \
                    float(previous.value) == rating:
                continue  # the portal has this value already
            graded = grade.graded or 0
            sends = previous.sends + 1 if previous is not None else 1
            key = f"{'progress' if total else 'result'}:{course['id']}:{learner.user_id}:{item}:{sends}"
            if total:
                items.append(self._item("progress", base | {"progress": rating}, key))
            else:
                date = datetime.fromtimestamp(graded, self.zone) if graded else datetime.now(self.zone)
                items.append(self._item("result", base | {
                    "checkpoint_id": f"{course['id']}-{grade.itemid}",
                    "checkpoint_name": grade.name or grade.idnumber or f"item {grade.itemid}",
                    "rating": rating, "date": date.isoformat(timespec="seconds")}, key))
            (changed if previous is not None else new).append({
                "course_id": course["id"], "user_id": learner.user_id, "item": item, "value": rating,
                "graded_at": datetime.fromtimestamp(graded, UTC).replace(tzinfo=None) if graded else None,
                "enrolment_no": learner.enrolment_no, "sends": sends, "queued_at": now})
        return items, new, changed

    def _certificates(self, course: dict[str, Any], row: sa.Row, enrolled: dict[int, sa.Row],
                      now: datetime) -> tuple[list[outbox.Item], list[dict[str, Any]]]:
        """Scenario 9: a learner who completed a course whose passport promises a certificate.

        Moodle's web services expose no certificate issues, so course completion is the issue date.
        """
        if "certificates" not in self.enabled or not passports.promises_certificate(course, self.settings.passport):
            return [], []
        items: list[outbox.Item] = []
        marked: list[dict[str, Any]] = []
        for learner in enrolled.values():
            if learner.certified_at is not None:
                continue
            try:
                done, completed = completion.completion_status(self.moodle, course["id"], learner.user_id)
            except MoodleError as exc:
                if exc.errorcode == "nocriteriaset":
                    self.report.add("certificates.no_criteria")
                    return items, marked  # the course has no completion criteria: nobody completes it
                if exc.errorcode in ("usernotenroled", "notenroled"):
                    continue  # left the course since the enrolment list was read: the next run unenrols
                raise
            if not done:
                continue
            issued = completed.astimezone(self.zone) if completed else datetime.now(self.zone)
            marked.append({"course_id": course["id"], "user_id": learner.user_id, "certified_at": now,
                           "updated_at": now})
            items.append(self._item("certificate", {
                               "course_id": row.scos_id, "session_id": learner.session_id,
                               "user_id": learner.scos_user_id, "_moodle_course_id": course["id"],
                               "_moodle_user_id": learner.user_id,
                               "document": {"number": f"{course['id']}-{learner.user_id}-{learner.enrolment_no}",
                                            "issued_at": issued.isoformat(timespec="seconds"),
                                            "url": f"{self.moodle_url}/course/view.php?id={course['id']}"},
                               "description": course.get("fullname")},
                               f"certificate:{course['id']}:{learner.user_id}:{learner.enrolment_no}"))
        return items, marked


def key_refused(exc: ScosRejected) -> str:
    """The operator's message for a key refused during the scenarios; the key itself is never part of it."""
    return (f"the portal refused the key BUFSYNC_SCOS_KEY (scos.key): HTTP {exc.status} {exc.body[:200]}; "
            "the scenarios stopped at the first refused call (operations queued before it wait for a dispatcher, "
            "which refuses them alike without using their attempts): fix the key, then run `bufsync scos run` again")
