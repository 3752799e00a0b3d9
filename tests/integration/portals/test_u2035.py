"""Университет 2035 end to end: the buffer (SQLite and PostgreSQL) synced into the sandbox Moodle, the learners'
footprint read from it, the four-stage connection driven through the CLI, and delivery to the real peers — the
xAPI LRS ralph-malph and moto's S3 server — each checked by reading back what the LRS and S3 now hold.

The connection, the delivery, lost answers and the not-active paths run on both databases; the tests of one answer
or one refusal, whose SQL is the same, on SQLite (the suite's time)."""

from __future__ import annotations

import hashlib
import json
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync import commands, migrations
from bufsync.config import LoadedSettings, load_settings
from bufsync.mapping import load_mappings
from bufsync.portals.runs import PortalRun, run_dispatch, run_portal
from bufsync.portals.u2035 import connection
from bufsync.portals.u2035.lrs import LrsClient
from bufsync.sandbox.moodle.run import start
from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.schema import build_metadata
from bufsync.state.tables import add_state_tables
from tests.integration.clirun import bufsync_in_process
from tests.peers import MotoS3, RalphLrs

TOKEN = "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a"
HOME = "https://my.2035.university"
T0 = 1_790_000_000


@dataclass
class U2035World:
    loaded: LoadedSettings
    engine: sa.Engine
    tables: dict[str, sa.Table]
    moodle: SandboxServer
    lrs: RalphLrs
    s3: MotoS3
    env: dict[str, str]
    config: Path
    ids: dict[str, Any]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.tables[table].insert(), rows)

    def rows(self, table: str, *where: Any) -> list[dict[str, Any]]:
        t = self.tables[table]
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t).where(*[w(t) for w in where]))]

    def statements(self) -> dict[str, dict[str, Any]]:
        return {r["fact_key"]: r for r in self.rows("sync_u2035_statements")}

    def queue(self) -> list[dict[str, Any]]:
        rows = self.rows("sync_queue", lambda t: t.c.portal == "u2035")
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def admin(self, action: str, **args: Any) -> Any:
        return self.moodle.site.admin(action, args)

    def cli(self, *args: str) -> CompletedProcess[str]:
        return bufsync_in_process("--config", str(self.config), *args, env=self.env)

    def reload(self) -> None:
        self.loaded = load_settings(self.config, self.env)

    def run(self) -> PortalRun:
        self.reload()
        return run_portal(self.loaded, "u2035")

    def dispatch(self) -> PortalRun:
        self.reload()
        return run_dispatch(self.loaded, "u2035", until_empty=True)

    def stored(self, statement_id: str) -> dict[str, Any] | None:
        """The statement as the LRS holds it, read back by id."""
        with LrsClient(self.lrs.base_url, self.lrs.key, self.lrs.secret) as lrs:
            return lrs.get(statement_id)

    def connect_flags(self) -> list[str]:
        return ["--lrs-url", self.lrs.base_url, "--key", self.lrs.key, "--secret", self.lrs.secret,
                "--s3-endpoint", self.s3.endpoint, "--s3-bucket", self.s3.bucket, "--s3-access-key",
                self.s3.access_key, "--s3-secret-key", self.s3.secret_key, "--s3-user-id", "tenant-7"]

    def activate(self) -> None:
        """The four stages by flags, as a script would pass them."""
        assert self.cli("u2035", "connect", "--received", "--test-lrs-url", self.lrs.base_url, "--test-key",
                        self.lrs.key, "--test-secret", self.lrs.secret).returncode == 0
        done = self.cli("u2035", "connect", "--received", *self.connect_flags())
        assert done.returncode == 0 and "«Активен»" in done.stdout, done.stdout + done.stderr
        self.reload()


def make_world(buffer_url: str, config: Path, text: str, lrs: Any, s3: Any) -> U2035World:
    """The buffer upgraded, a sandbox Moodle, the config file with `text`; the LRS and S3 given."""
    moodle = start(port=0, token=TOKEN)
    config.write_text(text, encoding="utf-8")
    env = {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN}
    loaded = load_settings(config, env)
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    tables = dict(build_metadata(mappings).tables) | add_state_tables(sa.MetaData())
    return U2035World(loaded, engine, tables, moodle, lrs, s3, env, config, {})


def close_world(w: U2035World) -> None:
    w.engine.dispose()
    w.moodle.shutdown()
    w.moodle.server_close()
    w.moodle.site.close()


@pytest.fixture
def world(_upgraded_buffer: None, buffer_url: str, tmp_path: Path, ralph_lrs: RalphLrs, moto_s3: MotoS3):
    w = make_world(buffer_url, tmp_path / "bufsync.yaml",
                   "# the site's own settings\nportals:\n  u2035:\n    organisation: ГБПОУ «Колледж связи»\n"
                   "    contact: Иванова А. А., it@college.example\n    project: Цифровой след\n"
                   "    statements_per_post: 4\n", ralph_lrs, moto_s3)
    yield w
    close_world(w)


