"""Portable column types of the buffer contract and their SQLAlchemy form per dialect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

_TYPE = re.compile(
    r"^(?P<name>string|text|integer|bigint|decimal|boolean|date|datetime)"
    r"(?:\((?P<a>\d+)(?:,\s*(?P<b>\d+))?\))?$"
)
ACCEPTED = "string(n), text, integer, bigint, decimal(p,s), boolean, date, datetime"


@dataclass(frozen=True)
class PortableType:
    name: str
    length: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.name == "string":
            return f"string({self.length})"
        if self.name == "decimal":
            return f"decimal({self.length},{self.scale})"
        return self.name

    def sqlalchemy(self) -> sa.types.TypeEngine[Any]:
        """Strings are nvarchar and datetimes datetime2 on MS SQL (Cyrillic, precision)."""
        if self.name == "string":
            return sa.String(self.length).with_variant(mssql.NVARCHAR(self.length), "mssql")
        if self.name == "text":
            return sa.Text().with_variant(mssql.NVARCHAR(None), "mssql")
        if self.name == "integer":
            return sa.Integer()
        if self.name == "bigint":
            return sa.BigInteger()
        if self.name == "decimal":
            return sa.Numeric(self.length, self.scale)
        if self.name == "boolean":
            return sa.Boolean()
        if self.name == "date":
            return sa.Date().with_variant(mssql.DATE(), "mssql")
        return sa.DateTime().with_variant(mssql.DATETIME2(), "mssql")


def parse_type(text: str) -> PortableType:
    match = _TYPE.match(text.strip().lower()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"unknown column type; expected one of {ACCEPTED}")
    name, a, b = match["name"], match["a"], match["b"]
    if name == "string":
        if a is None or b is not None:
            raise ValueError("string needs a length, e.g. string(100)")
        length = int(a)
        if not 1 <= length <= 4000:
            raise ValueError("string length must be 1..4000 (nvarchar limit on MS SQL); use text beyond")
        return PortableType(name, length)
    if name == "decimal":
        if a is None or b is None:
            raise ValueError("decimal needs precision and scale, e.g. decimal(10,5)")
        precision, scale = int(a), int(b)
        if not (1 <= precision <= 38 and 0 <= scale <= precision):
            raise ValueError("decimal(p,s) needs 1 <= p <= 38 and 0 <= s <= p")
        return PortableType(name, precision, scale)
    if a is not None:
        raise ValueError(f"{name} takes no length")
    return PortableType(name)
