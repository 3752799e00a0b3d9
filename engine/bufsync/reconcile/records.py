"""From a buffer row to the record the target should hold: transforms, defaults, hash."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bufsync.mapping.model import FieldMap, Mapping
from bufsync.state.ledger import RemoteId, record_key


@dataclass
class Desired:
    """What one key of the source says the target must hold."""

    key: str
    key_values: tuple[Any, ...]
    payload: dict[str, Any]                 # target field -> value (transforms applied)
    lookups: dict[str, tuple[str, Any]]     # target field -> (mapping, that mapping's key value)
    active: bool = True
    resolved: dict[str, RemoteId | None] = field(default_factory=dict)
    writeback: tuple[Any, Any, Any] = (None, None, None)  # current sync_status, sync_error, remote id
    content_hash: str = ""
    correlation: list[Any] = field(default_factory=list)  # the value each correlation rule looks for
    invalid: str | None = None  # why the row cannot be applied as written (a value outside its closed set)

    def value(self, name: str) -> Any:
        if name in self.lookups:
            return self.resolved.get(name)
        return self.payload.get(name)


_TRUE = (True, 1, "1", "true", "t", "yes")
_FALSE = (False, 0, "0", "false", "f", "no")


def _is_bool(value: Any) -> bool:
    return value in _TRUE or value in _FALSE or (isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE)


def bad_value(column: str, value: Any, allowed: list[str]) -> str:
    """A value outside a column's closed set: never taken for a default."""
    found = "пустое значение" if value in (None, "") else f"значение «{value}»"
    return (f"Недопустимое {found} в колонке {column}; допустимо: {', '.join(allowed)} "
            "(регистр букв важен) (badvalue)")


class RecordBuilder:
    def __init__(self, mapping: Mapping, timezone: str) -> None:
        self.mapping = mapping
        self.sync = mapping.flow
        self.zone = ZoneInfo(timezone)
        # The fingerprint (computed by the database, reconcile/fingerprint.py) covers the source values of
        # every field written on update, the status column, resolved lookups and the attached rows.
        columns = [spec.source for spec in self.sync.fields.values()
                   if spec.policy != "initial" and spec.source is not None and spec.lookup is None]
        if self.sync.status is not None:
            columns.append(self.sync.status.column)
        self.hash_columns = list(dict.fromkeys(columns))

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
            elif step == "end_of_day":  # a last day included: a date ends at the next midnight
                value = self._timestamp(value + timedelta(days=1) if type(value) is date else value)
            elif step == "bool":
                value = 1 if value in _TRUE or (isinstance(value, str) and value.strip().lower() in _TRUE) else 0
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

    def build(self, row: sa.Row[Any], attached: dict[str, dict[tuple[Any, ...], list[tuple[str, Any]]]]) -> Desired:
        data = row._mapping
        key_values = tuple(data[name] for name in self.sync.key)
        payload: dict[str, Any] = {}
        lookups: dict[str, tuple[str, Any]] = {}
        for target, spec in self.sync.fields.items():
            raw = data[spec.source] if spec.source is not None else spec.value  # exactly one of them is set
            value = self.transform(raw, spec)
            if spec.lookup:
                lookups[target] = (spec.lookup, value)
            else:
                payload[target] = value
        for into, groups in attached.items():
            for name, value in groups.get(key_values, []):
                payload[f"{into}.{name}"] = value
        active = True
        invalid = None
        if self.sync.status is not None:
            status = self.sync.status
            value = data[status.column]
            active = value not in status.suspended
            if value not in status.active and value not in status.suspended:
                invalid = bad_value(status.column, value, status.active + status.suspended)
        for spec in self.sync.fields.values():
            if invalid is None and "bool" in spec.transform and spec.source is not None:
                raw = data[spec.source]
                if raw is not None and raw != "" and not _is_bool(raw):
                    invalid = bad_value(spec.source, raw, ["1", "0", "true", "false"])
        correlation = [self.transform(data[rule.source], FieldMap(source=rule.source, transform=rule.transform))
                       for rule in self.sync.correlation]
        return Desired(record_key(key_values), key_values, payload, lookups, active, correlation=correlation,
                       invalid=invalid)

    def applied_view(self, desired: Desired) -> dict[str, Any]:
        """What the ledger keeps of an applied record: no create-only fields (passwords never)."""
        view = {k: v for k, v in desired.payload.items()
                if k not in self.sync.fields or self.sync.fields[k].policy != "initial"}
        view.update({name: desired.resolved.get(name) for name in desired.lookups})
        view["@active"] = desired.active
        return view