def seed(w: U2035World) -> U2035World:
    """Four students (three with a UNTI id), a teacher, one course synced from the buffer; in Moodle an assignment
    with completion tracking, a submission with two files, grades with a pass grade, one course completion."""
    run_id = hashlib.sha256(str(w.config).encode()).hexdigest()[:8]  # ralph keeps statements across tests
    unti = {f"S{i}": f"{run_id}-{1000 + i}" for i in range(3)}
    w.insert("buf_users", [{"external_id": f"S{i}", "username": f"s{i}", "email": f"s{i}@college.example",
                            "last_name": f"Студентов{i}", "first_name": "Иван", "status": "active",
                            "unti_id": unti.get(f"S{i}")} for i in range(4)]
             + [{"external_id": "T1", "username": "t1", "email": "t1@college.example", "last_name": "Учитель",
                 "first_name": "Анна", "status": "active", "unti_id": None}])
    w.insert("buf_courses", [{"external_id": "C1", "shortname": "net-101", "fullname": "Сети"}])
    w.insert("buf_subscriptions", [{"user_external_id": f"S{i}", "course_external_id": "C1", "role": "student",
                                    "status": "active"} for i in range(4)]
             + [{"user_external_id": "T1", "course_external_id": "C1", "role": "editingteacher", "status": "active"}])
    assert commands.run(w.loaded, []).outcome == "ok"
    w.admin("service", downloadfiles=True)  # "Can download files": the submissions' files come through the token
    site = w.moodle.site.store
    course = int(site.one("SELECT id FROM course WHERE shortname = ?", ("net-101",))["id"])
    users = {f"S{i}": int(site.one("SELECT id FROM user WHERE username = ?", (f"s{i}",))["id"]) for i in range(4)}
    assignment = w.admin("create_assignment", courseid=course, name="Лабораторная 1", grademax=10,
                         idnumber="LAB1", completion=1)
    w.admin("update_grade_item", itemid=assignment["itemid"], gradepass=6)
    w.admin("set_activity_completion", cmid=assignment["cmid"], userid=users["S0"], state=1)
    w.admin("set_grade", itemid=assignment["itemid"], userid=users["S0"], grade=8, dategraded=1_790_000_000)
    w.admin("set_grade", itemid=assignment["itemid"], userid=users["S1"], grade=4, dategraded=1_790_000_100)
    w.admin("set_grade", itemid=assignment["itemid"], userid=users["S3"], grade=9)  # no UNTI id: nothing sent
    files = [{"filename": "отчёт.pdf", "filepath": "/", "text": "Отчёт по лабораторной №1", "timemodified": T0},
             {"filename": "схема.png", "filepath": "/", "size": 70_000, "seed": "scheme", "timemodified": T0}]
    submitted = w.admin("add_submission", assignmentid=assignment["assign_instance"], userid=users["S0"],
                        status="submitted", timemodified=1_790_000_000, files=files)
    w.admin("set_completion_criteria", courseid=course, criteria=[{"type": "self"}], enable=True)
    w.admin("mark_completion", courseid=course, userid=users["S0"], complete_course=True, timecompleted=1_790_000_500)
    w.ids.update(course=course, users=users, unti=unti, assignment=assignment, submission=submitted, files=files)
    return w


# -- the connection -------------------------------------------------------------------------------------------------

def test_the_four_stages_with_bad_and_good_credentials_resume_disable_and_reset(world: U2035World) -> None:
    w = world
    assert "«Не выполнен»" in w.cli("u2035", "status").stdout
    assert "portal Университет 2035: «Не выполнен»" in w.cli("status").stdout  # the site configured the portal
    # stage 1: the letter, filled from the config; without "the data is with me" it stops there
    first = w.cli("u2035", "connect")
    assert first.returncode == 0 and "ГБПОУ «Колледж связи»" in first.stdout and "Цифровой след" in first.stdout
    assert "«В процессе (1/4)»" in first.stdout
    # stage 2 with a wrong secret: «Ошибка данных» with ralph's own answer; the secret is never printed
    bad = w.cli("u2035", "connect", "--received", "--test-lrs-url", w.lrs.base_url, "--test-key", w.lrs.key,
                "--test-secret", "wrong-secret-123")
    assert bad.returncode == 1 and "«Ошибка данных»" in bad.stdout and "401" in bad.stdout
    assert "wrong-secret-123" not in bad.stdout + bad.stderr
    state = connection.status(w.loaded)
    assert (state.status, state.stage, state.opened) == ("data_error", 2, 2) and "401" in (state.last_error or "")
    # a restart resumes at stage 2: the right secret passes and stage 3's letter names the statement kept
    good = w.cli("u2035", "connect", "--test-secret", w.lrs.secret)
    assert good.returncode == 0 and "«В процессе (3/4)»" in good.stdout and w.lrs.secret not in good.stdout
    state = connection.status(w.loaded)
    assert state.test_statement_id and state.test_statement_id in good.stdout
    probe = w.stored(state.test_statement_id)
    assert probe is not None and probe["actor"]["account"]["name"] == "bufsync-connection-check"
    # the answers are in the config file (its comments kept), readable by its owner only
    text = w.config.read_text(encoding="utf-8")
    assert "# the site's own settings" in text and w.lrs.secret in text
    assert stat.S_IMODE(w.config.stat().st_mode) == 0o600
    # back to stage 1 (opened) and on again; stage 4 opens only after 3
    assert w.cli("u2035", "connect", "--stage", "4").returncode == 2
    back = w.cli("u2035", "connect", "--stage", "1", "--received")  # 1 -> 2 (checked again) -> 3's letter
    assert back.returncode == 0 and "«В процессе (3/4)»" in back.stdout, back.stdout + back.stderr
    again = w.cli("u2035", "connect", "--stage", "3", "--received", *w.connect_flags())
    assert again.returncode == 0 and "«Активен»" in again.stdout, again.stdout + again.stderr
    assert w.s3.secret_key not in again.stdout + again.stderr
    assert "portal Университет 2035: «Активен»" in w.cli("status").stdout
    # active: nothing may change until disable
    refused = w.cli("u2035", "connect", "--stage", "2")
    assert refused.returncode == 2 and "disable" in refused.stderr
    assert w.cli("u2035", "disable").returncode != 0  # no confirmation given: nothing done
    assert connection.status(w.loaded).active
    off = w.cli("u2035", "disable", "--yes")
    assert off.returncode == 0 and "«Не выполнен»" in off.stdout
    state = connection.status(w.loaded)
    assert (state.status, state.stage, state.opened) == ("not_started", 1, 1)
    assert w.cli("u2035", "connect", "--stage", "3").returncode == 2


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_bad_s3_at_stage_4_is_a_data_error_with_the_stores_answer(world: U2035World) -> None:
    w = world
    w.cli("u2035", "connect", "--received", "--test-lrs-url", w.lrs.base_url, "--test-key", w.lrs.key,
          "--test-secret", w.lrs.secret)
    flags = w.connect_flags()
    flags[flags.index("--s3-bucket") + 1] = "no-such-bucket"
    bad = w.cli("u2035", "connect", "--received", *flags)
    assert bad.returncode == 1 and "«Ошибка данных»" in bad.stdout and "NoSuchBucket" in bad.stdout
    assert connection.status(w.loaded).status == "data_error"


