"""The mapping file format (one YAML file per flow), as pydantic models.

`docs/mappings.md` documents every key; the model is the executable form of that page.
Checks that need the whole file (a column a key refers to) live in `loader.py`, where
they can name the exact key and line.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from bufsync.mapping.types import PortableType, parse_type
from bufsync.validation import IDENTIFIER, StrictModel

FORMAT_VERSION = 1
_REMOTE_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,62}(\.[a-z0-9_]{1,100})?$")


@cache
def reserved_words() -> dict[str, list[str]]:
    """Reserved words of every supported dialect: a name must be usable unquoted in all."""
    from sqlalchemy.dialects.mssql.base import RESERVED_WORDS as MSSQL
    from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL
    from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

    words: dict[str, list[str]] = {}
    for dialect, names in (("PostgreSQL", POSTGRESQL), ("MS SQL", MSSQL),
                           ("SQLite", SQLiteIdentifierPreparer.reserved_words)):
        for word in names:
            words.setdefault(word.lower(), []).append(dialect)
    return words


def check_identifier(value: str) -> str:
    """The strict pattern; reserved words pass because SQLAlchemy quotes them (see reserved_in)."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ValueError("expected an identifier: lower-case latin letter first, then a-z, 0-9 "
                         "or _, at most 63 characters")
    return value


def reserved_in(name: str) -> list[str]:
    """Dialects where hand-written SQL must quote this name (e.g. percent on MS SQL)."""
    return reserved_words().get(name, [])


def check_remote_field(value: str) -> str:
    if not isinstance(value, str) or not _REMOTE_FIELD.match(value):
        raise ValueError("expected a remote field name: lower-case latin, digits and _, "
                         "optionally one dotted part (customfields.snils)")
    return value


Identifier = Annotated[str, AfterValidator(check_identifier)]
RemoteField = Annotated[str, AfterValidator(check_remote_field)]
Description = Annotated[str, Field(min_length=1, max_length=1000)]
Transform = Literal["trim", "lower", "upper", "null_if_empty", "timestamp", "end_of_day", "bool"]
Policy = Literal["force", "initial", "keep"]
# suspend: inbound only (the remote record is suspended); mark: outbound only (the buffer row stays, its
# values cleared and stamps.removed_at set, so 1C sees the removal by its change time)
OnMissing = Literal["keep", "suspend", "delete", "mark"]


def _check_type(value: str) -> str:
    parse_type(value)
    return value


def heading_key(text: str) -> str:
    """A file heading as compared with column names and titles: case, ё/е, spaces and underscores ignored."""
    return "".join(text.casefold().replace("ё", "е").replace("_", " ").split())


class Column(StrictModel):
    name: Identifier
    type: Annotated[str, AfterValidator(_check_type)]
    description: Description
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)] | None = Field(
        None, description="a short heading for files (Фамилия): a CSV or sheet headed so loads into this column, and "
                          "an export may be headed so")
    key: bool = False
    nullable: bool | None = Field(None, description="default: false for key columns, true otherwise")
    default: str | bool | int | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Column:
        portable = parse_type(self.type)
        if self.key and self.nullable:
            raise ValueError("a key column cannot be nullable")
        if self.default is not None:
            expected = {"boolean": bool, "integer": int, "bigint": int}.get(portable.name, str)
            if isinstance(self.default, bool) and expected is not bool or not isinstance(self.default, expected):
                raise ValueError(f"default of a {portable} column must be a {expected.__name__}")
            if portable.name in ("date", "datetime") and self.default != "now":
                raise ValueError("the only default of a date/datetime column is 'now'")
            if portable.name == "string" and len(str(self.default)) > (portable.length or 0):
                raise ValueError("default is longer than the column")
        return self

    @property
    def portable(self) -> PortableType:
        return parse_type(self.type)

    @property
    def is_nullable(self) -> bool:
        return (not self.key) if self.nullable is None else self.nullable


class Writeback(StrictModel):
    """Columns the engine owns in an inbound table; 1C never writes them."""

    status: Identifier | None = None
    error: Identifier | None = None
    synced_at: Identifier | None = None
    remote_id: Identifier | None = None

    def columns(self) -> dict[str, str]:
        """role -> column name, for the roles in use."""
        return {role: name for role, name in self.model_dump().items() if name}


