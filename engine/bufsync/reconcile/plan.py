"""Situations per key and the plan of a mapping: every change, computed before any is applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bufsync.reconcile.adapter import Existing
from bufsync.reconcile.records import Desired
from bufsync.state.ledger import ERROR, LINKED, REMOVED, SUSPENDED, Entry, RemoteId


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


class Status(StrEnum):
    """What a step left in the row's sync_status (HELD: --no-create / --no-update / --no-delete kept it back,
    nothing was written)."""

    OK = "ok"
    WARNING = "warning"  # applied, but the remote did not keep all of it
    ERROR = "error"
    SKIPPED = "skipped"  # not applied because a record it points at failed
    HELD = "held"


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
    candidates: list[RemoteId] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "key": self.key}
        if self.existing:
            out["remote_id"] = self.existing.remote_id
        if self.reason:
            out["reason"] = self.reason
        if self.candidates:
            out["candidates"] = self.candidates
        return out


def desired_of(step: Step) -> Desired:
    """The row of a step that has one (a create, an update: every step planned from a source row)."""
    assert step.desired is not None, f"{step.action} of {step.key} needs the row"
    return step.desired


def existing_of(step: Step) -> Existing:
    """The linked record of a step that has one (an update, a suspension, a deletion)."""
    assert step.existing is not None, f"{step.action} of {step.key} needs the linked record"
    return step.existing


@dataclass(frozen=True)
class Result:
    """What applying one step did (returned by apply, counted by the report)."""

    key: str
    action: Action
    status: Status
    reason: str | None = None  # error, skipped: why; warning: what the remote did not keep


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


def view_of(entry: Entry | None) -> dict[str, Any] | None:
    """What the remote holds for a row, by the ledger (an entry that failed keeps what was applied before)."""
    if entry is None or entry.state == REMOVED:
        return None
    return applied_of(entry)


def applied_of(entry: Entry) -> dict[str, Any] | None:
    """The ledger's applied view; a suspended entry is inactive whatever an older version wrote in it."""
    applied = entry.applied
    if applied is not None and entry.state == SUSPENDED and applied.get("@active", True):
        return {**applied, "@active": False}
    return applied


def written_status(entry: Entry) -> tuple[str, str | None]:
    """sync_status and sync_error of an applied row: ok, or warning with what the remote did not keep."""
    warned = entry.last_error and not entry.attempts and entry.state in (LINKED, SUSPENDED)
    return ("warning", entry.last_error) if warned else ("ok", None)


def vanished_view(previous: Entry | None, state: str) -> dict[str, Any] | None:
    """What the remote holds after its row vanished: suspended (so a return must reactivate), or nothing."""
    if previous is None or previous.applied is None or state == REMOVED:
        return None
    return {**previous.applied, "@active": False}
