"""Moodle course categories from departments (and programs): create, rename, move, adopt by idnumber."""

from __future__ import annotations

from typing import Any

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import changed, register, same_text
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Outcome
from bufsync.reconcile.records import Desired


@register("category")
class CategoryAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        assert mapping.sync is not None  # an entity adapter serves a synced mapping
        fields = mapping.sync.fields
        self.names = list(fields)
        self.updatable = [n for n, f in fields.items() if f.policy == "force"]
        self._index: dict[str, list[int]] | None = None
        self._remote: dict[int, dict[str, Any]] | None = None  # --full: every category, read once per run

    def _record(self, desired: Desired, names: list[str]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name in names:
            value = desired.value(name)
            if name == "parent":
                value = value or 0
            if value is not None:
                record[name] = value
        return record

    def _by_idnumber(self) -> dict[str, list[int]]:
        if self._index is None:
            self._index = {}
            for category in self.client.get_categories():
                if category.get("idnumber"):
                    self._index.setdefault(str(category["idnumber"]), []).append(int(category["id"]))
        return self._index

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        """The client's own checks on the record create() or update() would send, so a dry run rejects
        exactly what the real run does (a name too long, tags in it)."""
        if existing is None:
            record = self._record(desired, self.names)
        else:
            view = {n: desired.value(n) for n in self.updatable}
            record = self._record(desired, changed(view, existing.applied, self.updatable))
        refused = self.client.prevalidate_category(record)
        return None if refused is None else refused.error

    def create(self, items: list[Desired]) -> list[Outcome]:
        self._index = self._remote = None
        return self.client.create_categories([self._record(d, self.names) for d in items])

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        records = []
        for desired, existing in items:
            view = {n: desired.value(n) for n in self.updatable}
            record = self._record(desired, changed(view, existing.applied, self.updatable))
            record["id"] = existing.remote_id
            records.append(record)
        self._remote = None
        return self.client.update_categories(records)

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        # Moodle's web services cannot hide a category: a closed department stays as it is
        return [Outcome(True, e.remote_id) for e in items]

    def delete(self, items: list[Existing]) -> list[Outcome]:
        return self.suspend(items)

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        index = self._by_idnumber()
        found: dict[str, list[Candidate]] = {}
        for position, rule in enumerate(rules):
            if rule.remote != "idnumber":
                continue
            for desired in items:
                value = desired.correlation[position]
                if desired.key not in found and value and str(value) in index:
                    found[desired.key] = [Candidate(i, position, {"idnumber": str(value)}) for i in index[str(value)]]
        return found

    def find(self, values: list[Any]) -> dict[Any, int]:
        index = self._by_idnumber()
        return {v: index[str(v)][0] for v in values if len(index.get(str(v), [])) == 1}

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """One get_categories per run (not per chunk), read again only after this adapter wrote."""
        if self._remote is None:
            self._index = None
            self._remote = {int(c["id"]): c for c in self.client.get_categories()}
        remote = self._remote
        return {d.key for d, e in items
                if e.remote_id not in remote or not same_text(d.value("name"), remote[e.remote_id].get("name"))}
