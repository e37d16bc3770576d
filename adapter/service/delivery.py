"""Deliver emitted resources to the downstream FHIR server, from a durable outbox.

Each new resource version is queued in the store in the same transaction that
wrote it, so a restart loses nothing. The worker PUTs `<base>/<Type>/<id>`
(idempotent: the ids are deterministic, D24) and retries failures with
exponential backoff and full jitter, capped. A Claim goes before the ChargeItems and
the Task that reference it: they wait while it is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog

from adapter.service.metrics import Metrics
from adapter.store.base import Delivery, Store

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    base_url: str
    auth_header: tuple[str, str] | None
    backoff_base: float
    backoff_max: float
    timeout: float
    batch: int = 50


def backoff_seconds(attempts: int, base: float, cap: float, rnd: random.Random) -> float:
    """Full jitter: uniform in [base, min(cap, base * 2**attempts)] (AWS architecture blog)."""
    ceiling = min(cap, base * (2 ** min(attempts, 30)))
    return rnd.uniform(min(base, ceiling), ceiling)


class Deliverer:
    def __init__(
        self,
        store: Store,
        config: DeliveryConfig,
        clock: Callable[[], datetime],
        metrics: Metrics,
        rnd: random.Random | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.rnd = rnd or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def run_once(self) -> int:
        """Attempt every delivery due now, Claims first; the number delivered.

        A ChargeItem or Task references its Claim, and a strict FHIR server refuses a
        reference to a resource it does not have: each waits while a version of its Claim
        is still queued for that destination (failed and backing off, or not tried yet).
        """
        due = await self.store.due_deliveries(self.clock(), self.config.batch)
        delivered = 0
        for item in sorted(due, key=lambda d: d.resource_type != "Claim"):  # stable
            delivered += await self._deliver(item)
        backlog = await self.store.counts()
        self.metrics.backlog.set(backlog.outbox_pending)
        return delivered

    async def run_forever(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:
                log.error("delivery.error", error=type(exc).__name__)
                busy = 0
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _deliver(self, item: Delivery) -> int:
        row = await self.store.read_resource(item.resource_type, item.resource_id, item.version)
        if row is None:
            await self.store.mark_delivered(item.id, self.clock())  # nothing left to send
            return 0
        waiting_for = await self._claims_not_delivered(item, row.body)
        if waiting_for:
            await self._wait(item, waiting_for)
            return 0
        url = f"{item.destination.rstrip('/')}/{item.resource_type}/{item.resource_id}"
        headers = {"Content-Type": "application/fhir+json"}
        if self.config.auth_header:
            headers[self.config.auth_header[0]] = self.config.auth_header[1]
        error = await self._put(url, row.body, headers)
        if error is None:
            await self.store.mark_delivered(item.id, self.clock())
            self._record(item, "delivered", 1)
            return 1
        delay = backoff_seconds(
            item.attempts, self.config.backoff_base, self.config.backoff_max, self.rnd
        )
        await self.store.mark_failed(item.id, error, self.clock() + timedelta(seconds=delay))
        self._record(item, "failed", 0)
        log.warning(
            "delivery.failed",
            resource=f"{item.resource_type}/{item.resource_id}",
            version=item.version,
            attempts=item.attempts + 1,
            error=error,
            retry_in_s=round(delay, 1),
        )
        return 0

    async def _claims_not_delivered(self, item: Delivery, body: str) -> list[str]:
        """The Claims this resource references that are still queued for its destination."""
        if item.resource_type == "Claim":
            return []
        ids = claim_references(json.loads(body))
        return sorted(await self.store.undelivered(item.destination, "Claim", ids))

    async def _wait(self, item: Delivery, claims: list[str]) -> None:
        """Try again after the base delay (not the growing backoff): the Claim's own retries
        set the pace, and this one should follow as soon as the Claim is through."""
        retry = self.clock() + timedelta(seconds=self.config.backoff_base)
        error = f"waiting for Claim/{claims[0]} to be delivered first"
        await self.store.mark_failed(item.id, error, retry)
        self.metrics.deliveries.labels(item.destination, "waiting").inc()
        log.info(
            "delivery.waiting",
            resource=f"{item.resource_type}/{item.resource_id}",
            version=item.version,
            claim=f"Claim/{claims[0]}",
        )

    async def _put(self, url: str, body: str, headers: dict[str, str]) -> str | None:
        try:
            async with self._client().put(url, data=body.encode(), headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    def _record(self, item: Delivery, result: str, up: int) -> None:
        self.metrics.deliveries.labels(item.destination, result).inc()
        self.metrics.destination_up.labels(item.destination).set(up)


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
