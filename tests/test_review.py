"""The review worklist over HTTP: a held encounter (S25, no stop time) and its two releases.

Driven by the real app on a SQLite file: S25's HL7 v2 messages go in through POST /hl7,
the coder holds the encounter, and the biller lists, re-codes or overrides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from adapter.store.base import EncounterState
from tests.service_fixtures import (
    FHIR_JSON,
    HL7_TYPE,
    Clock,
    hl7_messages,
    make_settings,
    running_client,
    state_of,
)

Client = TestClient[Any, Any]
OVERRIDE_NOTE_URL = "https://charge-adapter.org/fhir/StructureDefinition/override-note"
NOTE = "Stop time confirmed with the charge nurse: 11:00."


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with running_client(make_settings(tmp_path), Clock()) as c:
        yield c


@pytest.fixture
async def held(client: Client) -> dict[str, Any]:
    """S25 received over HTTP and coded: the one worklist item."""
    for message in hl7_messages("S25"):
        response = await client.post("/hl7", data=message, headers={"Content-Type": HL7_TYPE})
        assert response.status == 200
    await state_of(client).coder.run_once()
    items = await worklist(client)
    assert len(items) == 1
    return items[0]


async def worklist(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/review")
    assert response.status == 200
    items: list[dict[str, Any]] = await response.json()
    return items


async def release(client: Client, claim_id: str, body: dict[str, Any]) -> Any:
    return await client.post(f"/review/{claim_id}/release", json=body)


async def fhir(client: Client, url: str) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status == 200, await response.text()
    document: dict[str, Any] = await response.json(content_type=None)
    return document


async def assert_outcome(response: Any, status: int, expression: str | None = None) -> None:
    assert response.status == status, await response.text()
    assert response.content_type == FHIR_JSON
    body = await response.json(content_type=None)
    issue = body["issue"][0]
    assert body["resourceType"] == "OperationOutcome"
    assert issue["severity"] == "error"
    assert issue["code"]
    assert issue["diagnostics"]
    if expression is not None:
        assert issue["expression"] == [expression]


async def test_a_held_encounter_is_listed_with_its_reason_and_sentence(
    client: Client, held: dict[str, Any]
) -> None:
    assert held["claimId"].startswith("clm-")
    assert held["id"] == held["claimId"]
    assert held["encounterKey"] == "visit:NV2601230126"
    reasons = held["holdReasons"]
    assert [r["code"] for r in reasons] == ["missing-stop-time"]
    assert reasons[0]["text"]
    assert held["lastUpdated"].startswith("2026-02-02T15:00:00")
    claim = await fhir(client, urlsplit(held["links"]["claim"]).path)
    assert claim["resourceType"] == "Claim"
    assert claim["id"] == held["claimId"]
    assert claim["status"] == "draft"
    task = await fhir(client, urlsplit(held["links"]["task"]).path)
    assert task["status"] == "requested"


async def test_override_without_a_note_is_422(client: Client, held: dict[str, Any]) -> None:
    cid = held["claimId"]
    await assert_outcome(
        await release(client, cid, {"action": "override", "actor": "biller-1"}), 422, "note"
    )
    await assert_outcome(
        await release(client, cid, {"action": "override", "note": "  ", "actor": "biller-1"}),
        422,
        "note",
    )
    assert len(await worklist(client)) == 1


async def test_override_with_a_note_bills_the_draft_and_is_audited(
    client: Client, held: dict[str, Any]
) -> None:
    cid = held["claimId"]
    body = {"action": "override", "note": NOTE, "actor": "biller-1"}
    response = await release(client, cid, body)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["outcome"] == "coded"
    assert answer["versions"]["Claim"] == 2

    claim = await fhir(client, f"/fhir/Claim/{cid}")
    assert claim["status"] == "active"
    assert claim["meta"]["versionId"] == "2"
    notes = [e for e in claim["extension"] if e["url"] == OVERRIDE_NOTE_URL]
    assert notes == [{"url": OVERRIDE_NOTE_URL, "valueString": NOTE}]
    task_id = held["links"]["task"].rsplit("/", 1)[1]
    task = await fhir(client, f"/fhir/Task/{task_id}")
    assert task["status"] == "completed"
    assert task["output"][0]["valueString"] == NOTE
    key = held["encounterKey"]
    items = await fhir(client, f"/fhir/ChargeItem?encounter={key}")
    assert items["total"] >= 1
    assert {e["resource"]["status"] for e in items["entry"]} == {"billable"}

    store = state_of(client).store
    row = await store.get_encounter(key)
    assert row is not None and row.state is EncounterState.CODED
    audit = await store.audit_for(key)
    assert [(a.action, a.actor, a.note) for a in audit] == [("override", "biller-1", NOTE)]
    assert await worklist(client) == []
    await assert_outcome(await release(client, cid, body), 409)


async def test_recode_after_fixing_nothing_stays_held(client: Client, held: dict[str, Any]) -> None:
    cid = held["claimId"]
    response = await release(client, cid, {"action": "recode", "actor": "biller-2"})
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["outcome"] == "held"
    assert [r["code"] for r in answer["holdReasons"]] == ["missing-stop-time"]
    claim = await fhir(client, f"/fhir/Claim/{cid}")
    assert claim["status"] == "draft"
    audit = await state_of(client).store.audit_for(held["encounterKey"])
    assert [(a.action, a.actor) for a in audit] == [("release-recode", "biller-2")]
    assert [i["claimId"] for i in await worklist(client)] == [cid]


async def test_release_errors_are_operation_outcomes(client: Client, held: dict[str, Any]) -> None:
    cid = held["claimId"]
    await assert_outcome(
        await release(client, "clm-unknown", {"action": "recode", "actor": "a"}), 404
    )
    await assert_outcome(await release(client, cid, {"action": "approve", "actor": "a"}), 422)
    await assert_outcome(await release(client, cid, {"action": "recode"}), 422, "actor")
    await assert_outcome(await release(client, cid, {"action": "recode", "actor": 7}), 422)
    bad_json = await client.post(
        f"/review/{cid}/release", data=b"{", headers={"Content-Type": "application/json"}
    )
    await assert_outcome(bad_json, 400)
    not_json = await client.post(
        f"/review/{cid}/release", data=b"recode", headers={"Content-Type": "text/plain"}
    )
    await assert_outcome(not_json, 415)
    await assert_outcome(await client.get("/review?limit=0"), 400)
    assert len(await worklist(client)) == 1
