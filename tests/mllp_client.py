"""A small asyncio MLLP client for tests: the sender's side of the protocol, on real sockets.

Why a client of our own: tests must exercise the server the way interface
engines do (one connection, send a frame, wait for its ACK, send the next),
including frames cut across TCP writes. Reused by other test modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator, Sequence

from adapter.hl7.mllp_framing import Frame, MllpDecoder, encode_frame

__all__ = ["MllpClient", "connect", "hl7_message", "send_messages", "send_raw"]

DEFAULT_TIMEOUT = 10.0


class MllpClient:
    """One open connection: write frames (whole or cut) and read ACK payloads in order."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seed: int | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.rnd = random.Random(seed)
        self._decoder = MllpDecoder()
        self._acks: deque[bytes] = deque()

    async def send(self, payload: bytes, *, split_writes: bool = False) -> None:
        """Write one framed message, optionally cut at 1-4 random points into separate writes."""
        frame = encode_frame(payload)
        if not split_writes or len(frame) < 2:
            await self.write_raw(frame)
            return
        count = self.rnd.randint(1, min(4, len(frame) - 1))
        cuts = sorted(self.rnd.sample(range(1, len(frame)), count))
        for start, stop in zip([0, *cuts], [*cuts, len(frame)], strict=True):
            await self.write_raw(frame[start:stop])
            await asyncio.sleep(0)

    async def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (stray bytes, broken frames) and flush them."""
        self.writer.write(data)
        await self.writer.drain()

    async def read_ack(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The next ACK payload; raises TimeoutError, or EOFError if the server closed."""
        async with asyncio.timeout(timeout):
            while not self._acks:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                for item in self._decoder.feed(data):
                    if isinstance(item, Frame):
                        self._acks.append(item.payload)
        return self._acks.popleft()

    async def wait_closed_by_server(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read until the server closes; returns what arrived meanwhile (normally nothing)."""
        received = bytearray()
        async with asyncio.timeout(timeout):
            while data := await self.reader.read(65536):
                received += data
        return bytes(received)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(host: str, port: int, *, seed: int | None = None) -> AsyncIterator[MllpClient]:
    """An open connection for the duration of the block."""
    reader, writer = await asyncio.open_connection(host, port)
    client = MllpClient(reader, writer, seed)
    try:
        yield client
    finally:
        await client.close()


async def send_messages(
    host: str,
    port: int,
    messages: list[bytes],
    *,
    split_writes: bool = False,
    seed: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[bytes]:
    """Send messages on ONE connection, each after the previous ACK; returns the ACK payloads."""
    acks: list[bytes] = []
    async with connect(host, port, seed=seed) as client:
        for message in messages:
            await client.send(message, split_writes=split_writes)
            acks.append(await client.read_ack(timeout))
    return acks


async def send_raw(
    host: str, port: int, chunks: Sequence[bytes], expect: int, timeout: float = DEFAULT_TIMEOUT
) -> list[bytes]:
    """Write raw chunks (not framed by us) on one connection and read `expect` ACK payloads."""
    async with connect(host, port) as client:
        for chunk in chunks:
            await client.write_raw(chunk)
            await asyncio.sleep(0)
        return [await client.read_ack(timeout) for _ in range(expect)]


def hl7_message(control_id: str, *, sep: str = "\r", filler: int = 0, header: str = "") -> bytes:
    """A small RAS^O17 with fictitious PHI (so log tests can look for it); `filler` pads an NTE."""
    msh = header or (
        f"MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH_BILLING|20250314161502-0400||RAS^O17^RAS_O17|"
        f"{control_id}|P|2.5.1"
    )
    segments = [
        msh,
        "PID|1||E1004417^^^NRH^MR||SAMPLEPATIENT^AVERY^J||19610422|F",
        "PV1|1|O|ONCINF^CHAIR12^^NRH_CANCER_CTR",
        "ORC|RE|ORD70001^EPIC|RX70001^EPICRX||CM",
        "RXA|0|1|20250314093000-0400|20250314094600-0400|00409-4755-03^ONDANSETRON^NDC|8|mg",
    ]
    if filler:
        segments.append("NTE|1||" + "x" * filler)
    return (sep.join(segments) + sep).encode()
