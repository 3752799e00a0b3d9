"""A remote system held in memory, for the core's fast tests and for trying a mapping without a server
(procrastinate's InMemoryConnector is the model): what a real adapter answers, without the network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bufsync.mapping.model import Mapping
from bufsync.reconcile.adapter import Page


@dataclass
class MemorySource:
    """An entity read back into the buffer (an outbound mapping's SourceAdapter).

    `records` are what the remote holds, by remote field name. With `cover_by` (a key column and the remote
    field that holds it) the read goes one group at a time, each page covering its group, as a per-course
    read does; `groups_per_read` cuts the read short (a time budget): the groups not read are not covered,
    nor is the whole. `reads` counts the reads, `pages_read` the pages handed out.
    """

    mapping: Mapping
    records: list[dict[str, Any]] = field(default_factory=list)
    cover_by: tuple[str, str] | None = None   # (key column, remote field)
    page_size: int = 100
    groups_per_read: int | None = None
    reads: int = 0
    pages_read: int = 0

    def read(self) -> Iterator[Page]:
        self.reads += 1
        if self.cover_by is None:
            for start in range(0, len(self.records), self.page_size):
                self.pages_read += 1
                yield Page(list(self.records[start:start + self.page_size]))
            self.pages_read += 1
            yield Page([], covers={})  # every record was handed out: the whole entity is covered
            return
        column, remote_field = self.cover_by
        groups: dict[Any, list[dict[str, Any]]] = {}
        for record in self.records:
            groups.setdefault(record.get(remote_field), []).append(record)
        names = sorted(groups, key=str)
        cut = self.groups_per_read is not None and self.groups_per_read < len(names)
        for name in names[:self.groups_per_read] if cut else names:
            self.pages_read += 1
            yield Page(list(groups[name]), covers={column: name})
        if not cut:
            self.pages_read += 1
            yield Page([], covers={})
