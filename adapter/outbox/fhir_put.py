"""FHIR PUT as a sink: `PUT <destination>/<Type>/<id>` with the stored version's body.

Idempotent: resource ids are deterministic (D24), so a resend writes the same resource.
A 2xx is delivered; any other status, a connection error or a timeout is retried with the
worker's backoff (a FHIR server's refusal is not treated as final: the behaviour before
sinks existed, and an operator may fix the server's profile and let the retries through).
A ChargeItem or Task waits for the Claims it references (`Prerequisite`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapter.outbox.sink import DeliveryResult, OutboxItem, Prerequisite
from adapter.store.base import Delivery, ResourceRow


@dataclass(frozen=True, slots=True)
class FhirPutConfig:
    auth_header: tuple[str, str] | None
    timeout: float


class FhirPutSink:
    name = "fhir"

    def __init__(self, config: FhirPutConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    def accepts(self, destination: str) -> bool:
        """The destination is the FHIR base URL the version was queued for."""
        return destination.startswith(("http://", "https://"))

    def item(self, delivery: Delivery, row: ResourceRow) -> OutboxItem:
        key = f"{delivery.resource_type}/{delivery.resource_id}"
        after: tuple[Prerequisite, ...] = ()
        if delivery.resource_type != "Claim":
            claims = claim_references(json.loads(row.body))
            after = (Prerequisite("Claim", tuple(claims)),) if claims else ()
        return OutboxItem(
            delivery=delivery,
            ordering_key=row.encounter_key or key,
            idempotency_key=f"{key}/_history/{delivery.version}",
            payload=row.body.encode(),
            after=after,
        )

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        row = item.delivery
        url = f"{row.destination.rstrip('/')}/{row.resource_type}/{row.resource_id}"
        headers = {"Content-Type": "application/fhir+json"}
        if self.config.auth_header:
            headers[self.config.auth_header[0]] = self.config.auth_header[1]
        try:
            async with self._client().put(url, data=item.payload, headers=headers) as response:
                if 200 <= response.status < 300:
                    return DeliveryResult.delivered()
                return DeliveryResult.retry_later(f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return DeliveryResult.retry_later(type(exc).__name__)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session


def claim_references(resource: dict[str, Any]) -> list[str]:
    """Ids of the Claims a ChargeItem (supportingInformation) or Task (focus) references."""
    refs: list[object] = [resource.get("focus")]
    supporting = resource.get("supportingInformation")
    if isinstance(supporting, list):
        refs.extend(supporting)
    out = []
    for ref in refs:
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(target, str) and target.startswith("Claim/"):
            out.append(target.removeprefix("Claim/"))
    return out
