"""The HTTP API end to end: the real app, a real SQLite file, real HTTP requests.

FHIR in (batch/transaction Bundles, single resources), Claims/ChargeItems/Tasks out
(read, vread, history, search), HL7 v2 over HTTP, probes and metrics, and every error
answered as an OperationOutcome.
"""

from __future__ import annotations

import asyncio
import copy
import json
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
    fhir_body,
    hl7_messages,
    make_settings,
    running_client,
    scenario,
    scenario_resource,
    scenario_transaction,
    state_of,
)

Client = TestClient[Any, Any]
S03_PATIENT = "Patient/nsonc-pat-ns100103"
HEADERS = {"Content-Type": FHIR_JSON}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(tmp_path: Path, clock: Clock) -> AsyncIterator[Client]:
    async with running_client(make_settings(tmp_path), clock) as c:
        yield c


async def post_fhir(client: Client, path: str, document: object, method: str = "POST") -> Any:
    return await client.request(method, path, data=fhir_body(document), headers=HEADERS)


async def assert_outcome(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An error status answered with an OperationOutcome carrying severity, code, text."""
    assert response.status == status, await response.text()
    assert response.content_type == FHIR_JSON
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    assert issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code
    assert "Traceback" not in json.dumps(body)
    return body


async def post_s03_and_code(client: Client) -> dict[str, Any]:
    """S03 as a transaction, coded; the Claim found by patient."""
    response = await post_fhir(client, "/fhir", scenario_transaction("S03"))
    assert response.status == 200, await response.text()
    await state_of(client).coder.run_once()
    bundle = await search_until(client, f"/fhir/Claim?patient={S03_PATIENT}", 1)
    claim: dict[str, Any] = bundle["entry"][0]["resource"]
    return claim


async def search_until(client: Client, url: str, total: int) -> dict[str, Any]:
    """Search, tolerating a coding run of the background loop still finishing."""
    for _ in range(100):
        response = await client.get(url)
        assert response.status == 200, await response.text()
        bundle: dict[str, Any] = await response.json(content_type=None)
        if bundle["total"] == total:
            return bundle
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url}: expected total {total}, got {bundle['total']}")


def local(url: str) -> str:
    """An absolute link from the server, as a path the test client can request."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


# --- FHIR in ----------------------------------------------------------------------------


async def test_transaction_bundle_is_answered_entry_by_entry_and_coded_into_a_claim(
    client: Client,
) -> None:
    bundle = scenario_transaction("S03")
    response = await post_fhir(client, "/fhir", bundle)
    assert response.status == 200
    assert response.content_type == FHIR_JSON
    answer = await response.json(content_type=None)
    assert answer["resourceType"] == "Bundle"
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == len(bundle["entry"])
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created"] * len(bundle["entry"])
    locations = [e["response"].get("location") for e in answer["entry"]]
    assert "MedicationAdministration/s03-ma-1" in locations

    await state_of(client).coder.run_once()
    found = await search_until(client, f"/fhir/Claim?patient={S03_PATIENT}", 1)
    entry = found["entry"][0]
    assert found["type"] == "searchset"
    assert entry["search"] == {"mode": "match"}
    claim = entry["resource"]
    assert claim["resourceType"] == "Claim"
    assert claim["status"] == "active"
    assert entry["fullUrl"].endswith(f"/fhir/Claim/{claim['id']}")


async def test_the_same_bundle_again_is_answered_200_ok_and_stored_once(client: Client) -> None:
    bundle = scenario_transaction("S03", "batch")
    first = await post_fhir(client, "/fhir", bundle)
    second = await post_fhir(client, "/fhir", bundle)
    assert first.status == second.status == 200
    answer = await second.json(content_type=None)
    assert answer["type"] == "batch-response"
    assert {e["response"]["status"] for e in answer["entry"]} == {"200 OK"}
    counts = await state_of(client).store.counts()
    assert counts.messages == 1


async def test_a_collection_bundle_is_accepted_like_a_batch(client: Client) -> None:
    response = await post_fhir(client, "/fhir", scenario("S03"))
    answer = await response.json(content_type=None)
    assert response.status == 200
    assert answer["type"] == "batch-response"


async def test_batch_with_an_unreadable_entry_rejects_only_that_entry_with_its_path(
    client: Client,
) -> None:
    bundle = scenario_transaction("S03", "batch")
    index, ma = next(
        (i, e["resource"])
        for i, e in enumerate(bundle["entry"])
        if e["resource"]["resourceType"] == "MedicationAdministration"
    )
    del ma["effectivePeriod"]
    ma["effectiveDateTime"] = "yesterday"
    response = await post_fhir(client, "/fhir", bundle)
    assert response.status == 200
    entries = (await response.json(content_type=None))["entry"]
    bad = entries[index]["response"]
    assert bad["status"] == "422 Unprocessable Entity"
    issue = bad["outcome"]["issue"][0]
    expected = f"Bundle.entry[{index}].resource.effectiveDateTime"
    assert issue["expression"] == [expected]
    others = [e["response"]["status"] for i, e in enumerate(entries) if i != index]
    assert set(others) == {"201 Created"}


async def test_transaction_with_an_unreadable_entry_is_refused_whole_and_kept_as_dead_letter(
    client: Client,
) -> None:
    bundle = scenario_transaction("S03")
    ma = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "MedicationAdministration"
    )
    ma["status"] = 12
    response = await post_fhir(client, "/fhir", bundle)
    body = await assert_outcome(response, 422)
    expressions = [i.get("expression", [""])[0] for i in body["issue"]]
    assert any(e.startswith("Bundle.entry[") and e.endswith(".status") for e in expressions)
    store = state_of(client).store
    counts = await store.counts()
    assert counts.messages == counts.dead_letters == 1
    assert sum(counts.encounters_by_state.values()) == 0