# -- the footprint --------------------------------------------------------------------------------------------------

def test_the_footprint_is_delivered_once_and_only_changes_go_again(world: U2035World) -> None:
    w = seed(world)
    # not active yet: the run records the facts, held, and queues nothing
    held = w.run()
    assert held.outcome == "ok" and any("не активно" in p for p in held.problems)
    assert w.queue() == [] and {r["state"] for r in w.statements().values()} == {"held"}
    ids_before = {k: r["statement_id"] for k, r in w.statements().items()}
    w.activate()
    report = w.run()
    assert report.counts["learners.without_unti"] == 1 and report.problems == []
    facts = w.statements()
    assert {k: r["statement_id"] for k, r in facts.items()} == ids_before  # the ids minted first are kept
    users = w.ids["users"]
    assert Counter(r["kind"] for r in facts.values()) == {"enrolment": 3, "activity": 1, "grade": 4, "completion": 1,
                                                         "submission": 1}  # grades: the item and the total each
    assert {r["moodle_user_id"] for r in facts.values()} == {users["S0"], users["S1"], users["S2"]}
    dispatched = w.dispatch()
    assert dispatched.outcome == "ok" and dispatched.counts["done"] == len(facts)
    facts = w.statements()
    assert {r["state"] for r in facts.values()} == {"sent"}
    # what the LRS holds, read back by id
    for row in facts.values():
        held_statement = w.stored(row["statement_id"])
        assert held_statement is not None, row
        assert held_statement["actor"]["account"] == {"homePage": HOME, "name": row["unti_id"]}
        assert held_statement["verb"]["id"] == row["verb"]
        assert w.lrs.copies(row["statement_id"]) == 1
    grade = facts[f"grade:{w.ids['assignment']['itemid']}:{users['S0']}"]
    stored = w.stored(grade["statement_id"])
    assert stored is not None and stored["verb"]["id"].endswith("/passed") and stored["result"]["success"] is True
    assert stored["result"]["score"]["raw"] == 8 and stored["result"]["score"]["max"] == 10
    failed = w.stored(facts[f"grade:{w.ids['assignment']['itemid']}:{users['S1']}"]["statement_id"])
    assert failed is not None and failed["verb"]["id"].endswith("/failed") and failed["result"]["success"] is False
    # the submission's files: in S3 first, referenced by fileUrl, sha2 and length
    submission = w.stored(facts[f"submission:{w.ids['submission']['submissionid']}"]["statement_id"])
    assert submission is not None and len(submission["attachments"]) == 2
    s3 = w.s3.client()
    for attachment in submission["attachments"]:
        key = attachment["fileUrl"].split(f"/{w.s3.bucket}/", 1)[1]
        body = s3.get_object(Bucket=w.s3.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == attachment["sha2"] and len(body) == attachment["length"]
        grants = s3.get_object_acl(Bucket=w.s3.bucket, Key=key)["Grants"]
        assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)
    assert len(w.rows("sync_u2035_files")) == 2
    # a run with nothing new queues nothing; its dispatch posts nothing
    again = w.run()
    assert again.counts.get("queued", 0) == 0 and again.counts.get("statements.new", 0) == 0
    assert w.dispatch().counts["claimed"] == 0
    # a changed grade is a new statement under a new id; the old one stays in the LRS
    w.admin("set_grade", itemid=w.ids["assignment"]["itemid"], userid=users["S1"], grade=7, dategraded=1_790_001_000)
    changed = w.run()
    assert changed.counts["statements.changed"] >= 1
    w.dispatch()
    row = w.statements()[f"grade:{w.ids['assignment']['itemid']}:{users['S1']}"]
    assert row["statement_id"] != grade["statement_id"] and row["state"] == "sent" and row["sends"] == 2
    now_passed = w.stored(row["statement_id"])
    assert now_passed is not None and now_passed["result"]["success"] is True


# -- the sandbox LRS (as Learning Locker answers) and S3: every answer, lost answers, restarts ----------------------

@dataclass
class SandboxLrs:
    base_url: str
    key: str
    secret: str
    server: Any

    def copies(self, statement_id: str) -> int:
        return 1 if self.server.lrs.stored(statement_id) is not None else 0


