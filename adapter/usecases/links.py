"""Which encounters a message touches: the keys the store links it to.

Pure: events in, links out. An administration belongs to its assembly key
(visit number, else patient + date + location); a visit (ADT, Encounter) to
its visit key, and a discharge (A03, `finished`) asks for the encounter to be
closed; diagnoses and coverages without a visit belong to the patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, tzinfo

from adapter.core.assembly import encounter_key
from adapter.core.model import (
    Administration,
    ConditionEvent,
    Event,
    OrderEvent,
    Visit,
    VisitStatus,
)
from adapter.readers.hl7v2.hot import CheckedMessage
from adapter.store.base import Link

PATIENT_PREFIX = "patient:"


def patient_key(events: Iterable[Event]) -> str:
    """The first patient id the message names ("" when none)."""
    for event in events:
        if event.patient_id:
            return event.patient_id
    return ""


def links_for(events: Iterable[Event], site_tz: tzinfo, cutoff: time | None) -> list[Link]:
    """One link per encounter key; close requests OR together, the earliest cutoff wins."""
    found: dict[str, Link] = {}
    for event in events:
        link = _link(event, site_tz, cutoff)
        old = found.get(link.encounter_key)
        if old is not None:
            link = Link(
                link.encounter_key,
                link.patient_key,
                old.close_requested or link.close_requested,
                _earliest(old.cutoff_at, link.cutoff_at),
            )
        found[link.encounter_key] = link
    return list(found.values())


def checked_links(checked: CheckedMessage, site_tz: tzinfo, cutoff: time | None) -> list[Link]:
    """`links_for` of a message the hot path checked: its one visit, the earliest cutoff of
    its administrations (the visit's own link has none)."""
    cutoffs = [c for s in checked.starts if (c := _cutoff_at(s, site_tz, cutoff)) is not None]
    at = min(cutoffs) if cutoffs else None
    return [Link(checked.encounter_key, checked.patient_id, checked.close_requested, at)]


def _link(event: Event, site_tz: tzinfo, cutoff: time | None) -> Link:
    if isinstance(event, Administration):
        key = encounter_key(event, site_tz)
        return Link(key, event.patient_id, False, _cutoff_at(event.start, site_tz, cutoff))
    if isinstance(event, Visit):
        finished = event.status is VisitStatus.FINISHED
        return Link(f"visit:{event.visit_id}", event.patient_id, finished)
    if isinstance(event, ConditionEvent | OrderEvent) and event.visit_id:
        return Link(f"visit:{event.visit_id}", event.patient_id)
    return Link(PATIENT_PREFIX + event.patient_id, event.patient_id)


def _cutoff_at(start: datetime, site_tz: tzinfo, cutoff: time | None) -> datetime | None:
    """The end-of-day cutoff instant of the administration's local service date."""
    if cutoff is None:
        return None
    local = start.astimezone(site_tz)
    return datetime.combine(local.date(), cutoff, tzinfo=site_tz)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)
