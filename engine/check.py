"""`bufsync check`: config, mappings and every connection, each with a verdict and a reason."""

from __future__ import annotations

from dataclasses import dataclass

from bufsync.adapters.moodle.client import REQUIRED_FUNCTIONS, MoodleClient
from bufsync.adapters.moodle.errors import MoodleError, MoodleUnavailable
from bufsync.config import LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import BufsyncError
from bufsync.mapping.loader import MappingSet
from bufsync.migrations import current_revisions, head_revisions, pending_changes


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


def _check_moodle(loaded: LoadedSettings) -> CheckItem:
    moodle = loaded.moodle
    if not moodle.url:
        return CheckItem("moodle", None, "not configured (BUFSYNC_MOODLE_URL)")
    if moodle.token is None:
        return CheckItem("moodle", False, "BUFSYNC_MOODLE_TOKEN is not set")
    try:
        with MoodleClient.connect(moodle.url, moodle.token.get_secret_value(), timeout=moodle.timeout,
                                  verify=moodle.verify_tls, attempts=2) as client:
            info = client.site_info()
            present = {f["name"] for f in info.get("functions", [])}
    except MoodleUnavailable as exc:
        return CheckItem("moodle", False, str(exc))
    except MoodleError as exc:
        return CheckItem("moodle", False, f"Moodle refused: {exc.message} ({exc.errorcode})")
    missing = [name for name in REQUIRED_FUNCTIONS if name not in present]
    head = f"{info.get('sitename')} — Moodle {info.get('release')} as {info.get('username')}"
    if missing:
        return CheckItem("moodle", False, f"{head}; the service lacks {len(missing)} function(s) bufsync needs: "
                                          f"{', '.join(missing)}")
    return CheckItem("moodle", True, f"{head}; the service has all {len(REQUIRED_FUNCTIONS)} functions bufsync needs")


def _check_scos(loaded: LoadedSettings) -> CheckItem:
    from bufsync.portals.runs import scos_client, scos_settings
    from bufsync.portals.scos.client import ScosRejected, ScosUnavailable
    if loaded.settings.scos.url is None:
        return CheckItem("scos", None, "not configured (BUFSYNC_SCOS_URL)")
    try:
        scos = scos_settings(loaded)
    except BufsyncError as exc:
        return CheckItem("scos", False, str(exc))
    client = scos_client(scos)
    try:
        client.check()
        client.find_course(scos.partner_id, "")  # refused unless the portal knows the partner id
    except ScosRejected as exc:
        return CheckItem("scos", False, f"the portal refused: {exc} (check scos.key and scos.partner_id)")
    except ScosUnavailable as exc:
        return CheckItem("scos", False, f"the portal is unavailable: {exc}")
    finally:
        client.close()
    return CheckItem("scos", True, f"{scos.url}: the key and partner {scos.partner_id} are accepted")


def run_checks(loaded: LoadedSettings, mappings: MappingSet) -> list[CheckItem]:
    source = f"from {loaded.file}" if loaded.file else "no config file: defaults and BUFSYNC_* variables"
    items = [CheckItem("config", True, source),
             CheckItem("mappings", True, f"{len(mappings.mappings)} mappings from {loaded.mappings_dir}, "
                                         f"order: {', '.join(mappings.order)}")]
    items += _check_buffer(loaded, mappings)
    items.append(_check_moodle(loaded))
    items.append(_check_scos(loaded))
    return items
