"""An emulator's time: the wall clock for a person trying the sandbox, or a clock stopped at a moment that only the
test (or the admin action) moves, so that limits, skews and stamps never depend on how fast the machine is."""

from __future__ import annotations

import time


class StoppableClock:
    """Mixed into an emulator's state; `clock` is None (the wall clock) or the stopped moment, epoch seconds."""

    clock: float | None = None

    def now(self) -> float:
        return time.time() if self.clock is None else self.clock

    def move_clock(self, at: float | None = None, advance: float = 0.0, wall: bool = False) -> float:
        """Stop the clock at `at` (default: now) and move it on by `advance` seconds; `wall` goes back to the wall
        clock. (One assignment: safe beside a request reading the clock.)"""
        self.clock = None if wall else (self.now() if at is None else float(at)) + float(advance)
        return self.now()
