"""MSH read into a `Header` (sender, control id, type, version, dedup keys) and checked;
the `Context` (mappings, site time zone) every message is read against; the reader signature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

from adapter.core.mappings import Mappings
from adapter.core.model import Event
from adapter.hl7.er7 import Message, Segment, implausible_header_field
from adapter.readers.hl7v2.faults import fault


@dataclass(frozen=True, slots=True)
class Context:
    """The run's settings every message is read against."""

    mappings: Mappings
    site_tz: tzinfo


@dataclass(frozen=True, slots=True)
class Header:
    """What MSH says about the message; fields may be empty until `check_header`."""

    sender: str
    control_id: str
    message_type: str
    trigger: str
    version: str
    implausible_field: int = 0  # see `implausible_header_field`; 0 = a plausible header
    digest: str = ""  # `content_digest` of the whole message

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}" if self.trigger else self.message_type

    @property
    def control_key(self) -> str:
        """Sender and MSH-10: what names the message, not what it says (the old dedup key)."""
        return f"hl7:{self.sender}:{self.control_id}"

    @property
    def dedup_key(self) -> str:
        return f"{self.control_key}:{self.digest}"


Outcome = tuple[Event, ...] | str  # events, or the reason the message is skipped


Handler = Callable[[Message, Header, Context], Outcome]


def read_header(msh: Segment, digest: str) -> Header:
    return Header(
        sender=f"{_hd(msh, 3)}^{_hd(msh, 4)}",
        control_id=msh.get(10).strip(),
        message_type=msh.get(9, 1).strip().upper(),
        trigger=msh.get(9, 2).strip().upper(),
        version=msh.get(12, 1).strip(),
        implausible_field=implausible_header_field(msh),
        digest=digest,
    )


def _hd(segment: Segment, field: int) -> str:
    """An HD value's namespace id, else its universal id."""
    return segment.get(field, 1).strip() or segment.get(field, 2).strip()


def check_header(msh: Segment, header: Header) -> None:
    if not header.message_type:
        raise fault(msh, 9, "message type is empty")
    if not header.control_id:
        raise fault(msh, 10, "message control id is empty")
    if header.implausible_field:
        field = header.implausible_field
        raise fault(msh, field, _IMPLAUSIBLE[field])


_IMPLAUSIBLE = {
    7: "message date/time is not an HL7 timestamp (was a segment break lost?)",
    9: "message type is not a three-character code (was a segment break lost?)",
    10: "message control id has components (was a segment break lost?)",
    12: "version id is not a version number (was a segment break lost?)",
}
