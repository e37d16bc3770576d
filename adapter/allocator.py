"""Giving memory back to the OS after a peer's buffers go (glibc; a no-op elsewhere).

Why: a hostile or broken peer can make the service buffer up to its budgets (unfinished
MLLP frames, HTTP bodies), and glibc keeps freed heap memory for reuse: 2,000 unfinished
frames left over a gigabyte resident after every connection had closed. Two measures:

- `large_buffers_to_the_os()` (at start-up): allocations of 128 KiB or more get their own
  mapping, unmapped when freed, instead of glibc's dynamic threshold letting them into the
  heap;
- `Trimmer.released(n)`: after at least `TRIM_AFTER_BYTES` of peer buffers were let go,
  `malloc_trim(0)` once, at most every `interval` seconds, returns the free pages left
  in the heap by smaller chunks (HTTP body chunks arrive in whatever sizes TCP gives).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from typing import Any

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_AFTER_BYTES", "Trimmer", "large_buffers_to_the_os"]

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
# Not lower: SQLite allocates 88 KiB (a bulk of 20 pages of 4 KiB) for every ephemeral table
# a statement opens (the encounter upsert opens three per row, for its IN lists), and at
# 64 KiB each was a fresh mapping, page faults and an unmap with a TLB shootdown on every
# core: 110 of the store thread's 185 µs of CPU per message under 8-connection load were
# system time, 45 after. A peer's chunks are at most one MLLP read (64 KiB) and come back
# to the OS through `Trimmer`.
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_AFTER_BYTES = 8 * 1024 * 1024


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only: musl has neither mallopt nor malloc_trim
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def large_buffers_to_the_os() -> bool:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`; False (unchanged) without glibc."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


class Trimmer:
    """Calls `malloc_trim(0)` after large releases, at most once per `interval` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.trims = 0
        self._libc = _libc()
        self._pending = 0
        self._scheduled: asyncio.TimerHandle | None = None

    def released(self, amount: int) -> None:
        """`amount` bytes of peer buffers were let go (call on the event loop)."""
        if self._libc is None or amount <= 0:
            return
        self._pending += amount
        if self._pending >= TRIM_AFTER_BYTES and self._scheduled is None:
            loop = asyncio.get_running_loop()
            self._scheduled = loop.call_later(self.interval, self._trim)

    def _trim(self) -> None:
        self._scheduled = None
        self._pending = 0
        if self._libc is not None:
            self._libc.malloc_trim(0)
            self.trims += 1
