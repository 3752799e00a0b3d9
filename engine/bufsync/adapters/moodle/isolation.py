"""Batching within Moodle's limits and bisection of all-or-nothing calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from bufsync.adapters.moodle.errors import MoodleError
from bufsync.adapters.moodle.transport import CONTROL_FIELDS, encode

T = TypeVar("T")
R = TypeVar("R")


def field_budget(max_input_vars: int, margin: float = 0.05) -> int:
    """Form fields one call may carry: PHP keeps max_input_vars (+1), minus control fields and a margin."""
    return max(1, int(max_input_vars * (1 - margin)) - CONTROL_FIELDS)


def chunk_by_fields(items: Sequence[dict[str, Any]], list_name: str, budget: int,
                    max_items: int | None = None) -> Iterator[list[int]]:
    """Indexes of items per call so that no call exceeds the field budget."""
    batch: list[int] = []
    used = 0
    for index, item in enumerate(items):
        size = len(encode({list_name: [item]}))
        if batch and (used + size > budget or (max_items and len(batch) >= max_items)):
            yield batch
            batch, used = [], 0
        batch.append(index)
        used += size
    if batch:
        yield batch


def bisect(items: list[T], send: Callable[[list[T]], list[R]]) -> list[R | MoodleError]:
    """Send all; when an all-or-nothing call fails, split until each bad item fails alone.

    Calls grow with the number of bad items (about 2·k·log2(n/k)), not with the batch size.
    Access errors (bad token, function not allowed) concern every item: they propagate.
    """
    if not items:
        return []
    try:
        return list(send(items))
    except MoodleError as error:
        if error.is_access_error:
            raise
        if len(items) == 1:
            return [error]
        middle = len(items) // 2
        return bisect(items[:middle], send) + bisect(items[middle:], send)
