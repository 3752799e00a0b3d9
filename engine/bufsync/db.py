"""Connections to the buffer database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from bufsync.config import LoadedSettings
from bufsync.errors import UnavailableError


def create_buffer_engine(url: str) -> Engine:
    """hide_parameters: a failing statement's values (a password column) never reach a message."""
    kwargs: dict = {"hide_parameters": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    if parsed.drivername == "postgresql+psycopg2" or parsed.drivername == "postgresql":
        kwargs["executemany_mode"] = "values_plus_batch"  # batched UPDATEs for ledger and write-back
    engine = sa.create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # fingerprints are computed in SQL on every dialect; SQLite has no md5 of its own
            dbapi_connection.create_function("bufsync_md5", 1, _md5, deterministic=True)
    return engine


@contextmanager
def connect_buffer(loaded: LoadedSettings) -> Iterator[Engine]:
    """An engine whose first connection is tested, failing as 'unavailable' (exit 4)."""
    engine = create_buffer_engine(loaded.buffer_url)
    try:
        try:
            with engine.connect():
                pass
        except sa.exc.DBAPIError as exc:
            raise UnavailableError(
                f"cannot connect to the buffer database {loaded.buffer_url_display}: {_reason(exc)}") from None
        yield engine
    finally:
        engine.dispose()


def _md5(text: str | None) -> str | None:
    return None if text is None else hashlib.md5(text.encode("utf-8")).hexdigest()


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's own first line, without SQLAlchemy's statement and help-link decoration."""
    text = str(exc.orig).strip().splitlines()
    return text[0] if text else type(exc.orig).__name__
