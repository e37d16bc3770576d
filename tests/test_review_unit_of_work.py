"""A review decision is one unit of work: edits, state and audit entry commit together.

On both stores, against the real database: a failure at the last step (the audit insert,
refused by the table's NOT NULL constraint) leaves no new version, no outbox row, no state
change and no audit entry; an encounter that left the held state is not overridden.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapter.core.ids import claim_id
from adapter.store.ports import (
    AuditEntry,
    EncounterState,
    Link,
    NewMessage,
    ResourceEdit,
    ReviewConflictError,
    ReviewDecision,
    Store,
)
from adapter.usecases import review
from adapter.usecases.review import ReleaseAction
from tests.store_fixtures import BACKENDS, StoreFactory, require_postgres

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=1)
KEY = "visit:1"
DEST = "http://fhir.example"
CID = claim_id(KEY)  # the review id: the encounter's deterministic Claim id


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        await require_postgres()
    factory = StoreFactory(request.param, tmp_path)
    yield await factory.open()
    await factory.cleanup()


def _body(resource_type: str, rid: str, status: str) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": rid, "status": status}


async def held_encounter(store: Store) -> None:
    """visit:1 coded HELD with a draft Claim and a planned ChargeItem, nothing queued."""
    message = NewMessage("m:1", "hl7", "RAS^O17", b"MSH|", T0, "P1", "1")
    await store.add_message(message, [Link(KEY, "P1", close_requested=True)])
    (lease,) = await store.lease_ready(LATER, LATER, "coder", 300, 10)
    resources = [
        ("Claim", CID, "draft", _body("Claim", CID, "draft")),
        ("ChargeItem", "ci-1", "planned", _body("ChargeItem", "ci-1", "planned")),
    ]
    await store.save_coding(lease, EncounterState.HELD, "no-diagnosis", resources, LATER, None)


def override(note: Any = "checked") -> ReviewDecision:
    edits = (
        ResourceEdit(
            "ChargeItem", "ci-1", "billable", json.dumps(_body("ChargeItem", "ci-1", "billable"))
        ),
        ResourceEdit("Claim", CID, "active", json.dumps(_body("Claim", CID, "active"))),
    )
    audit = AuditEntry(LATER, "biller", "override", KEY, note)
    return ReviewDecision(KEY, EncounterState.HELD, EncounterState.CODED, edits, audit)


async def test_an_override_writes_its_versions_state_and_audit_entry_together(store: Store) -> None:
    await held_encounter(store)

    written = await store.apply_review(override(), LATER, DEST)

    assert [(r.resource_type, r.version, r.status) for r in written] == [
        ("ChargeItem", 2, "billable"),
        ("Claim", 2, "active"),
    ]
    encounter = await store.get_encounter(KEY)
    assert encounter is not None and encounter.state is EncounterState.CODED
    assert [a.note for a in await store.audit_for(KEY)] == ["checked"]
    queued = await store.due_deliveries(LATER, 10)
    assert sorted((d.resource_type, d.version) for d in queued) == [("ChargeItem", 2), ("Claim", 2)]


async def test_an_override_refused_at_its_audit_insert_leaves_nothing_half_written(
    store: Store,
) -> None:
    await held_encounter(store)

    with pytest.raises((sqlite3.IntegrityError, asyncpg.NotNullViolationError)):
        await store.apply_review(override(note=None), LATER, DEST)  # audit.note NOT NULL

    encounter = await store.get_encounter(KEY)
    assert encounter is not None and encounter.state is EncounterState.HELD
    claim = await store.read_resource("Claim", CID)
    item = await store.read_resource("ChargeItem", "ci-1")
    assert claim is not None and (claim.version, claim.status) == (1, "draft")
    assert item is not None and (item.version, item.status) == (1, "planned")
    assert await store.due_deliveries(LATER, 10) == []
    assert await store.audit_for(KEY) == []


async def test_an_encounter_no_longer_held_is_not_overridden(store: Store) -> None:
    await held_encounter(store)
    await store.set_state(KEY, EncounterState.DIRTY, LATER)

    with pytest.raises(ReviewConflictError) as conflict:
        await store.apply_review(override(), LATER, DEST)

    assert conflict.value.found is EncounterState.DIRTY
    claim = await store.read_resource("Claim", CID)
    assert claim is not None and claim.version == 1
    assert await store.audit_for(KEY) == []


async def _must_not_code() -> int:
    raise AssertionError("an override or a refused release codes nothing")


async def test_the_override_use_case_bills_the_draft_in_one_decision(store: Store) -> None:
    await held_encounter(store)

    done = await review.release(
        store, _must_not_code, CID, ReleaseAction.OVERRIDE, "biller", "ok", LATER, DEST
    )

    assert (done.outcome, dict(done.versions)) == ("coded", {"ChargeItem": {"ci-1": 2}, "Claim": 2})
    assert [(a.action, a.actor) for a in await store.audit_for(KEY)] == [("override", "biller")]


async def test_a_release_of_an_unknown_or_no_longer_held_claim_is_refused(store: Store) -> None:
    await held_encounter(store)
    await store.set_state(KEY, EncounterState.CODED, LATER)

    with pytest.raises(review.NotUnderReview):
        await review.release(
            store, _must_not_code, "nope", ReleaseAction.OVERRIDE, "b", "n", LATER, DEST
        )
    with pytest.raises(review.NotHeld):
        await review.release(
            store, _must_not_code, CID, ReleaseAction.RECODE, "b", "n", LATER, DEST
        )
    assert await store.audit_for(KEY) == []