@dataclass
class SandboxS3:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    server: Any

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


@pytest.fixture
def sandboxed(_upgraded_buffer: None, buffer_url: str, tmp_path: Path):
    from bufsync.portals.u2035.sandbox import start_both
    emulator = start_both({"lrs_port": 0, "s3_port": 0}, None)
    pair, variables = emulator.server, emulator.variables
    lrs = SandboxLrs(variables["BUFSYNC_U2035_LRS_URL"], variables["BUFSYNC_U2035_KEY"],
                     variables["BUFSYNC_U2035_SECRET"], pair.lrs)
    s3 = SandboxS3(variables["BUFSYNC_U2035_S3_ENDPOINT"], variables["BUFSYNC_U2035_S3_BUCKET"],
                   variables["BUFSYNC_U2035_S3_ACCESS_KEY"], variables["BUFSYNC_U2035_S3_SECRET_KEY"], pair.s3)
    w = make_world(buffer_url, tmp_path / "bufsync.yaml", "portals:\n  u2035:\n    organisation: Колледж\n"
                   "    statements_per_post: 4\n    max_attempts: 3\n", lrs, s3)
    yield w
    close_world(w)
    pair.shutdown()
    pair.server_close()


def test_lost_answers_and_a_dead_dispatcher_deliver_each_statement_and_file_once(sandboxed: U2035World) -> None:
    from bufsync.queue import outbox
    w = seed(sandboxed)
    w.activate()
    assert w.run().counts["queued"] == 10
    lrs, s3 = w.lrs.server, w.s3.server  # type: ignore[attr-defined]
    # a dispatcher claimed half and died: its lease ran out, so the next one takes them over, in doubt
    claimed = outbox.claim(w.engine, w.tables["sync_queue"], "u2035", 5, lease_seconds=-1, worker="dead")
    assert len(claimed) == 5
    # the first POST is stored but its answer lost; the first file's PUT likewise
    lrs.set_faults([{"kind": "drop_after_write", "function": "POST /statements", "count": 1}])
    s3.set_faults([{"kind": "drop_after_write", "function": "PutObject", "count": 1}])
    first = w.dispatch()
    assert first.counts["in_doubt"] == 5 and first.counts["retried"] >= 1
    assert lrs.lrs.answers["POST /statements lost"] == 1 and s3.store.calls["PutObject"] >= 2
    # the items whose answer was lost come due again (the operator's retry stands for the backoff's end)
    outbox.retry(w.engine, w.tables["sync_queue"], [i["id"] for i in w.queue() if i["status"] == "failed"])
    second = w.dispatch()
    assert second.counts["dead"] == 0 and second.counts["done"] >= 1
    assert all(item["status"] == "done" for item in w.queue())
    facts = w.statements()
    assert {r["state"] for r in facts.values()} == {"sent"}
    for row in facts.values():  # each stored once, under the id minted when it was queued
        assert lrs.lrs.stored(row["statement_id"]) is not None
    assert len(lrs.lrs.statements) == 10 + 2  # and the two connection checks' statements
    assert sum(lrs.lrs.received.values()) > len(lrs.lrs.statements)  # some came twice: the LRS kept one each
    objects = s3.store.buckets[w.s3.bucket].objects
    assert len(objects) == 2 and len(w.rows("sync_u2035_files")) == 2
    submission = lrs.lrs.stored(facts[f"submission:{w.ids['submission']['submissionid']}"]["statement_id"])
    assert sorted(a["sha2"] for a in submission["attachments"]) == sorted(o.sha256 for o in objects.values())


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_each_lrs_answer_is_taken_as_the_notes_say(sandboxed: U2035World) -> None:
    """409 and 400 fail the statement at fault alone (the rest of its batch goes); 413 splits the batch; 429 waits
    and sends later; 401 stops the dispatcher with no attempt lost."""
    w = seed(sandboxed)
    w.activate()
    w.run()
    lrs = w.lrs.server.lrs  # type: ignore[attr-defined]
    items = {i["payload"]["fact_key"]: i for i in w.queue()}
    users, itemid = w.ids["users"], w.ids["assignment"]["itemid"]
    # 409: the LRS holds another statement under one of our ids
    taken = items[f"enrolment:{w.ids['course']}:{users['S2']}"]["payload"]["statement"]
    lrs.post([{**taken, "verb": {"id": "http://adlnet.gov/expapi/verbs/voided"}}], w.lrs.key)
    # 429: one POST a window; the clock is stopped, so the window ends when the test says
    lrs.config.rate_limit, lrs.config.rate_window = 1, 60.0
    lrs.move_clock(at=2_000_000_000.0)
    first = w.dispatch()
    assert lrs.answers["POST /statements 429"] >= 1 and first.counts["dead"] == 0
    pending = [i for i in w.queue() if i["status"] != "done"]
    assert pending and all(i["attempts"] <= 1 for i in pending)
    # 413: a body of more than two statements is too large; the batch is split until each part fits
    lrs.config.rate_limit = 0
    lrs.config.max_body = 2 * max(len(json.dumps(i["payload"]["statement"])) for i in items.values()) + 600
    from bufsync.queue import outbox
    outbox.retry(w.engine, w.tables["sync_queue"], [i["id"] for i in w.queue() if i["status"] == "failed"])
    w.dispatch()
    assert lrs.answers["POST /statements 413"] >= 1
    rows = w.statements()
    conflict = rows[f"enrolment:{w.ids['course']}:{users['S2']}"]
    assert conflict["state"] == "error" and "другое высказывание" in conflict["last_error"]
    assert "409" in conflict["last_error"]
    assert {r["state"] for k, r in rows.items() if k != conflict["fact_key"]} == {"sent"}
    assert lrs.stored(rows[f"grade:{itemid}:{users['S1']}"]["statement_id"]) is not None
    # 401: the LRS no longer knows the key: the dispatcher stops, exit 2, no item loses an attempt
    w.admin("set_grade", itemid=itemid, userid=users["S1"], grade=5, dategraded=T0 + 7)
    assert w.run().counts["queued"] >= 1
    lrs.config.credentials.clear()
    refused = w.cli("queue", "dispatch", "--portal", "u2035")
    assert refused.returncode == 2 and "ключ и секрет" in refused.stderr and w.lrs.secret not in refused.stderr
    waiting = [i for i in w.queue() if i["status"] == "pending"]
    assert waiting and all(i["attempts"] == 0 for i in waiting)


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_bad_statement_fails_alone_with_the_lrs_words(sandboxed: U2035World) -> None:
    """A usageType the LRS refuses (400): the submission's statement is rejected alone; the others are stored."""
    w = seed(sandboxed)
    w.config.write_text(w.config.read_text(encoding="utf-8") + "    profile:\n      usage_type: not an iri\n",
                        encoding="utf-8")
    w.activate()
    w.run()
    w.dispatch()
    rows = w.statements()
    bad = rows[f"submission:{w.ids['submission']['submissionid']}"]
    assert bad["state"] == "error" and "HTTP 400" in bad["last_error"] and "usageType" in bad["last_error"]
    assert {r["state"] for k, r in rows.items() if k != bad["fact_key"]} == {"sent"}


