"""How a reader names what is wrong: the segment occurrence and field, never the value."""

from __future__ import annotations

from adapter.core.model import SegmentLocation
from adapter.hl7.er7 import Er7Error, Segment


def safe(text: str, limit: int = 40) -> str:
    """Wire text echoed into a location or reason: printable and short."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def fault(segment: Segment, field: int, reason: str) -> Er7Error:
    """An error naming the segment occurrence and field, never the value."""
    name = segment.name
    return Er7Error(SegmentLocation(name, segment.ordinal, field), reason)
