"""The Outbox port: resource versions (and DFT messages) queued for their destinations.

A version is due until its destination took it (delivered) or refused it for good
(rejected, kept and listed); a failed attempt is retried later. DFT postings remember what
was last posted per destination and encounter, so the next DFT credits and debits it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    destination: str
    resource_type: str
    resource_id: str
    version: int
    attempts: int
    next_attempt_at: datetime
    last_error: str
    rejected_at: datetime | None = None  # refused for good by its destination: not retried
    payload: str | None = None  # the message queued with it (DFT); None: the resource version


class Outbox(Protocol):
    """Deliveries: what is due, and how each attempt ended. Every method is one transaction."""

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]: ...

    async def undelivered(
        self, destination: str, resource_type: str, ids: Sequence[str]
    ) -> set[str]:
        """Of these resources of one type, those with a version still queued (not delivered)
        for `destination`: a ChargeItem or Task waits while its Claim is one of them."""

    async def mark_delivered(self, delivery_id: int, now: datetime) -> None: ...

    async def mark_delivered_many(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Several delivered at once: one transaction (one commit) for a pass's items."""

    async def mark_failed(self, delivery_id: int, error: str, next_attempt_at: datetime) -> None:
        """attempts += 1; retried at next_attempt_at."""

    async def mark_rejected(self, delivery_id: int, error: str, now: datetime) -> None:
        """attempts += 1; refused for good: kept with `error`, never due again, no longer
        counted as pending or as undelivered (a later version is queued as its own row)."""

    async def rejected_deliveries(self, limit: int, offset: int) -> tuple[list[Delivery], int]:
        """The rejected outbox rows, oldest first, one page; with their total."""

    async def queued_before(
        self, destination: str, resource_type: str, resource_id: str, version: int
    ) -> bool:
        """Whether an earlier version of this resource is still queued for `destination`
        (not delivered, not rejected): a DFT of version 2 credits what version 1 posted."""

    async def queued_ahead(self, destination: str, ordering_key: str, before_id: int) -> str | None:
        """`Type/id` of a row queued for `destination` before row `before_id` (lower id),
        neither delivered nor rejected, with the same ordering key (a patient's DFTs, so
        also the earlier versions of the same Claim); None when there is none."""


class DftPostings(Protocol):
    """The posting kept per destination and encounter, and DFTs queued with it."""

    async def dft_posting(self, destination: str, encounter_key: str) -> str | None:
        """The stored posting (adapter/outbox/dft_posting.py JSON) of the last DFT queued
        for this encounter to `destination`; None when none was."""

    async def set_dft_posting(
        self, destination: str, encounter_key: str, version: int, posting: str, now: datetime
    ) -> None:
        """Record that the Claim `version` was considered for `destination` and sends
        nothing (held, unchanged, skipped): the posting stands, its version moves on."""

    async def dft_since(self, destination: str, now: datetime) -> datetime:
        """When DFTs for `destination` began (the first call for it, kept): Claims older
        than that are never caught up, so turning DFT on does not post the site's history."""

    async def claims_ahead_of_dft(
        self, destination: str, since: datetime, limit: int
    ) -> list[tuple[str, int]]:
        """(encounter_key, Claim version) of current Claims updated at or after `since` and
        newer than the last version considered for `destination`: a DFT not queued because the
        process died between the coding's transaction and the DFT's, or a Claim written by
        a review override without re-coding."""

    async def queue_message(
        self,
        destination: str,
        resource: tuple[str, str, int],
        payload: str,
        encounter_key: str,
        posting: str,
        now: datetime,
        ordering_key: str = "",
    ) -> None:
        """One transaction: queue `payload` for `destination` against the resource version
        it was built from (type, id, version) and make `posting` the encounter's posting
        there; the row keeps `posting` (what stands once it is accepted) and its
        `ordering_key` (`queued_ahead`)."""

    async def reject_dft(
        self,
        delivery_id: int,
        error: str,
        now: datetime,
        encounter_key: str,
        nothing_posted: str,
    ) -> int:
        """One transaction, for a DFT its receiver refused: the row is rejected with
        `error` (as `mark_rejected`); every later version of the same resource still
        queued for that destination is rejected unsent (built on the refused one); the
        encounter's posting becomes the one of the last delivered DFT of that resource
        below the refused version (or `nothing_posted`), with the refused version as the
        version considered, so the catch-up queues a newer current Claim again. The number
        of later rows rejected with it."""
