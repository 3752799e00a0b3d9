"""Situations per key and the plan of a mapping: every change, computed before any is applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bufsync.reconcile.adapter import Existing
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import ERROR, LINKED, REMOVED, SUSPENDED, Entry


class Action(StrEnum):
    """What a step does to one key (a StrEnum: stored, printed and dumped as its plain value)."""

    CREATE = "create"
    ADOPT = "adopt"
    UPDATE = "update"
    SUSPEND = "suspend"
    SUSPEND_ROW = "suspend_row"  # a row still in the source that says it is inactive: suspended by an update
    REACTIVATE = "reactivate"
    DELETE = "delete"
    MARK = "mark"                # outbound: the buffer row stays, its values cleared and removed_at set
    REPAIR = "repair"            # --full: the remote drifted from what was applied
    REHASH = "rehash"            # the fingerprint changed but nothing to send (e.g. a parent's id now known)
    UNCHANGED = "unchanged"
    SKIP = "skip"
    REJECT = "reject"
    DISPUTED = "disputed"
    KEEP_ERROR = "keep_error"


class Situation(StrEnum):
    """A source key against the ledger, before the plan decides what to do."""

    UNMATCHED = "unmatched"            # never applied (or removed): create, or adopt what correlation finds
    UNCHANGED = "unchanged"
    LINKED_CHANGED = "linked-changed"  # applied before, changed since
    KEEP_ERROR = "keep_error"          # failed, and nothing changed since: not retried (--full does)


CREATE, ADOPT, UPDATE, SUSPEND, REACTIVATE, DELETE = (Action.CREATE, Action.ADOPT, Action.UPDATE, Action.SUSPEND,
                                                      Action.REACTIVATE, Action.DELETE)
UNCHANGED, SKIP, REJECT, DISPUTED, KEEP_ERROR = (Action.UNCHANGED, Action.SKIP, Action.REJECT, Action.DISPUTED,
                                                 Action.KEEP_ERROR)
REPAIR, REHASH, SUSPEND_ROW = Action.REPAIR, Action.REHASH, Action.SUSPEND_ROW
WRITES = (CREATE, ADOPT, UPDATE, SUSPEND, REACTIVATE, DELETE, REPAIR)


@dataclass
class Step:
    action: Action
    key: str
    desired: Desired | None = None
    existing: Existing | None = None
    reason: str | None = None
    candidates: list[int] = field(default_factory=list)
    failed: str | None = None  # set when applying it failed: the reason written to sync_error
    held: bool = False         # not applied because of --no-create / --no-update / --no-delete
    warned: str | None = None  # applied, but the remote did not keep all of it: why (sync_status 'warning')

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "key": self.key}
        if self.existing:
            out["remote_id"] = self.existing.remote_id
        if self.reason:
            out["reason"] = self.reason
        if self.candidates:
            out["candidates"] = self.candidates
        return out


@dataclass
class MappingPlan:
    mapping: str
    steps: list[Step] = field(default_factory=list)
    unchanged: int = 0
    writeback_only: list[Desired] = field(default_factory=list)  # unchanged, but sync_* must be restored
    full_check: list[tuple[Desired, Existing]] = field(default_factory=list)  # --full: compare with the LMS
    waiting: list[tuple[Desired, Any]] = field(default_factory=list)  # parent in the same table, not yet in the LMS


def classify(desired: Desired, entry: Entry | None, full: bool) -> Situation:
    """The situation of a key present in the source, against the ledger."""
    if entry is not None and entry.state == ERROR and entry.content_hash == desired.content_hash and not full:
        return Situation.KEEP_ERROR  # nothing changed since it failed: do not hammer the LMS every run
    if entry is None or entry.state == REMOVED or (entry.state == ERROR and entry.remote_id is None):
        return Situation.UNMATCHED
    if entry.content_hash == desired.content_hash and entry.state in (LINKED, SUSPENDED):
        return Situation.UNCHANGED
    return Situation.LINKED_CHANGED
