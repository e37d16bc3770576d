"""DFT^P03 over MLLP as a sink: one receiver (billing system or interface engine) per
destination `dft:<profile>`.

The payload is the DFT built when the version was queued (`adapter/hl7/dft.py`); its
MSH-10 is the idempotency key, deterministic per encounter version, so a resend after a
lost ACK carries the same MSH-10 and the receiver's duplicate check drops it. One
connection is kept and reused for every message, one message in flight at a time, and is
dropped on any failure (the next attempt opens a new one): a late ACK for an abandoned
send then cannot be taken for the next message's.

The receiver's ACK decides: AA or CA -> delivered; AE or CE, no ACK within the timeout, or
no connection -> retried with the worker's backoff; AR or CR -> rejected for good with the
receiver's ERR text. An ACK answering another MSH-10 (a late one) is skipped.

The DFTs of one patient go in queue order (`in_order`, ordering key the patient): each
encounter's versions (a version's credits reverse the one before) and the patient's
encounters, as a billing system posts them. A refusal is stored by `on_refused` (the
queue, adapter/outbox/dft_queue.py), which also takes back the posting it would have
made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from adapter.hl7.ack import AckCode
from adapter.hl7.ack_reply import AckReply, read_ack_reply
from adapter.hl7.mllp_framing import Frame, MllpDecoder, encode_frame
from adapter.hl7.msh import read_msh
from adapter.outbox.sink import DeliveryResult, OutboxItem
from adapter.store.base import Delivery, ResourceRow

DESTINATION_PREFIX = "dft:"
DELIVERED = frozenset({AckCode.AA, AckCode.CA})
RETRIED = frozenset({AckCode.AE, AckCode.CE})
REJECTED = frozenset({AckCode.AR, AckCode.CR})


class DftUrlError(ValueError):
    """`ADAPTER_DFT_URL` is not `mllp://host:port` or `mllps://host:port`."""


@dataclass(frozen=True, slots=True)
class MllpEndpoint:
    host: str
    port: int
    tls: bool

    @staticmethod
    def parse(url: str) -> MllpEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mllp", "mllps"):
            raise DftUrlError("must start with mllp:// or mllps://")
        try:
            port = parts.port
        except ValueError:
            raise DftUrlError("the port must be a number from 1 to 65535") from None
        if not parts.hostname or port is None or port == 0:
            raise DftUrlError("must name a host and a port: mllp://host:port")
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise DftUrlError("only mllp[s]://host:port: no path, query or user")
        return MllpEndpoint(parts.hostname, port, parts.scheme == "mllps")


def destination_for(profile: str) -> str:
    return f"{DESTINATION_PREFIX}{profile}"


def ordering_key_of(row: ResourceRow) -> str:
    """The patient: a receiver takes one patient's DFTs in the order they were queued."""
    return row.patient_ref or row.encounter_key


def result_of(reply: AckReply) -> DeliveryResult:
    """The ACK's answer as a delivery result (pure)."""
    said = f": {reply.text}" if reply.text else ""
    if reply.code in DELIVERED:
        return DeliveryResult.delivered()
    if reply.code in REJECTED:
        return DeliveryResult.rejected(f"{reply.raw_code}{said}")
    if reply.code in RETRIED:
        return DeliveryResult.retry_later(f"{reply.raw_code}{said}")
    return DeliveryResult.retry_later(f"ACK with MSA-1 {reply.raw_code!r}{said}")


class DftMllpSink:
    name = "dft-mllp"

    def __init__(
        self,
        destination: str,
        endpoint: MllpEndpoint,
        tls: ssl.SSLContext | None,
        ack_timeout: float,
        on_refused: Callable[[Delivery, str, datetime], Awaitable[None]] | None = None,
    ) -> None:
        self.on_refused = on_refused
        self.destination = destination
        self.endpoint = endpoint
        self.tls = tls
        self.ack_timeout = ack_timeout
        self.connections_opened = 0
        self._lock = asyncio.Lock()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._decoder = MllpDecoder()
        self._pending: list[bytes] = []

    def accepts(self, destination: str) -> bool:
        return destination == self.destination

    def item(self, delivery: Delivery, row: ResourceRow) -> OutboxItem:
        """The DFT queued with the row; it waits while an earlier DFT of the same patient
        (the encounter's previous version, whose charges it may credit, or an earlier
        encounter) is queued."""
        payload = (delivery.payload or "").encode()
        msh = read_msh(payload)
        return OutboxItem(
            delivery=delivery,
            ordering_key=ordering_key_of(row),
            idempotency_key=msh.control_id if msh else "",
            payload=payload,
            in_order=True,
        )

    async def refused(self, delivery: Delivery, reason: str, now: datetime) -> bool:
        if self.on_refused is None:
            return False
        await self.on_refused(delivery, reason, now)
        return True

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        async with self._lock:  # one message in flight on the one connection
            reused = self._stream is not None
            result = await self._attempt(item)
            if result is None and reused:  # the kept connection had gone: reopen once now
                result = await self._attempt(item)
            return result or DeliveryResult.retry_later("connection closed before the ACK")

    async def _attempt(self, item: OutboxItem) -> DeliveryResult | None:
        """One send and its ACK; None when the connection broke under it."""
        try:
            reader, writer = await self._connection()
        except (OSError, TimeoutError) as exc:
            return DeliveryResult.retry_later(f"connect {self._where()}: {_why(exc)}")
        try:
            writer.write(encode_frame(item.payload))
            await writer.drain()
            reply = await asyncio.wait_for(
                self._ack_for(reader, item.idempotency_key), self.ack_timeout
            )
        except TimeoutError:
            await self._drop()
            return DeliveryResult.retry_later(f"no ACK within {self.ack_timeout:g} s")
        except (OSError, ConnectionError):
            await self._drop()
            return None
        return result_of(reply)

    async def _ack_for(self, reader: asyncio.StreamReader, control_id: str) -> AckReply:
        while True:
            while not self._pending:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("connection closed before the ACK")
                items = self._decoder.feed(data)
                self._pending.extend(i.payload for i in items if isinstance(i, Frame))
            reply = read_ack_reply(self._pending.pop(0))
            if reply.control_id == control_id:
                return reply

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._stream is None:
            host, port = self.endpoint.host, self.endpoint.port
            connect = asyncio.open_connection(
                host, port, ssl=self.tls, server_hostname=host if self.tls else None
            )
            self._stream = await asyncio.wait_for(connect, self.ack_timeout)
            self._decoder = MllpDecoder()
            self._pending = []
            self.connections_opened += 1
        return self._stream

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream[1].close()
            with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
                await stream[1].wait_closed()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    def _where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"receiver certificate not accepted: {exc.verify_message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
