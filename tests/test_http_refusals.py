"""What the HTTP API refuses, and that every refused body is kept for reprocessing.

The real app on a tmp SQLite file, real HTTP requests. Covers the fuzzer findings fixed
together: a refusal by the HTTP contract (415, a body that is not one JSON document, JSON
of the wrong shape for the URL) keeps the body as a dead letter; NDJSON on a REST endpoint
is refused and never accepted; instants outside 1900-2200 are input errors at their field
(never a crash); a batch entry with a non-string resourceType is that entry's 422; search
parameters out of range are 400s naming the parameter. The reader-level checks of the
time range are here too, next to the service behaviour they protect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from adapter.core.assembly import encounter_key
from adapter.core.infusion_time import local_date
from adapter.hl7.hl7_time import TimestampError, parse_ts
from adapter.mappings_loader import load_mappings
from adapter.readers.fhir import read_fhir
from adapter.readers.fhir.datetimes import parse_datetime
from adapter.readers.fhir.elements import ReadError
from adapter.store.base import MessageStatus, StoredMessage
from adapter.web.routes.fhir_search import MAX_OFFSET
from tests.coding_support import admin
from tests.mllp_client import hl7_message
from tests.service_fixtures import (
    FHIR_JSON,
    HL7_TYPE,
    Clock,
    fhir_body,
    make_settings,
    running_client,
    scenario_resource,
    scenario_transaction,
    state_of,
)

Client = TestClient[Any, Any]
NY = ZoneInfo("America/New_York")
HEADERS = {"Content-Type": FHIR_JSON}
RXA_TIMES = b"20250314093000-0400|20250314094600-0400"
MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with running_client(make_settings(tmp_path), Clock()) as c:
        yield c


async def outcome(response: Any, status: int) -> dict[str, Any]:
    """The answer is `status` with an OperationOutcome (never a traceback)."""
    assert response.status == status, await response.text()
    assert response.content_type == FHIR_JSON
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] and i["code"] for i in body["issue"])
    return body


async def kept(client: Client, raw: bytes) -> list[StoredMessage]:
    """Every stored row (dead or accepted) holding exactly these bytes."""
    rows = await state_of(client).store.list_messages()
    return [row for row in rows if row.raw == raw]


async def dead_only(client: Client, raw: bytes) -> StoredMessage:
    """The body is kept once, as a dead letter, and nowhere accepted."""
    (row,) = await kept(client, raw)
    assert row.status is MessageStatus.DEAD
    return row


# --- refusals before the ingestor are kept ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/fhir/MedicationAdministration", "text/plain"),
        ("PUT", "/fhir/MedicationAdministration/s03-ma-1", "text/xml"),
        ("POST", "/fhir", "application/octet-stream"),
    ],
)
async def test_a_fhir_body_refused_415_is_kept_as_a_dead_letter(
    client: Client, method: str, path: str, content_type: str
) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    raw = fhir_body(resource if path != "/fhir" else scenario_transaction("S03", "batch"))
    response = await client.request(method, path, data=raw, headers={"Content-Type": content_type})
    await outcome(response, 415)
    row = await dead_only(client, raw)
    assert row.format == "fhir" and "refused 415" in row.error


async def test_an_hl7_body_refused_415_is_kept_as_an_hl7_dead_letter(client: Client) -> None:
    raw = hl7_message("REF415")
    response = await client.post("/hl7", data=raw, headers={"Content-Type": "application/xml"})
    await outcome(response, 415)
    row = await dead_only(client, raw)
    assert row.format == "hl7" and "refused 415" in row.error


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/fhir/MedicationAdministration", b'{"resourceType": "Medication\xc3\x28"}'),
        ("/fhir/MedicationAdministration", b'{\n  "resourceType": '),
        ("/fhir", b"\xff\xfe{}"),
    ],
    ids=["not UTF-8", "truncated JSON", "UTF-16 byte-order mark"],
)
async def test_an_undecodable_body_is_400_and_kept(client: Client, path: str, raw: bytes) -> None:
    body = await outcome(await client.post(path, data=raw, headers=HEADERS), 400)
    assert body["issue"][0]["code"] == "structure"
    row = await dead_only(client, raw)
    assert "refused 400" in row.error


async def test_json_of_the_wrong_shape_for_the_url_is_refused_and_kept(client: Client) -> None:
    encounter = scenario_resource("S03", "Encounter")
    patient = fhir_body(scenario_resource("S03", "Patient"))
    await outcome(await client.post("/fhir", data=patient, headers=HEADERS), 400)
    searchset = fhir_body({"resourceType": "Bundle", "type": "searchset", "entry": []})
    await outcome(await client.post("/fhir", data=searchset, headers=HEADERS), 422)
    other_id = fhir_body(encounter)
    await outcome(await client.put("/fhir/Encounter/other-id", data=other_id, headers=HEADERS), 400)
    wrong_type = fhir_body({**encounter, "id": "e-wrong-type"})
    response = await client.post("/fhir/Condition", data=wrong_type, headers=HEADERS)
    await outcome(response, 400)
    for raw in (patient, searchset, other_id, wrong_type):
        await dead_only(client, raw)


async def test_the_same_refused_body_sent_twice_is_kept_once(client: Client) -> None:
    raw = b"not json at all"
    for _ in range(2):
        await outcome(await client.post("/fhir", data=raw, headers=HEADERS), 400)
    await dead_only(client, raw)
    assert (await state_of(client).store.counts()).dead_letters == 1


async def test_a_blank_body_is_400_and_nothing_is_kept(client: Client) -> None:
    for raw in (b"", b" \r\n\t"):
        response = await client.post("/fhir/MedicationAdministration", data=raw, headers=HEADERS)
        await outcome(response, 400)
    assert (await state_of(client).store.counts()).messages == 0


async def test_a_body_over_the_limit_is_413_and_not_kept(tmp_path: Path) -> None:
    """aiohttp stops reading at the limit: there is no whole body to keep (documented in
    `refusals_kept`); the sender is told 413 and must send it smaller."""
    async with running_client(make_settings(tmp_path, http_max_body_bytes=2048)) as client:
        big = fhir_body(scenario_transaction("S03"))
        await outcome(await client.post("/fhir", data=big, headers=HEADERS), 413)
        assert (await state_of(client).store.counts()).messages == 0


# --- NDJSON over REST: refused, never accepted --------------------------------------------


@pytest.mark.parametrize("path", ["/fhir", "/fhir/MedicationAdministration"])
async def test_ndjson_on_a_rest_endpoint_is_400_kept_dead_and_never_accepted(
    client: Client, path: str
) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    lines = [json.dumps({**resource, "id": rid}) for rid in ("nd-1", "nd-2")]
    raw = ("\n".join(lines) + "\n").encode()
    await outcome(await client.post(path, data=raw, headers=HEADERS), 400)
    await dead_only(client, raw)
    counts = await state_of(client).store.counts()
    assert counts.messages == counts.dead_letters == 1
    assert sum(counts.encounters_by_state.values()) == 0  # nothing linked, nothing to bill


# --- instants outside 1900-2200 -----------------------------------------------------------


@pytest.mark.parametrize("when", ["99991231235959-1200", "00010101000000+1400", "18991230"])
async def test_an_hl7_time_out_of_range_is_ae_at_the_rxa_field_and_kept(
    client: Client, when: str
) -> None:
    raw = hl7_message(f"RANGE{when[:4]}").replace(RXA_TIMES, f"{when}|{when}".encode())
    response = await client.post("/hl7", data=raw, headers={"Content-Type": HL7_TYPE})
    assert response.status == 200
    ack = (await response.read()).decode()
    assert "MSA|AE|" in ack
    assert "ERR|" in ack and "RXA^1^3" in ack, ack
    await dead_only(client, raw)


async def test_a_fhir_time_out_of_range_is_422_at_its_path_and_kept(client: Client) -> None:
    resource = scenario_resource("S03", "MedicationAdministration")
    resource["effectivePeriod"] = {"start": "9999-12-31T23:59:59-12:00"}
    raw = fhir_body(resource)
    response = await client.post("/fhir/MedicationAdministration", data=raw, headers=HEADERS)
    body = await outcome(response, 422)
    issue = body["issue"][0]
    assert issue["expression"] == ["MedicationAdministration.effectivePeriod.start"]
    assert "1900-2200" in issue["diagnostics"]
    await dead_only(client, raw)


@pytest.mark.parametrize(
    ("text", "year"), [("19000101", 1900), ("22001231235959-1200", 2200), ("2025", 2025)]
)
def test_hl7_timestamps_inside_the_range_are_read(text: str, year: int) -> None:
    assert parse_ts(text, NY).year == year


@pytest.mark.parametrize("text", ["18991231235959", "2201", "99991231235959-1200", "0001"])
def test_hl7_timestamps_outside_the_range_are_refused(text: str) -> None:
    with pytest.raises(TimestampError, match="1900-2200"):
        parse_ts(text, NY)


@pytest.mark.parametrize("text", ["1900-01-01", "2200-12-31T23:59:59-12:00"])
def test_fhir_datetimes_inside_the_range_are_read(text: str) -> None:
    assert parse_datetime(text, "X.start", NY).tzinfo is not None


@pytest.mark.parametrize("text", ["1899-12-30", "2201-01-01", "0001-01-01T00:00:00+14:00"])
def test_fhir_datetimes_outside_the_range_are_refused_at_their_path(text: str) -> None:
    with pytest.raises(ReadError, match="1900-2200") as raised:
        parse_datetime(text, "X.start", NY)
    assert raised.value.path == "X.start"


def test_the_core_keys_an_instant_at_the_end_of_the_datetime_range_without_overflow() -> None:
    """Built past the readers (they refuse it): its own written date, not an OverflowError."""
    edge = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12)))
    assert local_date(edge, NY) == date(9999, 12, 31)
    assert local_date(datetime(2025, 3, 15, 3, 0, tzinfo=UTC), NY) == date(2025, 3, 14)
    late = replace(admin("J2405", "8 mg", "09:00"), start=edge, end=None, visit_id=None)
    assert encounter_key(late, NY).split("|")[-2] == "9999-12-31"


# --- batch entries and search parameters --------------------------------------------------


@pytest.mark.parametrize("value", [[], {"a": 1}, 7])
async def test_a_batch_entry_with_a_non_string_resource_type_is_that_entrys_422(
    client: Client, value: object
) -> None:
    bundle = scenario_transaction("S20", "batch")
    bundle["entry"][0]["resource"]["resourceType"] = value
    raw = fhir_body(bundle)
    response = await client.post("/fhir", data=raw, headers=HEADERS)
    assert response.status == 200, await response.text()
    answer = await response.json(content_type=None)
    first, *others = (entry["response"] for entry in answer["entry"])
    assert first["status"].startswith("422")
    issue = first["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].resource"]
    assert all(not other["status"].startswith("422") for other in others)
    statuses = {row.status for row in await kept(client, raw)}
    assert statuses == {MessageStatus.DEAD, MessageStatus.ACCEPTED}


@pytest.mark.parametrize("value", [[], {"a": 1}, None, 7])
def test_the_reader_reports_a_non_string_resource_type_in_a_bundle_as_one_input_error(
    value: object,
) -> None:
    bundle = scenario_transaction("S20", "batch")
    bundle["entry"][0]["resource"]["resourceType"] = value
    messages = read_fhir(fhir_body(bundle), load_mappings(MAPPINGS), NY)
    errors = [m.error for m in messages if m.error is not None]
    assert [e.location for e in errors] == ["Bundle.entry[0].resource"]
    assert any(m.events for m in messages)  # the other entries are still read


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("_offset=99999999999999999999", "_offset"),
        (f"_offset={MAX_OFFSET + 1}", "_offset"),
        ("_offset=%C2%B2", "_offset"),
        ("_count=%C2%B2", "_count"),
        ("_count=%D9%A1%D9%A2", "_count"),
        ("_lastUpdated=9999", "_lastUpdated"),
        ("_lastUpdated=9999-12-31T23:59:59.999999", "_lastUpdated"),
        ("_lastUpdated=gt9999-12-31", "_lastUpdated"),
        ("_lastUpdated=lt0001-01-01", "_lastUpdated"),
        ("_lastUpdated=1899-12-31", "_lastUpdated"),
        ("_lastUpdated=2026-01-01T00:00%2B99:99", "_lastUpdated"),
        ("_lastUpdated=2026-01-01T00:00-15:00", "_lastUpdated"),
    ],
)
async def test_search_parameters_out_of_range_are_a_400_naming_the_parameter(
    client: Client, query: str, named: str
) -> None:
    body = await outcome(await client.get(f"/fhir/Claim?{query}"), 400)
    assert body["issue"][0]["diagnostics"].startswith(named)


@pytest.mark.parametrize(
    ("query", "count", "offset"),
    [
        (f"_offset={MAX_OFFSET}", 50, MAX_OFFSET),
        ("_count=" + "9" * 5000, 500, 0),
        ("_count=0007&_offset=000", 7, 0),
        ("_lastUpdated=ge1900-01-01&_lastUpdated=le2200-12-31T23:59:59.999999-12:00", 50, 0),
    ],
)
async def test_search_parameters_at_the_limits_are_served(
    client: Client, query: str, count: int, offset: int
) -> None:
    response = await client.get(f"/fhir/Claim?{query}")
    assert response.status == 200, await response.text()
    bundle = await response.json(content_type=None)
    assert bundle["total"] == 0
    assert f"_count={count}&_offset={offset}" in bundle["link"][0]["url"]
