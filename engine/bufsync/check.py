"""`bufsync check`: config, mappings and every connection, each with a verdict and a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bufsync.adapters.moodle.client import REQUIRED_FUNCTIONS, MoodleClient
from bufsync.adapters.moodle.entities import entity_adapters
from bufsync.adapters.moodle.errors import MoodleConfigError, MoodleError, MoodleUnavailable
from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import BufsyncError, ConfigError
from bufsync.mapping.loader import MappingSet
from bufsync.migrations import current_revisions, head_revisions, pending_changes

PROFILE_SAMPLE = 20      # users read back per profile field
PROFILE_NAMES_MAX = 50   # buf_user_fields names looked at
PROFILE_FIELDS_PAGE = "Site administration > Users > Accounts > User profile fields"


@dataclass
class CheckItem:
    name: str
    ok: bool | None  # None: not configured, skipped
    detail: str


def _check_buffer(loaded: LoadedSettings, mappings: MappingSet) -> list[CheckItem]:
    items = []
    try:
        with connect_buffer(loaded):
            pass
    except BufsyncError as exc:
        return [CheckItem("buffer", False, str(exc))]
    items.append(CheckItem("buffer", True, f"connected to {loaded.buffer_url_display}"))
    current = current_revisions(loaded)
    heads = head_revisions(loaded, mappings)
    if not current:
        items.append(CheckItem("schema", False, "no bufsync tables yet; run `bufsync db upgrade`"))
    elif sorted(current) != sorted(heads):
        items.append(CheckItem("schema", False,
                               f"at revision {', '.join(current)}, head is {', '.join(heads)}; "
                               "run `bufsync db upgrade`"))
    else:
        diffs = pending_changes(loaded, mappings)
        if diffs:
            items.append(CheckItem("schema", False,
                                   f"at head {', '.join(current)} but {len(diffs)} difference(s) from the "
                                   "mappings; run `bufsync db revision -m \"...\"` then `bufsync db upgrade`"))
        else:
            items.append(CheckItem("schema", True, f"at head {', '.join(current)}, matches the mappings"))
    return items


def _check_moodle(loaded: LoadedSettings, mappings: MappingSet | None = None,
                  buffer_ok: bool = False) -> list[CheckItem]:
    moodle = loaded.moodle
    if not moodle.url:
        return [CheckItem("moodle", None, "not configured (BUFSYNC_MOODLE_URL)")]
    if moodle.token is None:
        return [CheckItem("moodle", False, "BUFSYNC_MOODLE_TOKEN is not set")]
    profile: CheckItem | None = None
    try:
        with MoodleClient.connect(moodle.url, moodle.token.get_secret_value(), timeout=moodle.timeout,
                                  verify=moodle.verify_tls, attempts=2) as client:
            info = client.site_info()
            present = {f["name"] for f in info.get("functions", [])}
            if mappings is not None and buffer_ok and "core_user_get_users_by_field" in present:
                try:
                    profile = _check_profile_fields(loaded, mappings, client)
                except (MoodleUnavailable, MoodleError) as exc:
                    profile = CheckItem("profile", None, f"custom profile fields not checked: {exc}")
    except (MoodleUnavailable, MoodleConfigError) as exc:
        return [CheckItem("moodle", False, str(exc))]
    except MoodleError as exc:
        return [CheckItem("moodle", False, exc.fix() if exc.is_access_error else f"Moodle refused: {exc}")]
    missing = [name for name in REQUIRED_FUNCTIONS if name not in present]
    head = f"{info.get('sitename')} — Moodle {info.get('release')} as {info.get('username')}"
    if missing:
        item = CheckItem("moodle", False, f"{head}; the service lacks {len(missing)} function(s) bufsync needs: "
                                          f"{', '.join(missing)}")
    else:
        item = CheckItem("moodle", True,
                         f"{head}; the service has all {len(REQUIRED_FUNCTIONS)} functions bufsync needs")
    return [item] + ([profile] if profile else []) + _check_completion_report(loaded, mappings, present)


def _check_completion_report(loaded: LoadedSettings, mappings: MappingSet | None, present: set[str]) -> list[CheckItem]:
    """moodle.grades.completion: report — the service's functions, the report, and its dates readable."""
    from bufsync.adapters.moodle import completion
    grades = loaded.moodle.grades
    if grades.completion != "report" or grades.completion_report is None or mappings is None or not any(
            m.flow.remote.entity == "grade" for m in mappings.synced()):
        return []
    lacking = [name for name in completion.REPORT_FUNCTIONS if name not in present]
    if lacking:
        return [CheckItem("completion", False, f"{completion.REPORT_SETTING}: the service lacks {', '.join(lacking)}")]
    moodle = loaded.moodle
    assert moodle.url is not None and moodle.token is not None  # checked by the caller
    try:
        with MoodleClient.connect(moodle.url, moodle.token.get_secret_value(), timeout=moodle.timeout,
                                  verify=moodle.verify_tls, attempts=2) as client:
            return [CheckItem("completion", True, completion.probe_report(client, grades.completion_report))]
    except ConfigError as exc:
        return [CheckItem("completion", False, str(exc))]
    except (MoodleUnavailable, MoodleError) as exc:
        return [CheckItem("completion", None, f"completion report not checked: {exc}")]


@dataclass
class _NamedFields:
    """A table of (user, field name, value) rows attached to a user mapping `into: customfields`."""

    table: Any          # the attached table joined to the users table
    name: sa.Column
    value: sa.Column
    remote: sa.Column


