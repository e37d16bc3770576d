"""One HL7 v2 message in, one `InboundMessage` out: header checks, dispatch by type, failures.

The entry point `read_hl7` (re-exported by the package) cuts the input into messages
(`charsets.py`), reads each header (`header.py`) and hands the message to the reader of
its type: `admin.py` (RAS), `visit.py` (ADT), `orders.py` (RDE/RDS). Whatever happens,
one `InboundMessage` per message: a fault becomes an `InputError` naming the message, its
control id, the segment and the field, never the value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import tzinfo
from types import MappingProxyType

from adapter.core.mappings import Mappings
from adapter.core.model import InboundMessage, InputError, SegmentLocation, Unsupported
from adapter.hl7.er7 import Chunk, Er7Error, Message, parse_message
from adapter.readers.hl7v2.admin import read_ras
from adapter.readers.hl7v2.charsets import decode
from adapter.readers.hl7v2.faults import safe
from adapter.readers.hl7v2.header import Context, Handler, Header, check_header, read_header
from adapter.readers.hl7v2.orders import read_orders
from adapter.readers.hl7v2.visit import read_adt

_VERSION = re.compile(r"2\.[3-8](?:\.\d+)*\Z")


UNREAD_KEY_PREFIX = "hl7:unread:"  # dedup key of a message whose header could not be trusted


def read_hl7(
    data: str | bytes,
    mappings: Mappings,
    site_tz: tzinfo,
    origin: str = "",
    *,
    frame: bool = False,
) -> tuple[InboundMessage, ...]:
    """Read every message in `data`; never raises for bad input.

    `frame=True` reads one MLLP frame (or HTTP body): blank lines are empty
    segments, not message breaks (see `split_messages`).
    """
    context = Context(mappings, site_tz)
    chunks = decode(data, blank_line_ends=not frame)
    return tuple(_read_chunk(chunk, charset, context, origin) for chunk, charset in chunks)


def _read_chunk(chunk: Chunk, charset: str, context: Context, origin: str) -> InboundMessage:
    header: Header | None = None
    digest = content_digest(chunk.lines)
    try:
        message = parse_message(chunk.lines, charset)
        header = read_header(message.msh, digest)
        return _dispatch(message, header, context)
    except Er7Error as exc:
        header = header or (read_header(exc.msh, digest) if exc.msh else None)
        return _failure(chunk, header, origin, exc.where, exc.reason, exc.at)
    except Exception as exc:  # a reader bug must not lose the rest of the file
        return _failure(chunk, header, origin, "", f"unexpected {type(exc).__name__}")


def content_digest(lines: Iterable[str]) -> str:
    """What makes two messages under one sender and MSH-10 the same message, as hex.

    The segments as read (CR, LF and CRLF already cut the same way, blank lines
    dropped), each without trailing whitespace, and MSH-7 left out: an engine that
    re-sends after a lost ACK may stamp a new MSH-7 on the same message, and nothing
    read here depends on MSH-7 (docs/feed-conventions.md, "Re-sends and reused
    control ids"). Everything else counts, MSH-10 included.
    """
    canonical = "\r".join(_without_msh7(line.rstrip()) for line in lines if line.strip())
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _without_msh7(segment: str) -> str:
    if not segment.startswith("MSH") or len(segment) < 4:
        return segment
    fields = segment.split(segment[3])
    if len(fields) > 6:  # fields[0] is "MSH", fields[1] MSH-2: MSH-n is fields[n - 1]
        fields[6] = ""
    return segment[3].join(fields)


def _dispatch(message: Message, header: Header, context: Context) -> InboundMessage:
    check_header(message.msh, header)
    base = InboundMessage(
        dedup_key=header.dedup_key,
        kind=safe(header.kind),
        control_id=header.control_id,
        control_key=header.control_key,
    )
    if not _VERSION.match(header.version):
        reason = f"unsupported HL7 version {safe(header.version)}"
        return replace(base, skip_reason=reason, unsupported=Unsupported.VERSION)
    handler = _HANDLERS.get((header.message_type, header.trigger))
    if handler is None:
        reason = f"unsupported message type {base.kind}"
        return replace(base, skip_reason=reason, unsupported=Unsupported.MESSAGE_TYPE)
    outcome = handler(message, header, context)
    if isinstance(outcome, str):
        return replace(base, skip_reason=outcome)
    return replace(base, events=outcome)


def _failure(
    chunk: Chunk,
    header: Header | None,
    origin: str,
    where: str,
    reason: str,
    at: SegmentLocation | None = None,
) -> InboundMessage:
    """An error result; the dedup key falls back to a digest so a re-sent bad message matches."""
    if header is not None and header.implausible_field:  # its MSH-10 may be patient data
        header = None
    control_id = header.control_id if header else ""
    parts = [origin] if origin else []
    parts.append(f"message {chunk.ordinal}")
    if control_id:
        parts.append(f"(MSH-10 {safe(control_id)})")
    if where:
        parts.append(where)
    if header and header.control_id:
        key, control_key = header.dedup_key, header.control_key
    else:
        digest = hashlib.sha256("\r".join(chunk.lines).encode("utf-8", "replace")).hexdigest()
        key, control_key = f"{UNREAD_KEY_PREFIX}{digest[:32]}", ""
    return InboundMessage(
        dedup_key=key,
        kind=safe(header.kind) if header else "",
        error=InputError(" ".join(parts), reason, at),
        control_id=control_id,
        control_key=control_key,
    )


_HANDLERS: Mapping[tuple[str, str], Handler] = MappingProxyType(
    {
        ("RAS", "O17"): read_ras,
        ("RAS", "O02"): read_ras,
        ("ADT", "A01"): read_adt,
        ("ADT", "A04"): read_adt,
        ("ADT", "A08"): read_adt,
        ("ADT", "A03"): read_adt,
        ("RDE", "O11"): read_orders("order"),
        ("RDE", "O01"): read_orders("order"),
        ("RDE", "O25"): read_orders("order"),
        ("RDS", "O13"): read_orders("dispense"),
        ("RDS", "O01"): read_orders("dispense"),
    }
)