async def test_post_one_resource_answers_201_with_versioned_location_and_the_stored_resource(
    client: Client,
) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    first = await post_fhir(client, "/fhir/MedicationAdministration", resource)
    assert first.status == 201
    location = first.headers["Location"]
    assert location.endswith("/fhir/MedicationAdministration/s03-ma-1/_history/1")
    assert first.headers["ETag"] == 'W/"1"'
    stored = await first.json(content_type=None)
    assert stored["id"] == "s03-ma-1" and stored["meta"]["versionId"] == "1"
    assert {k: v for k, v in stored.items() if k != "meta"} == resource
    again = await post_fhir(client, "/fhir/MedicationAdministration", resource)
    assert again.status == 200
    assert again.headers["Location"] == location, "an unchanged resend is the same version"
    read = await client.get("/fhir/MedicationAdministration/s03-ma-1")
    assert read.status == 200 and await read.json(content_type=None) == stored


@pytest.mark.parametrize(
    ("prefer", "expected"),
    [("return=minimal", None), ("return=OperationOutcome", "OperationOutcome"),
     ("return=representation", "MedicationAdministration"), ("", "MedicationAdministration")],
)  # fmt: skip
async def test_post_honours_prefer_return(
    client: Client, prefer: str, expected: str | None
) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    headers = {**HEADERS, "Prefer": prefer} if prefer else HEADERS
    response = await client.post(
        "/fhir/MedicationAdministration", data=fhir_body(resource), headers=headers
    )
    assert response.status == 201
    assert response.headers["Location"].endswith("/_history/1")
    body = await response.read()
    if expected is None:
        assert body == b""
    else:
        assert json.loads(body)["resourceType"] == expected


