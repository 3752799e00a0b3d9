"""Course custom fields (core_customfield, area core_course/course): definitions and values."""

from __future__ import annotations

from typing import Any

from bufsync.sandbox.moodle.site import Site, admin_action
from bufsync.sandbox.moodle.store import schema

schema("""
CREATE TABLE IF NOT EXISTS customfield_field (
    id INTEGER PRIMARY KEY, shortname TEXT NOT NULL UNIQUE, name TEXT NOT NULL, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customfield_data (
    fieldid INTEGER NOT NULL, instanceid INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (fieldid, instanceid));
""")


@admin_action("create_course_customfield")
def create_course_customfield(site: Site, shortname: str, name: str, type: str = "text") -> dict[str, Any]:
    """What the recorded site's PHP setup did: a course custom field (checkbox or text)."""
    if type not in ("checkbox", "text", "textarea", "select", "date"):
        raise ValueError(f"unsupported custom field type {type!r}")
    row_id = site.store.next_id("customfield_field")
    site.store.insert("customfield_field", {"id": row_id, "shortname": shortname, "name": name, "type": type})
    return {"id": row_id, "shortname": shortname, "type": type}


def fields(site: Site) -> list[Any]:
    return site.store.q("SELECT * FROM customfield_field ORDER BY id")
