"""Connection deadlines, checked by one timer per server instead of one per message.

Why: `asyncio.timeout` around every read and every handler call schedules and cancels a
timer twice per message (a heap push, a `Timeout`, a `current_task` lookup each time):
~17 of the event-loop thread's ~190 µs of CPU per message under load. Here a connection
only notes when its current wait must end (`Deadline.arm`, two attribute writes), and one
timer per server (`Sweeper`) looks at every connection a few times per shortest limit. A
wait past its deadline is cancelled as `asyncio.timeout` would cancel it; the waiting code
asks `Deadline.expired()` whether the cancellation was the deadline's (then it handles the
limit) or someone else's (then it lets the cancellation through).

Precision: a deadline is noticed within one tick, a tenth of the shortest limit, at most
one second (30 s frame deadline: cut after 30-31 s).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable

__all__ = ["Deadline", "Sweeper", "tick_for"]

MAX_TICK_S = 1.0
MIN_TICK_S = 0.005


def tick_for(*limits: float | None) -> float:
    """How often the sweeper looks: a tenth of the shortest limit, within [5 ms, 1 s]."""
    shortest = min((limit for limit in limits if limit is not None), default=MAX_TICK_S * 10)
    return min(MAX_TICK_S, max(MIN_TICK_S, shortest / 10))


class Deadline:
    """When one task's current wait must end, and why; expired once the sweeper cut it."""

    __slots__ = ("_cut", "at", "reason", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.at = math.inf
        self.reason = ""
        self._cut = ""

    def arm(self, at: float, reason: str) -> None:
        """The wait about to start must end by `at` (loop time); `reason` names the limit."""
        self.at = at
        self.reason = reason

    def disarm(self) -> None:
        self.at = math.inf

    def cut(self) -> None:
        """The sweeper: past the deadline, cancel the wait (as `asyncio.timeout` does)."""
        if self.task is not None and not self._cut:
            self._cut = self.reason
            self.at = math.inf
            self.task.cancel()

    def expired(self) -> str:
        """In an `except CancelledError`: the limit that cut the wait ("" if not ours), and
        the cancellation taken back so the task goes on."""
        reason, self._cut = self._cut, ""
        if reason and self.task is not None:
            self.task.uncancel()
        return reason


class Sweeper:
    """One timer for all of a server's deadlines: every `tick` seconds, while there are
    any, each one past its time is cut. `deadlines` gives the current ones."""

    def __init__(self, deadlines: Callable[[], Iterable[Deadline]], tick: float) -> None:
        self._deadlines = deadlines
        self.tick = tick
        self._handle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        """Whether a look is scheduled (none while the server has no connection)."""
        return self._handle is not None

    def start(self) -> None:
        """Start looking (idempotent): call when a connection opens."""
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.tick, self._sweep, loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        found = False
        for deadline in list(self._deadlines()):
            found = True
            if deadline.at <= now:
                deadline.cut()
        self._handle = loop.call_later(self.tick, self._sweep, loop) if found else None