async def test_post_without_an_id_gets_a_stable_server_id_and_put_updates_that_resource(
    client: Client,
) -> None:
    """FHIR create assigns the id; a resend of the same create gets the same id, and a PUT
    to it makes version 2 of the same administration, never a second one."""
    resource = scenario_resource("S03", "MedicationAdministration")
    del resource["id"]
    first = await post_fhir(client, "/fhir/MedicationAdministration", resource)
    assert first.status == 201
    created = await first.json(content_type=None)
    rid = created["id"]
    assert first.headers["Location"].endswith(f"/MedicationAdministration/{rid}/_history/1")
    again = await post_fhir(client, "/fhir/MedicationAdministration", resource)
    assert (await again.json(content_type=None))["id"] == rid
    changed = {**created, "note": [{"text": "pump checked"}]}
    updated = await post_fhir(client, f"/fhir/MedicationAdministration/{rid}", changed, "PUT")
    assert updated.status == 200
    assert updated.headers["Location"].endswith(f"/{rid}/_history/2")
    history = await (await client.get(f"/fhir/MedicationAdministration/{rid}/_history")).json(
        content_type=None
    )
    assert history["total"] == 2


async def test_put_one_resource_checks_id_and_type_against_the_url(client: Client) -> None:
    encounter = scenario_resource("S03", "Encounter")
    rid = encounter["id"]
    created = await post_fhir(client, f"/fhir/Encounter/{rid}", encounter, "PUT")
    assert created.status == 201
    assert created.headers["Location"].endswith(f"/fhir/Encounter/{rid}/_history/1")
    same = await post_fhir(client, f"/fhir/Encounter/{rid}", encounter, "PUT")
    assert same.status == 200
    other_id = await post_fhir(client, "/fhir/Encounter/other-id", encounter, "PUT")
    await assert_outcome(other_id, 400, "invalid")
    wrong_type = await post_fhir(client, f"/fhir/Condition/{rid}", encounter, "PUT")
    await assert_outcome(wrong_type, 400, "invalid")


async def test_a_readable_but_bad_resource_is_422_with_the_json_path(client: Client) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    del resource["effectivePeriod"]
    resource["effectiveDateTime"] = "yesterday"
    response = await post_fhir(client, "/fhir/MedicationAdministration", resource)
    body = await assert_outcome(response, 422)
    assert body["issue"][0]["expression"] == ["MedicationAdministration.effectiveDateTime"]
    assert (await state_of(client).store.counts()).dead_letters == 1


# --- errors -----------------------------------------------------------------------------


async def test_invalid_json_is_400_with_line_and_column(client: Client) -> None:
    response = await client.post(
        "/fhir/MedicationAdministration", data=b'{\n  "resourceType": ', headers=HEADERS
    )
    body = await assert_outcome(response, 400, "structure")
    assert "line 2 column" in body["issue"][0]["diagnostics"]


async def test_post_fhir_needs_a_bundle(client: Client) -> None:
    resource = scenario_resource("S03", "Patient")
    await assert_outcome(await post_fhir(client, "/fhir", resource), 400)
    searchset = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    body = await assert_outcome(await post_fhir(client, "/fhir", searchset), 422)
    assert body["issue"][0]["expression"] == ["Bundle.type"]


async def test_unknown_type_is_404_and_unknown_id_is_404(client: Client) -> None:
    await assert_outcome(await client.get("/fhir/Observation"), 404, "not-supported")
    await assert_outcome(await post_fhir(client, "/fhir/Observation", {}), 404)
    await assert_outcome(await client.get("/fhir/Claim/clm-unknown"), 404, "not-found")
    await assert_outcome(await client.get("/fhir/Claim/clm-unknown/_history"), 404, "not-found")
    await assert_outcome(await client.get("/fhir/Claim/clm-x/_history/1"), 404, "not-found")
    await assert_outcome(await client.get("/nowhere"), 404)


