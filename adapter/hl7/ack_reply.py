"""What a receiver's ACK says about a message we sent: its code, the control id it answers,
and the receiver's error text. Pure: bytes in, a typed value out.

The text is what an interface analyst needs to fix a refusal: MSA-3 (text message, the
only place before 2.4), ERR-8 (user message), ERR-3 (HL7 error code and its text) and
ERR-1's code (2.3: segment^sequence^field^code), each once, in that order.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.hl7.ack import AckCode
from adapter.hl7.er7 import Er7Error, Segment, parse_message, split_messages

MAX_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class AckReply:
    code: AckCode | None  # None: no MSA, or an MSA-1 outside table 0008
    raw_code: str  # MSA-1 as received, for the reason when it is not a known code
    control_id: str  # MSA-2: the MSH-10 this ACK answers
    text: str


def read_ack_reply(ack: bytes) -> AckReply:
    chunks = split_messages(ack.decode("utf-8", errors="replace"))
    if not chunks:
        return AckReply(None, "", "", "")
    try:
        message = parse_message(chunks[0].lines)
    except Er7Error:
        return AckReply(None, "", "", "")
    msa = message.first("MSA")
    if msa is None:
        return AckReply(None, "", "", "")
    raw_code = msa.get(1).strip().upper()
    code = AckCode(raw_code) if raw_code in AckCode.__members__ else None
    texts = [msa.get(3)]
    for err in message.all("ERR"):
        texts.extend(_err_texts(err))
    joined = "; ".join(dict.fromkeys(t.strip() for t in texts if t.strip()))
    return AckReply(code, raw_code, msa.get(2).strip(), joined[:MAX_TEXT_CHARS])


def _err_texts(err: Segment) -> list[str]:
    coded = " ".join(p for p in (err.get(3, 1), err.get(3, 2)) if p)
    legacy = " ".join(p for p in (err.get(1, 4, 1), err.get(1, 4, 2)) if p)
    return [err.get(8), coded, legacy]
