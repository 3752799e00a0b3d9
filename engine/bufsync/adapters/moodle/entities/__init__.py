"""One module per Moodle entity a mapping can target; each registers its adapter here (`@register("user")`)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from bufsync.registry import Registry


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


_registry: Registry[type] = Registry(__name__)


def register(entity: str) -> Callable[[type], type]:
    """Class decorator of an entity's adapter: `@register("user")`; a mapping's `target.entity` finds it."""
    def add(cls: type) -> type:
        return _registry.add(entity, cls)
    return add


def entity_adapters() -> dict[str, type]:
    """entity -> adapter class, from every module of this folder (each registers its own; none is listed here)."""
    return _registry.all()
