"""A whole СЦОС world per test: buffer (SQLite or PostgreSQL) synced into the sandbox Moodle by `bufsync run`,
the sandbox СЦОС on real HTTP, and the scenarios and dispatchers as users run them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bufsync import commands, migrations, tls
from bufsync.config import LoadedSettings, load_settings
from bufsync.mapping import load_mappings
from bufsync.portals.runs import PortalRun, run_dispatch, run_portal
from bufsync.sandbox.moodle.run import start
from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.sandbox.scos.portal import Portal, PortalServer, SandboxConfig
from bufsync.schema import build_metadata
from bufsync.state.tables import add_state_tables

TOKEN = "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a"
KEY = "scos-key-0123456789abcdef0123456789"
PASSPORT_DEFAULTS = {"content": "Лекции, практические занятия, итоговый тест", "results": "Умеет программировать",
                     "competences": "ОПК-1\nПК-2", "requirements": ["Школьная математика"],
                     "direction": ["09.03.01"], "credits": 3, "lectures": 12}
CUSTOM_FIELDS = (("scos_publish", "Публиковать в СЦОС", "checkbox"), ("scos_id", "Идентификатор СЦОС", "text"),
                 ("scos_cert", "Сертификат", "checkbox"), ("scos_description", "Описание для СЦОС", "textarea"),
                 ("scos_duration_weeks", "Длительность, недель", "text"))


@dataclass
class ScosWorld:
    loaded: LoadedSettings
    engine: sa.Engine
    tables: dict[str, sa.Table]
    moodle: SandboxServer
    portal: PortalServer

    # -- buffer and Moodle -----------------------------------------------------------------------
    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.tables[table].insert(), rows)

    def update(self, table: str, where: Any, **values: Any) -> None:
        t = self.tables[table]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(where(t)).values(**values))

    def rows(self, table: str, *where: Any) -> list[dict[str, Any]]:
        t = self.tables[table]
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t).where(*[w(t) for w in where]))]

    def sync(self) -> None:
        assert commands.run(self.loaded, []).outcome == "ok"

    def ws(self, function: str, **params: Any) -> Any:
        from bufsync.adapters.moodle.client import MoodleClient
        with MoodleClient.connect(self.moodle.url, TOKEN) as client:
            return client.call(function, params, write=True)

    def course_id(self, shortname: str) -> int:
        return int(self.moodle.site.store.one("SELECT id FROM course WHERE shortname = ?", (shortname,))["id"])

    def user_id(self, username: str) -> int:
        return int(self.moodle.site.store.one("SELECT id FROM user WHERE username = ?", (username,))["id"])

    def mark(self, shortname: str, publish: bool = True, **fields: Any) -> None:
        custom = [{"shortname": "scos_publish", "value": int(publish)}]
        custom += [{"shortname": k, "value": v} for k, v in fields.items()]
        self.ws("core_course_update_courses", courses=[{"id": self.course_id(shortname), "customfields": custom}])

    def course_field(self, shortname: str, field: str) -> Any:
        from bufsync.adapters.moodle.client import MoodleClient
        with MoodleClient.connect(self.moodle.url, TOKEN) as client:
            course = client.get_courses_by_field("shortname", shortname)[0]
        return {f["shortname"]: f["valueraw"] for f in course["customfields"]}.get(field)

    def admin(self, action: str, **args: Any) -> Any:
        return self.moodle.site.admin(action, args)

    def configure_scos(self, **changes: Any) -> None:
        """As if the site edited the scos section of bufsync.yaml."""
        from bufsync.portals import with_section
        settings = self.loaded.settings
        self.loaded.settings = with_section(settings, "scos", settings.portals.scos.model_copy(update=changes))

    # -- the portal side ---------------------------------------------------------------------------
    def scenarios(self) -> PortalRun:
        return run_portal(self.loaded, "scos")

    def dispatch(self) -> PortalRun:
        return run_dispatch(self.loaded, "scos", until_empty=True)

    def cycle(self, rounds: int = 1) -> PortalRun:
        """Scenarios, then the dispatcher, as two scheduled jobs would run them."""
        report = None
        for _ in range(rounds):
            report = self.scenarios()
            self.dispatch()
        return report

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.portal.url}/sandbox/state", verify=tls.verify()).json()

    def courses(self) -> dict[int, dict[str, Any]]:
        return {r["course_id"]: r for r in self.rows("sync_scos_courses")}

    def learners(self) -> dict[tuple[int, int], dict[str, Any]]:
        return {(r["course_id"], r["user_id"]): r for r in self.rows("sync_scos_learners")}

    def queue(self, operation: str | None = None) -> list[dict[str, Any]]:
        rows = self.rows("sync_queue", *([lambda t: t.c.operation == operation] if operation else []))
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows


def people(n: int) -> list[dict[str, Any]]:
    return [{"external_id": f"S{i:03d}", "username": f"student{i:03d}", "email": f"student{i:03d}@college.example",
             "last_name": f"Студентов{i}", "first_name": "Пётр", "status": "active",
             "esia_id": f"esia-{i:03d}" if i % 5 != 4 else None} for i in range(n)]


@pytest.fixture
def scos_world(buffer_url: str, tmp_path: Path):
    moodle = start(port=0, token=TOKEN)
    # moderation lasts one status poll: the scenario run that first sees a passport in moderation reads
    # `in_progress`, the next one `ok`; so what a test sees never depends on how fast the machine is
    portal = PortalServer(Portal(SandboxConfig(key=KEY, moderation_polls=1)), port=0)
    portal.serve_in_thread()
    config = tmp_path / "bufsync.yaml"
    config.write_text(json.dumps({"scos": {"passport": PASSPORT_DEFAULTS}}), encoding="utf-8")  # JSON is YAML
    loaded = load_settings(config, {
        "BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": moodle.url, "BUFSYNC_MOODLE_TOKEN": TOKEN,
        "BUFSYNC_SCOS_URL": f"{portal.url}/api/v2", "BUFSYNC_SCOS_KEY": KEY,
        "BUFSYNC_SCOS_PARTNER_ID": "sandbox-partner", "BUFSYNC_SCOS_INSTITUTION": "inst-1"})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    tables = dict(build_metadata(mappings).tables) | add_state_tables(sa.MetaData())
    world = ScosWorld(loaded, engine, tables, moodle, portal)
    for shortname, name, kind in CUSTOM_FIELDS:
        world.admin("create_course_customfield", shortname=shortname, name=name, type=kind)
    yield world
    engine.dispose()
    for server in (moodle, portal):
        server.shutdown()
        server.server_close()
    moodle.site.close()


@pytest.fixture
def seeded(scos_world: ScosWorld) -> ScosWorld:
    """Ten students (two without an ЕСИА id), a teacher, two courses synced from the buffer into Moodle."""
    from datetime import datetime
    w = scos_world
    w.insert("buf_users", people(10) + [{"external_id": "T001", "username": "teacher1", "last_name": "Преподаватель",
                                         "first_name": "Анна", "email": "teacher1@college.example",
                                         "esia_id": None, "status": "active"}])
    w.insert("buf_courses", [{"external_id": "C-PY", "shortname": "py-101", "fullname": "Python для всех",
                              "start_date": datetime(2026, 9, 1).date(), "end_date": datetime(2026, 12, 25).date()},
                             {"external_id": "C-DB", "shortname": "db-201", "fullname": "Базы данных",
                              "start_date": datetime(2026, 9, 1).date(), "end_date": None}])
    subs = [{"user_external_id": f"S{i:03d}", "course_external_id": c, "role": "student", "status": "active"}
            for i in range(10) for c in ("C-PY", "C-DB")]
    subs += [{"user_external_id": "T001", "course_external_id": c, "role": "editingteacher", "status": "active"}
             for c in ("C-PY", "C-DB")]
    w.insert("buf_subscriptions", subs)
    w.sync()
    return w
