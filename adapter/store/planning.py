"""The pure planning of resource versions, shared by both stores.

Which body counts as changed, which resources are retired, where `meta` goes, and whether
a coding result is stale: decided here without a database, so SQLite and PostgreSQL decide
the same things the same way and only differ in SQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapter.store._common import iso_utc, utc
from adapter.store.ports import (
    CodingResult,
    Lease,
    NewResource,
    ResourceRow,
)

RETIRED_STATUS = {"ChargeItem": "entered-in-error", "Task": "cancelled"}


# --- coding -----------------------------------------------------------------------------


def is_stale(lease: Lease, revision: int, lease_owner: str | None) -> bool:
    """A newer message arrived, or the lease expired and another coder took it."""
    taken = lease_owner is not None and lease_owner != lease.owner
    return revision != lease.encounter.revision or taken


# --- resource bodies --------------------------------------------------------------------


def parse_body(body: str) -> dict[str, Any]:
    """A resource body must be one JSON object."""
    parsed = json.loads(body)
    if not isinstance(parsed, dict):
        raise ValueError("a resource body must be a JSON object")
    return parsed


def without_meta(body: Mapping[str, Any]) -> dict[str, Any]:
    """What "the body differs" compares: everything the store does not set itself."""
    return {k: v for k, v in body.items() if k != "meta"}


def dump_json(value: object) -> str:
    """Compact JSON, UTF-8 kept as is: the stored and delivered form of a resource."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DumpedBody:
    """A body serialised once, split where `meta` goes (right after `id`).

    `content` (the body without meta) is what a new version is compared by, through its
    hash; `stored()` splices meta in without serialising the body again. Both are exactly
    `dump_json` of the body laid out as `with_meta` describes.
    """

    head: str  # '{"resourceType":"Claim","id":"c1"}': up to the anchor; "" when no anchor
    tail: str  # '{"status":...}': everything after it, meta excluded; "" when nothing
    meta: Mapping[str, Any]  # the caller's own meta elements (profile, tag), kept

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> DumpedBody:
        anchor = "id" if "id" in body else "resourceType" if "resourceType" in body else None
        head: dict[str, Any] = {}
        tail: dict[str, Any] = {}
        part = head if anchor is not None else tail
        for key, value in body.items():
            if key == "meta":
                continue
            part[key] = value
            if key == anchor:
                part = tail
        meta = body.get("meta")
        return cls(
            head=dump_json(head) if head else "",
            tail=dump_json(tail) if tail else "",
            meta=meta if isinstance(meta, Mapping) else {},
        )

    @property
    def content(self) -> str:
        """The body without meta, as compact JSON."""
        return _join_objects(self.head, self.tail)

    def stored(self, version: int, last_updated: datetime) -> str:
        """The stored body: meta.versionId/lastUpdated set, `meta` right after `id`."""
        meta = dict(self.meta)
        meta["versionId"] = str(version)
        meta["lastUpdated"] = iso_utc(last_updated)
        middle = '{"meta":' + dump_json(meta) + "}"
        return _join_objects(_join_objects(self.head, middle), self.tail)


def _join_objects(first: str, second: str) -> str:
    """Two compact JSON objects (or "") as one: '{"a":1}' + '{"b":2}' -> '{"a":1,"b":2}'."""
    if not first:
        return second or "{}"
    if not second:
        return first
    return first[:-1] + "," + second[1:]


def content_hash(content: str) -> str:
    """What the store compares a new body with: 128 bits of BLAKE2b, hex."""
    return hashlib.blake2b(content.encode(), digest_size=16).hexdigest()


def with_meta(body: Mapping[str, Any], version: int, last_updated: datetime) -> str:
    """The stored body: meta.versionId/lastUpdated set, `meta` right after `id`, compact.

    Other meta elements the caller gave (profile, tag) are kept; with no `id` (nor
    `resourceType`) meta comes first.
    """
    return DumpedBody.of(body).stored(version, last_updated)


