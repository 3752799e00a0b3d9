"""A request rate shared by every process that uses one remote token, kept in the buffer database.

VK allows 3 requests a second per user token (20 per community token), and several dispatchers, possibly on
different hosts, send with the same token: an in-process limiter (a portal client's own) keeps each of them
under the rate, but not all of them together. This one keeps one row per token in
sync_rate_limits holding the times of its last `rate` sends; a sender locks the row, takes a send if the oldest
of them left the window, else commits nothing and sleeps until it will have.

Clocks: the row holds the senders' own clock values (the injected `clock`, time.time by default), compared
with the reader's clock. Hosts sharing a token should keep their clocks in step (NTP): a host whose clock is
behind waits longer than needed, one ahead may send early, by up to the difference. A send stamped more than one
window ahead of the reader's clock is ignored rather than honoured, so one host with a badly wrong clock cannot
stall every other sender for as long as it is wrong.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from bufsync.dialects import dialect_named

KEY_LENGTH = 200  # sync_rate_limits.limit_key


def token_key(label: str, token: str) -> str:
    """A key naming a token without revealing it: the label and the first 16 hex digits of its SHA-256."""
    return f"{label}:{hashlib.sha256(token.encode()).hexdigest()[:16]}"


class SharedRateLimit:
    """At most `rate` sends in any `window` seconds under `key`, across every thread, process and host using
    this buffer database; `wait()` returns when this caller may send (the same duck type as RateLimit).

    `key` names the token (a label or token_key(); never the token itself: it is stored in a table a DBA
    reads). rate <= 0 means no limit and touches no database. `clock` and `sleep` are the test's to drive."""

    def __init__(self, engine: sa.Engine, table: sa.Table, key: str, rate: int, *, window: float = 1.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if not key or len(key) > KEY_LENGTH:
            raise ValueError(f"a rate limit key is 1..{KEY_LENGTH} characters, got {len(key)}")
        if window <= 0:
            raise ValueError(f"a rate limit window must be positive, got {window}")
        self.engine, self.table, self.key, self.rate, self.window = engine, table, key, rate, window
        self.clock, self.sleep = clock, sleep
        self.dialect = dialect_named(engine.dialect.name)
        # threads of one process queue here, not on the database row
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            while True:
                pause = self._take()
                if pause is None:
                    return
                if pause > 0:
                    self.sleep(pause)

    def _take(self) -> float | None:
        """One transaction: record a send now and return None, or commit nothing and return how long until the
        oldest of the last `rate` sends leaves the window (0: the row was missing and is made; try again)."""
        table = self.table
        with self.engine.connect() as conn:
            found = self.dialect.read_for_update(
                conn, sa.select(table.c.sent).where(table.c.limit_key == self.key), table).first()
            if found is None:
                conn.rollback()
                self._create()
                return 0.0
            # before the clock is read, like everything else this send's transaction can do before it: only the
            # update and its commit lie between the stamp and the caller's send
            self.dialect.prepare_expendable(conn)
            now = self.clock()  # read while holding the row: stamps go into it in the order sends are taken
            recent = sorted(t for t in _times(found.sent) if now - self.window < t <= now + self.window)
            if len(recent) >= self.rate:
                conn.rollback()
                return self.window - (now - recent[-self.rate])
            sent = (recent + [now])[-self.rate:]
            conn.execute(table.update().where(table.c.limit_key == self.key).values(
                sent=json.dumps(sent), updated_at=_utc(now)))
            conn.commit()
            return None

    def _create(self) -> None:
        """The key's row, empty, unless another sender made it first."""
        row = {"limit_key": self.key, "sent": "[]", "updated_at": _utc(self.clock())}
        statement = self.dialect.insert_ignoring(self.table, [row], ["limit_key"])
        try:
            with self.engine.begin() as conn:
                conn.execute(statement if statement is not None else self.table.insert().values(row))
        except sa.exc.IntegrityError:  # MS SQL: another sender inserted it between our read and insert
            pass


def _times(text: str | None) -> list[float]:
    """The stored send times; anything unreadable (a DBA's edit) counts as no sends."""
    try:
        values = json.loads(text or "[]")
    except ValueError:
        return []
    return [float(v) for v in values if isinstance(v, int | float)] if isinstance(values, list) else []


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None, microsecond=0)