def test_nothing_is_sent_while_not_active_or_with_changed_settings(sandboxed: U2035World) -> None:
    w = seed(sandboxed)
    w.activate()
    assert w.run().counts["queued"] == 10
    minted = {k: r["statement_id"] for k, r in w.statements().items()}
    lrs = w.lrs.server.lrs  # type: ignore[attr-defined]
    # the settings changed after activation: the dispatcher sends nothing and says why
    text = w.config.read_text(encoding="utf-8")
    w.config.write_text(text.replace("statements_per_post: 4", "statements_per_post: 4\n    s3_acl: private"),
                        encoding="utf-8")
    changed = w.cli("queue", "dispatch", "--portal", "u2035")
    assert changed.returncode == 2 and "изменены после активации" in changed.stderr
    assert lrs.calls["POST /statements"] == 2  # the connection's own checks only
    w.config.write_text(text, encoding="utf-8")
    # disabled: the queued statements are cancelled, their facts held under the same ids
    assert "отменено в очереди: 10" in w.cli("u2035", "disable", "--yes").stdout
    assert w.dispatch().counts["claimed"] == 0 and {r["state"] for r in w.statements().values()} == {"held"}
    assert w.run().counts.get("queued", 0) == 0
    # connected again: the held facts go, under the ids minted first
    w.activate()
    assert w.run().counts["statements.released"] == 10
    w.dispatch()
    rows = w.statements()
    assert {k: r["statement_id"] for k, r in rows.items()} == minted and {r["state"] for r in rows.values()} == {"sent"}
    assert all(lrs.stored(i) is not None for i in minted.values())


