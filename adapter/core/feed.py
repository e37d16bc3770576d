"""One feed: messages in arrival order, re-sends dropped, what was read counted.

The CLI treats the files it is given as one feed; the service (next issue)
keeps the same bookkeeping in its store. Pure: no I/O, the caller supplies the
messages already read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapter.core.model import Event, InboundMessage, InputError, Skipped


@dataclass(frozen=True, slots=True)
class FeedResult:
    events: tuple[Event, ...]
    skipped: tuple[Skipped, ...]
    errors: tuple[InputError, ...]
    messages: int
    duplicates: int
    duplicates_at: tuple[int, ...] = ()  # positions (0-based) of the messages dropped as re-sends
    duplicate_of: tuple[int, ...] = ()  # for each of those, the position of the copy kept
    reused_control_ids: int = 0  # messages read whose sender + MSH-10 an earlier one had


def collect(messages: Iterable[InboundMessage]) -> FeedResult:
    """Keep the first copy of each dedup key: the same message (HL7 sender, MSH-10 and
    content; FHIR id and version or content) once. A reused MSH-10 with other content
    has another key and is read."""
    seen: dict[str, int] = {}
    events: list[Event] = []
    skipped: list[Skipped] = []
    errors: list[InputError] = []
    dropped: list[int] = []
    originals: list[int] = []
    control_keys: dict[str, str] = {}  # HL7 sender + MSH-10 -> the first dedup key under it
    reused = 0
    count = 0
    for index, message in enumerate(messages):
        count += 1
        if message.error is not None:
            errors.append(message.error)
            continue
        if message.dedup_key in seen:
            dropped.append(index)
            originals.append(seen[message.dedup_key])
            skipped.append(Skipped(message.dedup_key, "duplicate"))
            continue
        seen[message.dedup_key] = index
        if message.control_key:
            reused += control_keys.setdefault(message.control_key, message.dedup_key) != (
                message.dedup_key
            )
        if message.skip_reason:
            skipped.append(Skipped(message.dedup_key, message.skip_reason))
        events.extend(message.events)
    return FeedResult(
        tuple(events),
        tuple(skipped),
        tuple(errors),
        count,
        len(dropped),
        tuple(dropped),
        tuple(originals),
        reused,
    )
