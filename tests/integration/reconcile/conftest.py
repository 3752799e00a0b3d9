"""A buffer (SQLite or PostgreSQL), upgraded, and a sandbox Moodle on real HTTP, per test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from bufsync import commands, migrations
from bufsync.adapters.moodle.client import MoodleClient
from bufsync.config import LoadedSettings, load_settings
from bufsync.mapping import load_mappings
from bufsync.sandbox.moodle.run import start
from bufsync.sandbox.moodle.server import SandboxServer
from bufsync.schema import build_metadata

TOKEN = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
WRITES = ("core_user_create_users", "core_user_update_users", "core_user_delete_users",
          "core_course_create_courses", "core_course_update_courses", "core_course_create_categories",
          "core_course_update_categories", "enrol_manual_enrol_users", "enrol_manual_unenrol_users",
          "core_role_unassign_roles")


@dataclass
class Buffer:
    """A buffer and the Moodle it syncs with, as the tests drive and read them."""

    loaded: LoadedSettings
    engine: sa.Engine
    tables: dict[str, sa.Table]

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.tables[table].insert(), rows)

    def delete(self, table: str, where: Any = None) -> None:
        t = self.tables[table]
        with self.engine.begin() as conn:
            conn.execute(t.delete() if where is None else t.delete().where(where(t)))

    def update(self, table: str, where: Any, **values: Any) -> None:
        t = self.tables[table]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(where(t)).values(**values))

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(self.tables[table]))]

    def run(self, *names: str, **options: Any):
        return commands.run(self.loaded, list(names), **options)

    def ws(self) -> MoodleClient:
        raise NotImplementedError

    def ws_user(self, **field: str) -> dict[str, Any] | None:
        """The one Moodle user with this field value (idnumber=..., username=...), read through Web Services."""
        (name, value), = field.items()
        with self.ws() as client:
            found = client.get_users_by_field(name, [value])
        assert len(found) <= 1, found
        return found[0] if found else None

    def ws_enrolled(self, courseid: int) -> dict[int, dict[str, Any]]:
        """userid -> {roles, active} in a course, read through Web Services."""
        with self.ws() as client:
            everyone = client.get_enrolled_users(courseid, userfields="id,roles")
            active = {int(u["id"]) for u in client.get_enrolled_users(courseid, onlyactive=True, userfields="id")}
        return {int(u["id"]): {"roles": sorted(r["shortname"] for r in u.get("roles", [])),
                               "active": int(u["id"]) in active} for u in everyone}


@dataclass
class World(Buffer):
    moodle: SandboxServer

    def ws(self) -> MoodleClient:
        """Moodle as a client sees it: tests check the world through Web Services, not the sandbox's tables."""
        return MoodleClient.connect(self.moodle.url, TOKEN)

    def writes(self) -> int:
        calls = self.moodle.stats()["calls"]
        return sum(calls.get(name, 0) for name in WRITES)

    def moodle_users(self) -> list[Any]:
        return self.moodle.site.store.q("SELECT * FROM user WHERE deleted = 0 AND id > 2 ORDER BY id")

    def enrolments(self) -> list[Any]:
        return self.moodle.site.store.q(
            "SELECT ue.userid, e.courseid, ue.status, ue.timestart, ue.timeend FROM user_enrolments ue "
            "JOIN enrol e ON e.id = ue.enrolid ORDER BY ue.userid, e.courseid")


@pytest.fixture
def world(_upgraded_buffer: None, buffer_url: str, quick_retries: None) -> World:
    server = start(port=0, token=TOKEN)
    loaded = load_settings(None, {"BUFSYNC_BUFFER_URL": buffer_url, "BUFSYNC_MOODLE_URL": server.url,
                                  "BUFSYNC_MOODLE_TOKEN": TOKEN})
    mappings = load_mappings(loaded.mappings_dir)
    migrations.upgrade(loaded, mappings)
    engine = sa.create_engine(buffer_url)
    metadata = build_metadata(mappings)
    yield World(loaded, engine, dict(metadata.tables), server)
    engine.dispose()
    server.shutdown()
    server.server_close()
    server.site.close()


def people(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"external_id": f"P{i:05d}", "username": f"user{i:05d}", "email": f"user{i:05d}@college.example",
             "last_name": f"Иванов{i}", "first_name": "Иван", "middle_name": "Петрович", "status": "active"}
            for i in range(start, start + n)]