@pytest.mark.parametrize("buffer_url", ["postgresql"], indirect=True)
def test_the_jobs_run_under_bufsync_schedule(sandboxed: U2035World) -> None:
    """The footprint job and its dispatch job in a real daemon process: every statement ends in the LRS."""
    import os
    import signal
    import subprocess
    import sys
    import time
    w = seed(sandboxed)
    w.activate()
    with w.config.open("a", encoding="utf-8") as config:
        config.write("jobs:\n  footprint:\n    kind: u2035\n    schedule: every 1 second\n  footprint-out:\n"
                     "    kind: dispatch\n    portal: u2035\n    schedule: every 1 second\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_") or k.startswith("BUFSYNC_TEST")}
    daemon = subprocess.Popen([str(Path(sys.executable).with_name("bufsync")), "--config", str(w.config), "schedule",
                               "--tick", "0.2"], env=env | w.env, cwd=w.config.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            rows = w.statements()
            if len(rows) == 10 and {r["state"] for r in rows.values()} == {"sent"}:
                break
            time.sleep(0.2)  # polling a separate process's progress, with a deadline
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, daemon.stderr.read() if daemon.stderr else ""
    rows = w.statements()
    assert len(rows) == 10 and {r["state"] for r in rows.values()} == {"sent"}
    lrs = w.lrs.server.lrs  # type: ignore[attr-defined]
    assert all(lrs.stored(r["statement_id"]) is not None for r in rows.values())
    with w.engine.connect() as conn:
        jobs = {job for (job,) in conn.execute(sa.text("SELECT DISTINCT job FROM sync_runs WHERE outcome = 'ok'"))}
    assert {"footprint", "footprint-out"} <= jobs


def test_the_unti_id_from_a_profile_field_and_the_projects_extensions(sandboxed: U2035World) -> None:
    """actor.source profile_field: the UNTI id is a Moodle custom profile field; the project's context extensions
    go into every statement, their text formatted with the fact's fields; `bufsync check` tries LRS and S3."""
    from bufsync.adapters.moodle.client import MoodleClient
    w = seed(sandboxed)
    w.admin("create_profile_field", shortname="untiid", name="UNTI ID")
    users = w.ids["users"]
    with MoodleClient.connect(w.moodle.url, TOKEN) as client:
        client.call("core_user_update_users", {"users": [
            {"id": users["S1"], "customfields": [{"type": "untiid", "value": "unti-from-moodle-1"}]},
            {"id": users["S3"], "customfields": [{"type": "untiid", "value": "unti-from-moodle-3"}]},
            # longer than any UNTI id (and than sync_u2035_statements.unti_id): this learner alone is left out
            {"id": users["S2"], "customfields": [{"type": "untiid",
                                                  "value": "https://my.2035.university/" + "9" * 60}]},
        ]}, write=True)
    w.config.write_text(w.config.read_text(encoding="utf-8") + (
        "    project: БАС\n    actor:\n      source: profile_field\n      field: untiid\n"
        "    profile:\n      extensions:\n"
        "        https://api.2035.university/project: '{project}'\n"
        "        https://api.2035.university/parent_course_id: '{course_idnumber}'\n"
        "        https://api.2035.university/flow_id: 7\n"), encoding="utf-8")
    w.activate()
    checked = w.cli("check")
    assert "u2035" in checked.stdout and "«Активен»: LRS" in checked.stdout, checked.stdout
    report = w.run()
    assert report.outcome == "ok" and report.counts["learners.without_unti"] == 2  # S0 none, S2 too long
    assert any("длиннее 64" in p and str(users["S2"]) in p for p in report.problems), report.problems
    w.dispatch()
    rows = w.statements()
    assert {r["unti_id"] for r in rows.values()} == {"unti-from-moodle-1", "unti-from-moodle-3"}
    lrs = w.lrs.server.lrs  # type: ignore[attr-defined]
    for row in rows.values():
        statement = lrs.stored(row["statement_id"])
        assert statement["context"]["extensions"] == {"https://api.2035.university/project": "БАС",
                                                      "https://api.2035.university/parent_course_id": "C1",
                                                      "https://api.2035.university/flow_id": 7}


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_fail_completes_only_an_activity_that_asks_for_any_grade(sandboxed: U2035World) -> None:
    """As Moodle 4.5 answers (test_u2035_real_moodle.py holds the real one to it): a fail (state 3) of an activity
    completed by its pass grade is not complete (isoverallcomplete false), of one completed by any grade it is; and a
    course's own statements (enrolment, course total, completion) name no parent, an activity's names its course."""
    w = seed(sandboxed)
    users, course = w.ids["users"], w.ids["course"]
    tests = {}
    for key, passgrade in (("A", 1), ("B", 0)):
        made = w.admin("create_assignment", courseid=course, name=f"Тест {key}", grademax=10, completion=2)
        w.admin("set_activity_tracking", cmid=made["cmid"], completion=2, completiongradeitemnumber=0,
                completionpassgrade=passgrade)
        w.admin("set_activity_completion", cmid=made["cmid"], userid=users["S1"], state=3)
        tests[key] = made["cmid"]
    w.activate()
    w.run()
    facts = w.statements()
    assert f"activity:{tests['A']}:{users['S1']}" not in facts
    failed = facts[f"activity:{tests['B']}:{users['S1']}"]
    w.dispatch()
    lrs = w.lrs.server.lrs  # type: ignore[attr-defined]
    stored = lrs.stored(failed["statement_id"])
    course_url = f"{w.moodle.url.rstrip('/')}/course/view.php?id={course}"
    assert stored["result"] == {"completion": True, "success": False}
    assert [p["id"] for p in stored["context"]["contextActivities"]["parent"]] == [course_url]
    for key in (f"enrolment:{course}:{users['S0']}", f"completion:{course}:{users['S0']}"):
        own = lrs.stored(facts[key]["statement_id"])
        assert own["object"]["id"] == course_url and "contextActivities" not in own["context"]


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_connect_on_a_terminal_asks_hides_the_secrets_and_stops_at_a_letter(sandboxed: U2035World) -> None:
    """`bufsync u2035 connect` on a real terminal (a pseudo-terminal): the letter, the question, the answers typed
    (the secret without echo), the check, the next letter; "no" there keeps the progress for the next time."""
    import os
    import select
    import subprocess
    import sys
    import time
    w = sandboxed
    main, child = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUFSYNC_") or k.startswith("BUFSYNC_TEST")}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("bufsync")), "--config", str(w.config), "u2035",
                             "connect"], stdin=child, stdout=child, stderr=child, env=env | w.env, cwd=w.config.parent)
    os.close(child)
    seen = b""

    def until(text: str) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while text.encode() not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
            ready, _, _ = select.select([main], [], [], 0.5)  # waiting for the process's output, not for time
            if ready:
                seen += os.read(main, 65536)

    try:
        until("[y/N]")
        os.write(main, b"y\n")
        until("Адрес тестового lrs")
        os.write(main, w.lrs.base_url.encode() + b"\n")
        until("Ключ (key) тестового lrs")
        os.write(main, w.lrs.key.encode() + b"\n")
        until("Секрет (secret) тестового lrs")
        os.write(main, w.lrs.secret.encode() + b"\n")
        until("Заявка на подключение к продуктивному контуру")
        until("[y/N]")
        os.write(main, b"n\n")
        until("«В процессе (3/4)»")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    text = seen.decode(errors="replace")
    assert "ГБПОУ" not in text and "Организация: Колледж" in text  # the letter, filled from this config
    assert w.lrs.secret not in text and w.lrs.key not in text  # typed without echo, never printed
    state = connection.status(w.loaded)
    assert (state.status, state.stage) == ("in_progress", 3) and state.test_statement_id in text