def patient_ref(body: Mapping[str, Any]) -> str:
    """The patient a resource is about, for search: a reference, else an identifier value."""
    for element in ("subject", "patient", "for"):
        target = body.get(element)
        if not isinstance(target, dict):
            continue
        reference = target.get("reference")
        if isinstance(reference, str) and reference:
            return reference
        identifier = target.get("identifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return ""


@dataclass(frozen=True, slots=True)
class CurrentVersion:
    """The current version of a resource, as save_codings compares against it."""

    resource_type: str
    resource_id: str
    version: int
    encounter_key: str
    status: str
    content_hash: str | None  # None: written before migration 0002, compare parsed bodies
    body: str


@dataclass(frozen=True, slots=True)
class PlannedVersion:
    """A new version to write: its row, its content hash, and whether it replaces a
    current version (which must then stop being current)."""

    row: ResourceRow
    content_hash: str
    replaces_current: bool


def new_version(
    current_version: int | None,
    key: tuple[str, str],
    encounter_key: str,
    status: str,
    body: Mapping[str, Any],
    now: datetime,
    dumped: DumpedBody | None = None,
    digest: str | None = None,
) -> PlannedVersion:
    """The next version of a resource (version 1 when there is no current one);
    `dumped` and `digest`, when given, are the body's serialised form and its hash."""
    dumped = dumped or DumpedBody.of(body)
    digest = digest or content_hash(dumped.content)
    version = current_version + 1 if current_version is not None else 1
    row = ResourceRow(
        resource_type=key[0],
        resource_id=key[1],
        version=version,
        encounter_key=encounter_key,
        patient_ref=patient_ref(body),
        status=status,
        last_updated=utc(now),
        body=dumped.stored(version, now),
    )
    return PlannedVersion(row, digest, current_version is not None)


@dataclass(frozen=True, slots=True)
class PreparedResource:
    """One incoming resource, serialised and hashed before the store's transaction (so
    the transaction, which holds SQLite's write lock, only compares and writes)."""

    key: tuple[str, str]
    status: str
    body: Mapping[str, Any]
    dumped: DumpedBody
    content_hash: str


def prepare_resources(resources_in: Sequence[NewResource]) -> list[PreparedResource]:
    """Serialise and hash each resource once; a key given twice is refused."""
    prepared: list[PreparedResource] = []
    seen: set[tuple[str, str]] = set()
    for resource_type, resource_id, status, body in resources_in:
        key = (resource_type, resource_id)
        if key in seen:
            raise ValueError(f"{resource_type}/{resource_id} given twice in one coding result")
        seen.add(key)
        dumped = DumpedBody.of(body)
        prepared.append(PreparedResource(key, status, body, dumped, content_hash(dumped.content)))
    return prepared


@dataclass(frozen=True, slots=True)
class PreparedCoding:
    """A coding result with its resources prepared (see PreparedResource)."""

    result: CodingResult
    resources: list[PreparedResource]


def prepare_codings(results: Sequence[CodingResult]) -> list[PreparedCoding]:
    return [PreparedCoding(r, prepare_resources(r.resources)) for r in results]


def plan_coding(
    encounter_key: str,
    resources_in: Sequence[PreparedResource],
    current: Mapping[tuple[str, str], CurrentVersion],
    now: datetime,
) -> list[PlannedVersion]:
    """The new versions one coding result needs, against the current versions.

    `current` holds the current version of every resource of the encounter and of every
    resource in `resources_in`. Unchanged ones (same status, same content hash) are not
    rewritten; this encounter's ChargeItems and Tasks that are no longer produced are
    retired with a new version.
    """
    planned: list[PlannedVersion] = []
    for new in resources_in:
        old = current.get(new.key)
        if old is not None and old.status == new.status and _unchanged(old, new):
            continue
        version = None if old is None else old.version
        planned.append(
            new_version(
                version,
                new.key,
                encounter_key,
                new.status,
                new.body,
                now,
                new.dumped,
                new.content_hash,
            )
        )
    seen = {new.key for new in resources_in}
    for key, old in sorted(current.items()):
        retired = RETIRED_STATUS.get(old.resource_type)
        if key in seen or old.encounter_key != encounter_key or retired in (None, old.status):
            continue
        body = parse_body(old.body) | {"status": retired}
        planned.append(new_version(old.version, key, encounter_key, str(retired), body, now))
    return planned


def _unchanged(old: CurrentVersion, new: PreparedResource) -> bool:
    if old.content_hash is None:  # written before hashes were kept
        return without_meta(parse_body(old.body)) == without_meta(new.body)
    return old.content_hash == new.content_hash
