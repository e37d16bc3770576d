"""`charge-adapter send`: a small MLLP client for interface analysts and the demo.

Sends every message of the given HL7 v2 files over one connection, each after
the previous ACK, and prints one line per message: its MSH-10 and the ACK code
(with the ERR text when there is one). Exit 0 when every message was accepted
(AA/CA), 1 when any was not, 2 when the files or the connection failed.
With `--tls` it speaks MLLP over TLS, verifying the server's certificate (`--ca`), and
presents a client certificate for mutual TLS (`--cert`, `--key`).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapter.hl7.ack import AckCode
from adapter.hl7.er7 import split_messages
from adapter.hl7.mllp_framing import Frame, MllpDecoder, encode_frame
from adapter.hl7.msh import read_msa, read_msh

ACCEPTED = frozenset({AckCode.AA, AckCode.CA})  # MSA-1 as read; a StrEnum equals its text


@dataclass(frozen=True, slots=True)
class SendTls:
    """MLLP over TLS: whom to trust, what to present (mutual TLS), which name to expect."""

    ca_file: str | None = None  # None: the system's CAs
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None  # None: the host connected to

    def context(self) -> ssl.SSLContext:
        """A verifying client context (ssl.SSLError / OSError when a file will not load)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def messages_in(paths: Sequence[Path]) -> list[bytes]:
    """Each message of each file, segments joined with CR as MLLP peers expect."""
    out: list[bytes] = []
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        out.extend(("\r".join(chunk.lines) + "\r").encode() for chunk in split_messages(text))
    return out


async def send(
    host: str,
    port: int,
    messages: list[bytes],
    timeout: float,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> list[bytes]:
    connect = asyncio.open_connection(
        host, port, ssl=tls, server_hostname=(server_name or host) if tls else None
    )
    reader, writer = await asyncio.wait_for(connect, timeout)
    decoder = MllpDecoder()
    pending: list[bytes] = []  # frames that arrived in the same read as an earlier one
    acks: list[bytes] = []
    try:
        for message in messages:
            writer.write(encode_frame(message))
            await writer.drain()
            acks.append(await asyncio.wait_for(_next_frame(reader, decoder, pending), timeout))
    finally:
        writer.close()
    return acks


async def _next_frame(
    reader: asyncio.StreamReader, decoder: MllpDecoder, pending: list[bytes]
) -> bytes:
    while not pending:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("connection closed before the ACK")
        pending.extend(i.payload for i in decoder.feed(data) if isinstance(i, Frame))
    return pending.pop(0)


def run(
    host: str, port: int, paths: Sequence[Path], timeout: float, tls: SendTls | None = None
) -> int:
    try:
        messages = messages_in(paths)
    except OSError as exc:
        print(f"charge-adapter: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        context = tls.context() if tls else None
    except (ssl.SSLError, OSError) as exc:
        print(f"charge-adapter: TLS files (--ca/--cert/--key): {_reason(exc)}", file=sys.stderr)
        return 2
    try:
        server_name = tls.server_name if tls else None
        acks = asyncio.run(send(host, port, messages, timeout, context, server_name))
    except (OSError, TimeoutError, ConnectionError) as exc:
        print(f"charge-adapter: MLLP {host}:{port}: {_reason(exc)}", file=sys.stderr)
        return 2
    rejected = 0
    for message, ack in zip(messages, acks, strict=True):
        msh = read_msh(message)
        code, _ = read_msa(ack)
        rejected += code not in ACCEPTED
        print(f"{msh.control_id if msh else '?'} {code}")
    return 1 if rejected else 0


def _reason(exc: BaseException) -> str:
    """One line: the file and OS reason, the TLS verification failure, or the error type."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"server certificate not accepted: {exc.verify_message}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
