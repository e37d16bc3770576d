"""`/ui/refused`: the third worklist tab, outbound versions a receiver refused for good.

A billing system that answers a DFT^P03 with AR (or a FHIR server with a 4xx) will not take
that version however often it is sent, so the outbox keeps it as rejected with the
receiver's own text (`outbox/dft_mllp.py`, `outbox/deliverer.py`). The JSON list is
`GET /admin/outbox?state=rejected`; this page is the same list for the billing office,
newest first, each row linking to the encounter page by its Claim id (no PHI in the
address). What to do about one is in docs/charges-out.md ("After an AR").
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from adapter.store.base import Delivery
from adapter.web.pages import render
from adapter.web.state import STATE

log = structlog.get_logger()

PAGE_SIZE = 50
RECEIVER_KINDS = {"dft": "billing system (DFT^P03)", "fhir": "FHIR server"}


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """One refused version as the page shows it."""

    receiver: str
    kind: str
    claim_id: str  # "" when the refused resource is not a Claim (a ChargeItem PUT)
    resource: str
    version: int
    attempts: int
    refused_at: str
    reason: str

    @staticmethod
    def of(item: Delivery) -> RefusedRow:
        kind, _, name = item.destination.partition(":")
        refused = item.rejected_at.strftime("%Y-%m-%d %H:%M") if item.rejected_at else ""
        return RefusedRow(
            receiver=name or item.destination,
            kind=RECEIVER_KINDS.get(kind, kind),
            claim_id=item.resource_id if item.resource_type == "Claim" else "",
            resource=f"{item.resource_type}/{item.resource_id}",
            version=item.version,
            attempts=item.attempts,
            refused_at=refused,
            reason=item.last_error,
        )


async def refused_list(request: web.Request) -> web.StreamResponse:
    """`GET /ui/refused?page=N`: the refused versions, newest first, a page at a time."""
    raw = request.query.get("page", "1")
    page = int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1
    store = request.app[STATE].store
    items, total = await store.rejected_deliveries(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    log.info("ui.refused", total=total, shown=len(items))
    return render(
        request,
        "refused.html",
        {
            "tab": "refused",
            "items": [RefusedRow.of(item) for item in items],
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
        },
    )
