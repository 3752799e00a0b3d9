"""A remote system held in memory, for the core's fast tests and for trying a mapping without a server
(procrastinate's InMemoryConnector is the model): what a real adapter answers, without the network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Member, Outcome, Page, Scope
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import RemoteId


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

    def read(self, scope: Scope) -> Iterator[Page]:
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


@dataclass
class MemoryTarget:
    """An entity the buffer is synced to (an inbound mapping's TargetAdapter), held in `records`: id -> the
    record's fields plus `@active`. It keeps what it is sent as a remote would, refuses what `refuse` names
    (key -> its error text), and counts the calls it takes, so the core's plans, guards and write paths can
    be tested without a server. Grouped mappings (apply_groups) are not modelled."""

    mapping: Mapping
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)  # buffer key -> the remote's error for it
    calls: dict[str, int] = field(default_factory=dict)
    next_id: int = 1

    @property
    def key_field(self) -> str:
        """The remote field holding the mapping's (first) key column: what find() looks up by."""
        sync = self.mapping.flow
        return next(name for name, spec in sync.fields.items() if spec.source == sync.key[0])

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _fields(self, desired: Desired) -> dict[str, Any]:
        return {name: desired.value(name) for name in (*desired.payload, *desired.lookups)}

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        self._count("correlate")
        out: dict[str, list[Candidate]] = {}
        for desired in items:
            for index, rule in enumerate(rules):
                want = desired.correlation[index]
                found = [Candidate(remote_id, index, {r.remote: record.get(r.remote) for r in rules})
                         for remote_id, record in sorted(self.records.items())
                         if want not in (None, "") and record.get(rule.remote) == want]
                if found:
                    out[desired.key] = found
                    break
        return out

    def find(self, values: list[Any]) -> dict[Any, RemoteId]:
        self._count("find")
        field_name = self.key_field
        wanted = {str(v): v for v in values}
        return {wanted[str(record[field_name])]: remote_id for remote_id, record in self.records.items()
                if str(record.get(field_name)) in wanted}

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        return None  # nothing is known locally about this remote's rules: it refuses at write time

    def create(self, items: list[Desired]) -> list[Outcome]:
        self._count("create")
        out = []
        for desired in items:
            if desired.key in self.refuse:
                out.append(Outcome(False, error=self.refuse[desired.key], code="refused"))
                continue
            remote_id, self.next_id = self.next_id, self.next_id + 1
            self.records[remote_id] = self._fields(desired) | {"@active": desired.active}
            out.append(Outcome(True, remote_id))
        return out

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        self._count("update")
        out = []
        for desired, existing in items:
            record = self.records.get(int(existing.required_id))
            if desired.key in self.refuse or record is None:
                out.append(Outcome(False, error=self.refuse.get(desired.key, "запись удалена (notfound)"),
                                   code="refused" if record is not None else "notfound"))
                continue
            record.update(self._fields(desired) | {"@active": desired.active})
            out.append(Outcome(True, existing.remote_id))
        return out

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        self._count("suspend")
        for existing in items:
            if int(existing.required_id) in self.records:
                self.records[int(existing.required_id)]["@active"] = False
        return [Outcome(True, e.remote_id) for e in items]

    def delete(self, items: list[Existing]) -> list[Outcome]:
        self._count("delete")
        for existing in items:
            self.records.pop(int(existing.required_id), None)
        return [Outcome(True, e.remote_id) for e in items]

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        raise NotImplementedError("grouped mappings are not modelled by the in-memory target")

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        self._count("drifted")
        out = set()
        for desired, existing in items:
            record = self.records.get(int(existing.required_id))
            wanted = self._fields(desired) | {"@active": desired.active}
            if record is None or any(record.get(k) != v for k, v in wanted.items()):
                out.add(desired.key)
        return out
