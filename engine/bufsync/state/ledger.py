"""The ledger: per (mapping, key) what the engine applied in the remote system.

Incremental runs diff the buffer against it instead of reading the LMS; it is written in
batches, in the same transaction as the buffer write-back of those keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

LINKED, SUSPENDED, REMOVED, ERROR = "linked", "suspended", "removed", "error"

RemoteId = int | str  # a number (Moodle ids) in remote_id, or text (UUIDs, object keys) in remote_key


_PLAIN = re.compile(r'^[^"\\\x00-\x1f]*$')


def record_key(values: tuple[Any, ...]) -> str:
    """One key column: its value; several: a JSON array (readable in plain SQL)."""
    if len(values) == 1:
        return str(values[0])
    texts = [str(v) for v in values]
    if None not in values and all(_PLAIN.match(t) for t in texts):
        return '["' + '", "'.join(texts) + '"]'  # what json.dumps gives, without its cost per row
    return json.dumps([None if v is None else str(v) for v in values], ensure_ascii=False)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(slots=True)
class Entry:
    key: str
    remote_id: RemoteId | None
    content_hash: str | None
    state: str
    last_error: str | None = None
    attempts: int = 0
    applied_json: str | dict[str, Any] | None = None  # parsed on first use: most entries never need it

    @property
    def applied(self) -> dict[str, Any] | None:
        if isinstance(self.applied_json, str):
            self.applied_json = json.loads(self.applied_json)
        return self.applied_json  # type: ignore[return-value]


class Ledger:
    def __init__(self, table: sa.Table) -> None:
        self.table = table

    def get_many(self, conn: Connection, mapping: str, keys: list[str]) -> dict[str, Entry]:
        """The entries of these keys, `applied` included (what a run touches)."""
        t = self.table
        out: dict[str, Entry] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for r in conn.execute(sa.select(t.c.record_key, t.c.remote_id, t.c.remote_key, t.c.content_hash,
                                            t.c.state, t.c.last_error, t.c.attempts, t.c.applied).where(
                    t.c.mapping_name == mapping, t.c.record_key.in_(chunk))):
                out[r.record_key] = Entry(r.record_key, _remote(r), r.content_hash, r.state, r.last_error,
                                          r.attempts, r.applied)
        return out

    def remote_ids(self, conn: Connection, mapping: str, keys: list[str] | None = None) -> dict[str, RemoteId]:
        t = self.table
        query = sa.select(t.c.record_key, t.c.remote_id, t.c.remote_key).where(
            t.c.mapping_name == mapping, sa.or_(t.c.remote_id.is_not(None), t.c.remote_key.is_not(None)),
            t.c.state.in_([LINKED, SUSPENDED]))
        if keys is None:
            return {r.record_key: _linked(r) for r in conn.execute(query)}
        out: dict[str, RemoteId] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            out.update({r.record_key: _linked(r) for r in conn.execute(query.where(t.c.record_key.in_(chunk)))})
        return out

    def owners(self, conn: Connection, mapping: str, remote_ids: list[RemoteId]) -> dict[RemoteId, str]:
        """remote id -> the key the ledger links it to (a removed record links nothing any more)."""
        t = self.table
        out: dict[RemoteId, str] = {}
        for column, ids in ((t.c.remote_id, sorted({i for i in remote_ids if isinstance(i, int)})),
                            (t.c.remote_key, sorted({i for i in remote_ids if isinstance(i, str)}))):
            for start in range(0, len(ids), 500):
                query = sa.select(column, t.c.record_key).where(
                    t.c.mapping_name == mapping, column.in_(ids[start:start + 500]), t.c.state != REMOVED)
                out.update({r[0]: r.record_key for r in conn.execute(query)})
        return out

    def save(self, conn: Connection, mapping: str, entries: list[Entry], known: set[str]) -> None:
        """Insert new keys, update known ones; executemany in both cases."""
        if not entries:
            return
        t = self.table
        now = now_utc()
        fresh = [e for e in entries if e.key not in known]
        old = [e for e in entries if e.key in known]
        if fresh:
            conn.execute(t.insert(), [
                {"mapping_name": mapping, "record_key": e.key, **_remote_columns(e.remote_id),
                 "content_hash": e.content_hash, "state": e.state, "last_error": e.last_error,
                 "attempts": e.attempts, "created_at": now, "updated_at": now, "applied": _dump(e.applied),
                 "applied_at": now if e.state != ERROR else None} for e in fresh])
        if old:
            conn.execute(
                t.update().where(t.c.mapping_name == sa.bindparam("m"), t.c.record_key == sa.bindparam("k")).values(
                    remote_id=sa.bindparam("remote_id"), remote_key=sa.bindparam("remote_key"),
                    content_hash=sa.bindparam("content_hash"),
                    state=sa.bindparam("state"), last_error=sa.bindparam("last_error"),
                    attempts=sa.bindparam("attempts"), updated_at=sa.bindparam("updated_at"),
                    applied=sa.bindparam("applied_json"),
                    applied_at=sa.case((sa.bindparam("is_applied") == 1, sa.bindparam("updated_at")),
                                       else_=t.c.applied_at)),
                [{"m": mapping, "k": e.key, **_remote_columns(e.remote_id), "content_hash": e.content_hash,
                  "state": e.state, "last_error": e.last_error, "attempts": e.attempts, "updated_at": now,
                  "applied_json": _dump(e.applied), "is_applied": 0 if e.state == ERROR else 1} for e in old])


def _remote(row: Any) -> RemoteId | None:
    if row.remote_id is not None:
        return int(row.remote_id)
    return None if row.remote_key is None else str(row.remote_key)


def _linked(row: Any) -> RemoteId:
    """The id of a row selected for having one."""
    return int(row.remote_id) if row.remote_id is not None else str(row.remote_key)


def _remote_columns(remote_id: RemoteId | None) -> dict[str, Any]:
    """A number goes to remote_id, text to remote_key (bool is no id)."""
    if isinstance(remote_id, str):
        return {"remote_id": None, "remote_key": remote_id}
    return {"remote_id": remote_id, "remote_key": None}


def _dump(applied: dict[str, Any] | None) -> str | None:
    return json.dumps(applied, ensure_ascii=False, sort_keys=True, default=str) if applied is not None else None
