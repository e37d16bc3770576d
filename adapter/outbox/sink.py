"""The shape every outbound destination has: a `Sink` takes one `OutboxItem` and answers
with a typed `DeliveryResult`.

An item is one resource version queued for one destination: the destination's name, the
ordering key a partitioned destination keeps in order (the encounter), the payload that
version becomes on the wire, and the idempotency key a receiver may drop a resend by. FHIR
PUT is one sink; DFT^P03 over MLLP, Kafka or NATS JetStream fit the same shape. The worker
(`outbox/deliverer.py`) owns what is the same for all of them: which items are due, the
backoff, the metrics, keeping a refused item visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from adapter.store.base import Delivery, ResourceRow


class Outcome(StrEnum):
    """What a delivery attempt came to; the value is the `result` label of
    `adapter_delivery_attempts_total`."""

    DELIVERED = "delivered"
    RETRY_LATER = "failed"  # the label existing dashboards already count
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """`reason` says why for a retry or a rejection (an HTTP status, an exception's type,
    the receiver's ERR text); it is stored as the outbox row's last error."""

    outcome: Outcome
    reason: str = ""

    @classmethod
    def delivered(cls) -> DeliveryResult:
        return cls(Outcome.DELIVERED)

    @classmethod
    def retry_later(cls, reason: str) -> DeliveryResult:
        return cls(Outcome.RETRY_LATER, reason)

    @classmethod
    def rejected(cls, reason: str) -> DeliveryResult:
        """Refused for good: sending it again would be refused again."""
        return cls(Outcome.REJECTED, reason)


@dataclass(frozen=True, slots=True)
class Prerequisite:
    """Resources of one type that must reach the same destination first (a FHIR server
    refuses a ChargeItem whose Claim it does not have): the item waits while any of them
    has a version still queued there."""

    resource_type: str
    resource_ids: tuple[str, ...]
    before_version: int = 0  # > 0: only versions below it count (a DFT waits for the last)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    delivery: Delivery  # the outbox row: its id, attempts, destination
    ordering_key: str
    idempotency_key: str
    payload: bytes
    after: tuple[Prerequisite, ...] = ()
    # the destination takes the items of one ordering key in queue order (a billing system,
    # a patient's DFTs): this one waits while one queued before it with its key (stored
    # with the row) is neither delivered nor rejected there
    in_order: bool = False

    @property
    def destination(self) -> str:
        return self.delivery.destination


class Sink(Protocol):
    """One kind of destination. `name` labels it in logs; `accepts` says which outbox
    destinations it delivers (a destination is stored with each queued version)."""

    name: str

    def accepts(self, destination: str) -> bool: ...

    def item(self, delivery: Delivery, row: ResourceRow) -> OutboxItem:
        """The queued version as this sink sends it (pure: no I/O)."""

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        """One attempt. Never raises for a failure of the destination: that is a result."""

    async def close(self) -> None: ...


@runtime_checkable
class RecordsRefusal(Protocol):
    """A sink whose refusals need more than the worker's `mark_rejected` (a DFT's also
    takes back the posting it would have made): it stores the refusal itself."""

    async def refused(self, delivery: Delivery, reason: str, now: datetime) -> bool:
        """True when it stored the refusal; False: the worker marks it rejected."""
