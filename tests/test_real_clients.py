"""Standard clients against the real service, as an interface analyst would point them at it.

- fhirpy (a FHIR client library) saves inbound resources with `save()`: POST without an
  id, then PUT of the id the server assigned; reads them back; searches the Claims.
- python-hl7's `mllp_send` console script sends the fixture files as shipped. By default
  it reads an MLLP-framed stream (messages ended by 0x1C), which the framed fixture is;
  plain ER7 files (one message after another, LF or CR between them, as feeds are saved)
  need its `--loose` mode, which splits at `MSH|^~\\&|`: every such fixture is answered
  exactly as `charge-adapter send` gets it answered.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.send import messages_in, send
from adapter.hl7.msh import read_msa
from adapter.web.routes.fhir_resource import INBOUND_TYPES
from tests.service_fixtures import (
    SCENARIOS,
    Clock,
    make_settings,
    running_client,
    scenario,
    scenario_resource,
    state_of,
)

fhirpy = pytest.importorskip("fhirpy")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted(SCENARIOS.glob("*.hl7")) + sorted((ROOT / "fixtures/hl7v2").glob("*.hl7"))
FRAMED = ROOT / "fixtures/hl7v2/mllp_framed_crlf.hl7"
# no MSH in its third message: --loose glues it to the one before (python-hl7's reading)
NOT_SPLIT_AT_MSH = {"bad_messages.hl7"}


def _mllp_send_script() -> str:
    script = Path(sys.executable).parent / "mllp_send"
    if script.exists():
        return str(script)
    found = shutil.which("mllp_send")
    if found is None:
        pytest.skip("python-hl7's mllp_send is not installed (pip install hl7)")
    return found


async def python_hl7_mllp_send(port: int, path: Path, *flags: str) -> list[str]:
    """The ACK codes `mllp_send` prints, one per message sent (a real subprocess)."""
    proc = await asyncio.create_subprocess_exec(
        _mllp_send_script(), "-p", str(port), *flags, "-f", str(path), "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return [line.split("|")[1] for line in out.decode().replace("\r", "\n").splitlines()
            if line.startswith("MSA|")]  # fmt: skip


async def our_send(port: int, path: Path) -> list[str]:
    acks = await send("127.0.0.1", port, messages_in([path]), 30.0)
    return [read_msa(ack)[0] for ack in acks]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
async def test_python_hl7_mllp_send_loose_sends_each_fixture_as_charge_adapter_send_does(
    tmp_path: Path, path: Path
) -> None:
    if path.name in NOT_SPLIT_AT_MSH or path == FRAMED:
        pytest.skip("not a plain ER7 file of MSH-started messages")
    async with running_client(make_settings(tmp_path)) as client:
        port = state_of(client).mllp.port  # type: ignore[union-attr]
        theirs = await python_hl7_mllp_send(port, path, "--loose")
    async with running_client(make_settings(tmp_path / "again")) as client:
        port = state_of(client).mllp.port  # type: ignore[union-attr]
        ours = await our_send(port, path)
    assert len(theirs) == len(messages_in([path])), "one ACK per message in the file"
    assert Counter(theirs) == Counter(ours)


async def test_python_hl7_mllp_send_default_mode_sends_the_framed_fixture(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        port = state_of(client).mllp.port  # type: ignore[union-attr]
        codes = await python_hl7_mllp_send(port, FRAMED)
    assert codes == ["CA", "CA"]  # the fixture asks for enhanced acknowledgements


async def test_the_demo_feed_is_accepted_from_python_hl7_mllp_send(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        port = state_of(client).mllp.port  # type: ignore[union-attr]
        for name in ("S09", "S11", "S25"):
            codes = await python_hl7_mllp_send(port, SCENARIOS / f"{name}.hl7", "--loose")
            assert codes and set(codes) == {"AA"}, name


# --- fhirpy ---------------------------------------------------------------------------------


def _fhir_client(client: Any) -> Any:
    base = str(client.make_url("/fhir"))
    return fhirpy.AsyncFHIRClient(base, extra_headers={"Content-Type": "application/fhir+json"})


async def test_fhirpy_save_creates_then_updates_and_reads_back(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        fhir = _fhir_client(client)
        data = scenario_resource("S03", "MedicationAdministration")
        del data["id"]
        administration = fhir.resource("MedicationAdministration", **data)
        await administration.save()  # POST: the server assigns the id
        rid = administration["id"]
        assert rid and administration["meta"]["versionId"] == "1"
        administration["note"] = [{"text": "line flushed"}]
        await administration.save()  # PUT to the assigned id: version 2 of the same resource
        assert administration["id"] == rid
        assert administration["meta"]["versionId"] == "2"
        read = await fhir.reference("MedicationAdministration", rid).to_resource()
        assert read["note"] == [{"text": "line flushed"}]
        messages = await state_of(client).store.counts()
        assert messages.messages == 2 and messages.dead_letters == 0


async def test_fhirpy_saves_a_visit_and_finds_its_claim(tmp_path: Path) -> None:
    """A whole FHIR visit saved resource by resource with fhirpy, coded, searched with fhirpy."""
    clock = Clock()
    async with running_client(make_settings(tmp_path), clock) as client:
        fhir = _fhir_client(client)
        bundle = scenario("S20")
        for entry in bundle["entry"]:
            resource = dict(entry["resource"])
            if resource["resourceType"] not in INBOUND_TYPES:
                continue  # Medication, Organization: read through references, not stored alone
            saved = fhir.resource(resource.pop("resourceType"), **resource)
            await saved.save()
        clock.advance(days=1)
        await state_of(client).coder.run_once()
        claims = await fhir.resources("Claim").fetch_all()
        assert claims, "the visit saved with fhirpy was coded"
        assert all(c["resourceType"] == "Claim" for c in claims)
