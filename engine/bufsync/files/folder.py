"""Files on a schedule: an import job watches a folder, an export job writes one.

Import: `incoming/` -> `processing/` -> `done/` or `failed/`, each step an atomic rename within the folder. Files
are taken in name order; a file changed in the last `settle_seconds` (still being copied) and an Excel workbook
that is open (its lock file `~$name` beside it) wait for the next tick; lock files themselves are never taken.
Each file goes to the mapping of the first name pattern it matches. Its SHA-256 is recorded in sync_files in the
same transaction as its rows, so the same file is never loaded twice, and a job killed mid-file is resumed
safely: a file left in processing/ goes to done/ if its checksum was recorded, else back to incoming/. Then the
job's mappings run.

Export: each mapping's table to `<mapping>-<YYYYmmdd-HHMMSS>.<csv|xlsx>` (written to a temporary name, then
renamed), from where the last export of that job and mapping left off (kept in sync_cursors), with an overlap of
OVERLAP so that a row committed late is never missed; 1C takes the rows by their key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bufsync.config import JobSettings, LoadedSettings
from bufsync.db import connect_buffer
from bufsync.errors import BufsyncError
from bufsync.report import Report
from bufsync.state import cursors
from bufsync.state.ledger import now_utc
from bufsync.state.tables import add_state_tables

SUBFOLDERS = ("incoming", "processing", "done", "failed")
OVERLAP = timedelta(minutes=5)


@dataclass
class FolderRun(Report):
    """A folder job's turn: each file with what became of it, and the sync or export runs it made."""

    kind: str = "import"
    job: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)  # name, mapping, outcome, run_id, detail
    sync_run: int | None = None

    def title(self) -> str:
        return f"{self.kind} job {self.job}: {self.outcome}, {len(self.files)} file(s) in {self.seconds:.1f} s"

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        if not self.files:
            return None
        return (["file", "mapping", "outcome", "run"],
                [[f["name"], f.get("mapping") or "", f["outcome"], str(f.get("run_id") or "")] for f in self.files])

    def notes(self, shown: int) -> list[str]:
        lines = [f"  {f['name']}: {f['detail']}" for f in self.files if f.get("detail")][:shown]
        if self.sync_run is not None:
            lines.append(f"then sync run {self.sync_run}")
        return lines + super().notes(shown)

    def stored_counts(self) -> dict[str, Any]:
        return {"files": self.files, "sync_run": self.sync_run}


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dirs(root: Path) -> dict[str, Path]:
    out = {name: root / name for name in SUBFOLDERS}
    for path in out.values():
        path.mkdir(parents=True, exist_ok=True)
    return out


def _waiting(path: Path, settle: float, now: float) -> str | None:
    """Why a file in incoming/ is not taken now (None: take it)."""
    name = path.name
    if name.startswith("~$") or name.startswith(".") or name.endswith((".tmp", ".part", ".crdownload")):
        return "a lock or temporary file"
    if (path.parent / f"~${name}").exists() or (path.parent / f"~${name[2:]}").exists():
        return "open in Excel (its lock file is beside it)"
    if now - path.stat().st_mtime < settle:
        return "still being written"
    return None


def _move(path: Path, folder: Path) -> Path:
    """An atomic rename into `folder`; a name already there gets the time appended (nothing is overwritten)."""
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{datetime.now(UTC):%Y%m%d%H%M%S%f}{path.suffix}"
    path.replace(target)
    return target