def _profile_sources(mappings: MappingSet, metadata: sa.MetaData,
                     moodle: Any = None) -> tuple[dict[str, Any], list[_NamedFields]]:
    """Custom profile fields the mappings write, with queries for the Moodle ids of users that should hold a value.

    The fields are the `customfields.<name>` targets of user mappings and the names in the tables attached to
    them `into: customfields` (buf_user_fields); the users are rows with a value and a remote id. An entity that
    writes a profile field of its own (achievements: the list a setting names) says which, and for whom, through
    its adapter's `profile_fields(mapping, mappings, metadata, moodle settings)`.
    """
    direct: dict[str, Any] = {}
    named: list[_NamedFields] = []
    adapters = entity_adapters()
    for mapping in mappings.synced():
        sync, writeback = mapping.sync, mapping.table.writeback
        assert sync is not None  # synced() gives mappings with a sync section
        own = getattr(adapters.get(sync.target.entity or ""), "profile_fields", None)
        if sync.target.system == "moodle" and own is not None:
            for name, query in own(mapping, mappings, metadata, moodle).items():
                direct.setdefault(name, query.limit(PROFILE_SAMPLE))
        if sync.target.system != "moodle" or sync.target.entity != "user" or not writeback or not writeback.remote_id:
            continue
        users = metadata.tables[mapping.table.name]
        remote = users.c[writeback.remote_id]
        for target, spec in sync.fields.items():
            if target.startswith("customfields.") and spec.source is not None and spec.source in users.c:
                column = users.c[spec.source]
                direct.setdefault(target.split(".", 1)[1], sa.select(remote).where(
                    remote.is_not(None), column.is_not(None), column != "").limit(PROFILE_SAMPLE))
        for attached in mappings.attached_to(mapping.name):
            if attached.attach is not None and attached.attach.into == "customfields":
                extra = metadata.tables[attached.table.name]
                join = sa.and_(*(extra.c[here] == users.c[there] for here, there in attached.attach.join.items()))
                named.append(_NamedFields(extra.join(users, join), extra.c[attached.attach.name_column],
                                          extra.c[attached.attach.value_column], remote))
    return direct, named


def _check_profile_fields(loaded: LoadedSettings, mappings: MappingSet, client: MoodleClient) -> CheckItem | None:
    """Moodle drops values of custom profile fields it lacks without a word, and no Web Service lists its
    profile fields: read back users bufsync wrote a value to and see whether Moodle holds one."""
    from bufsync.schema import build_metadata
    direct, named = _profile_sources(mappings, build_metadata(mappings), loaded.moodle)
    if not direct and not named:
        return None
    wanted: dict[str, list[int]] = {}
    try:
        with connect_buffer(loaded) as engine, engine.connect() as conn:
            for name, query in direct.items():
                wanted[name] = [int(v) for v in conn.execute(query).scalars()]
            for source in named:
                names = conn.execute(sa.select(source.name).where(source.name.is_not(None)).distinct()
                                     .order_by(source.name).limit(PROFILE_NAMES_MAX)).scalars().all()
                for each in names:
                    wanted.setdefault(str(each), []).extend(int(v) for v in conn.execute(
                        sa.select(source.remote).select_from(source.table).where(
                            source.name == each, source.value.is_not(None), source.value != "",
                            source.remote.is_not(None)).limit(PROFILE_SAMPLE)).scalars())
    except (BufsyncError, sa.exc.SQLAlchemyError) as exc:
        return CheckItem("profile", None, f"custom profile fields not checked: the buffer could not be read ({exc})")
    ids = sorted({i for found in wanted.values() for i in found})
    held: dict[int, set[str]] = {}
    if ids:
        held = {int(u["id"]): {str(c.get("shortname")) for c in u.get("customfields") or ()}
                for u in client.get_users_by_field("id", ids)}
    present, missing, unknown = [], [], []
    for name, users in sorted(wanted.items()):
        if any(name in held.get(i, ()) for i in users):
            present.append(name)
        elif users:
            missing.append(f"{name} (none of {len(users)} linked users with a value holds one in Moodle)")
        else:
            unknown.append(name)
    parts = []
    if missing:
        parts.append(f"Moodle has no custom profile field {'; '.join(missing)}: Moodle drops values of fields it "
                     f"lacks without a word. Create them under {PROFILE_FIELDS_PAGE} (same short names), then "
                     "`bufsync run --full`; until then each such row says so in sync_error")
    if present:
        parts.append(f"Moodle holds values of {', '.join(present)}")
    if unknown:
        parts.append(f"not verifiable yet: {', '.join(unknown)} (no synced user has a value, and Moodle lists its "
                     "profile fields over no Web Service; a run reports each row whose value Moodle did not store)")
    return CheckItem("profile", False if missing else (True if not unknown else None), "; ".join(parts))


def _check_portals(loaded: LoadedSettings) -> list[CheckItem]:
    from bufsync.portals import portals
    items = []
    for name, portal in portals().items():
        ok, detail = portal.check(loaded)
        items.append(CheckItem(name, ok, detail))
    return items


def run_checks(loaded: LoadedSettings, mappings: MappingSet) -> list[CheckItem]:
    source = f"from {loaded.file}" if loaded.file else "no config file: defaults and BUFSYNC_* variables"
    items = [CheckItem("config", True, source),
             CheckItem("mappings", True, f"{len(mappings.mappings)} mappings from {loaded.mappings_dir}, "
                                         f"order: {', '.join(mappings.order)}")]
    buffer = _check_buffer(loaded, mappings)
    items += buffer
    items += _check_moodle(loaded, mappings, buffer_ok=all(item.ok for item in buffer))
    items += _check_portals(loaded)
    return items
