"""The store's ports, split by what they store; `Store` is their union, for wiring.

- `Inbox` (inbox.py): inbound messages, dead letters, replay pages, links.
- `Encounters` (encounters.py): encounter rows, leases, coding results, the held worklist.
- `Resources` (resources.py): emitted resource versions, history, search.
- `Outbox`, `DftPostings` (outbox.py): deliveries; the DFT posting per destination.
- `Review` (review.py): the audit trail and review decisions as one unit of work.
- `Reports` (reports.py): the workbench reports' rows (Claim versions, coded lines).
- `Lifecycle` (lifecycle.py): migrate, ping, close, counts.

Use cases and handlers type against the small port they need; only the composition root
(web/app.py, the CLIs) holds a whole `Store`. Both adapters (store/sqlite/,
store/postgres/) implement every port; the value types live beside their port.
"""

from __future__ import annotations

from typing import Protocol

from adapter.store.ports.encounters import (
    CodingResult,
    EncounterRow,
    Encounters,
    EncounterState,
    HeldItem,
    HeldPage,
    HeldQuery,
    Lease,
    SaveResult,
)
from adapter.store.ports.inbox import (
    AddResult,
    Inbox,
    Link,
    MessageStatus,
    NewMessage,
    ReplayOutcome,
    StoredMessage,
    TruncatedMessageError,
)
from adapter.store.ports.lifecycle import Lifecycle, StoreCounts
from adapter.store.ports.outbox import Delivery, DftPostings, Outbox
from adapter.store.ports.reports import Reports
from adapter.store.ports.resources import NewResource, ResourceRow, Resources, SearchQuery
from adapter.store.ports.review import (
    AuditEntry,
    ResourceEdit,
    Review,
    ReviewConflictError,
    ReviewDecision,
)


class Store(
    Inbox, Encounters, Resources, Outbox, DftPostings, Review, Reports, Lifecycle, Protocol
):
    """Every port: what the composition root opens and hands out piece by piece."""


__all__ = [
    "AddResult",
    "AuditEntry",
    "CodingResult",
    "Delivery",
    "DftPostings",
    "EncounterRow",
    "EncounterState",
    "Encounters",
    "HeldItem",
    "HeldPage",
    "HeldQuery",
    "Inbox",
    "Lease",
    "Lifecycle",
    "Link",
    "MessageStatus",
    "NewMessage",
    "NewResource",
    "Outbox",
    "ReplayOutcome",
    "Reports",
    "ResourceEdit",
    "ResourceRow",
    "Resources",
    "Review",
    "ReviewConflictError",
    "ReviewDecision",
    "SaveResult",
    "SearchQuery",
    "Store",
    "StoreCounts",
    "StoredMessage",
    "TruncatedMessageError",
]
