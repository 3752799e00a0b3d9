"""Typed run reports: printed as a table, stored in sync_runs, dumped as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

COLUMNS = ("created", "adopted", "updated", "suspended", "reactivated", "deleted", "repaired", "unchanged",
           "rejected", "skipped", "disputed", "failing", "warnings")
# failing: rows that failed before and did not change; warnings: applied, but Moodle did not keep all of it
_ACTION_COLUMN = {"create": "created", "adopt": "adopted", "update": "updated", "suspend": "suspended",
                  "suspend_row": "suspended", "reactivate": "reactivated", "delete": "deleted", "mark": "deleted",
                  "repair": "repaired", "unchanged": "unchanged", "rehash": "unchanged", "reject": "rejected",
                  "skip": "skipped", "disputed": "disputed"}


@dataclass
class MappingReport:
    mapping: str
    counts: dict[str, int] = field(default_factory=lambda: {c: 0 for c in COLUMNS})
    source_rows: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)   # key, status, reason (first N)
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry run: the changes
    note: str | None = None
    moodle_calls: int = 0   # Moodle Web Service calls this mapping made (reads and writes)
    seconds: float = 0.0    # its wall time: scan, plan and apply

    def add(self, action: str, n: int = 1) -> None:
        column = _ACTION_COLUMN.get(action)
        if column:
            self.counts[column] += n


@dataclass
class RunReport:
    run_id: int | None = None
    outcome: str = "ok"
    dry_run: bool = False
    seconds: float = 0.0
    mappings: list[MappingReport] = field(default_factory=list)
    refused: str | None = None
    error: str | None = None
    moodle_calls: int = 0

    @property
    def rejected(self) -> int:
        return sum(m.counts["rejected"] + m.counts["skipped"] + m.counts["disputed"] + m.counts["failing"]
                   for m in self.mappings)

    def counts(self) -> dict[str, Any]:
        return {m.mapping: m.counts | {"source_rows": m.source_rows, "moodle_calls": m.moodle_calls,
                                       "seconds": round(m.seconds, 3)} for m in self.mappings}

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, default=str)

    def render(self, errors_shown: int = 20) -> str:
        lines = []
        title = "DRY RUN — nothing was changed" if self.dry_run else f"run {self.run_id}"
        lines.append(f"{title}: {self.outcome} in {self.seconds:.1f} s, {self.moodle_calls} Moodle calls")
        header = ["mapping", "rows"] + list(COLUMNS) + ["calls", "seconds"]
        table = [header] + [[m.mapping, str(m.source_rows)] + [str(m.counts[c]) for c in COLUMNS]
                            + [str(m.moodle_calls), f"{m.seconds:.1f}"] for m in self.mappings]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        for m in self.mappings:
            if m.note:
                lines.append(f"{m.mapping}: {m.note}")
            for item in m.errors[:errors_shown]:
                lines.append(f"  {m.mapping} [{item['key']}] {item['status']}: {item['reason']}")
            hidden = len(m.errors) - errors_shown
            if hidden > 0:
                lines.append(f"  ... {hidden} more in {m.mapping} (sync_error in the buffer)")
            if self.dry_run:
                for item in m.planned[:errors_shown]:
                    lines.append(f"  would {item['action']} [{item['key']}]" +
                                 (f" (id {item['remote_id']})" if item.get("remote_id") else ""))
                if len(m.planned) > errors_shown:
                    lines.append(f"  ... {len(m.planned) - errors_shown} more planned changes in {m.mapping}")
        if self.refused:
            lines.append(f"REFUSED: {self.refused}")
        if self.error:
            lines.append(f"ERROR: {self.error}")
        return "\n".join(lines)
