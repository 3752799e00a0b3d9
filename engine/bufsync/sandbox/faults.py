"""Fault injection for the sandboxes: what real servers do to clients on a bad day.

Rules are matched per request, in order; each has an optional function filter, a count
(how many times it fires) or a rate (a share of requests, seeded, so tests repeat).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from bufsync.sandbox.httpserver import Reply

FaultKind = Literal["latency", "gather", "http_500", "http_503", "drop", "drop_after_write", "timeout_after_write",
                   "db_error"]
PACING = ("latency", "gather")  # these only hold the answer back: they combine with one failure
KINDS = ("latency", "gather", "http_500", "http_503", "drop", "drop_after_write", "timeout_after_write", "db_error")


@dataclass
class FaultRule:
    kind: FaultKind
    function: str | None = None
    count: int | None = None       # fire this many times, then the rule is spent
    rate: float | None = None      # or: fire on this share of matching requests
    seconds: float = 0.0           # latency, how long timeout_after_write holds the answer, or gather's longest hold
    in_flight: int = 0             # gather: hold the answer until this many requests are in flight together
    skip: int = 0                  # let this many matching requests pass first


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 1
    fired: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(self.seed)

    def add(self, rule: FaultRule) -> None:
        if rule.kind not in KINDS:
            raise ValueError(f"unknown fault {rule.kind!r}; expected one of {', '.join(KINDS)}")
        with self._lock:
            self.rules.append(rule)

    def set(self, rules: list[dict[str, Any]] | None = None, clear: bool = False) -> int:
        """What an emulator's set_faults (its admin endpoint, tests) does: rules as FaultRule fields, added to those
        in force (or instead of them, with clear); how many are in force."""
        if clear:
            self.clear()
        for rule in rules or []:
            self.add(FaultRule(**rule))
        return len(self.rules)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, function: str | None) -> list[FaultRule]:
        """The rules that fire for this request (a latency rule can combine with one failure)."""
        chosen: list[FaultRule] = []
        with self._lock:
            for rule in list(self.rules):
                if not fires(self.rules, rule, rule.function, function, self._random):
                    continue
                if rule.kind not in PACING and any(r.kind not in PACING for r in chosen):
                    continue
                chosen.append(rule)
                self.fired[rule.kind] = self.fired.get(rule.kind, 0) + 1
        return chosen


def serve(faults: Faults, name: str | None, handle: Callable[[], Reply], failed: Callable[[str], Reply]) -> Reply:
    """A request as the faults that fire for it shape it, the same in every emulator: latency and gather delay
    the answer; http_500, http_503 and db_error are answered by `failed(kind)` in the emulator's own form; drop
    closes without running it; drop_after_write and timeout_after_write run it (the remote did it), then close."""
    delay = 0.0
    gather = 0
    after_write: FaultRule | None = None
    for rule in faults.pick(name):
        if rule.kind == "latency":
            delay += rule.seconds
        elif rule.kind == "gather":
            gather, delay = rule.in_flight, delay + rule.seconds
        elif rule.kind in ("http_500", "http_503", "db_error"):
            reply = failed(rule.kind)
            reply.delay = delay
            return reply
        elif rule.kind == "drop":
            return _dropped(delay)
        else:
            after_write = rule
    reply = handle()
    if after_write is not None:  # done at the remote; the client never hears about it
        return _dropped(delay + (after_write.seconds if after_write.kind == "timeout_after_write" else 0.0))
    reply.delay, reply.gather = delay, gather
    return reply


def _dropped(delay: float) -> Reply:
    from bufsync.sandbox.httpserver import Reply
    return Reply(delay=delay, drop=True)


class Countable(Protocol):
    """A rule that fires for some requests: `skip` let through first, then a `rate` share, `count` times."""

    skip: int
    rate: float | None
    count: int | None


def fires(rules: list[Any], rule: Countable, narrowed: str | None, name: str | None, rng: random.Random) -> bool:
    """Whether `rule` fires for a request to `name` (a rule `narrowed` to another name never does); counts it
    down, and takes it out of `rules` once spent. The emulators' faults and the VK sandbox's errors share it."""
    if narrowed and narrowed != name:
        return False
    if rule.skip > 0:
        rule.skip -= 1
        return False
    if rule.rate is not None and rng.random() >= rule.rate:
        return False
    if rule.count is not None:
        rule.count -= 1
        if rule.count <= 0:
            rules.remove(rule)
    return True


def parse_fault(text: str) -> FaultRule:
    """KIND[:RATE[:SECONDS]] from the command line."""
    from bufsync.errors import ConfigError
    parts = text.split(":")
    if parts[0] not in KINDS or len(parts) > 3:
        raise ConfigError(f"--fault {text!r}: expected KIND[:RATE[:SECONDS]] with KIND one of {', '.join(KINDS)}")
    try:
        rate = float(parts[1]) if len(parts) > 1 else 1.0
        seconds = float(parts[2]) if len(parts) > 2 else (0.2 if parts[0] == "latency" else 30.0)
    except ValueError:
        raise ConfigError(f"--fault {text!r}: RATE and SECONDS must be numbers") from None
    if not 0 <= rate <= 1:
        raise ConfigError(f"--fault {text!r}: RATE must be between 0 and 1")
    return FaultRule(kind=parts[0], rate=rate, seconds=seconds)  # type: ignore[arg-type]
