"""FHIR R4 / R5 JSON to inbound messages: one per resource of interest.

Accepts one resource, a Bundle of any type (entries flattened, nested Bundles
too, a subscription notification's status entry dropped) or NDJSON. The input
is parsed once with the stdlib and walked as plain dicts: building validated
model objects would cost far more than the few elements a charge needs (see
docs/feed-conventions.md for the elements read).

Nothing raises for bad input: unparseable JSON, a resource missing what a
charge needs, or a malformed element each become one `InboundMessage` with an
`InputError` naming the file, line and JSON path, and every other resource is
still read. Messages name paths and types, never values that may be PHI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import tzinfo
from types import MappingProxyType

from adapter.core.mappings import Mappings
from adapter.core.model import Event, InboundMessage, Unsupported
from adapter.readers.fhir.bundles import Entry, index_entries
from adapter.readers.fhir.documents import resources_in
from adapter.readers.fhir.elements import JsonObject, ReadError, check_id, get_object
from adapter.readers.fhir.failures import failed
from adapter.readers.fhir.keys import dedup_key, own_id
from adapter.readers.fhir.medadmin import read_administration
from adapter.readers.fhir.reading import Reading, Scope, Skip, contained_index
from adapter.readers.fhir.visit import read_condition, read_coverage, read_encounter

__all__ = ["read_fhir"]

_READERS: Mapping[str, Callable[[Reading], Event | Skip]] = MappingProxyType(
    {
        "MedicationAdministration": read_administration,
        "Encounter": read_encounter,
        "Condition": read_condition,
        "Coverage": read_coverage,
    }
)
_SKIPPED: Mapping[str, str] = MappingProxyType({"Patient": "patient identity only"})
_RESOLUTION_ONLY = frozenset({"Medication"})  # read through references, never emitted


def read_fhir(
    data: str | bytes, mappings: Mappings, site_tz: tzinfo, origin: str = ""
) -> tuple[InboundMessage, ...]:
    """Every resource of interest in a FHIR JSON body or file, in input order.

    `origin` (a file name, a peer) prefixes every error location. Timestamps
    without an offset are read in `site_tz` (D25).
    """
    found = resources_in(data, origin)
    scope = Scope(mappings, site_tz, index_entries(f for f in found if isinstance(f, Entry)))
    messages: list[InboundMessage] = []
    for item in found:
        message = item if isinstance(item, InboundMessage) else _read_entry(item, scope)
        if message is not None:
            messages.append(message)
    return tuple(messages)


def _read_entry(entry: Entry, scope: Scope) -> InboundMessage | None:
    if entry.rtype in _RESOLUTION_ONLY:
        return None
    keys = entry.keys
    reader = _READERS.get(entry.rtype)
    if reader is None:
        try:
            _check_ids(entry.resource, entry.path)
        except ReadError as exc:
            key = dedup_key(keys, entry.resource, read=False)
            return failed(key, entry.where, exc.path, exc.message, entry.rtype, keys.source)
        key = dedup_key(keys, entry.resource, read=False)
        if entry.rtype in _SKIPPED:
            reason = _SKIPPED[entry.rtype]
            return InboundMessage(
                key, entry.rtype, skip_reason=reason, control_id=keys.source,
                resource_id=own_id(entry.resource),
            )  # fmt: skip
        reason = f"unsupported resource type {entry.rtype}"
        unsupported = Unsupported.RESOURCE_TYPE
        return InboundMessage(
            key, entry.rtype, skip_reason=reason, control_id=keys.source,
            unsupported=unsupported, resource_id=own_id(entry.resource),
        )  # fmt: skip
    dedup = dedup_key(keys, entry.resource, read=True)
    try:
        _check_ids(entry.resource, entry.path)
        contained = contained_index(entry.resource, entry.path)
        reading = Reading(entry.resource, entry.path, keys.source, keys.own_id, scope, contained)
        outcome = reader(reading)
    except ReadError as exc:
        return failed(dedup, entry.where, exc.path, exc.message, entry.rtype, keys.source)
    except (
        RecursionError,
        ArithmeticError,
        ValueError,
        TypeError,
        LookupError,
        AttributeError,
    ) as exc:
        # A reader bug must not stop the feed; the type name is safe, the message may not be.
        problem = f"unexpected {type(exc).__name__} while reading (adapter defect)"
        return failed(dedup, entry.where, entry.path, problem, entry.rtype, keys.source)
    rid = own_id(entry.resource)
    if isinstance(outcome, Skip):
        return InboundMessage(
            dedup, entry.rtype, skip_reason=outcome.reason, control_id=keys.source,
            resource_id=rid,
        )  # fmt: skip
    return InboundMessage(
        dedup, entry.rtype, events=(outcome,), control_id=keys.source, resource_id=rid
    )


def _check_ids(resource: JsonObject, path: str) -> None:
    """`id` and `meta.versionId` are FHIR ids: they become keys, and keys reach the store and
    URLs (an id holding U+0000 or 65 characters is not one)."""
    if "id" in resource:
        check_id(resource["id"], f"{path}.id")
    meta = get_object(resource, "meta", path)
    if meta is not None and "versionId" in meta:
        check_id(meta["versionId"], f"{path}.meta.versionId")
