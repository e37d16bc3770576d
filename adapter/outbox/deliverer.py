"""Deliver emitted resources from the durable outbox, through one `Sink` per kind of
destination (adapter/outbox: FHIR PUT today).

Each new resource version is queued in the store in the same transaction that wrote it,
so a restart loses nothing. The worker is the same for every destination: it reads what is
due, lets the destination's sink turn each version into an `OutboxItem`, holds back an item
whose prerequisites (a FHIR ChargeItem's Claim) are still queued for that destination, and
acts on the sink's typed answer: delivered; retry later with exponential backoff and full
jitter, capped; or rejected for good, kept in the outbox as rejected (never retried, never
dropped: `GET /admin/outbox?state=rejected`, `adapter_outbox_rejected`; a sink that
`RecordsRefusal` stores it itself).

Delivered items are marked in the store together, one transaction for the pass (one
fsync on SQLite instead of one per item), or before an item that waits on one of them.
A crash before the marks are written sends those items again under the same idempotency
key (MSH-10, the FHIR version id), which the destination drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from adapter.metrics import Metrics
from adapter.outbox.fhir_put import claim_references
from adapter.outbox.sink import DeliveryResult, OutboxItem, Outcome, RecordsRefusal, Sink
from adapter.store.base import Delivery, Store

__all__ = ["Deliverer", "DeliveryConfig", "backoff_seconds", "claim_references"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    backoff_base: float
    backoff_max: float
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
        sinks: Sequence[Sink],
        rnd: random.Random | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.sinks = tuple(sinks)
        self.rnd = rnd or random.Random()
        self._unmarked: list[Delivery] = []  # delivered in this pass, not yet marked so
        self._unmarked_keys: set[tuple[str, str, str]] = set()
        self._refused: set[tuple[str, str, str]] = set()  # refused in this pass

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()

    def sink_for(self, destination: str) -> Sink | None:
        return next((s for s in self.sinks if s.accepts(destination)), None)

    async def run_once(self) -> int:
        """Attempt every delivery due now, those without prerequisites first; the number
        delivered.

        A FHIR ChargeItem or Task references its Claim, and a strict FHIR server refuses a
        reference to a resource it does not have: each waits while a version of its Claim
        is still queued for that destination (failed and backing off, or not tried yet).
        Within each group the outbox order (queue order) is kept.
        """
        due = await self.store.due_deliveries(self.clock(), self.config.batch)
        items: list[OutboxItem] = []
        for delivery in due:
            item = await self._item(delivery)
            if item is not None:
                items.append(item)
        delivered = 0
        self._refused.clear()
        try:
            for item in sorted(items, key=lambda i: bool(i.after)):  # stable
                delivered += await self._deliver(item)
        finally:
            await self._mark_delivered()
        counts = await self.store.counts()
        self.metrics.backlog.set(counts.outbox_pending)
        self.metrics.outbox_rejected.set(counts.outbox_rejected)
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

    async def _item(self, delivery: Delivery) -> OutboxItem | None:
        """The queued version as its sink sends it; None when there is nothing to send
        (the version is gone) or no sink takes the destination (it stays queued)."""
        row = await self.store.read_resource(
            delivery.resource_type, delivery.resource_id, delivery.version
        )
        if row is None:
            await self.store.mark_delivered(delivery.id, self.clock())  # nothing left to send
            return None
        sink = self.sink_for(delivery.destination)
        if sink is None:
            await self._settle(delivery, DeliveryResult.retry_later("no sink for destination"))
            return None
        return sink.item(delivery, row)

    async def _deliver(self, item: OutboxItem) -> int:
        if _resource(item.delivery) in self._refused:
            return 0  # an earlier version was refused in this pass: the row may be too
        if self._unmarked_keys & _depends_on(item):
            await self._mark_delivered()  # what it waits for was just delivered
        waiting_for = await self._prerequisites_queued(item)
        if waiting_for:
            await self._wait(item.delivery, waiting_for)
            return 0
        sink = self.sink_for(item.destination)
        assert sink is not None  # _item built the item with it
        result = await sink.deliver(item)
        if result.outcome is not Outcome.DELIVERED:
            await self._settle(item.delivery, result)
            return 0
        self._record(item.delivery, result.outcome, 1)
        self._unmarked.append(item.delivery)
        self._unmarked_keys.add(_resource(item.delivery))
        if item.in_order:
            self._unmarked_keys.add(_order(item))
        if len(self._unmarked) >= self.config.batch:
            await self._mark_delivered()
        return 1

    async def _mark_delivered(self) -> None:
        """Mark every item delivered since the last marks, in one transaction."""
        if not self._unmarked:
            return
        ids = [d.id for d in self._unmarked]
        self._unmarked, self._unmarked_keys = [], set()
        await self.store.mark_delivered_many(ids, self.clock())

    async def _settle(self, delivery: Delivery, result: DeliveryResult) -> None:
        """Store and count what the attempt came to."""
        now = self.clock()
        if result.outcome is Outcome.DELIVERED:
            await self.store.mark_delivered(delivery.id, now)
            self._record(delivery, result.outcome, 1)
            return
        if result.outcome is Outcome.REJECTED:
            sink = self.sink_for(delivery.destination)
            stored = isinstance(sink, RecordsRefusal) and await sink.refused(
                delivery, result.reason, now
            )
            if not stored:
                await self.store.mark_rejected(delivery.id, result.reason, now)
            self._refused.add(_resource(delivery))
            self._record(delivery, result.outcome, 1)  # it answered: the destination is up
            log.warning(
                "delivery.rejected",  # the reason may quote the payload: stored, not logged
                resource=f"{delivery.resource_type}/{delivery.resource_id}",
                version=delivery.version,
                destination=delivery.destination,
                attempts=delivery.attempts + 1,
            )
            return
        delay = backoff_seconds(
            delivery.attempts, self.config.backoff_base, self.config.backoff_max, self.rnd
        )
        await self.store.mark_failed(delivery.id, result.reason, now + timedelta(seconds=delay))
        self._record(delivery, result.outcome, 0)
        log.warning(
            "delivery.failed",
            resource=f"{delivery.resource_type}/{delivery.resource_id}",
            version=delivery.version,
            attempts=delivery.attempts + 1,
            error=result.reason,
            retry_in_s=round(delay, 1),
        )

    async def _prerequisites_queued(self, item: OutboxItem) -> list[str]:
        """`Type/id` of the prerequisites still queued for the item's destination."""
        queued: list[str] = []
        if item.in_order:
            ahead = await self.store.queued_ahead(
                item.destination, item.ordering_key, item.delivery.id
            )
            if ahead is not None:
                queued.append(f"{ahead} (queued before it for the same patient)")
        for need in item.after:
            if need.before_version:
                for rid in need.resource_ids:
                    if await self.store.queued_before(
                        item.destination, need.resource_type, rid, need.before_version
                    ):
                        queued.append(f"{need.resource_type}/{rid} (an earlier version)")
                continue
            ids = await self.store.undelivered(
                item.destination, need.resource_type, need.resource_ids
            )
            queued.extend(f"{need.resource_type}/{i}" for i in sorted(ids))
        return queued

    async def _wait(self, delivery: Delivery, queued: list[str]) -> None:
        """Try again after the base delay (not the growing backoff): the prerequisite's own
        retries set the pace, and this one should follow as soon as it is through."""
        retry = self.clock() + timedelta(seconds=self.config.backoff_base)
        error = f"waiting for {queued[0]} to be delivered first"
        await self.store.mark_failed(delivery.id, error, retry)
        self.metrics.deliveries.labels(delivery.destination, "waiting").inc()
        log.info(
            "delivery.waiting",
            resource=f"{delivery.resource_type}/{delivery.resource_id}",
            version=delivery.version,
            claim=queued[0],
        )

    def _record(self, delivery: Delivery, outcome: Outcome, up: int) -> None:
        self.metrics.deliveries.labels(delivery.destination, outcome.value).inc()
        self.metrics.destination_up.labels(delivery.destination).set(up)


def _resource(delivery: Delivery) -> tuple[str, str, str]:
    return (delivery.destination, delivery.resource_type, delivery.resource_id)


def _order(item: OutboxItem) -> tuple[str, str, str]:
    return (item.destination, "", item.ordering_key)  # "": no resource type is empty


def _depends_on(item: OutboxItem) -> set[tuple[str, str, str]]:
    """The keys of the delivered items this one may wait for."""
    keys = {(item.destination, n.resource_type, r) for n in item.after for r in n.resource_ids}
    if item.in_order:
        keys |= {_order(item), _resource(item.delivery)}
    return keys
