"""One module per Moodle entity a mapping can target; the registry the engine looks them up in."""

from __future__ import annotations

import html
from typing import Any

from bufsync.adapters.moodle.client import ItemResult
from bufsync.reconcile.adapter import Outcome


def outcome(result: ItemResult) -> Outcome:
    return Outcome(result.ok, result.remote_id, result.error, result.code, result.warning)


def changed(payload: dict[str, Any], applied: dict[str, Any] | None, fields: list[str]) -> list[str]:
    """Fields whose wanted value differs from what was applied (all of them when nothing was)."""
    if applied is None:
        return list(fields)
    return [name for name in fields if payload.get(name) != applied.get(name)]


def same_text(want: Any, have: Any) -> bool:
    """Whether a name read back through Web Services is the one sent: Moodle returns names through
    format_string(), which escapes `&` (to `&amp;`) and `<`, `>`; a name with them is not drift."""
    want = "" if want is None else str(want)
    have = "" if have is None else str(have)
    return want == have or html.unescape(have) == html.unescape(want)


def entity_adapters() -> dict[str, type]:
    from bufsync.adapters.moodle.entities.categories import CategoryAdapter
    from bufsync.adapters.moodle.entities.courses import CourseAdapter
    from bufsync.adapters.moodle.entities.enrolments import EnrolmentAdapter
    from bufsync.adapters.moodle.entities.users import UserAdapter
    return {"user": UserAdapter, "course": CourseAdapter, "category": CategoryAdapter, "enrolment": EnrolmentAdapter}