# -- what status and check say; one item the handler cannot build ---------------------------------------------------

def queue_statements(w: U2035World, count: int, files: dict[int, list[dict[str, Any]]] | None = None
                     ) -> list[str]:
    """`count` statements queued as a footprint run queues them (a state row and its queue item each), without
    reading Moodle; `files` gives some of them (by index) submitted files. Returns the fact keys."""
    import uuid

    from bufsync.portals.u2035.statements import timestamp
    from bufsync.queue import outbox
    from bufsync.state.ledger import now_utc
    now, keys, rows, items = now_utc(), [], [], []
    run_id = uuid.uuid4().hex[:8]
    for n in range(count):
        sid, key = str(uuid.uuid4()), f"submission:{run_id}{n}"
        statement = {"id": sid, "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": f"u-{run_id}"}},
                     "verb": {"id": "http://activitystrea.ms/schema/1.0/submit"},
                     "object": {"objectType": "Activity", "id": f"https://moodle.example/mod/assign/view.php?id={n}"},
                     "timestamp": timestamp(now), "version": "1.0.3"}
        attached = (files or {}).get(n, [])
        rows.append({"fact_key": key, "kind": "submission", "unti_id": f"u-{run_id}", "moodle_user_id": 1,
                     "moodle_course_id": 2, "statement_id": sid, "verb": statement["verb"]["id"], "fingerprint": "f",
                     "occurred_at": now, "files": len(attached), "state": "queued", "sends": 1,
                     "pending_key": f"stmt:{sid}", "updated_at": now})
        items.append(outbox.Item("u2035", "statement", {"fact_key": key, "statement_id": sid, "unti_id": f"u-{run_id}",
                                                         "course_id": 2, "statement": statement, "files": attached},
                                 f"stmt:{sid}", 3))
        keys.append(key)
    w.insert("sync_u2035_statements", rows)
    outbox.enqueue(w.engine, w.tables["sync_queue"], items)
    return keys


