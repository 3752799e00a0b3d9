"""sync_runs: one row per run, written at start (running) and at the end (outcome, counts)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import sqlalchemy as sa

from bufsync.state.ledger import now_utc


def start(engine: sa.Engine, table: sa.Table, kind: str, options: dict[str, Any], dry_run: bool,
          job: str | None = None, trigger: str = "manual") -> int:
    with engine.begin() as conn:
        result = conn.execute(table.insert().values(
            job=job, kind=kind, triggered_by=trigger, host=socket.gethostname()[:255], pid=os.getpid(),
            started_at=now_utc(), outcome="running", dry_run=dry_run,
            options=json.dumps(options, ensure_ascii=False, default=str)))
        return int(result.inserted_primary_key[0])


def finish(engine: sa.Engine, table: sa.Table, run_id: int, outcome: str, counts: dict[str, Any],
           error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == run_id).values(
            finished_at=now_utc(), outcome=outcome, counts=json.dumps(counts, ensure_ascii=False),
            error=(error or None) and error[:2000]))


def recent(engine: sa.Engine, table: sa.Table, limit: int = 20, job: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if job:
        query = query.where(table.c.job == job)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["counts"] = json.loads(row["counts"]) if row.get("counts") else {}
        row["options"] = json.loads(row["options"]) if row.get("options") else {}
    return rows
