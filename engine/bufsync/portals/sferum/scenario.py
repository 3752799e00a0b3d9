"""One Сферум run: the contingent read, the chats and their members, the notes for 1C, the lessons' calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.config import LoadedSettings
from bufsync.errors import ConfigError, Problem, UnavailableError
from bufsync.mapping.loader import load_mappings
from bufsync.portals.sferum import contingent as contingents
from bufsync.portals.sferum.chats import Chats
from bufsync.portals.sferum.client import AnswerLost, CaptchaNeeded, TokenRefused, VkError
from bufsync.portals.sferum.dispatch import refused
from bufsync.portals.sferum.lessons import Lessons
from bufsync.portals.sferum.portal import client_for, organiser_of, today_local
from bufsync.portals.sferum.settings import SferumSettings
from bufsync.report import Tally
from bufsync.schema import build_metadata

NOTE = "Сферум: "  # the start of every note this run writes into a contingent row's sync_error


def run_scenarios(engine: sa.Engine, state: dict[str, sa.Table], loaded: LoadedSettings, settings: SferumSettings,
                  zone: ZoneInfo, now: datetime | None = None) -> Tally:
    report = Tally()
    mappings = load_mappings(loaded.mappings_dir)
    metadata = build_metadata(mappings)
    wanted = contingents.read(engine, metadata, mappings, settings, today_local(zone, now))
    report.add("chats.wanted", len(wanted.chats))
    report.add("people.without_vk", len({p.external_id for c in wanted.chats.values() for p in c.members.values()
                                         if p.vk_id is None}))
    assert settings.user_token is not None  # configured() checked it
    client = client_for(settings, settings.user_token.get_secret_value(), "user", engine)
    try:
        organiser = organiser_of(client, settings)
        Chats(engine, state, client, settings, wanted, mappings, organiser, report).run()
        notes(engine, wanted, settings)
        lessons = metadata.tables.get("buf_lessons")
        if settings.lessons.enabled and lessons is not None and sa.inspect(engine).has_table(lessons.name):
            Lessons(engine, state, lessons, settings, zone, report, now).run()
    except (TokenRefused, CaptchaNeeded) as exc:
        raise ConfigError(Problem(None, "portals.sferum.user_token", refused(exc).error)) from None
    except AnswerLost as exc:
        raise UnavailableError(f"VK is unavailable: {exc}") from None
    except VkError as exc:
        if exc.code in (6, 9, 10, 29):
            raise UnavailableError(f"VK is unavailable: {exc.reason}") from None
        raise
    finally:
        report.add("vk_requests", client.requests)
        client.close()
    return report


def notes(engine: sa.Engine, wanted: contingents.Contingent, settings: SferumSettings) -> None:
    """Each studying student's and working staff member's row says why they are in no chat (no usable VK ID), in its
    sync_error, where 1C looks; a note of this run's own is cleared once the VK ID is there. A row holding another
    error (the Moodle sync's) is left as it is: that one matters first."""
    problems: dict[str, str] = {}
    for chat in wanted.chats.values():
        for person in chat.members.values():
            if person.vk_problem is not None:
                problems[person.external_id] = person.vk_problem
    for kind, name in (("groups", "buf_students"), ("departments", "buf_staff")):
        table = wanted.tables.get(name)
        if table is None or kind not in settings.chats or "sync_error" not in table.c:
            continue
        with engine.begin() as conn:
            rows = list(conn.execute(sa.select(*(table.c[k] for k in _key(table)), table.c.person_external_id,
                                               table.c.sync_error)))
            changes: list[dict[str, Any]] = []
            for row in rows:
                problem = problems.get(row.person_external_id)
                text = (f"{NOTE}{problem}: человек не добавлен в беседы Сферум; заполните vk_id — он будет добавлен "
                        "при следующем запуске") if problem else None
                mine = row.sync_error is None or row.sync_error.startswith(NOTE)
                if mine and row.sync_error != text:
                    changes.append({**{f"k_{k}": getattr(row, k) for k in _key(table)}, "v_error": text})
            if changes:
                conn.execute(table.update().where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in _key(table)))
                             .values(sync_error=sa.bindparam("v_error")), changes)


def _key(table: sa.Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]
