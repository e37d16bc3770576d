"""NUL characters in feeds: never valid HL7 or FHIR text, and PostgreSQL text cannot hold one.

Found while adding group commit to the PostgreSQL store: a NUL in MSH-10 (or PID-3, or a
FHIR id written `\\u0000`) reached the store's text columns, PostgreSQL refused the insert,
and the sender got AE 207 "resend later" forever: not stored, not even as a dead letter.
The readers now read NUL as U+FFFD, at ingest and when the coder re-reads the message.
A FHIR id is checked against the id grammar after that (`[A-Za-z0-9\\-.]{1,64}`): an id
holding a NUL is refused with its path and kept as a dead letter, on both stores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapter.mappings_loader import load_mappings
from adapter.metrics import Metrics
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.store.base import MessageStatus
from adapter.usecases.ingest import Ingestor
from tests.mllp_client import hl7_message
from tests.store_fixtures import StoreFactory, require_postgres

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = load_mappings(ROOT / "mappings")
NY = ZoneInfo("America/New_York")
MEDADMIN = json.loads(next((ROOT / "fixtures" / "fhir").glob("medadmin_*.json")).read_text())


def nul_message(control_id: str) -> bytes:
    return hl7_message(f"{control_id}\x00X").replace(b"E1004417", b"E100\x004417")


def test_a_nul_in_hl7_reads_as_the_replacement_character_in_keys_and_ids() -> None:
    (message,) = read_hl7(nul_message("NUL1"), MAPPINGS, NY, frame=True)
    assert message.error is None and message.events
    assert message.control_id.endswith("NUL1\ufffdX")
    assert "\x00" not in message.dedup_key
    assert all("\x00" not in repr(event) for event in message.events)
    assert any("E100\ufffd4417" in repr(event) for event in message.events)


def test_a_nul_escape_in_fhir_json_reads_as_the_replacement_character() -> None:
    body = json.dumps({**MEDADMIN, "note": [{"text": "see\x00chart"}]}).encode()
    assert b"\\u0000" in body
    (message,) = read_fhir(body, MAPPINGS, NY)
    assert message.error is None and message.events


def test_a_nul_in_a_fhir_id_is_refused_with_its_path_and_no_nul_in_the_key() -> None:
    body = json.dumps({**MEDADMIN, "id": "ma\x00nul"}).encode()
    (message,) = read_fhir(body, MAPPINGS, NY)
    assert message.error is not None and message.error.location.endswith(".id")
    assert "\x00" not in message.dedup_key


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_message_with_nul_bytes_is_stored_and_acknowledged(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        await require_postgres()
    factory = StoreFactory(backend, tmp_path)
    try:
        store = await factory.open()
        ingestor = Ingestor(store, MAPPINGS, NY, None, lambda: datetime.now(UTC), Metrics())
        result = await ingestor.receive_hl7(nul_message("NUL2"))
        assert result.ack_code == "AA"
        fhir = await ingestor.receive_fhir(json.dumps({**MEDADMIN, "id": "x\x00y"}).encode())
        assert [entry.status for entry in fhir.entries] == [422]
        kept = await store.list_messages(None, None)
        assert [m.status for m in kept] == [MessageStatus.ACCEPTED, MessageStatus.DEAD]
    finally:
        await factory.cleanup()
