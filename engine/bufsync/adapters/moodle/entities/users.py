"""Moodle users: create (password only then), update changed fields, suspend, adopt by idnumber/username."""

from __future__ import annotations

from typing import Any

from bufsync.adapters.moodle.client import MoodleClient
from bufsync.adapters.moodle.entities import changed, register
from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.adapter import Candidate, Existing, Outcome
from bufsync.reconcile.records import Desired

_NOT_RETURNED = {"middlename", "password"}  # get_users_by_field never returns these: no drift check


@register("user")
class UserAdapter:
    def __init__(self, client: MoodleClient, mapping: Mapping, settings: Any = None) -> None:
        self.client = client
        self.mapping = mapping
        assert mapping.sync is not None  # an entity adapter serves a synced mapping
        fields = mapping.sync.fields
        self.updatable = [n for n, f in fields.items() if f.policy == "force"]
        self.initial = [n for n, f in fields.items() if f.policy != "force"]

    def _record(self, desired: Desired, names: list[str], creating: bool) -> dict[str, Any]:
        user: dict[str, Any] = {}
        custom: list[dict[str, Any]] = []
        for name in names:
            value = desired.payload.get(name)
            if name.startswith("customfields."):
                if value is not None or not creating:
                    custom.append({"type": name.split(".", 1)[1], "value": "" if value is None else str(value)})
            elif name == "password":
                if creating:
                    if value:
                        user["password"] = value
                    else:
                        user["createpassword"] = True
            elif value is None:
                if not creating:
                    user[name] = ""
            else:
                user[name] = value
        if custom:
            user["customfields"] = custom
        return user

    def _all_names(self, desired: Desired) -> list[str]:
        assert self.mapping.sync is not None
        fields = self.mapping.sync.fields
        extra = [k for k in desired.payload if k.startswith("customfields.") and k not in fields]
        return list(fields) + extra

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        if existing is None:
            record = self._record(desired, self._all_names(desired), creating=True)
        else:
            names = [n for n in self._all_names(desired) if n not in self.initial]
            record = self._record(desired, changed(desired.payload, existing.applied, names), creating=False)
        refused = self.client.prevalidate_user(record, existing is None)
        return None if refused is None else refused.error

    def create(self, items: list[Desired]) -> list[Outcome]:
        records = [self._record(d, self._all_names(d), creating=True) for d in items]
        results = self.client.create_users(records)
        suspend = [{"id": r.remote_id, "suspended": True}
                   for d, r in zip(items, results, strict=False) if r.ok and not d.active]
        if suspend:
            self.client.update_users(suspend)
        return results

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]:
        records = []
        for desired, existing in items:
            names = [n for n in self._all_names(desired) if n not in self.initial]
            diff = changed(desired.payload, existing.applied, names)
            record = self._record(desired, diff, creating=False)
            record["id"] = existing.remote_id
            was_active = None if existing.applied is None else existing.applied.get("@active")
            if was_active is None or was_active != desired.active:
                record["suspended"] = not desired.active
            records.append(record)
        return self.client.update_users(records)

    def suspend(self, items: list[Existing]) -> list[Outcome]:
        return self.client.update_users([{"id": e.remote_id, "suspended": True} for e in items])

    def delete(self, items: list[Existing]) -> list[Outcome]:
        return self.client.delete_users([int(e.required_id) for e in items])

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        found: dict[str, list[Candidate]] = {}
        remotes = [rule.remote for rule in rules]
        for index, rule in enumerate(rules):
            todo = [d for d in items if d.key not in found and d.correlation[index] not in (None, "")]
            if not todo:
                continue
            values = [str(d.correlation[index]) for d in todo]
            if rule.remote == "username":
                from bufsync.adapters.moodle.rules import clean_username
                values = [v for v in values if clean_username(v) == v]  # Moodle rejects the whole call otherwise
            by_value: dict[str, list[Candidate]] = {}
            for user in self.client.get_users_by_field(rule.remote, values) if values else []:
                by_value.setdefault(str(user.get(rule.remote, "")), []).append(
                    Candidate(int(user["id"]), index, {name: user.get(name) for name in remotes}))
            for desired in todo:
                candidates = by_value.get(str(desired.correlation[index]))
                if candidates:
                    found[desired.key] = candidates
        return found

    def find(self, values: list[Any]) -> dict[Any, int]:
        out: dict[Any, int] = {}
        by_value: dict[str, list[int]] = {}
        for user in self.client.get_users_by_field("idnumber", [str(v) for v in values]):
            by_value.setdefault(str(user.get("idnumber")), []).append(int(user["id"]))
        for value in values:
            ids = by_value.get(str(value), [])
            if len(ids) == 1:
                out[value] = ids[0]
        return out

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        remote = {int(u["id"]): u for u in self.client.get_users_by_field("id", [e.required_id for _, e in items])}
        out = set()
        for desired, existing in items:
            user = remote.get(int(existing.required_id))
            if user is None or user.get("suspended") != (not desired.active):
                out.add(desired.key)
                continue
            custom = {c["shortname"]: c.get("value") for c in user.get("customfields", [])}
            for name in self.updatable:
                if name in _NOT_RETURNED:
                    continue
                want = desired.payload.get(name)
                if name.startswith("customfields."):
                    have = custom.get(name.split(".", 1)[1])
                else:
                    have = user.get(name)
                if (want or None) != (have or None) and str(want or "") != str(have or ""):
                    out.add(desired.key)
                    break
        return out