class Stamps(StrictModel):
    """Columns the engine sets in a table it writes (an outbound sync): when it last changed a row, and when
    the remote record behind a row went away. Declared among the columns, as datetime."""

    changed_at: Identifier | None = None
    removed_at: Identifier | None = None

    def columns(self) -> dict[str, str]:
        return {role: name for role, name in self.model_dump().items() if name}


class Index(StrictModel):
    name: Identifier
    columns: list[Identifier] = Field(min_length=1)
    unique: bool = False


class Derived(StrictModel):
    """A table bufsync fills itself from other buffer tables before each run (1C never writes it), by a
    derivation it ships (bufsync/buffer/derived): learning processes x their academic groups' students."""

    name: Identifier = Field(description="the derivation: one of bufsync/buffer/derived's modules")
    options: dict[str, Any] = Field(default_factory=dict, description="the derivation's own settings")


class Table(StrictModel):
    name: Identifier
    description: Description
    columns: list[Column] = Field(min_length=1)
    writeback: Writeback | None = None
    stamps: Stamps | None = None
    indexes: list[Index] = []
    derived: Derived | None = None

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @model_validator(mode="after")
    def _titles_unique(self) -> Table:
        """A file's heading names one column: titles differ from each other and from other columns' names."""
        seen: dict[str, str] = {heading_key(c.name): c.name for c in self.columns}
        for column in self.columns:
            if column.title is None:
                continue
            other = seen.get(heading_key(column.title))
            if other is not None and other != column.name:
                raise ValueError(f"column {column.name}: title {column.title!r} is also the heading of {other}")
            seen[heading_key(column.title)] = column.name
        return self

    @property
    def key(self) -> list[str]:
        return [c.name for c in self.columns if c.key]

    @property
    def all_column_names(self) -> list[str]:
        names = [c.name for c in self.columns]
        if self.writeback:
            names += list(self.writeback.columns().values())
        return names


def _shorthand_field(value: Any) -> Any:
    """`firstname: first_name` is short for `firstname: {source: first_name}`."""
    return {"source": value} if isinstance(value, str) else value


class FieldMap(StrictModel):
    source: str | None = Field(None, description="column (inbound) or remote field (outbound)")
    value: str | int | bool | None = Field(None, description="a constant instead of a source")
    default: str | int | bool | None = Field(None, description="used when the source is empty")
    transform: list[Transform] = []
    policy: Policy = "force"
    lookup: str | None = Field(None, description="mapping whose ledger turns this key into a remote id")

    @model_validator(mode="after")
    def _one_source(self) -> FieldMap:
        if (self.source is None) == (self.value is None):
            raise ValueError("give exactly one of 'source' or 'value'")
        if self.default is not None and self.source is None:
            raise ValueError("'default' applies to a 'source'; a 'value' is already constant")
        if self.lookup is not None and self.source is None:
            raise ValueError("'lookup' needs a 'source' column holding the other mapping's key")
        return self


class Endpoint(StrictModel):
    # a portal is fed by its own scenarios (bufsync/portals/<name>), not by a mapping endpoint
    system: Literal["buffer", "moodle"]
    entity: Identifier | None = Field(None, description="moodle: user, course, category, enrolment, ...")

    @model_validator(mode="after")
    def _needs(self) -> Endpoint:
        if self.system == "moodle" and not self.entity:
            raise ValueError("a moodle endpoint needs 'entity'")
        return self


class Correlation(StrictModel):
    """Find an existing remote record for an unlinked key: adopt it instead of duplicating."""

    remote: RemoteField
    source: Identifier
    transform: list[Transform] = []


class Status(StrictModel):
    column: Identifier
    active: list[str] = Field(min_length=1)
    suspended: list[str] = []


class Guards(StrictModel):
    refuse_empty: bool = True
    max_remove_ratio: float = Field(0.1, ge=0, le=1)
    # removals always allowed whatever the ratio: on a small table 10% is 0, and one leaver would refuse every run
    min_removals: int = Field(2, ge=0)
    require_batch: str | None = Field(None, description="entity name in the load-marker table")


