"""One dispatcher process of test_limiter's real-process test, in a module of its own: a spawned process imports
the module of its target, and this one imports SQLAlchemy and the limiter only (not pytest, alembic or the
settings), so the processes start in a fraction of the time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bufsync.queue.limiter import SharedRateLimit


def stamper(url: str, key: str, sends: int, rate: int, window: float, out: str, start: Any) -> None:
    """`sends` sends through the shared limit with the real clock, each recorded twice: the stamp the limiter
    stored (its last clock reading before wait() returned) and time.time() just after wait() returned."""
    engine = sa.create_engine(url)
    table = sa.Table("sync_rate_limits", sa.MetaData(), autoload_with=engine)
    read: list[float] = []

    def clock() -> float:
        read.append(time.time())
        return read[-1]

    limit = SharedRateLimit(engine, table, key, rate, window=window, clock=clock)
    start.wait(30)  # connected and ready: the processes begin sending together
    stored, sent = [], []
    for _ in range(sends):
        limit.wait()
        sent.append(time.time())
        stored.append(read[-1])
    engine.dispose()
    Path(out).write_text(json.dumps({"stored": stored, "sent": sent}))
