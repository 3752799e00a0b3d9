"""What one run's mappings share: the buffer, the mappings, the ledger, the options, the caches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bufsync.dialects import dialect_named
from bufsync.dialects.base import BufferDialect
from bufsync.mapping.loader import MappingSet
from bufsync.mapping.model import Mapping
from bufsync.state.ledger import Ledger, RemoteId

CHUNK = 1000  # records planned, applied and recorded together: memory stays flat, a stop loses at most this


class Interrupted(Exception):
    """A stop was asked for (SIGTERM): the batch in hand was finished and recorded."""


@dataclass
class Options:
    dry_run: bool = False
    full: bool = False
    no_create: bool = False
    no_update: bool = False
    no_delete: bool = False
    allow_removals: int | None = None
    job: str | None = None
    trigger: str = "manual"
    due: str | None = None  # the scheduled due time this run serves
    stop: threading.Event | None = field(default=None, repr=False, compare=False)  # set: stop between batches
    on_start: Callable[[int], None] | None = field(default=None, repr=False, compare=False)  # given the run id

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("stop", "on_start")}


@dataclass
class Context:
    """Shared by the mappings of one run."""

    engine: Engine
    mappings: MappingSet
    tables: dict[str, sa.Table]
    ledger: Ledger
    timezone: str
    adapter_for: Callable[[Mapping], Any]  # the mapping's adapter: a TargetAdapter, or a SourceAdapter
    options: Options
    remote_ids: dict[str, dict[str, RemoteId]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    vanished: dict[str, dict[tuple[str, ...], set[str]]] = field(default_factory=dict)  # grouped: keys gone


def dialect_of(ctx: Context) -> BufferDialect:
    return dialect_named(ctx.engine.dialect.name)
