"""How a FHIR resource is known: its source key (all versions), its own id, its version, and
the dedup key of one message (`fhir:<source>/_history/<version>`, else a content hash).

A resource without an id is known by its business identifier (stable when a transaction
re-mints urns), else its entry's fullUrl, else a hash of its content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from adapter.readers.fhir.elements import JsonObject


@dataclass(frozen=True, slots=True)
class Keys:
    """How a resource is known: as a source (all versions), by id, and which version."""

    source: str
    own_id: str
    version: str  # meta.versionId, "" when absent
    by_content: bool  # no id, identifier or fullUrl: `source` is already a content hash


def resource_keys(res: JsonObject, rtype: str, full_url: str | None) -> Keys:
    """Id, else business identifier (stable when a transaction re-mints urns), else fullUrl."""
    rid = res.get("id")
    meta = res.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    version = version.strip() if isinstance(version, str) else ""
    identifier = _first_identifier(res)
    if isinstance(rid, str) and rid.strip():
        return Keys(f"{rtype}/{rid.strip()}", rid.strip(), version, False)
    if identifier is not None:
        return Keys(f"{rtype}?identifier={identifier}", identifier, version, False)
    if full_url:
        return Keys(full_url, full_url, version, False)
    source = f"{rtype}@{content_key(res).removeprefix('fhir:')}"
    return Keys(source, source, version, True)


def dedup_key(keys: Keys, resource: JsonObject, read: bool) -> str:
    """`fhir:<source>/_history/<version>`; without a version, a content hash for what we read.

    An EHR that sends no `meta.versionId` would otherwise see its status
    updates (in-progress -> completed -> entered-in-error) dropped as re-sends.
    """
    if keys.version:
        return f"fhir:{keys.source}/_history/{keys.version}"
    if keys.by_content or not read:
        return f"fhir:{keys.source}"
    return f"fhir:{keys.source}#{content_key(resource).removeprefix('fhir:')}"


def _first_identifier(res: JsonObject) -> str | None:
    """`<system>|<value>` of the first identifier with a value (stable across re-sends)."""
    identifiers = res.get("identifier")
    if not isinstance(identifiers, list):
        return None
    for identifier in identifiers:
        if isinstance(identifier, dict):
            value, system = identifier.get("value"), identifier.get("system")
            if isinstance(value, str) and value.strip():
                return f"{system.strip() if isinstance(system, str) else ''}|{value.strip()}"
    return None


def own_id(resource: JsonObject) -> str:
    """`Resource.id` as the dedup key has it ("" when absent): the Location of its entry."""
    rid = resource.get("id")
    return rid.strip() if isinstance(rid, str) else ""


def content_key(value: object) -> str:
    """A key that is the same for the same content, whatever the key order (re-sends dedupe)."""
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        canonical = repr(type(value))
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"fhir:sha256:{digest}"
