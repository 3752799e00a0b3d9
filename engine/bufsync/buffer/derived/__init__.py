"""Tables bufsync fills itself from other buffer tables before a run (`table.derived` in a mapping), so that
what 1C says once (an academic group studies a discipline) becomes the rows the core reconciles one by one
(each student's enrolment), with a status of their own a DBA can read.

Each derivation is a module of this folder that registers itself (`@register("name")`) with a pydantic model
of its options and a function giving the SELECT of the table's rows. The refresh is set-based and idempotent:
rows gone or changed are deleted, rows new or changed inserted, in one transaction; unchanged rows keep their
write-back (sync_status and the rest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from bufsync.dialects import dialect_named
from bufsync.registry import Registry

if TYPE_CHECKING:  # the mapping loader checks derived tables with this module: no import back at run time
    from bufsync.mapping.loader import MappingSet
    from bufsync.mapping.model import Mapping

Select = Callable[["Mapping", "MappingSet", dict[str, sa.Table], Any], sa.Select[Any] | sa.CompoundSelect]


@dataclass(frozen=True)
class Derivation:
    options: type[BaseModel]
    select: Select          # (the derived table's mapping, every mapping, the tables, its options) -> rows
    sources: Callable[[Any], dict[str, str]]  # option name -> the mapping whose table it reads, given its options


_registry: Registry[Derivation] = Registry(__name__)


def register(name: str, options: type[BaseModel],
             sources: Callable[[Any], dict[str, str]]) -> Callable[[Select], Select]:
    def add(select: Select) -> Select:
        _registry.add(name, Derivation(options, select, sources))
        return select
    return add


def derivations() -> dict[str, Derivation]:
    """name -> derivation, from every module of this folder (each registers its own)."""
    return _registry.all()


def derivation_problems(mapping: Mapping, mappings: MappingSet) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a mapping's `table.derived` (path under it, message), for the loader's report: an
    unknown derivation, options it refuses, or a source mapping the site does not have."""
    derived = mapping.table.derived
    assert derived is not None
    known = derivations()
    if derived.name not in known:
        return [(("name",), f"unknown derivation '{derived.name}'; known: {', '.join(sorted(known))}")]
    derivation = known[derived.name]
    try:
        options = derivation.options.model_validate(derived.options)
    except ValidationError as exc:
        return [(("options", *map(str, e["loc"])), e["msg"]) for e in exc.errors()]
    known_mappings = ", ".join(sorted(mappings.mappings))
    missing: list[tuple[tuple[str | int, ...], str]] = []
    for option, name in derivation.sources(options).items():
        if name not in mappings or mappings[name].sync is None:
            missing.append((("options", option), f"no synced mapping '{name}' to read; known: {known_mappings}"))
    if missing:
        return missing
    if not (mapping.sync and mapping.sync.inbound):
        return [((), "a derived table is read by an inbound sync; this mapping has none")]
    return []


def statements(mappings: MappingSet, tables: dict[str, sa.Table], mapping: Mapping) -> tuple[sa.Delete, sa.Insert]:
    """The refresh of a derived table: delete the rows gone or changed, then insert the rows new or changed
    (NOT EXISTS both ways, a null-safe comparison of every column: portable to every supported dialect)."""
    derived = mapping.table.derived
    assert derived is not None
    derivation = derivations()[derived.name]
    options = derivation.options.model_validate(derived.options)
    table = tables[mapping.table.name]
    names = [c.name for c in mapping.table.columns]
    wanted = derivation.select(mapping, mappings, tables, options).subquery("wanted")

    def same(a: sa.ColumnElement[Any], b: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.or_(a == b, sa.and_(a.is_(None), b.is_(None)))

    keys = mapping.table.key
    # columns that cannot be null compared plainly, so the database can hash-join on all of them (an OR of a
    # null-safe comparison leaves it sorting both sides by every key in the site's collation); the rest null-safe
    plain = {c.name for c in mapping.table.columns if not c.is_nullable}
    row_is_wanted = sa.exists().where(*(wanted.c[n] == table.c[n] for n in names if n in plain),
                                      *(same(wanted.c[n], table.c[n]) for n in names if n not in plain))
    row_is_held = sa.exists().where(*(table.c[n] == wanted.c[n] for n in keys))
    return (sa.delete(table).where(~row_is_wanted),
            sa.insert(table).from_select(names, sa.select(*(wanted.c[n] for n in names)).where(~row_is_held)))


def refresh(engine: sa.Engine, mappings: MappingSet, tables: dict[str, sa.Table], mapping: Mapping) -> None:
    """Bring a derived table to what its derivation selects now, in one transaction."""
    delete, insert = statements(mappings, tables, mapping)
    with engine.begin() as conn:
        dialect_named(engine.dialect.name).prepare_bulk(conn)
        conn.execute(delete)
        conn.execute(insert)
