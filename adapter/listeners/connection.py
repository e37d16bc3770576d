"""One MLLP client connection and what it holds: its peer, its decoder, its share of the budget.

Why apart from the server (`adapter.listeners.mllp`): these are the connection's facts and the
two limits that reach across connections (the budget of unfinished frames, the linger
after a refusal); the server's loop reads like its docstring without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

from adapter.hl7.mllp_framing import MllpDecoder
from adapter.listeners.deadlines import Deadline

__all__ = ["Connection", "FrameBudget", "PeerInfo", "complete_header", "linger"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who sent a message: for logs and routing, never for trust."""

    host: str
    port: int
    connection: int  # per-server sequence number, to tell connections apart in logs

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(slots=True)
class Connection:
    """One client connection; closing it is safe while `reading` with no partial frame."""

    peer: PeerInfo
    writer: asyncio.StreamWriter
    decoder: MllpDecoder
    task: asyncio.Task[None] | None
    deadline: Deadline  # when its current wait must end (`adapter.listeners.deadlines`)
    reading: bool = False
    held: int = 0  # bytes of its unfinished frame counted in the server's FrameBudget

    @property
    def idle(self) -> bool:
        return self.reading and not self.decoder.in_frame


class FrameBudget:
    """Bytes of unfinished frames held by all connections together, against one limit.

    Why global: a per-frame limit alone lets 2,000 connections each hold a frame just
    under it (2 GB). Past the budget, the connection whose read would exceed it is refused
    (see `MllpServer`), and the others go on.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the MLLP buffer budget must be positive")
        self.limit = limit
        self.used = 0

    def hold(self, before: int, now: int) -> bool:
        """Move one connection's holding from `before` to `now`; False when over the limit."""
        self.used += now - before
        return self.used <= self.limit


LINGER_S = 1.0
LINGER_BYTES = 32 * 1024


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what still comes until the peer closes, `LINGER_S` passes or
    `LINGER_BYTES` were dropped: enough for a sender of ordinary messages to finish its
    frame and read the AR, not a loop that reads a gigabyte for a peer that keeps sending
    (that one gets a reset, and resends later)."""
    with contextlib.suppress(OSError, TimeoutError):
        if writer.can_write_eof():
            writer.write_eof()
        dropped = 0
        async with asyncio.timeout(LINGER_S):
            while dropped < LINGER_BYTES and (data := await reader.read(64 * 1024)):
                dropped += len(data)


_FIRST_LINE = re.compile(rb"[^\r\n]*[\r\n]")


def complete_header(head: bytes) -> bytes:
    """The part of an unfinished frame up to the end of its MSH segment ("" before that):
    a header cut mid-way could give a wrong control id."""
    start = head.find(b"MSH")
    if start < 0:
        return b""
    end = _FIRST_LINE.match(head, start)
    return head[: end.end()] if end else b""
