"""What a run did, one shape for every kind of run (a sync, a portal's scenarios, a queue dispatch, a
scheduled job): printed as a table, stored in sync_runs (outcome, counts, error), dumped as JSON. dlt's
LoadInfo is the model: the command returns the report; the CLI only chooses how to show it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bufsync.errors import EXIT_REJECTED

COLUMNS = ("created", "adopted", "updated", "suspended", "reactivated", "deleted", "repaired", "unchanged",
           "rejected", "skipped", "disputed", "failing", "warnings")
# failing: rows that failed before and did not change; warnings: applied, but Moodle did not keep all of it
_ACTION_COLUMN = {"create": "created", "adopt": "adopted", "update": "updated", "suspend": "suspended",
                  "suspend_row": "suspended", "reactivate": "reactivated", "delete": "deleted", "mark": "deleted",
                  "repair": "repaired", "unchanged": "unchanged", "rehash": "unchanged", "reject": "rejected",
                  "skip": "skipped", "disputed": "disputed"}


@dataclass
class Report:
    """The base of every report. A subclass says its title line, its table (if any), its notes and what
    sync_runs.counts keeps; printing, JSON and the exit code are the same for all."""

    kind: str = "sync"
    run_id: int | None = None
    outcome: str = "ok"  # ok, rejected, refused, failed, interrupted (a job: also skipped, held)
    seconds: float = 0.0
    refused: str | None = None
    error: str | None = None

    def title(self) -> str:
        return f"{self.kind} run {self.run_id}: {self.outcome} in {self.seconds:.1f} s"

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        """(header, rows) printed under the title, or None."""
        return None

    def notes(self, shown: int) -> list[str]:
        """Lines after the table: at most `shown` of each list (every row has its own sync_error)."""
        lines = []
        if self.refused:
            lines.append(f"REFUSED: {self.refused}")
        if self.error:
            lines.append(f"ERROR: {self.error}")
        return lines

    def stored_counts(self) -> dict[str, Any]:
        """What sync_runs.counts keeps for the run (JSON)."""
        return {}

    @property
    def exit_code(self) -> int:
        """rejected: some rows or items did not go through (each says why); other outcomes raise instead."""
        return EXIT_REJECTED if self.outcome == "rejected" else 0

    def render(self, errors_shown: int = 20) -> str:
        lines = [self.title()]
        table = self.table()
        if table is not None:
            lines += render_table(*table)
        return "\n".join(lines + self.notes(errors_shown))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2, default=str)


def render_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A plain-text table by rich (no borders, no colour: it goes to logs and mail as well as terminals);
    the first column left-aligned, the others right-aligned."""
    import io

    from rich.console import Console
    from rich.table import Table
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 1), header_style="")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=10_000, color_system=None, highlight=False, emoji=False)
    console.print(table)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


