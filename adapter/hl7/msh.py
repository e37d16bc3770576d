"""What we read from an inbound HL7 v2 header: the sender's MSH (`read_msh`, `MshInfo`) and,
for the clients that send, the MSA of the ACK a peer answered with (`read_msa`).

Nothing here builds anything: `adapter.hl7.ack` turns an `MshInfo` into the ACK. Nothing here
raises for bad input either: an unreadable header is None, and the ACK builder still answers.
MSH-15/16 (accept and application acknowledgment conditions, table 0155) are read leniently
(`MshInfo.accept_ack_type`), because they decide whether an ACK is sent at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adapter.hl7.er7 import (
    Er7Error,
    Segment,
    implausible_header_field,
    parse_message,
    split_messages,
)

__all__ = ["MshInfo", "read_msa", "read_msh"]

_HEADER_WINDOW = 64 * 1024  # an MSH starts within this many bytes or the message has none
_HEADER_LINE = re.compile(rb"(?:\A|[\r\n\x0b])[ \t]*(?:\xef\xbb\xbf)?(MSH[^\r\n\x0b\x1c]*)")
_TABLE_0155 = frozenset({"AL", "NE", "ER", "SU"})  # accept/application acknowledgment conditions


@dataclass(frozen=True, slots=True)
class MshInfo:
    """What an inbound MSH says; `header` keeps the raw fields for echoing.

    The decoded values are properties, read on demand: an ACK in original mode
    needs only the raw fields, and decoding all twelve on every message cost a
    third of building the ACK.
    """

    header: Segment
    charset: str  # codec the header was decoded with; the ACK is encoded with it

    @property
    def sending_application(self) -> str:
        return self.header.get(3)

    @property
    def sending_facility(self) -> str:
        return self.header.get(4)

    @property
    def receiving_application(self) -> str:
        return self.header.get(5)

    @property
    def receiving_facility(self) -> str:
        return self.header.get(6)

    @property
    def control_id(self) -> str:
        return self.header.get(10)

    @property
    def message_type(self) -> str:
        return self.header.get(9, 1)

    @property
    def trigger(self) -> str:
        return self.header.get(9, 2)

    @property
    def structure(self) -> str:
        return self.header.get(9, 3)

    @property
    def version(self) -> str:
        return self.header.get(12)

    @property
    def processing_id(self) -> str:
        return self.header.get(11)

    @property
    def accept_ack_type(self) -> str:
        """MSH-15: AL, NE, ER, SU; empty in original mode (see `_ack_condition`)."""
        return _ack_condition(self.header.raw(15))

    @property
    def app_ack_type(self) -> str:
        """MSH-16, read as MSH-15 is."""
        return _ack_condition(self.header.raw(16))

    @property
    def plausible(self) -> bool:
        """False when fields slid (a lost segment break): MSH-10 may then be PHI."""
        return not implausible_header_field(self.header)

    @property
    def enhanced_mode(self) -> bool:
        """HL7's rule: enhanced acknowledgment mode when MSH-15 or MSH-16 is valued."""
        return bool(self.accept_ack_type or self.app_ack_type)

    @property
    def loggable_control_id(self) -> str:
        """MSH-10 when the header has a real header's shape, else '' (see `plausible`)."""
        return self.control_id if self.plausible else ""


def read_msh(message: bytes) -> MshInfo | None:
    """The message's MSH, or None when there is no readable one (no MSH, bad MSH-1/MSH-2)."""
    match = _HEADER_LINE.search(message, 0, _HEADER_WINDOW)
    if match is None:
        return None
    raw = match.group(1)
    try:
        charset, text = "utf-8", raw.decode("utf-8")
    except UnicodeDecodeError:
        charset, text = "latin-1", raw.decode("latin-1")  # lossless: echoed bytes stay exact
    try:
        header = parse_message([text]).msh
    except Er7Error:
        return None
    return _info(header, charset)


def _info(header: Segment, charset: str) -> MshInfo:
    return MshInfo(header, charset)


def _ack_condition(raw: str) -> str:
    """MSH-15/16 read leniently: ' al' is AL; a value outside table 0155 counts as AL.

    Why AL: an unknown condition still asks for enhanced mode, and a sender left
    without any answer waits and resends forever, while an ACK it did not want
    is at worst ignored.
    """
    if not raw:
        return ""
    value = raw.strip().upper()
    if not value or value in _TABLE_0155:
        return value
    return "AL"


def read_msa(ack: bytes) -> tuple[str, str]:
    """MSA-1 and MSA-2 of an ACK ('' when absent): lets the server log what it sent."""
    chunks = split_messages(ack.decode("latin-1"))
    if not chunks:
        return "", ""
    try:
        msa = parse_message(chunks[0].lines).first("MSA")
    except Er7Error:
        return "", ""
    return (msa.get(1), msa.get(2)) if msa is not None else ("", "")
