"""Why a message was refused, as a code and a place: what the dead-letter worklist shows.

The reader's error text can quote the refused value (a date of birth typed into the wrong
field, a name where a code belongs), so the worklist, its log lines and `/admin` never
show it: they show a `RefusalReason` and the location of the fault (HL7 segment and
field, or a FHIR JSON path), which is enough to find it with `dead-letters show ID`.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from adapter.core.model import SegmentLocation


class RefusalReason(StrEnum):
    """The refusal codes of dead letters (`charge-adapter dead-letters --reason`)."""

    NO_MESSAGE = "no-message"  # no MSH segment: nothing to read
    IMPLAUSIBLE_HEADER = "implausible-header"  # MSH fields slid (a lost segment break)
    UNREADABLE_FIELD = "unreadable-field"  # a segment or field the reader cannot read
    UNSUPPORTED_TYPE = "unsupported-type"  # MSH-9 not a type read here
    UNSUPPORTED_VERSION = "unsupported-version"  # MSH-12
    SEVERAL_MESSAGES = "several-messages"  # a second MSH in one MLLP frame
    OVERSIZE = "oversize"  # over the frame limit: only its head is kept
    INVALID_RESOURCE = "invalid-resource"  # a FHIR element that cannot be read
    NOT_JSON = "not-json"  # a FHIR body that is not one JSON document / object
    WRONG_CONTENT_TYPE = "wrong-content-type"  # refused for its Content-Type (415)
    WRONG_SHAPE = "wrong-shape"  # JSON of the wrong shape for the URL (type, id, Bundle)
    UNKNOWN = "unknown"  # kept before reasons were recorded


@dataclass(frozen=True, slots=True)
class Refusal:
    """A dead letter's reason and where the fault is (never the refused value)."""

    reason: RefusalReason
    location: str = ""


def reason_of(stored: str) -> RefusalReason:
    """The stored code as the enum (dead letters older than the codes: UNKNOWN)."""
    try:
        return RefusalReason(stored)
    except ValueError:
        return RefusalReason.UNKNOWN


def hl7_location(at: SegmentLocation | None) -> str:
    """`RXA #1 field RXA-3`, `PID #1`, `MSH-9`: the reader's coordinates, without its text."""
    if at is None or not at.segment:
        return ""
    segment, sequence, field = at.segment, at.sequence, at.field
    if segment == "MSH" and sequence <= 1 and field:
        return f"MSH-{field}"
    where = f"{segment} #{sequence}" if sequence else segment
    return f"{where} field {segment}-{field}" if field else where