@dataclass
class Tally:
    """Counts by name and the problems met (Russian, one line each): what a portal's scenarios add up."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] += n


ERRORS_KEPT = 1000   # row errors a mapping's report keeps; every row has its own sync_error in the buffer
PLANNED_SHOWN = 500  # changes a dry run lists per mapping; the counts cover all


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

    def error(self, key: str, status: str, reason: str | None) -> None:
        """A row that did not go through (or went with a warning), kept up to ERRORS_KEPT."""
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append({"key": key, "status": status, "reason": reason or ""})

    def plan(self, change: dict[str, Any]) -> None:
        """A change a dry run would make, kept up to PLANNED_SHOWN."""
        if len(self.planned) < PLANNED_SHOWN:
            self.planned.append(change)


@dataclass
class RunReport(Report):
    """A sync run: per mapping, what happened to its rows."""

    dry_run: bool = False
    mappings: list[MappingReport] = field(default_factory=list)
    moodle_calls: int = 0

    @property
    def rejected(self) -> int:
        return sum(m.counts["rejected"] + m.counts["skipped"] + m.counts["disputed"] + m.counts["failing"]
                   for m in self.mappings)

    def stored_counts(self) -> dict[str, Any]:
        return {m.mapping: m.counts | {"source_rows": m.source_rows, "moodle_calls": m.moodle_calls,
                                       "seconds": round(m.seconds, 3)} for m in self.mappings}

    def title(self) -> str:
        title = "DRY RUN — nothing was changed" if self.dry_run else f"run {self.run_id}"
        return f"{title}: {self.outcome} in {self.seconds:.1f} s, {self.moodle_calls} Moodle calls"

    def table(self) -> tuple[list[str], list[list[str]]]:
        header = ["mapping", "rows", *COLUMNS, "calls", "seconds"]
        rows = [[m.mapping, str(m.source_rows), *(str(m.counts[c]) for c in COLUMNS), str(m.moodle_calls),
                 f"{m.seconds:.1f}"] for m in self.mappings]
        return header, rows

    def notes(self, shown: int) -> list[str]:
        lines = []
        for m in self.mappings:
            if m.note:
                lines.append(f"{m.mapping}: {m.note}")
            for item in m.errors[:shown]:
                lines.append(f"  {m.mapping} [{item['key']}] {item['status']}: {item['reason']}")
            hidden = len(m.errors) - shown
            if hidden > 0:
                lines.append(f"  ... {hidden} more in {m.mapping} (sync_error in the buffer)")
            if self.dry_run:
                for item in m.planned[:shown]:
                    lines.append(f"  would {item['action']} [{item['key']}]" +
                                 (f" (id {item['remote_id']})" if item.get("remote_id") else ""))
                if len(m.planned) > shown:
                    lines.append(f"  ... {len(m.planned) - shown} more planned changes in {m.mapping}")
        return lines + super().notes(shown)


@dataclass
class PortalRun(Report):
    """A portal's scenario run (kind: the portal's name) or a queue dispatch (kind: dispatch)."""

    portal: str | None = None  # the portal it ran for
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def title(self) -> str:
        if self.kind == "dispatch":
            c = self.counts
            doubt = (f" in_doubt={c['in_doubt']} (confirmed={c['confirmed']} resent={c['resent']})"
                     if c.get("in_doubt") else "")
            return (f"dispatch {self.portal}: claimed={c.get('claimed', 0)} done={c.get('done', 0)} "
                    f"retried={c.get('retried', 0)} dead={c.get('dead', 0)}{doubt} in {self.seconds:.1f}s "
                    f"(run {self.run_id})")
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"{self.kind}: {self.outcome} in {self.seconds:.1f}s (run {self.run_id}) {counts}"

    def notes(self, shown: int) -> list[str]:
        return [f"  {problem}" for problem in self.problems] + super().notes(shown)

    def stored_counts(self) -> dict[str, Any]:
        return dict(self.counts)


@dataclass
class JobResult(Report):
    """A scheduled job's turn: done (with the run it made), skipped (its due time was taken) or held (it runs
    elsewhere now)."""

    kind: str = "job"
    job: str = ""
    status: str = "done"
    detail: str = ""

    def title(self) -> str:
        return (f"job {self.job}: {self.status}" + (f", run {self.run_id} {self.outcome}" if self.run_id else "")
                + (f" — {self.detail}" if self.detail else ""))

    def notes(self, shown: int) -> list[str]:
        return []


@dataclass
class FileRun(Report):
    """A file loaded into a buffer table (kind import) or a table written to a file (kind export): the counts,
    and for an import each bad row by its line, column and reason (all of them also in the errors file beside
    the input, which 1C developers and operators open)."""

    kind: str = "import"
    mapping: str = ""
    file: str = ""
    mode: str | None = None          # import: replace | upsert
    dry_run: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)  # line, column, value, reason (first ERRORS_KEPT)
    errors_file: str | None = None

    def title(self) -> str:
        how = f" ({self.mode}{', dry run: nothing written' if self.dry_run else ''})" if self.kind == "import" else ""
        direction = "from" if self.kind == "import" else "to"
        run = f", run {self.run_id}" if self.run_id is not None else ""
        return f"{self.kind} {self.mapping} {direction} {self.file}{how}: {self.outcome} in {self.seconds:.1f} s{run}"

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        names = [n for n in self.counts if n != "latest"]  # latest: an export's cursor, a note below
        if not names:
            return None
        return names, [[f"{self.counts[n]:,}" for n in names]]

    def notes(self, shown: int) -> list[str]:
        lines = [f"  line {p['line']}, {p['column']}: {p['reason']}" for p in self.problems[:shown]]
        if "latest" in self.counts:
            from datetime import UTC, datetime
            newest = datetime.fromtimestamp(self.counts["latest"], UTC).replace(tzinfo=None)
            lines.append(f"newest change written: {newest:%Y-%m-%d %H:%M:%S} (the next --since)")
        # a bad row may have several problems, one a line: what is not shown is counted in rows
        hidden = self.counts.get("rejected", len({p["line"] for p in self.problems})) - len(
            {p["line"] for p in self.problems[:shown]})
        if hidden > 0:
            lines.append(f"  ... {hidden} more bad rows")
        elif len(self.problems) > shown:
            lines.append(f"  ... {len(self.problems) - shown} more problems in the rows above")
        if self.errors_file:
            lines.append(f"every bad row: {self.errors_file}")
        return lines + super().notes(shown)

    def stored_counts(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "file": self.file, "mode": self.mode, **self.counts}