async def test_an_interaction_not_offered_is_405_with_allow(client: Client) -> None:
    response = await client.get("/fhir/MedicationAdministration")
    await assert_outcome(response, 405, "not-supported")
    assert response.headers["Allow"] == "POST"
    response = await client.delete("/fhir/MedicationAdministration/ma-1")
    await assert_outcome(response, 405, "not-supported")
    assert response.headers["Allow"] == "GET, HEAD, PUT"
    response = await post_fhir(client, "/fhir/Claim", {"resourceType": "Claim"})
    await assert_outcome(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_wrong_content_type_is_415(client: Client) -> None:
    resource = fhir_body(scenario_resource("S03", "Patient"))
    headers = {"Content-Type": "text/plain"}
    response = await client.post("/fhir/Patient", data=resource, headers=headers)
    await assert_outcome(response, 415, "not-supported")
    response = await client.post("/fhir", data=resource, headers={"Content-Type": "text/xml"})
    await assert_outcome(response, 415)
    plain_json = await client.post(
        "/fhir/Patient", data=resource, headers={"Content-Type": "application/json"}
    )
    assert plain_json.status == 201


async def test_a_body_over_the_limit_is_413(tmp_path: Path, clock: Clock) -> None:
    settings = make_settings(tmp_path, http_max_body_bytes=2048)
    async with running_client(settings, clock) as client:
        big = fhir_body(scenario_transaction("S03"))
        assert len(big) > 2048
        response = await client.post("/fhir", data=big, headers=HEADERS)
        await assert_outcome(response, 413, "too-long")
        hl7 = await client.post("/hl7", data=b"MSH|" * 1000, headers={"Content-Type": HL7_TYPE})
        await assert_outcome(hl7, 413, "too-long")


async def test_release_of_an_encounter_that_is_not_held_is_409(client: Client) -> None:
    claim = await post_s03_and_code(client)
    response = await client.post(
        f"/review/{claim['id']}/release", json={"action": "recode", "actor": "biller-1"}
    )
    await assert_outcome(response, 409, "conflict")


# --- FHIR out -------------------------------------------------------------------------


async def test_read_vread_and_history_carry_versions_etag_and_last_modified(
    client: Client, clock: Clock
) -> None:
    claim = await post_s03_and_code(client)
    url = f"/fhir/Claim/{claim['id']}"
    first = await client.get(url)
    assert first.status == 200
    assert first.headers["ETag"] == 'W/"1"'
    assert first.headers["Last-Modified"] == "Mon, 02 Feb 2026 15:00:00 GMT"
    assert (await first.json(content_type=None))["meta"]["versionId"] == "1"

    clock.advance(minutes=5)
    corrected = scenario_resource("S03", "MedicationAdministration")
    corrected["dosage"]["dose"]["value"] = 280  # fewer units: a new Claim version
    response = await post_fhir(client, "/fhir/MedicationAdministration/s03-ma-1", corrected, "PUT")
    assert response.status == 201
    await state_of(client).coder.run_once()

    current = await client.get(url)
    assert current.headers["ETag"] == 'W/"2"'
    history = await (await client.get(f"{url}/_history")).json(content_type=None)
    assert history["type"] == "history"
    assert history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert history["entry"][0]["response"]["etag"] == 'W/"2"'
    old = await client.get(f"{url}/_history/1")
    assert old.status == 200
    assert old.headers["ETag"] == 'W/"1"'
    assert (await old.json(content_type=None))["meta"]["versionId"] == "1"
    await assert_outcome(await client.get(f"{url}/_history/9"), 404, "not-found")


async def test_search_filters_by_encounter_status_and_last_updated(
    client: Client, clock: Clock
) -> None:
    claim = await post_s03_and_code(client)
    key = claim["identifier"][0]["value"]
    base = "/fhir/Claim"
    assert (await search_until(client, f"{base}?encounter={key}", 1))["total"] == 1
    assert (await search_until(client, f"{base}?status=active", 1))["total"] == 1
    assert (await search_until(client, f"{base}?status=draft", 0))["total"] == 0
    assert (await search_until(client, f"{base}?patient=Patient/nobody", 0))["total"] == 0
    day = "2026-02-02"
    for query, total in [
        (f"_lastUpdated=ge{day}", 1),
        (f"_lastUpdated=eq{day}", 1),
        (f"_lastUpdated={day}", 1),
        (f"_lastUpdated=gt{day}", 0),
        (f"_lastUpdated=lt{day}", 0),
        ("_lastUpdated=ge2026-02-02T15:00:00Z&_lastUpdated=le2026-02-02T15:00:00Z", 1),
        ("_lastUpdated=gt2026-02-02T15:00:00Z", 0),
        ("_lastUpdated=ge2026-02-02T10:00:00%2B05:00", 1),
        ("_lastUpdated=le2026-02", 1),
    ]:
        found = await search_until(client, f"{base}?{query}", total)
        assert found["total"] == total, query


async def test_search_pages_with_count_offset_and_next_link(client: Client) -> None:
    claim = await post_s03_and_code(client)
    key = claim["identifier"][0]["value"]
    items = await search_until(client, f"/fhir/ChargeItem?encounter={key}", len(claim["item"]))
    total = items["total"]
    assert total >= 2
    page = await (await client.get(f"/fhir/ChargeItem?encounter={key}&_count=1")).json(
        content_type=None
    )
    assert page["total"] == total
    assert len(page["entry"]) == 1
    links = {link["relation"]: link["url"] for link in page["link"]}
    assert "_count=1" in links["self"]
    second = await (await client.get(local(links["next"]))).json(content_type=None)
    assert len(second["entry"]) == 1
    assert second["entry"][0]["fullUrl"] != page["entry"][0]["fullUrl"]
    assert any(link["relation"] == "previous" for link in second["link"])
    beyond = await (await client.get(f"/fhir/ChargeItem?_offset={total}")).json(content_type=None)
    assert beyond["entry"] == []
    assert all(link["relation"] != "next" for link in beyond["link"])


async def test_search_parameters_are_strict_unless_lenient_is_asked_for(client: Client) -> None:
    body = await assert_outcome(await client.get("/fhir/Claim?subject=Patient/1"), 400)
    assert "subject" in body["issue"][0]["diagnostics"]
    await assert_outcome(await client.get("/fhir/Claim?patient:identifier=x"), 400)
    await assert_outcome(await client.get("/fhir/Claim?_count=ten"), 400, "invalid")
    await assert_outcome(await client.get("/fhir/Claim?_lastUpdated=yesterday"), 400)
    await assert_outcome(await client.get("/fhir/Claim?_lastUpdated=ne2026-01-01"), 400)
    await assert_outcome(await client.get("/fhir/Claim?status=draft,active"), 400)
    lenient = await client.get(
        "/fhir/Claim?subject=Patient/1", headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status == 200
    bundle = await lenient.json(content_type=None)
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"


async def test_count_is_capped_at_500(client: Client) -> None:
    bundle = await (await client.get("/fhir/Task?_count=10000")).json(content_type=None)
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "_count=500" in self_link


# --- HL7 v2 over HTTP -------------------------------------------------------------------


async def test_hl7_messages_posted_one_by_one_are_acknowledged_aa(client: Client) -> None:
    messages = hl7_messages("S25")
    assert len(messages) == 3
    for message in messages:
        response = await client.post("/hl7", data=message, headers={"Content-Type": HL7_TYPE})
        assert response.status == 200
        assert response.content_type == HL7_TYPE
        ack = await response.read()
        msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA"))
        assert msa.split(b"|")[1] == b"AA", ack
    text_plain = await client.post("/hl7", data=messages[0], headers={"Content-Type": "text/plain"})
    assert text_plain.status == 200
    wrong = await client.post("/hl7", data=messages[0], headers=HEADERS)
    await assert_outcome(wrong, 415)
    await state_of(client).coder.run_once()
    by_identifier = await search_until(client, "/fhir/Claim?patient=NSONC%7CNS100126", 1)
    assert by_identifier["entry"][0]["resource"]["status"] == "draft"  # S25 is held


# --- probes and metadata ----------------------------------------------------------------


async def test_healthz_and_readyz(client: Client) -> None:
    alive = await client.get("/healthz")
    assert alive.status == 200
    assert await alive.json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["status"] == "ready"


async def test_readyz_is_503_once_the_store_is_closed(client: Client) -> None:
    state = state_of(client)
    await state.store.close()
    body = await assert_outcome(await client.get("/readyz"), 503)
    assert "not ready" in body["issue"][0]["diagnostics"]
    alive = await client.get("/healthz")
    assert alive.status == 200


async def test_readyz_is_503_when_the_database_file_cannot_be_opened(tmp_path: Path) -> None:
    database = tmp_path / "db"
    settings = make_settings(tmp_path, database_url=f"sqlite:///{database}/adapter.db")
    async with running_client(settings) as client:
        state = state_of(client)
        state.stop.set()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await state.store.close()
        for item in database.iterdir():
            item.unlink()
        database.rmdir()
        database.write_text("not a directory")  # the store cannot reopen its file
        await assert_outcome(await client.get("/readyz"), 503)
        database.unlink()


async def test_metrics_exposes_counters_and_store_gauges(client: Client) -> None:
    await post_s03_and_code(client)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert "adapter_messages_total" in text
    assert 'adapter_encounters{state="coded"} 1.0' in text
    assert "adapter_dead_letters 0.0" in text
    assert "adapter_outbox_backlog" in text


async def test_capability_statement_is_valid_r4_and_lists_what_is_served(client: Client) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = await client.get("/fhir/metadata")
    assert response.status == 200
    assert response.content_type == FHIR_JSON
    document = await response.json(content_type=None)
    statement = CapabilityStatement.model_validate(document)
    assert statement.status == "active"
    assert statement.kind == "instance"
    assert statement.fhirVersion == "4.0.1"
    assert document["format"] == ["json"]
    rest = document["rest"][0]
    assert rest["mode"] == "server"
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == {
        "Claim",
        "ChargeItem",
        "Task",
        "MedicationAdministration",
        "Encounter",
        "Condition",
        "Patient",
        "Coverage",
    }
    claim_codes = {i["code"] for i in by_type["Claim"]["interaction"]}
    assert claim_codes == {"read", "vread", "history-instance", "search-type"}
    params = {p["name"] for p in by_type["Claim"]["searchParam"]}
    assert params == {"patient", "encounter", "status", "_lastUpdated"}
    assert {i["code"] for i in by_type["Patient"]["interaction"]} == {
        "create", "update", "read", "vread", "history-instance"
    }  # fmt: skip
    assert {i["code"] for i in rest["interaction"]} == {"batch", "transaction"}


async def test_the_stored_claim_state_matches_what_search_returns(client: Client) -> None:
    claim = await post_s03_and_code(client)
    row = await state_of(client).store.get_encounter(claim["identifier"][0]["value"])
    assert row is not None
    assert row.state is EncounterState.CODED


def test_scenario_transaction_keeps_every_resource() -> None:
    original = scenario("S03")
    transaction = scenario_transaction("S03")
    assert [e["resource"] for e in transaction["entry"]] == [
        e["resource"] for e in copy.deepcopy(original)["entry"]
    ]
    assert all(e["request"]["method"] == "PUT" for e in transaction["entry"])


async def test_medication_and_nested_bundle_entries_get_one_response_each(client: Client) -> None:
    medication = {"resourceType": "Medication", "id": "med-1", "status": "active"}
    nested = scenario("S03")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": medication}, {"resource": nested}],
    }
    response = await post_fhir(client, "/fhir", batch)
    assert response.status == 200
    entries = (await response.json(content_type=None))["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", "201 Created"]
    assert entries[0]["response"]["outcome"]["issue"][0]["severity"] == "information"


def test_last_updated_prefixes_cover_the_whole_precision_of_the_value() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from adapter.web.routes.fhir_search import date_bounds

    ny = ZoneInfo("America/New_York")
    start = datetime(2026, 1, 1, tzinfo=ny)
    assert date_bounds("ge2026-01", ny) == (start, None)
    low, high = date_bounds("eq2026-01", ny)
    assert low == start
    assert high is not None and high.isoformat() == "2026-01-31T23:59:59.999999-05:00"
    assert date_bounds("gt2026", ny) == (datetime(2027, 1, 1, tzinfo=ny), None)
    instant = datetime(2026, 1, 7, 15, 51, tzinfo=UTC)
    assert date_bounds("ge2026-01-07T15:51:00Z", UTC) == (instant, None)
    assert date_bounds("ge2026-01-07T10:51:00 05:00", UTC)[0] == datetime(
        2026, 1, 7, 5, 51, tzinfo=UTC
    )
