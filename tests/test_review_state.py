"""A review decision survives an identical resend; a resend that bills otherwise reopens it.

Interface engines resend a whole visit under new MSH-10s (a queue replayed after an
outage, a "resend all" after a fix on their side). The service as deployed: the real app
(HTTP API, MLLP listener, coder) on a SQLite file and on PostgreSQL; the visit (S25:
carboplatin with no stop time, held) arrives over a real MLLP socket, the biller
overrides it over HTTP, and the resend comes over MLLP again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapter.hl7.msh import read_msa
from adapter.store.base import EncounterState
from tests.mllp_client import connect
from tests.service_fixtures import client_on_backend, hl7_messages, state_of

Client = TestClient[Any, Any]
NOTE = "Stop time 11:00 confirmed with the charge nurse."


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Client]:
    async with client_on_backend(request.param, tmp_path, close_check_seconds=3600) as c:
        yield c


def resent(messages: list[bytes], tag: str, edit: tuple[str, str] | None = None) -> list[bytes]:
    """The same visit under new control ids (MSH-10 EP260123S25xx -> EP260123<tag>xx)."""
    out = []
    for raw in messages:
        text = re.sub(r"\|EP260123S25(\d\d)\|", rf"|EP260123{tag}\1|", raw.decode())
        if edit is not None:
            text = text.replace(*edit)
        out.append(text.encode())
    return out


async def send(client: Client, messages: list[bytes]) -> None:
    state = state_of(client)
    assert state.mllp is not None
    async with connect("127.0.0.1", state.mllp.port) as mllp:
        for message in messages:
            await mllp.send(message)
            assert read_msa(await mllp.read_ack())[0] == "AA"
    await state.coder.run_once()


async def get(client: Client, url: str) -> Any:
    response = await client.get(url)
    assert response.status == 200, await response.text()
    return await response.json(content_type=None)


async def overridden(client: Client) -> dict[str, Any]:
    """S25 received over MLLP, held, then overridden by a biller over HTTP."""
    await send(client, hl7_messages("S25"))
    (item,) = await get(client, "/review")
    body = {"action": "override", "note": NOTE, "actor": "biller-1"}
    response = await client.post(f"/review/{item['claimId']}/release", json=body)
    assert response.status == 200, await response.text()
    assert (await get(client, "/review")) == []
    return dict(item)


async def versions(client: Client, item: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every resource of the encounter: (status, versionId)."""
    claim = await get(client, f"/fhir/Claim/{item['claimId']}")
    task = await get(client, item["links"]["task"].split("127.0.0.1", 1)[-1].split("/", 1)[-1])
    items = await get(client, f"/fhir/ChargeItem?encounter={item['encounterKey']}")
    out = {"Claim": (claim["status"], claim["meta"]["versionId"])}
    out["Task"] = (task["status"], task["meta"]["versionId"])
    for entry in items["entry"]:
        r = entry["resource"]
        out[r["id"]] = (r["status"], r["meta"]["versionId"])
    return out


async def test_an_identical_resend_after_an_override_keeps_the_claim_billed(
    client: Client,
) -> None:
    item = await overridden(client)
    before = await versions(client, item)
    assert before["Claim"] == ("active", "2") and before["Task"][0] == "completed"

    await send(client, resent(hl7_messages("S25"), "R1"))
    await send(client, resent(hl7_messages("S25"), "R2"))  # and once more

    assert await versions(client, item) == before  # no new version of anything
    row = await state_of(client).store.get_encounter(item["encounterKey"])
    assert row is not None and row.state is EncounterState.CODED
    assert await get(client, "/review") == []


async def test_a_resend_that_changes_a_line_reopens_the_review_with_the_difference(
    client: Client,
) -> None:
    item = await overridden(client)

    dose = ("|500|mg^mg^UCUM|", "|600|mg^mg^UCUM|")  # carboplatin 500 -> 600 mg
    await send(client, resent(hl7_messages("S25"), "R1", dose))

    (reopened,) = await get(client, "/review")
    assert reopened["claimId"] == item["claimId"]
    assert [r["code"] for r in reopened["holdReasons"]] == ["missing-stop-time"]
    changes = reopened["changesSinceOverride"]
    assert changes["overriddenVersion"] == 2
    assert (changes["added"], changes["removed"]) == ([], [])
    (changed,) = changes["changed"]
    assert changed["from"]["code"] == changed["to"]["code"] == "J9045"
    assert (changed["from"]["units"], changed["to"]["units"]) == ("10", "12")
    now = await versions(client, item)
    assert now["Claim"] == ("draft", "3") and now["Task"][0] == "requested"


async def test_a_coded_visit_resent_identically_writes_no_new_version(client: Client) -> None:
    """Released by the data: the stop time arrives (RXA-4), the visit is coded; the engine
    then resends it all again. Nothing is rewritten, nothing goes back on hold."""
    stop = ("|20260123100000-0500||", "|20260123100000-0500|20260123110000-0500|")
    await send(client, resent(hl7_messages("S25"), "S25", stop))
    (claim,) = (await get(client, "/fhir/Claim"))["entry"]
    assert claim["resource"]["status"] == "active"
    before = claim["resource"]["meta"]["versionId"]

    await send(client, resent(hl7_messages("S25"), "R1", stop))

    (again,) = (await get(client, "/fhir/Claim"))["entry"]
    assert again["resource"]["status"] == "active"
    assert again["resource"]["meta"]["versionId"] == before
    assert await get(client, "/review") == []