def freeze(w: U2035World, extra: str = "") -> None:
    """An active connection with the sandbox LRS and S3 as its settings (what stage 4 leaves), the config written
    as `connect` writes it; `extra` lines appended to portals.u2035 after the activation."""
    text = w.config.read_text(encoding="utf-8") + "".join(
        f"    {k}: '{v}'\n" for k, v in (("lrs_url", w.lrs.base_url), ("key", w.lrs.key), ("secret", w.lrs.secret),
                                        ("s3_endpoint", w.s3.endpoint), ("s3_bucket", w.s3.bucket),
                                        ("s3_access_key", w.s3.access_key), ("s3_secret_key", w.s3.secret_key)))
    w.config.write_text(text, encoding="utf-8")
    w.reload()
    state = connection.Connection(status=connection.ACTIVE, stage=4, opened=4,
                                  settings_hash=connection.settings_hash(connection.section(w.loaded)))
    connection.write(w.engine, w.tables["sync_u2035_connection"], state)
    if extra:
        w.config.write_text(text + extra, encoding="utf-8")
        w.reload()


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_status_and_check_say_that_nothing_is_sent_when_the_settings_changed_after_activation(
        sandboxed: U2035World) -> None:
    """«Активен» alone would be a status the LRS does not back: the dispatcher sends nothing."""
    w = sandboxed
    freeze(w, "    s3_acl: private\n")
    said = w.cli("status").stdout
    line = next(line for line in said.splitlines() if "Университет 2035" in line)
    assert "«Активен», но" in line and "изменены после активации: след не отправляется" in line, said
    own = w.cli("u2035", "status")
    assert "изменены после активации" in own.stdout, own.stdout
    checked = w.cli("check")
    line = next(line for line in checked.stdout.splitlines() if "u2035" in line)
    assert "изменены после активации" in line, checked.stdout


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_check_says_what_a_url_that_leads_to_no_lrs_answers(sandboxed: U2035World) -> None:
    w = sandboxed
    w.lrs = SandboxLrs(w.lrs.base_url.rstrip("/") + "/no-lrs-here", w.lrs.key, w.lrs.secret, w.lrs.server)
    freeze(w)
    checked = w.cli("check")
    assert "Traceback" not in checked.stderr and "404" in checked.stdout, checked.stdout + checked.stderr
    assert w.lrs.secret not in checked.stdout + checked.stderr


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_file_of_another_site_fails_its_statement_alone(sandboxed: U2035World) -> None:
    """A fileurl that is not the configured Moodle's (the site moved while it was queued): the token is not sent
    there, the statement fails alone with the reason, the rest of its batch is delivered."""
    w = sandboxed
    freeze(w)
    foreign = {"fileurl": "https://old-moodle.example/webservice/pluginfile.php/5/assignsubmission_file/"
                          "submission_files/7/work.pdf", "filename": "work.pdf", "filesize": 10, "timemodified": T0}
    keys = queue_statements(w, 5, {2: [foreign]})
    done = w.dispatch()
    assert done.counts["done"] == 4 and done.counts["dead"] == 1, done.counts
    rows = w.statements()
    bad = rows[keys[2]]
    assert bad["state"] == "error" and "old-moodle.example" in bad["last_error"], bad
    assert {rows[k]["state"] for k in keys if k != keys[2]} == {"sent"}
    assert all(w.lrs.server.lrs.stored(rows[k]["statement_id"]) for k in keys if k != keys[2])  # type: ignore


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_moodle_in_maintenance_delays_a_submission_and_kills_none(sandboxed: U2035World) -> None:
    """Moodle closed for maintenance answers the file's download with sitemaintenance: the statement waits for a
    later try (as after no answer at all); it does not die."""
    import http.server
    import threading

    class Maintenance(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": "Site is under maintenance", "errorcode": "sitemaintenance"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Maintenance)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w = sandboxed
        site = f"http://127.0.0.1:{server.server_address[1]}"
        w.env["BUFSYNC_MOODLE_URL"] = site
        freeze(w)
        file = {"fileurl": f"{site}/webservice/pluginfile.php/5/assignsubmission_file/submission_files/7/work.pdf",
                "filename": "work.pdf", "filesize": 10, "timemodified": T0}
        keys = queue_statements(w, 3, {1: [file]})
        done = w.dispatch()
        assert done.counts["done"] == 2 and done.counts["dead"] == 0 and done.counts["retried"] == 1, done.counts
        waiting = next(i for i in w.queue() if i["payload"]["fact_key"] == keys[1])
        assert waiting["status"] == "failed" and "sitemaintenance" in waiting["last_error"]
        assert w.statements()[keys[1]]["state"] == "queued"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_key_the_environment_sets_is_neither_asked_for_nor_written(sandboxed: U2035World) -> None:
    """BUFSYNC_U2035_TEST_SECRET (the name the sandbox prints) wins over the file: connect takes it from there and
    writes no other value into the file."""
    w = sandboxed
    w.env["BUFSYNC_U2035_TEST_SECRET"] = w.lrs.secret
    done = w.cli("u2035", "connect", "--received", "--test-lrs-url", w.lrs.base_url, "--test-key", w.lrs.key,
                 "--test-secret", "a-value-nobody-uses")
    assert done.returncode == 0 and "«В процессе (3/4)»" in done.stdout, done.stdout + done.stderr
    text = w.config.read_text(encoding="utf-8")
    assert "a-value-nobody-uses" not in text and w.lrs.secret not in text and w.lrs.key in text


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_a_submissions_attachments_are_decided_when_it_is_queued(sandboxed: U2035World) -> None:
    """The profile may change between the queueing and a (re)send: the attachments keep what was decided then, so
    a resend under the same id is the same statement."""
    w = seed(sandboxed)
    w.activate()
    w.run()
    w.config.write_text(w.config.read_text(encoding="utf-8") + "    profile:\n      usage_type: "
                        "https://id.2035.university/xapi/attachments/practice-diary\n      language: en-US\n",
                        encoding="utf-8")
    w.dispatch()
    row = w.statements()[f"submission:{w.ids['submission']['submissionid']}"]
    stored = w.lrs.server.lrs.stored(row["statement_id"])  # type: ignore[attr-defined]
    assert row["state"] == "sent" and {a["usageType"] for a in stored["attachments"]} == {
        "http://id.tincanapi.com/attachment/supporting_media"}
    assert all(set(a["display"]) == {"ru-RU"} for a in stored["attachments"])
    assert {a["fileUrl"].rsplit("/", 1)[1] for a in stored["attachments"]} == {
        f"{a['sha2']}{Path(a['display']['ru-RU']).suffix}" for a in stored["attachments"]}


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_moodle_refusing_the_download_stops_the_dispatcher_and_kills_nothing(sandboxed: U2035World) -> None:
    """«Can download files» off on the service: no statement's fault, so the dispatcher stops (exit 2) with Moodle's
    reason and no attempt is lost; ticked again, everything goes."""
    w = seed(sandboxed)
    w.activate()
    w.run()
    w.admin("service", downloadfiles=False)
    refused = w.cli("queue", "dispatch", "--portal", "u2035")
    assert refused.returncode == 2 and "Moodle не отдал файл ответа" in refused.stderr, refused.stderr
    assert all(i["status"] == "pending" and i["attempts"] == 0 for i in w.queue()
               if i["payload"]["fact_key"].startswith("submission:"))
    w.admin("service", downloadfiles=True)
    w.dispatch()
    assert {r["state"] for r in w.statements().values()} == {"sent"}


@pytest.mark.parametrize("buffer_url", ["sqlite"], indirect=True)
def test_reconnected_to_another_store_a_file_is_stored_there_again(sandboxed: U2035World) -> None:
    from dataclasses import replace

    from bufsync.sandbox.s3.store import Bucket
    w = seed(sandboxed)
    w.activate()
    w.run()
    w.dispatch()
    store = w.s3.server.store  # type: ignore[attr-defined]
    assert len(store.buckets["footprint"].objects) == 2
    assert w.cli("u2035", "disable", "--yes").returncode == 0
    store.buckets["footprint-2"] = Bucket(store.now(), "private")
    w.s3 = replace(w.s3, bucket="footprint-2")  # type: ignore[type-var]
    w.activate()
    # another learner hands in the same two files: the content is known, but not to the new store
    w.admin("add_submission", assignmentid=w.ids["assignment"]["assign_instance"], userid=w.ids["users"]["S1"],
            status="submitted", timemodified=T0 + 50, files=w.ids["files"])
    w.run()
    w.dispatch()
    rows = w.statements()
    assert {r["state"] for r in rows.values()} == {"sent"}
    assert len(store.buckets["footprint-2"].objects) == 2
    assert all("/footprint-2/" in r["url"] for r in w.rows("sync_u2035_files"))