def import_folder(loaded: LoadedSettings, job: JobSettings, name: str, trigger: str = "schedule",
                  stop: threading.Event | None = None, on_start: Any = None) -> FolderRun:
    from bufsync.files.importing import import_file
    from bufsync.reconcile.context import Options
    from bufsync.runner import run as run_sync
    assert job.folder is not None  # the settings require it for an import job
    report = FolderRun(kind="import", job=name)
    started = time.perf_counter()
    dirs = _dirs(job.folder)
    table = add_state_tables(sa.MetaData())["sync_files"]
    with connect_buffer(loaded) as engine:
        _resume(engine, table, dirs)
        loaded_any = False
        for path in sorted(p for p in dirs["incoming"].iterdir() if p.is_file()):
            if stop is not None and stop.is_set():
                break
            if _waiting(path, job.settle_seconds, time.time()) is not None:
                continue
            entry: dict[str, Any] = {"name": path.name}
            report.files.append(entry)
            mapping = next((m for pattern, m in job.files.items() if fnmatch.fnmatch(path.name.lower(),
                                                                                     pattern.lower())), None)
            if mapping is None:
                entry.update(outcome="failed", detail=f"no pattern of files: matches it ({', '.join(job.files)})")
                _fail(path, dirs["failed"], entry["detail"])
                continue
            entry["mapping"] = mapping
            digest = checksum(path)
            with engine.connect() as conn:
                seen = conn.execute(sa.select(table.c.file_name, table.c.loaded_at, table.c.run_id)
                                    .where(table.c.checksum == digest)).first()
            if seen is not None:
                entry.update(outcome="skipped", run_id=seen.run_id,
                             detail=f"the same file was loaded on {seen.loaded_at:%Y-%m-%d %H:%M} UTC as "
                                    f"{seen.file_name} (run {seen.run_id}): not loaded twice")
                _move(path, dirs["done"])
                continue
            taken = _move(path, dirs["processing"])

            def record(conn: sa.Connection, run_id: int, digest: str = digest, file: str = taken.name,
                       mapping: str = mapping) -> None:
                conn.execute(table.insert().values(checksum=digest, file_name=file, mapping_name=mapping, job=name,
                                                   run_id=run_id, loaded_at=now_utc()))
            try:
                result = import_file(loaded, mapping, taken, mode=job.mode, allow_removals=job.allow_removals,
                                     job=name, trigger=trigger, on_commit=record)
            except BufsyncError as exc:
                entry.update(outcome="failed", detail=str(exc))
                _fail(taken, dirs["failed"], str(exc))
                continue
            entry.update(outcome=result.outcome, run_id=result.run_id)
            if result.errors_file:
                entry["detail"] = f"bad rows: {Path(result.errors_file).name}"
                _move(Path(result.errors_file), dirs["done"])
            _move(taken, dirs["done"])
            loaded_any = True
    if loaded_any and not (stop is not None and stop.is_set()):
        options = Options(allow_removals=job.allow_removals, job=name, trigger=trigger, stop=stop, on_start=on_start)
        sync = run_sync(loaded, job.mappings, options)
        report.sync_run, report.run_id = sync.run_id, sync.run_id
        report.outcome, report.refused, report.error = sync.outcome, sync.refused, sync.error
    if any(f["outcome"] in ("failed", "rejected") for f in report.files) and report.outcome == "ok":
        report.outcome = "rejected"
    report.seconds = time.perf_counter() - started
    return report


def _resume(engine: sa.Engine, table: sa.Table, dirs: dict[str, Path]) -> None:
    """Files a killed job left in processing/: loaded (checksum recorded) -> done/, else back to incoming/."""
    for path in sorted(p for p in dirs["processing"].iterdir() if p.is_file()):
        if path.name.endswith(".errors.csv"):
            _move(path, dirs["done"])
            continue
        with engine.connect() as conn:
            done = conn.execute(sa.select(table.c.checksum).where(table.c.checksum == checksum(path))).first()
        _move(path, dirs["done"] if done is not None else dirs["incoming"])


def _fail(path: Path, folder: Path, reason: str) -> None:
    """The file to failed/, with a note beside it saying why (UTF-8 with BOM: Notepad and Excel read it)."""
    moved = _move(path, folder)
    moved.with_name(f"{moved.name}.txt").write_text(reason + "\n", encoding="utf-8-sig")


def export_folder(loaded: LoadedSettings, job: JobSettings, name: str, trigger: str = "schedule") -> FolderRun:
    from bufsync.files.exporting import export_table, since_column
    from bufsync.mapping.loader import load_mappings
    assert job.folder is not None  # the settings require it for an export job
    report = FolderRun(kind="export", job=name)
    started = time.perf_counter()
    job.folder.mkdir(parents=True, exist_ok=True)
    mappings = load_mappings(loaded.mappings_dir)
    table = add_state_tables(sa.MetaData())["sync_cursors"]
    with connect_buffer(loaded) as engine:
        for mapping in job.mappings:
            position = f"export:{name}:{mapping}"[:64]
            with engine.connect() as conn:
                last = cursors.get(conn, table, position)
            since = datetime.fromtimestamp(int(last), UTC).replace(tzinfo=None) - OVERLAP if last else None
            stem = f"{mapping}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
            path = job.folder / f"{stem}.{job.format}"
            for again in range(2, 100):  # an export in the same second never replaces one 1C has not taken yet;
                if not path.exists():    # "_2" sorts after the first, before the next second's
                    break
                path = job.folder / f"{stem}_{again}.{job.format}"
            entry: dict[str, Any] = {"name": path.name, "mapping": mapping}
            report.files.append(entry)
            try:
                if mapping in mappings and since_column(mappings[mapping]) is None:
                    since = None  # a table without a time column is written whole each time
                result = export_table(loaded, mapping, path, since=since, titles=job.titles, encoding=job.encoding,
                                      job=name, trigger=trigger)
            except BufsyncError as exc:
                entry.update(outcome="failed", detail=str(exc))
                continue
            entry.update(outcome=result.outcome, run_id=result.run_id, detail=f"{result.counts.get('rows', 0)} rows")
            report.run_id = result.run_id
            if "latest" in result.counts:
                with engine.begin() as conn:
                    cursors.put(conn, table, position, str(result.counts["latest"]))
    if any(f["outcome"] == "failed" for f in report.files):
        report.outcome = "failed"
        report.error = "; ".join(f"{f['mapping']}: {f['detail']}" for f in report.files if f["outcome"] == "failed")
    report.seconds = time.perf_counter() - started
    return report
