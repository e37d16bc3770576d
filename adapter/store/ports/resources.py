"""The Resources port: every emitted FHIR resource, versioned, with its search.

Claims, ChargeItems and Tasks the coder wrote (and inbound resources kept for read-back)
are never updated in place: each change is a new version, and the current one is what
`search` and `read_resource` without a version answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ResourceRow:
    resource_type: str
    resource_id: str
    version: int
    encounter_key: str
    patient_ref: str  # "Patient/123" or the patient identifier value, for search
    status: str  # the resource's own status (active/draft, billable/planned/entered-in-error...)
    last_updated: datetime
    body: str  # the resource JSON, with meta.versionId / meta.lastUpdated set


# One resource of a coding result: (resource_type, resource_id, status, body). The body is the
# resource as a JSON object (dict), without meta.versionId/lastUpdated: the store serialises it
# once, with meta set, instead of parsing a dump the caller made.
NewResource = tuple[str, str, str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str
    patient: str | None = None
    encounter: str | None = None  # encounter key
    status: str | None = None
    last_updated_ge: datetime | None = None
    last_updated_le: datetime | None = None
    count: int = 50
    offset: int = 0


class Resources(Protocol):
    """Read, search and write resource versions. Every method is one transaction."""

    async def read_resource(
        self, resource_type: str, resource_id: str, version: int | None = None
    ) -> ResourceRow | None: ...

    async def history(self, resource_type: str, resource_id: str) -> list[ResourceRow]:
        """All versions, newest first."""

    async def search(self, query: SearchQuery) -> tuple[list[ResourceRow], int]:
        """Current versions matching the query, newest last_updated first; with the total."""

    async def put_resource_version(
        self,
        resource_type: str,
        resource_id: str,
        status: str,
        body: str,
        now: datetime,
        destination: str | None,
    ) -> ResourceRow:
        """Write a new version of one resource (review override: Claim active, Task
        completed), queue it for delivery when `destination` is not None. A resource not
        stored yet gets version 1 with no encounter (an inbound resource kept for read-back,
        `POST /fhir/{type}`)."""
