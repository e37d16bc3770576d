"""The workbench worklist's store query, on SQLite and PostgreSQL alike (`held_worklist`).

Held encounters with their current Claim, oldest held first; filters by hold reason
(a whole code, not a part of one), location, setting and service-date range run in the
database, so a page of 50 does not read every held Claim; counts per reason and the
locations are over every held encounter.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from adapter.store.base import EncounterState, HeldQuery, Store
from tests.test_store import LATER, factory, link, message, store  # noqa: F401

HELD = EncounterState.HELD


def held_claim(cid: str, location: str, claim_type: str, start: str) -> tuple[str, str, str, Any]:
    body = {
        "resourceType": "Claim",
        "id": cid,
        "status": "draft",
        "type": {"coding": [{"code": claim_type}]},
        "patient": {"identifier": {"value": "P"}},
        "billablePeriod": {"start": start},
        "provider": {"display": location},
    }
    return ("Claim", cid, "draft", body)


# key, reasons, location, claim type, service start (in the order they were held)
HELD_ENCOUNTERS = [
    (
        "visit:1",
        "missing-stop-time",
        "Infusion center",
        "professional",
        "2026-01-05T10:00:00-05:00",
    ),
    (
        "visit:2",
        "unknown-drug missing-stop-time",
        "Oncology 4B",
        "institutional",
        "2026-01-12T09:00:00-05:00",
    ),
    ("visit:3", "unknown-drug", "Infusion center", "institutional", "2026-01-19T23:30:00-05:00"),
    (
        "visit:4",
        "missing-stop-time-estimated",
        "Oncology 4B",
        "professional",
        "2026-01-26T08:00:00-05:00",
    ),
]


@pytest.fixture
async def held(store: Store) -> Store:  # noqa: F811
    """Each encounter coded HELD with its reasons as the detail, a minute after the last."""
    for n, (key, reasons, location, kind, start) in enumerate(HELD_ENCOUNTERS):
        await store.add_message(message(f"hl7:s:{n}"), [link(key, close=True)])
        now = LATER + timedelta(minutes=n)
        leases = await store.lease_ready(now, now, "coder", 300, 1000)
        (mine,) = [lease for lease in leases if lease.encounter.key == key]
        claim = held_claim(f"clm-{n}", location, kind, start)
        await store.save_coding(mine, HELD, reasons, [claim], now, None)
    return store


def keys(page: Any) -> list[str]:
    return [item.encounter.key for item in page.items]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (HeldQuery(), ["visit:1", "visit:2", "visit:3", "visit:4"]),
        (HeldQuery(reason="missing-stop-time"), ["visit:1", "visit:2"]),  # not ...-estimated
        (HeldQuery(reason="unknown-drug"), ["visit:2", "visit:3"]),
        (HeldQuery(location="Oncology 4B"), ["visit:2", "visit:4"]),
        (HeldQuery(setting="institutional"), ["visit:2", "visit:3"]),
        (HeldQuery(service_from="2026-01-12", service_to="2026-01-19"), ["visit:2", "visit:3"]),
        (HeldQuery(reason="unknown-drug", location="Infusion center"), ["visit:3"]),
        (HeldQuery(limit=2, offset=1), ["visit:2", "visit:3"]),
    ],
)
async def test_held_worklist_filters_in_the_database_oldest_first(
    held: Store, query: HeldQuery, expected: list[str]
) -> None:
    page = await held.held_worklist(query)
    assert keys(page) == expected
    if query.limit >= 50:
        assert page.total == len(expected)
    else:
        assert page.total == 4
    assert page.reason_counts == (
        ("missing-stop-time", 2),
        ("unknown-drug", 2),
        ("missing-stop-time-estimated", 1),
    )
    assert page.locations == ("Infusion center", "Oncology 4B")
    assert page.held == 4
    for item in page.items:
        assert json.loads(item.claim_body)["resourceType"] == "Claim"


async def test_a_coded_encounter_is_not_on_the_held_worklist(held: Store) -> None:
    await held.set_state("visit:1", EncounterState.CODED, LATER + timedelta(hours=1))
    page = await held.held_worklist(HeldQuery())
    assert keys(page) == ["visit:2", "visit:3", "visit:4"]
    assert ("missing-stop-time", 1) in page.reason_counts
