"""What the core asks of a target system; one implementation per entity (adapters/moodle/entities)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bufsync.mapping.model import Correlation, Mapping
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import RemoteId


@dataclass
class Outcome:
    """What the remote did with one record of a batch."""

    ok: bool
    remote_id: RemoteId | None = None
    error: str | None = None    # for sync_error: Russian, ends with the remote's code
    code: str | None = None     # the remote's error code (or the local rule's)
    warning: str | None = None  # applied, but not all of it was kept (for sync_error: Russian, ends with a code)
    sent: bool = True           # False: refused locally by the remote's known rules, never sent

    @classmethod
    def rejected(cls, text: str, code: str = "invalidparameter") -> Outcome:
        return cls(False, error=text, code=code, sent=False)


@dataclass
class Existing:
    """A record already applied: its remote id and what the ledger says was applied."""

    key: str
    remote_id: RemoteId | None  # None: a record with no id of its own (an enrolment: what was applied says which)
    applied: dict[str, Any] | None
    # grouped mappings, --full: what the ledger says of the other rows of its group (here and in the mappings
    # it shares records with), so a drift check knows what they still ask of the one remote record
    peers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def required_id(self) -> RemoteId:
        """The remote id, for an entity whose records all have one (a user, a course)."""
        if self.remote_id is None:
            raise ValueError(f"the linked record of {self.key} has no remote id")
        return self.remote_id


@dataclass
class Candidate:
    """A remote record that a correlation rule found for an unlinked key."""

    remote_id: RemoteId
    rule: int                                       # index of the correlation rule that found it
    values: dict[str, Any] = field(default_factory=dict)  # its value of each rule's remote field


@dataclass
class Member:
    """One row of a grouped record (mapping `group_by`): what the remote held for it, what it must hold.

    A view is the ledger's applied form of the row (`@active` included); None: nothing of it there.
    """

    key: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class TargetAdapter(Protocol):
    mapping: Mapping

    def correlate(self, items: list[Desired], rules: list[Correlation]) -> dict[str, list[Candidate]]:
        """key -> the records found by the first rule that finds any (several: disputed), each with its
        values of every rule's remote field, so the core can see what contradicts adopting it."""

    def find(self, values: list[Any]) -> dict[Any, RemoteId]:
        """Remote ids of records this mapping would link, by its key value (for other mappings' lookups)."""

    def prevalidate(self, desired: Desired, existing: Existing | None) -> str | None:
        """Why the remote would refuse this record (its rules known locally), or None. The same check in a
        dry run and a real one, so a plan never promises what the run will refuse."""

    def create(self, items: list[Desired]) -> list[Outcome]: ...

    def update(self, items: list[tuple[Desired, Existing]]) -> list[Outcome]: ...

    def suspend(self, items: list[Existing]) -> list[Outcome]: ...

    def delete(self, items: list[Existing]) -> list[Outcome]: ...

    def apply_groups(self, groups: list[list[Member]]) -> list[Outcome]:
        """Grouped mappings only: bring each group's one remote record from its members' `before` to their
        `after` (one outcome per group); every member of a touched group is given, changed or not."""

    def drifted(self, items: list[tuple[Desired, Existing]]) -> set[str]:
        """--full: keys whose remote record no longer matches what was applied (edited or removed by hand)."""


@dataclass(frozen=True)
class Page:
    """Records read from a remote entity, by the field names the mapping's `source`s use.

    `covers`: key column -> value (a course's grades: {course_external_id: "C1"}; {} for the whole entity):
    every record the remote holds under those values is in this page or an earlier one, so a buffer row
    there that the read did not see has gone from the remote. Without it nothing is concluded from absence.
    """

    records: list[dict[str, Any]]
    covers: dict[str, Any] | None = None


class Scope(Protocol):
    """What a reader may ask of the run: the remote records the inbound mappings linked (a grade reader reads
    the courses bufsync manages, not every course of the site)."""

    def linked(self, entity: str) -> list[RemoteId]:
        """Remote ids of the records every inbound mapping of this entity linked (active or suspended)."""

    def held(self) -> list[dict[str, str]]:
        """The key values (column -> text) of every row this mapping wrote and has not removed: a reader that
        cannot tell "gone" from "not listed" by its read alone asks the remote about the rows it did not see."""

    def resume_at(self) -> str | None:
        """Where the previous read of this mapping stopped when a time budget cut it short (the reader's own
        text: a course id), None: from the start."""

    def stopped_at(self, position: str | None) -> None:
        """Where this read stops (None: it read everything); the next run's resume_at, kept once the run is written."""

    def note(self, text: str) -> None:
        """A line for the run's report (a read cut short by its time budget says so)."""


class SourceAdapter(Protocol):
    """What the core asks of a remote entity read back into the buffer (an outbound mapping)."""

    mapping: Mapping

    def read(self, scope: Scope) -> Iterator[Page]:
        """The entity's records in pages; a read cut short (a time budget) just covers less."""
