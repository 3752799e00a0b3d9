"""A model of what 1C does, checked against what Moodle then holds (hypothesis stateful testing).

Random sequences of inserts, updates, deletes, full reloads, half-written reloads followed by the
rest, status and role changes, namesakes and case variants of logins, and rows coming back,
interleaved with runs and `--full` runs against the sandbox Moodle. After every run, Moodle is read
through its Web Services and must hold what the buffer asks: every `ok` row is true in Moodle, a
row that nothing contradicts is `ok`, no account carries two keys, a vanished person or enrolment
is suspended, and a second run right after writes nothing.

CI runs a fixed seed and a few examples; `scripts/model-check` runs many more (and PostgreSQL).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bufsync import commands, migrations
from bufsync.config import load_settings
from bufsync.mapping import load_mappings
from bufsync.sandbox.moodle.run import start
from bufsync.schema import build_metadata
from tests.integration.reconcile.conftest import TOKEN, WRITES

EXAMPLES = int(os.environ.get("BUFSYNC_MODEL_EXAMPLES", "6"))
STEPS = int(os.environ.get("BUFSYNC_MODEL_STEPS", "20"))
BUFFER = os.environ.get("BUFSYNC_MODEL_BUFFER", "sqlite")
PG_ADMIN_URL = os.environ.get("BUFSYNC_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

KEYS = [f"K{i}" for i in range(6)]
LOGINS = ["ann", "ANN", "bob", "Bob", "cid", "dan", "eve"]  # case variants make namesakes
NAMES = ["Иванова", "Петров", "Сидорова"]
COURSES = ["C1", "C2"]
ROLES = ["student", "teacher", "editingteacher"]
STATUSES = ["active", "active", "suspended"]


def _buffer_url(directory: Path) -> tuple[str, Any]:
    if BUFFER == "sqlite":
        return f"sqlite:///{(directory / 'buffer.db').as_posix()}", None
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bufsync_model_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop


class OneCAndMoodle(RuleBasedStateMachine):
    """The buffer as 1C writes it (the model is the buffer itself), Moodle as Web Services show it."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        url, self.drop = _buffer_url(Path(self.tmp.name))
        self.moodle = start(port=0, token=TOKEN)
        self.loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": url, "BUFSYNC_MOODLE_URL": self.moodle.url,
                                           "BUFSYNC_MOODLE_TOKEN": TOKEN})
        mappings = load_mappings(self.loaded.mappings_dir)
        migrations.upgrade(self.loaded, mappings)
        self.engine = sa.create_engine(url)
        self.tables = build_metadata(mappings).tables
        self.people: dict[str, dict[str, Any]] = {}            # key -> row, as in buf_users
        self.gone: dict[str, dict[str, Any]] = {}              # removed by 1C, may come back
        self.subs: dict[tuple[str, str, str], str] = {}        # (person, course, role) -> status
        self.logins: dict[str, set[str]] = {}                  # login (lower) -> every key that ever had it
        self.enrolled: set[tuple[str, str]] = set()            # (person, course) ever enrolled in Moodle
        self.ran = False

    def teardown(self) -> None:
        self.engine.dispose()
        self.moodle.shutdown()
        self.moodle.server_close()
        self.moodle.site.close()
        if self.drop:
            self.drop()
        self.tmp.cleanup()

    # -- what 1C does ------------------------------------------------------------------------
    def _write(self, table: str, rows: list[dict[str, Any]] | None = None, delete: Any = None) -> None:
        t = self.tables[table]
        with self.engine.begin() as conn:
            if delete is not None:
                conn.execute(t.delete().where(delete(t)))
            if rows:
                conn.execute(t.insert(), rows)

    def _person_row(self, key: str) -> dict[str, Any]:
        p = self.people[key]
        return {"external_id": key, "username": p["username"], "email": f"{key.lower()}@example.edu",
                "last_name": p["last_name"], "first_name": "Тест", "status": p["status"]}

    @initialize()
    def first_load(self) -> None:
        """Every history starts from a site in use: four people enrolled, synced once."""
        self._write("buf_courses", [{"external_id": c, "shortname": c.lower(), "fullname": f"Курс {c}"}
                                    for c in COURSES])
        for key, login in zip(KEYS, ("ann", "bob", "cid", "dan"), strict=False):
            self.people[key] = {"username": login, "last_name": NAMES[0], "status": "active"}
            self.logins.setdefault(login, set()).add(key)
            self.subs[(key, "C1", "student")] = "active"
        self._write("buf_users", [self._person_row(k) for k in sorted(self.people)])
        self._write("buf_subscriptions", [{"user_external_id": p, "course_external_id": c, "role": r, "status": s}
                                          for (p, c, r), s in self.subs.items()])
        self._run(full=False)

    @rule(then_run=st.booleans(), key=st.sampled_from(KEYS), login=st.sampled_from(LOGINS),
          last=st.sampled_from(NAMES), status=st.sampled_from(STATUSES))
    def insert_person(self, key: str, login: str, last: str, status: str, then_run: bool = False) -> None:
        if key in self.people:
            return
        self.gone.pop(key, None)
        self.people[key] = {"username": login, "last_name": last, "status": status}
        self.logins.setdefault(login.lower(), set()).add(key)
        self._write("buf_users", [self._person_row(key)])
        self._maybe_run(then_run)

    @precondition(lambda self: self.people)
    @rule(then_run=st.booleans(), data=st.data(), last=st.sampled_from(NAMES),
          status=st.sampled_from(STATUSES + ["blocked"]))
    def update_person(self, data: st.DataObject, last: str, status: str, then_run: bool = False) -> None:
        key = data.draw(st.sampled_from(sorted(self.people)))
        self.people[key].update(last_name=last, status=status)
        t = self.tables["buf_users"]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.external_id == key).values(last_name=last, status=status))
        self._maybe_run(then_run)

    @precondition(lambda self: self.people)
    @rule(then_run=st.booleans(), data=st.data())
    def delete_person(self, data: st.DataObject, then_run: bool = False) -> None:
        key = data.draw(st.sampled_from(sorted(self.people)))
        self.gone[key] = self.people.pop(key)
        self._write("buf_users", delete=lambda t: t.c.external_id == key)
        self._maybe_run(then_run)

    @precondition(lambda self: self.gone)
    @rule(then_run=st.booleans(), data=st.data())
    def bring_back(self, data: st.DataObject, then_run: bool = False) -> None:
        """A person 1C removed comes back as they were."""
        key = data.draw(st.sampled_from(sorted(self.gone)))
        self.people[key] = self.gone.pop(key)
        self._write("buf_users", [self._person_row(key)])
        self._maybe_run(then_run)

    @precondition(lambda self: self.people)
    @rule(then_run=st.booleans(), data=st.data(), course=st.sampled_from(COURSES), role=st.sampled_from(ROLES),
          status=st.sampled_from(STATUSES))
    def insert_subscription(self, data: st.DataObject, course: str, role: str, status: str,
                            then_run: bool = False) -> None:
        person = data.draw(st.sampled_from(sorted(self.people)))
        if (person, course, role) in self.subs:
            return
        self.subs[(person, course, role)] = status
        self._write("buf_subscriptions", [{"user_external_id": person, "course_external_id": course, "role": role,
                                           "status": status}])
        self._maybe_run(then_run)

    @precondition(lambda self: self.subs)
    @rule(then_run=st.booleans(), data=st.data(), status=st.sampled_from(STATUSES))
    def update_subscription(self, data: st.DataObject, status: str, then_run: bool = False) -> None:
        key = data.draw(st.sampled_from(sorted(self.subs)))
        self.subs[key] = status
        t = self.tables["buf_subscriptions"]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.user_external_id == key[0], t.c.course_external_id == key[1],
                                          t.c.role == key[2]).values(status=status))
        self._maybe_run(then_run)

    @precondition(lambda self: self.subs)
    @rule(then_run=st.booleans(), data=st.data())
    def delete_subscription(self, data: st.DataObject, then_run: bool = False) -> None:
        key = data.draw(st.sampled_from(sorted(self.subs)))
        del self.subs[key]
        self._write("buf_subscriptions", delete=lambda t: (t.c.user_external_id == key[0])
                    & (t.c.course_external_id == key[1]) & (t.c.role == key[2]))
        self._maybe_run(then_run)

    @rule()
    def full_reload(self) -> None:
        """1C deletes every person and writes them all again, unchanged."""
        self._write("buf_users", [self._person_row(k) for k in sorted(self.people)], delete=lambda t: sa.true())

    @precondition(lambda self: len(self.people) >= 2)
    @rule()
    def half_reload_then_the_rest(self) -> None:
        """A reload whose first half a run sees before 1C writes the second half."""
        keys = sorted(self.people)
        half = len(keys) // 2
        self._write("buf_users", [self._person_row(k) for k in keys[:half]], delete=lambda t: sa.true())
        self.run()
        self._write("buf_users", [self._person_row(k) for k in keys[half:]])

    # -- runs and what they must leave ------------------------------------------------------
    def _maybe_run(self, then_run: bool) -> None:
        """Half the changes are followed by a run at once, half pile up for the next run together."""
        if then_run:
            self._run(full=False)

    @rule()
    def run(self) -> None:
        self._run(full=False)

    @precondition(lambda self: self.ran)
    @rule()
    def run_full(self) -> None:
        self._run(full=True)

    def _run(self, full: bool) -> None:
        commands.run(self.loaded, [], full=full, allow_removals=1000)
        self.ran = True
        self._check_moodle()
        writes = self._writes()
        commands.run(self.loaded, [], allow_removals=1000)
        assert self._writes() == writes, "a run right after a run wrote to Moodle"

    def _writes(self) -> int:
        calls = self.moodle.stats()["calls"]
        return sum(calls.get(name, 0) for name in WRITES)

    def _rows(self, table: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(self.tables[table]))]

    def _check_moodle(self) -> None:
        from bufsync.adapters.moodle.client import MoodleClient
        with MoodleClient.connect(self.moodle.url, TOKEN) as client:
            everyone = {int(u["id"]): u for u in client.get_users_by_field(
                "username", sorted({login.lower() for login in LOGINS}))}
            courses = {c["idnumber"]: int(c["id"]) for c in client.get_courses_by_field()
                       if c.get("idnumber") in COURSES}
            enrolments = {}
            for course, courseid in courses.items():
                active = {int(u["id"]) for u in client.get_enrolled_users(courseid, onlyactive=True, userfields="id")}
                for u in client.get_enrolled_users(courseid, userfields="id,roles"):
                    enrolments[(int(u["id"]), course)] = ({r["shortname"] for r in u.get("roles", [])},
                                                         int(u["id"]) in active)
        users = {r["external_id"]: r for r in self._rows("buf_users")}
        linked = [r["lms_id"] for r in users.values() if r["lms_id"] is not None]
        assert len(linked) == len(set(linked)), f"one Moodle account carries two keys: {users}"
        by_id = {}
        for key, row in users.items():
            assert row["sync_status"] in ("ok", "error", "skipped"), row
            if row["sync_status"] != "ok":
                assert row["sync_error"], row  # never a failure without its reason
                # nothing contradicts a row whose login no other key ever had: it must go through
                assert len(self.logins[row["username"].lower()]) > 1 or row["status"] == "blocked", row
                continue
            account = everyone.get(row["lms_id"])
            assert account is not None, f"{key} is ok but Moodle has no user {row['lms_id']}"
            assert account["idnumber"] == key and account["username"] == row["username"].lower(), (row, account)
            assert account["lastname"] == row["last_name"], (row, account)
            assert account["suspended"] == (row["status"] == "suspended"), (row, account)
            by_id[row["lms_id"]] = key
        for account in everyone.values():  # an account whose person left 1C is suspended, never left active
            key = account.get("idnumber")
            if key and key not in users:
                assert account["suspended"] is True, account
            if key in users and users[key]["sync_status"] == "ok":
                assert by_id.get(int(account["id"])) == key
        self._check_enrolments(users, courses, enrolments)

    def _check_enrolments(self, users: dict[str, dict[str, Any]], courses: dict[str, int],
                          enrolments: dict[tuple[int, str], tuple[set[str], bool]]) -> None:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self._rows("buf_subscriptions"):
            groups.setdefault((row["user_external_id"], row["course_external_id"]), []).append(row)
        accounts = self._ledger_ids()
        for (person, course), rows in groups.items():
            user = users.get(person)
            if (user is None or user["sync_status"] != "ok") and person in accounts:
                # 1C removed the person (or broke their row) but not the rows: the account the ledger links
                user = {"sync_status": "ok", "lms_id": accounts[person]}
            if user is None or user["sync_status"] != "ok":
                assert all(r["sync_status"] in ("error", "skipped") and r["sync_error"] for r in rows), rows
                continue
            assert all(r["sync_status"] == "ok" for r in rows), rows
            self.enrolled.add((person, course))
            assert (user["lms_id"], course) in enrolments, (person, course, rows)
            roles, active = enrolments[(user["lms_id"], course)]
            wanted = {r["role"] for r in rows if r["status"] == "active"}
            if wanted:
                assert active and roles == wanted, (person, course, rows, roles, active)
            else:
                assert not active, (person, course, rows, roles, active)
        for person, course in self.enrolled - set(groups):  # every row of it gone from 1C: suspended
            user = users.get(person)
            if user is not None and user["sync_status"] == "ok" and (user["lms_id"], course) in enrolments:
                assert enrolments[(user["lms_id"], course)][1] is False, (person, course)

    def _ledger_ids(self) -> dict[str, int]:
        """Person -> the Moodle account the ledger links (kept, suspended, when 1C removes the person)."""
        t = self.tables["sync_ledger"]
        with self.engine.connect() as conn:
            return {r.record_key: r.remote_id for r in conn.execute(
                sa.select(t.c.record_key, t.c.remote_id).where(
                    t.c.mapping_name == "users", t.c.state.in_(["linked", "suspended"])))}

    @invariant()
    def buffer_matches_the_model(self) -> None:
        if not hasattr(self, "engine"):
            return
        assert {r["external_id"] for r in self._rows("buf_users")} == set(self.people)


TestOneCAndMoodle = OneCAndMoodle.TestCase
# the same examples on every CI run (derandomize); `scripts/model-check` explores new ones. No example
# database is written: nothing of a run is kept in the repository.
TestOneCAndMoodle.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
    derandomize=not os.environ.get("BUFSYNC_MODEL_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