class Sync(StrictModel):
    source: Endpoint
    target: Endpoint
    key: list[Identifier] = Field(min_length=1)
    group_by: list[Identifier] = Field([], description="leading key columns: rows that share them are one "
                                       "remote record (a person's enrolment in a course, one role per row)")
    group_with: list[Identifier] = Field([], description="grouped mappings whose rows with the same group values "
                                         "are the same remote record (enrolments asked for by subscriptions and "
                                         "by learning processes): a record exists while a row of any asks for it")
    correlation: list[Correlation] = []
    fields: dict[RemoteField, Annotated[FieldMap, BeforeValidator(_shorthand_field)]] = Field(min_length=1)
    status: Status | None = None
    on_missing: OnMissing = "keep"
    guards: Guards = Guards()
    depends_on: list[str] = []

    @model_validator(mode="after")
    def _one_buffer_side(self) -> Sync:
        if (self.source.system == "buffer") == (self.target.system == "buffer"):
            raise ValueError("exactly one of source and target must be the buffer")
        if self.source.system == "buffer" and self.on_missing == "mark":
            raise ValueError("on_missing 'mark' is for a table the engine writes (an outbound sync); an inbound "
                             "sync keeps, suspends or deletes the remote record")
        if self.target.system == "buffer" and self.on_missing == "suspend":
            raise ValueError("on_missing 'suspend' suspends a remote record; an outbound sync keeps, deletes or "
                             "marks the buffer row")
        if self.group_by and (self.group_by != self.key[:len(self.group_by)] or len(self.group_by) >= len(self.key)):
            raise ValueError(f"group_by must be the leading columns of key, fewer than all of them (key: {self.key})")
        return self

    def group_of(self, key_values: tuple[Any, ...] | list[Any]) -> tuple[str, ...]:
        """The group a row belongs to: its leading key values, as text (what the ledger's keys hold)."""
        return tuple(str(v) for v in key_values[:len(self.group_by)])

    @property
    def remote(self) -> Endpoint:
        """The side that is not the buffer: the target of an inbound sync, the source of an outbound one."""
        return self.target if self.inbound else self.source

    @property
    def inbound(self) -> bool:
        """Buffer -> remote (the buffer table is read; its writeback columns are written)."""
        return self.source.system == "buffer"


class Attach(StrictModel):
    """Rows of this table are folded into the records of another mapping (name/value pairs)."""

    mapping: str
    join: dict[Identifier, Identifier] = Field(min_length=1, description="column here -> key column there")
    into: RemoteField
    name_column: Identifier
    value_column: Identifier


class LoadMarkers(StrictModel):
    """This table holds load markers: which batch of an entity 1C has finished writing."""

    entity: Identifier
    batch_id: Identifier
    status: Identifier
    rows_expected: Identifier
    ready_value: str = "ready"


class Mapping(StrictModel):
    format: Literal[1]
    name: Identifier
    description: Description
    title: str = Field("Запись", min_length=1, max_length=40,
                       description="what one record is called in a row's sync_error (Russian), e.g. Пользователь")
    table: Table
    sync: Sync | None = None
    attach: Attach | None = None
    load_markers: LoadMarkers | None = None

    @model_validator(mode="after")
    def _one_role(self) -> Mapping:
        roles = [k for k in ("sync", "attach", "load_markers") if getattr(self, k) is not None]
        if len(roles) > 1:
            raise ValueError(f"a mapping has one role; found {', '.join(roles)}")
        return self

    @property
    def flow(self) -> Sync:
        """The sync of a mapping that has one (the only kind the core reconciles); an error for an attach or
        load_markers mapping, which the core never handles directly."""
        if self.sync is None:
            role = "attach" if self.attach is not None else "load_markers" if self.load_markers is not None else "none"
            raise ValueError(f"mapping {self.name} has no sync (its role: {role}); only a synced mapping is reconciled")
        return self.sync

    @property
    def dependencies(self) -> list[str]:
        """Mappings that must run before this one: declared or looked up."""
        deps: list[str] = []
        if self.sync:
            deps += self.sync.depends_on
            deps += [f.lookup for f in self.sync.fields.values() if f.lookup]
        return list(dict.fromkeys(deps))
