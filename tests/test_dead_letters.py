"""The dead-letter worklist: what was refused, why (a code) and where, without PHI.

Real parts: the service as deployed (`start_state`, `create_app` behind a real aiohttp
server), HL7 through a real MLLP socket, FHIR and HL7 over real HTTP, the CLI as a real
process on the same SQLite file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from aiohttp.test_utils import TestClient
from yarl import URL

from adapter.config import Settings
from adapter.core.model import SegmentLocation
from adapter.core.refusals import RefusalReason, hl7_location
from adapter.hl7.msh import read_msa
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.readers.fhir import read_fhir
from adapter.usecases.ingest import refusal_for
from tests.mllp_client import connect
from tests.service_fixtures import (
    FHIR_JSON,
    make_settings,
    running_client,
    scenario_resource,
    state_of,
)
from tests.test_replay import oversize, two_in_one_frame

ROOT = Path(__file__).resolve().parents[1]
FRAME_LIMIT = 8192
MAPPINGS = load_mappings(default_mappings_dir())
NAME, MRN, BIRTH = "Okonkwo^Adaeze", "MRN77123", "19590317"

GOOD_HEADER = "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|{cid}|P|2.5.1\r"
PATIENT = (
    f"PID|1||{MRN}^^^HOSP^MR||{NAME}||{BIRTH}|F\rPV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||V9\r"
)
BAD_TIME = (
    GOOD_HEADER.format(cid="BADTIME1") + PATIENT + "ORC|RE|O9|F9\r"
    f"RXA|0|1|{BIRTH}x|20260115|63323051610^dexamethasone^NDC|12|mg^mg^UCUM\r"
)
# a lost segment break: PID slid into the header, so MSH-7 holds the patient's name
SLID = f"MSH|^~\\&|EPIC|ONC|CHG|ONC|{NAME}||RAS^O17^RAS_O17|{MRN}|P|2.5.1\r" + PATIENT
UNSUPPORTED = GOOD_HEADER.format(cid="MDM1").replace("RAS^O17^RAS_O17", "MDM^T02^MDM_T02") + PATIENT


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = make_settings(tmp_path, close_check_seconds=3600, mllp_max_frame_bytes=FRAME_LIMIT)
    async with running_client(settings) as c:
        yield c


async def mllp(client: TestClient[Any, Any], frames: list[str]) -> list[str]:
    state = state_of(client)
    assert state.mllp is not None
    async with connect("127.0.0.1", state.mllp.port) as conn:
        codes = []
        for frame in frames:
            await conn.send(frame.encode())
            codes.append(read_msa(await conn.read_ack())[0])
    return codes


async def refuse_everything(client: TestClient[Any, Any]) -> None:
    """One of each refusal, over the listener that refuses it."""
    codes = await mllp(
        client, [BAD_TIME, SLID, UNSUPPORTED, two_in_one_frame("V3"), oversize("V2")]
    )
    assert codes == ["AE", "AE", "AR", "AR", "AR"]
    bad_resource = scenario_resource("S03", "MedicationAdministration")
    bad_resource["effectiveDateTime"] = BIRTH
    bad_resource.pop("effectivePeriod", None)
    posts = [
        ("/fhir/MedicationAdministration", json.dumps(bad_resource), FHIR_JSON, 422),
        ("/fhir/MedicationAdministration", '{"resourceType": ', FHIR_JSON, 400),
        ("/fhir/Encounter", json.dumps(scenario_resource("S03", "Patient")), FHIR_JSON, 400),
        ("/hl7", BAD_TIME.replace("BADTIME1", "BADTIME2"), "application/pdf", 415),
    ]
    for path, body, content_type, status in posts:
        response = await client.post(
            path, data=body.encode(), headers={"Content-Type": content_type}
        )
        assert response.status == status, await response.text()


EXPECTED = [  # (reason, location, control id shown), in arrival order
    (RefusalReason.UNREADABLE_FIELD, "RXA #1 field RXA-3", "BADTIME1"),
    (RefusalReason.IMPLAUSIBLE_HEADER, "MSH-7", ""),
    (RefusalReason.UNSUPPORTED_TYPE, "MSH-9", "MDM1"),
    (RefusalReason.SEVERAL_MESSAGES, "MSH #2", "TWOA"),
    (RefusalReason.OVERSIZE, "", ""),
    (RefusalReason.INVALID_RESOURCE, "MedicationAdministration.effectiveDateTime", ""),
    (RefusalReason.NOT_JSON, "", ""),
    (RefusalReason.WRONG_SHAPE, "resourceType", ""),
    (RefusalReason.WRONG_CONTENT_TYPE, "", ""),
]


async def test_every_refusal_is_listed_with_its_code_and_place_and_no_phi(
    client: TestClient[Any, Any],
) -> None:
    with structlog.testing.capture_logs() as logs:
        await refuse_everything(client)
    response = await client.get("/admin/dead-letters")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.json()
    text = json.dumps(page)
    for phi in (NAME, "Okonkwo", MRN, BIRTH):
        assert phi not in text, phi
    got = [(RefusalReason(i["reason"]), i["location"], i["controlId"]) for i in page["items"]]
    assert got == EXPECTED
    assert page["total"] == len(EXPECTED)
    assert [i["format"] for i in page["items"]] == ["hl7"] * 5 + ["fhir"] * 3 + ["hl7"]
    refusal_lines = [e for e in logs if e["event"] in ("message.dead_letter", "http.refused_kept")]
    assert sorted(e["reason"] for e in refusal_lines) == sorted(r.value for r, _, _ in EXPECTED)
    assert not any(phi in json.dumps(logs, default=str) for phi in (NAME, MRN, BIRTH))


async def test_the_worklist_filters_by_reason_and_since_and_pages(
    client: TestClient[Any, Any],
) -> None:
    await refuse_everything(client)
    only = await (await client.get("/admin/dead-letters?reason=oversize,not-json")).json()
    assert [i["reason"] for i in only["items"]] == ["oversize", "not-json"]
    later = await (await client.get("/admin/dead-letters?since=2999-01-01T00:00:00")).json()
    assert later["total"] == 0
    full = await (await client.get("/admin/dead-letters")).json()
    first = await (await client.get("/admin/dead-letters?_count=4")).json()
    assert first["count"] == 4 and first["total"] == len(EXPECTED)
    pages = [first]
    while "next" in pages[-1]:
        pages.append(await (await client.get(URL(pages[-1]["next"]).path_qs)).json())
    assert [p["offset"] for p in pages] == [0, 4, 8]
    assert [i["id"] for p in pages for i in p["items"]] == [i["id"] for i in full["items"]]
    for bad in ("reason=nope", "since=yesterday", "_count=-1", "patient=1"):
        assert (await client.get(f"/admin/dead-letters?{bad}")).status == 400, bad


async def test_the_raw_is_served_as_received_never_cached(client: TestClient[Any, Any]) -> None:
    await refuse_everything(client)
    page = await (await client.get("/admin/dead-letters?reason=unreadable-field")).json()
    (item,) = page["items"]
    response = await client.get(f"/admin/dead-letters/{item['id']}/raw")
    assert response.status == 200
    assert await response.read() == BAD_TIME.encode()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "attachment" in response.headers["Content-Disposition"]
    assert (await client.get("/admin/dead-letters/999999/raw")).status == 404


async def test_the_raw_needs_a_token_when_auth_is_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_tokens="analyst:analyst-token-0123456789")
    async with running_client(settings) as client:
        await mllp(client, [BAD_TIME])
        assert (await client.get("/admin/dead-letters")).status == 401
        assert (await client.get("/admin/dead-letters/1/raw")).status == 401
        token = {"Authorization": "Bearer analyst-token-0123456789"}
        page = await (await client.get("/admin/dead-letters", headers=token)).json()
        raw = await client.get(f"/admin/dead-letters/{page['items'][0]['id']}/raw", headers=token)
        assert raw.status == 200 and await raw.read() == BAD_TIME.encode()


@pytest.mark.parametrize(
    ("at", "expected"),
    [(SegmentLocation("RXA", 1, 3), "RXA #1 field RXA-3"), (SegmentLocation("PID", 1), "PID #1"),
     (SegmentLocation("MSH", 1, 9), "MSH-9"), (SegmentLocation("MSH", 2), "MSH #2"),
     (SegmentLocation("", 0), ""), (None, "")],
)  # fmt: skip
def test_hl7_location_names_segment_and_field_only(
    at: SegmentLocation | None, expected: str
) -> None:
    assert hl7_location(at) == expected


@pytest.mark.parametrize(
    ("origin", "body", "expected"),
    [("http", {"resourceType": "Bundle", "type": "batch", "entry": ["x"]}, "Bundle.entry[0]"),
     ("Feed.v2.json", {"resourceType": "Bundle", "type": "batch", "entry": "x"}, "Bundle.entry"),
     ("Bundle.entry[9].json", {"resourceType": "Bundle", "type": "batch", "entry": [3]},
      "Bundle.entry[0]")],
)  # fmt: skip
def test_the_dead_letters_json_path_is_the_readers_typed_path_whatever_the_origin_says(
    origin: str, body: object, expected: str
) -> None:
    """The place comes from where the reader found the fault (`InputError.path`), never
    from a pattern over its location text: an origin that reads like a path cannot move it."""
    messages = read_fhir(json.dumps(body), MAPPINGS, ZoneInfo("America/New_York"), origin)
    assert refusal_for("fhir", messages).location == expected


# --- the CLI --------------------------------------------------------------------------------


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "ADAPTER_DATABASE_URL": settings.database_url,
        "ADAPTER_LOG_FORMAT": "json",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "dead-letters", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


async def test_cli_lists_shows_and_reprocesses_a_dead_letter(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, close_check_seconds=3600, mllp_max_frame_bytes=FRAME_LIMIT)
    async with running_client(settings) as client:
        assert await mllp(client, [BAD_TIME, two_in_one_frame("V3")]) == ["AE", "AR"]
    listed = cli(settings)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t")[5] == "REASON"
    assert [r.split("\t")[5] for r in rows] == ["unreadable-field", "several-messages"]
    assert MRN not in listed.stdout and NAME not in listed.stdout
    bad_id, frame_id = (r.split("\t")[0] for r in rows)
    only = cli(settings, "--reason", "several-messages", "--json")
    assert [json.loads(line)["id"] for line in only.stdout.splitlines()] == [int(frame_id)]

    shown = cli(settings, "show", bad_id)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0] == BAD_TIME.split("\r")[0]
    assert MRN in shown.stdout, "show prints the raw as received"

    still = cli(settings, "reprocess", bad_id)
    assert still.returncode == 1
    assert (
        still.stdout.strip()
        == f"dead letter {bad_id}: still refused: unreadable-field at RXA #1 field RXA-3"
    )
    accepted = cli(settings, "reprocess", frame_id)
    assert accepted.returncode == 0, accepted.stderr
    lines = accepted.stdout.splitlines()
    assert lines[0] == f"dead letter {frame_id}: accepted; encounters coded: 1"
    assert lines[1].startswith("  Claim/") and lines[1].endswith(": coded")
    again = cli(settings, "reprocess", frame_id)
    assert again.returncode == 1 and "not a dead letter" in again.stdout
    assert cli(settings, "show", frame_id).returncode == 1
