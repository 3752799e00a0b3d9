"""From a buffer row to the record the target should hold: transforms, defaults, hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.mapping.model import FieldMap, Mapping
from bufsync.state.ledger import record_key


@dataclass
class Desired:
    """What one key of the source says the target must hold."""

    key: str
    key_values: tuple[Any, ...]
    payload: dict[str, Any]                 # target field -> value (transforms applied)
    lookups: dict[str, tuple[str, Any]]     # target field -> (mapping, that mapping's key value)
    active: bool = True
    resolved: dict[str, int | None] = field(default_factory=dict)
    writeback: tuple[Any, Any, Any] = (None, None, None)  # current sync_status, sync_error, remote id
    content_hash: str = ""
    correlation: list[Any] = field(default_factory=list)  # the value each correlation rule looks for
    raw: tuple[Any, ...] = ()  # the source values the hash covers

    def value(self, name: str) -> Any:
        if name in self.lookups:
            return self.resolved.get(name)
        return self.payload.get(name)


class RecordBuilder:
    def __init__(self, mapping: Mapping, timezone: str) -> None:
        self.mapping = mapping
        self.sync = mapping.sync
        self.zone = ZoneInfo(timezone)
        # The hash covers the source values of every field written on update, the status column and
        # the attached rows: a row whose values did not change is recognised without building anything.
        columns = [spec.source for spec in self.sync.fields.values()
                   if spec.policy != "initial" and spec.source is not None and spec.lookup is None]
        if self.sync.status is not None:
            columns.append(self.sync.status.column)
        self.hash_columns = list(dict.fromkeys(columns))
        self.lookup_specs = [(target, spec) for target, spec in self.sync.fields.items() if spec.lookup]
        self._positions: tuple[list[int], list[int], list[int]] | None = None
        self.fingerprint_salt = repr(sorted((k, v.model_dump_json()) for k, v in self.sync.fields.items())).encode()

    def transform(self, value: Any, spec: FieldMap) -> Any:
        for step in spec.transform:
            if value is None:
                break
            if step == "trim" and isinstance(value, str):
                value = value.strip()
            elif step == "lower" and isinstance(value, str):
                value = value.lower()
            elif step == "upper" and isinstance(value, str):
                value = value.upper()
            elif step == "null_if_empty" and value == "":
                value = None
            elif step == "timestamp":
                value = self._timestamp(value)
            elif step == "bool":
                value = 1 if value in (True, 1, "1", "true", "t", "yes") else 0
        if (value is None or value == "") and spec.default is not None:
            value = spec.default
            if "bool" in spec.transform:
                value = 1 if value in (True, 1, "1", "true") else 0
        return value

    def _timestamp(self, value: Any) -> int | None:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=self.zone)
            return int(moment.timestamp())
        if isinstance(value, date):
            return int(datetime(value.year, value.month, value.day, tzinfo=self.zone).timestamp())
        if isinstance(value, str) and value:
            return self._timestamp(datetime.fromisoformat(value))
        return None

    def fingerprint(self, raw: tuple[Any, ...], extra: tuple[Any, ...], resolved: tuple[Any, ...]) -> str:
        blob = repr((raw, extra, resolved)).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(blob, digest_size=16, key=self.fingerprint_salt[:64]).hexdigest()

    def key_of(self, row: sa.Row) -> str:
        if self._positions is None:
            self._locate(row)
        return record_key(tuple(row[i] for i in self._positions[0]))

    def _locate(self, row: sa.Row) -> None:
        names = list(row._fields)
        self._positions = ([names.index(n) for n in self.sync.key], [names.index(c) for c in self.hash_columns],
                           [names.index(spec.source) for _, spec in self.lookup_specs])

    def quick(self, row: sa.Row, attached: dict[str, dict[tuple[Any, ...], list[tuple[str, Any]]]],
              remote_ids: dict[str, dict[str, int]]) -> tuple[str, tuple[Any, ...], str]:
        """(key, key values, hash) straight from the row: the no-change path builds nothing else."""
        if self._positions is None:
            self._locate(row)
        key_pos, hash_pos, lookup_pos = self._positions
        key_values = tuple(row[i] for i in key_pos)
        raw = tuple(row[i] for i in hash_pos)
        extra = tuple(tuple(groups.get(key_values, ())) for groups in attached.values()) if attached else ()
        resolved = []
        for (_, spec), position in zip(self.lookup_specs, lookup_pos):
            value = row[position]
            if spec.transform:
                value = self.transform(value, spec)
            resolved.append(None if value is None else remote_ids.get(spec.lookup, {}).get(str(value)))
        return record_key(key_values), key_values, self.fingerprint(raw, extra, tuple(resolved))

    def build(self, row: sa.Row, attached: dict[str, dict[tuple[Any, ...], list[tuple[str, Any]]]]) -> Desired:
        data = row._mapping
        key_values = tuple(data[name] for name in self.sync.key)
        payload: dict[str, Any] = {}
        lookups: dict[str, tuple[str, Any]] = {}
        for target, spec in self.sync.fields.items():
            raw = spec.value if spec.value is not None else data[spec.source]
            value = self.transform(raw, spec)
            if spec.lookup:
                lookups[target] = (spec.lookup, value)
            else:
                payload[target] = value
        for into, groups in attached.items():
            for name, value in groups.get(key_values, []):
                payload[f"{into}.{name}"] = value
        active = True
        if self.sync.status is not None:
            active = data[self.sync.status.column] not in self.sync.status.suspended
        correlation = [self.transform(data[rule.source], FieldMap(source=rule.source, transform=rule.transform))
                       for rule in self.sync.correlation]
        raw = (tuple(data[c] for c in self.hash_columns),
               tuple(tuple(groups.get(key_values, ())) for groups in attached.values()) if attached else ())
        return Desired(record_key(key_values), key_values, payload, lookups, active, correlation=correlation, raw=raw)

    def finish(self, desired: Desired) -> Desired:
        """The same hash as quick(), now that lookups are resolved."""
        resolved = tuple(desired.resolved.get(target) for target, _ in self.lookup_specs)
        desired.content_hash = self.fingerprint(desired.raw[0], desired.raw[1], resolved)
        return desired

    def applied_view(self, desired: Desired) -> dict[str, Any]:
        """What the ledger keeps of an applied record: no create-only fields (passwords never)."""
        view = {k: v for k, v in desired.payload.items()
                if k not in self.sync.fields or self.sync.fields[k].policy != "initial"}
        view.update({name: desired.resolved.get(name) for name in desired.lookups})
        view["@active"] = desired.active
        return view
