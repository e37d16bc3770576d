"""MLLP framing, sans-I/O: bytes in, complete frames out; a payload in, its frame out.

A frame is 0x0B, the payload, 0x1C 0x0D. The decoder is tolerant of what real
interface engines send (stray CR/LF between frames, a missing trailing CR) and
bounded: a frame larger than the limit is never buffered whole, it becomes an
`Oversize` item carrying its first bytes so the server can still answer MSH-10.

Why no I/O here (h11's shape): the asyncio server (`adapter.listeners.mllp`), the `send`
client (`adapter.cli.send`) and the tests feed it bytes however they got them, cut
anywhere; what it decides depends only on the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CARRIAGE_RETURN",
    "DEFAULT_MAX_FRAME_BYTES",
    "END_BLOCK",
    "OVERSIZE_HEAD_BYTES",
    "START_BLOCK",
    "Frame",
    "Item",
    "MllpDecoder",
    "Oversize",
    "encode_frame",
]

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
OVERSIZE_HEAD_BYTES = 4096  # enough for any real MSH, so an oversize frame can be acknowledged
_START = b"\x0b"
_END = b"\x1c"
_TRAILER = b"\x1c\x0d"


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete payload, as sent (CR, LF or CRLF separators kept for the reader).

    `skipped` counts bytes discarded since the previous item (stray bytes between
    frames, an abandoned partial frame); `missing_cr` is true when the end block
    was not followed by CR. Both are reported, neither is an error.
    """

    payload: bytes
    skipped: int = 0
    missing_cr: bool = False


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame over the size limit: its payload was discarded, only `head` was kept."""

    head: bytes
    size: int  # payload bytes seen between the start and end blocks
    skipped: int = 0
    missing_cr: bool = False


Item = Frame | Oversize


class _State(Enum):
    OUTSIDE = "outside"  # looking for a start block
    INSIDE = "inside"  # buffering a payload
    DISCARDING = "discarding"  # in an oversize payload: counting, not buffering


class MllpDecoder:
    """Incremental MLLP decoder: `feed` bytes as they arrive, get complete items back.

    Why incremental and bounded: TCP delivers frames cut anywhere and glued
    together, and a peer must not be able to make us buffer without limit. The
    buffer never holds more than `max_frame_bytes` (an end block waiting for the
    byte after it is held as a flag, not in the buffer).

    The payload is held as the list of chunks it arrived in and joined once, at the frame's
    end: growing one bytearray to a megabyte per connection leaves the allocator's arenas
    fragmented, and their memory stayed with the process after the connections closed.

    Rules: bytes before a start block are skipped and counted; 0x1C ends a
    payload whatever follows it (CR is consumed, anything else is reported as
    `missing_cr` and, unless it is a start block, skipped); a start block inside
    a payload abandons the partial payload (counted as skipped) and starts anew,
    since neither 0x0B nor 0x1C can occur in HL7 text.

    A 0x1C that ends a read completes the frame at once: a sender that omits the
    CR must not wait for its ACK until it sends something else. The CR, when it
    comes in the next read, is consumed silently; when it does not come, only
    the connection's `missing_cr` counter says so (the frame was already handed on).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.max_frame_bytes = max_frame_bytes
        self.skipped_bytes = 0  # totals for the connection's lifetime
        self.frames = 0
        self.oversize_frames = 0
        self.missing_cr = 0
        self.abandoned = 0
        self._state = _State.OUTSIDE
        self._chunks: list[bytes] = []
        self._buffered = 0  # bytes held in `_chunks`
        self._size = 0  # payload bytes of the current frame (buffered or discarded)
        self._expect_cr = False  # the previous read ended with 0x1C: a CR may follow
        self._skipped = 0  # skipped since the last item

    @property
    def buffered(self) -> int:
        """Bytes held between calls (for the bounded-memory guarantee and the global budget)."""
        return self._buffered

    def head(self, limit: int = OVERSIZE_HEAD_BYTES) -> bytes:
        """The first bytes of the unfinished frame (its MSH, when that much has come)."""
        return b"".join(self._chunks)[:limit] if self.in_frame else b""

    @property
    def in_frame(self) -> bool:
        """True when a frame has started and not ended: data lost if the peer closes now."""
        return self._state is not _State.OUTSIDE

    @property
    def partial_bytes(self) -> int:
        """Payload bytes of the unfinished frame (for the log when the peer closes)."""
        return self._size if self.in_frame else 0

    def feed(self, data: bytes) -> list[Item]:
        """Consume one chunk; returns the items it completed, in order."""
        items: list[Item] = []
        pos = 0
        if self._expect_cr and data:
            self._expect_cr = False
            if data[0] == CARRIAGE_RETURN:
                pos = 1
            else:
                self.missing_cr += 1
        size = len(data)
        while pos < size:
            if self._state is _State.OUTSIDE:
                pos = self._seek_start(data, pos)
            else:
                pos = self._consume(items, data, pos)
        return items

    def _seek_start(self, data: bytes, pos: int) -> int:
        start = data.find(_START, pos)
        if start < 0:
            self._skipped += len(data) - pos
            return len(data)
        self._skipped += start - pos
        self._begin()
        return start + 1

    def _begin(self) -> None:
        self._state = _State.INSIDE
        self._size = 0
        self._drop()

    def _consume(self, items: list[Item], data: bytes, pos: int) -> int:
        """Take payload bytes up to the next end block (or restart, or the chunk's end)."""
        end = data.find(_END, pos)
        limit = len(data) if end < 0 else end
        restart = data.find(_START, pos, limit)
        if restart >= 0:  # a new frame before this one ended: the partial one is abandoned
            self.abandoned += 1
            self._skipped += self._size + (restart - pos) + 1  # +1: the abandoned start block
            self._begin()
            return restart + 1
        self._append(data, pos, limit)
        if end < 0:
            return len(data)
        if end + 1 == len(data):  # the CR, if any, is in the next read: answer now anyway
            self._expect_cr = True
            self._close(items, missing_cr=False)
            return len(data)
        return self._finish(items, data, end + 1)

    def _append(self, data: bytes, start: int, stop: int) -> None:
        """Buffer payload bytes, switching to discarding once over the limit."""
        count = stop - start
        self._size += count
        if self._state is _State.DISCARDING:
            return
        if self._size <= self.max_frame_bytes:
            self._keep(data if start == 0 and stop == len(data) else data[start:stop])
            return
        head = min(OVERSIZE_HEAD_BYTES, self.max_frame_bytes)
        kept = (b"".join(self._chunks) + data[start : start + head])[:head]
        self._drop()
        self._keep(kept)
        self._state = _State.DISCARDING

    def _keep(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self._buffered += len(chunk)

    def _drop(self) -> None:
        self._chunks = []
        self._buffered = 0

    def abandon(self) -> None:
        """Forget the unfinished frame (the server refused it); its bytes count as skipped."""
        if self.in_frame:
            self.abandoned += 1
            self._skipped += self._size
        self._state = _State.OUTSIDE
        self._size = 0
        self._drop()

    def _finish(self, items: list[Item], data: bytes, after: int) -> int:
        """Close the frame whose end block preceded `after`; returns where to go on."""
        missing_cr = data[after] != CARRIAGE_RETURN
        self._close(items, missing_cr)
        if missing_cr:
            self.missing_cr += 1
            return after  # a start block there is seen by `_seek_start`; other bytes skipped
        return after + 1

    def _close(self, items: list[Item], missing_cr: bool) -> None:
        items.append(self._item(missing_cr))
        self._state = _State.OUTSIDE
        self._drop()
        self._size = 0

    def _item(self, missing_cr: bool) -> Item:
        skipped, self._skipped = self._skipped, 0
        self.skipped_bytes += skipped
        if self._state is _State.DISCARDING:
            self.oversize_frames += 1
            return Oversize(b"".join(self._chunks), self._size, skipped, missing_cr)
        self.frames += 1
        return Frame(b"".join(self._chunks), skipped, missing_cr)


def encode_frame(payload: bytes) -> bytes:
    """Wrap a payload in MLLP blocks; refuses payloads holding a block byte (unframeable)."""
    if _START in payload or _END in payload:
        raise ValueError("payload contains an MLLP block character")
    return b"\x0b" + payload + _TRAILER
