"""Reading MLLP connections into one buffer they share (`recv_into`), not a new one per read.

Why a module of its own: it is the one place the listener reaches below asyncio's streams,
and the reason (below) is about memory, not MLLP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["SharedBufferProtocol"]


class SharedBufferProtocol(asyncio.StreamReaderProtocol, asyncio.BufferedProtocol):
    """A `StreamReaderProtocol` the transport reads into with `recv_into`, into a buffer
    all the server's connections share, instead of `recv`.

    Why: asyncio's plain `recv` asks for 256 KiB every time; above the mmap threshold the
    service fixes (`adapter.allocator`) that is a fresh mapping per read, shrunk by `mremap`
    and unmapped once the bytes are read: three system calls, page faults and a TLB
    shootdown on every core, per message (~13 % of the service's CPU under load). Sharing
    one buffer is safe: the transport fills it and calls `buffer_updated` in one step on
    the loop's thread, and only the bytes received are copied out, before anything else
    runs. TLS transports (`asyncio.sslproto`) read into it the same way.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        receive: memoryview,
    ) -> None:
        super().__init__(reader, connected)
        self._receive = receive

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._receive[:nbytes]))
