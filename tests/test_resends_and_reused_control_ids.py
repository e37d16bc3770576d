"""A duplicate is the same sender, the same control id AND the same content.

Senders restart MSH-10 counters after an engine reinstall, and test systems send one
control id (`MSG00001`) for everything: such a message is a message of its own, read and
billed, never answered AA and dropped as a re-send (an A03 lost so loses the discharge,
a RAS its administrations). A true re-send (lost ACK, engine retry), byte for byte or with
other segment terminators, is still answered AA and kept once.

The service as deployed (real app, real MLLP socket, SQLite file and PostgreSQL) and the
batch command (`charge-adapter code`) must agree.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.cli.main import main
from adapter.hl7.msh import read_msa
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.readers.hl7v2 import read_hl7
from adapter.store.base import EncounterState, NewMessage
from adapter.usecases.links import links_for, patient_key
from tests.mllp_client import connect
from tests.service_fixtures import (
    FHIR_JSON,
    client_on_backend,
    fhir_body,
    scenario_resource,
    state_of,
)

Client = TestClient[Any, Any]
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "hl7v2"
REUSED = FIXTURE / "test_system_reused_msg00001.hl7"  # A04, RAS, RAS, A08, A03: all MSG00001
VISIT = "visit:VN55100031"
MAPPINGS = load_mappings(default_mappings_dir())
NY = ZoneInfo("America/New_York")
FHIR_HEADERS = {"Content-Type": FHIR_JSON}


def messages(path: Path = REUSED, terminator: str = "\r") -> list[bytes]:
    """The file's messages (blank-line separated), each with this segment terminator."""
    blocks = path.read_text(encoding="utf-8").strip().split("\n\n")
    return [(terminator.join(b.splitlines()) + terminator).encode() for b in blocks]


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Client]:
    async with client_on_backend(request.param, tmp_path, close_check_seconds=3600) as c:
        yield c


async def send(client: Client, raws: list[bytes]) -> list[tuple[str, str]]:
    """Each message over one MLLP connection, each after the previous ACK: (MSA-1, MSA-2)."""
    state = state_of(client)
    assert state.mllp is not None
    answers = []
    async with connect("127.0.0.1", state.mllp.port) as mllp:
        for raw in raws:
            await mllp.send(raw)
            answers.append(read_msa(await mllp.read_ack()))
    return answers


async def metric(client: Client, name: str, **labels: str) -> float:
    """One sample of /metrics as Prometheus scrapes it (0 when the series is absent).

    The reuse check is part of the commit behind the ACK: a count is final once answered.
    """
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def stored(client: Client, control_id: str) -> int:
    return len(await state_of(client).store.find_messages([control_id]))


async def claim_codes(client: Client) -> list[str]:
    response = await client.get("/fhir/Claim")
    (entry,) = (await response.json(content_type=None))["entry"]
    return [i["productOrService"]["coding"][0]["code"] for i in entry["resource"]["item"]]


# --- the service ----------------------------------------------------------------------


async def test_an_identical_resend_is_answered_aa_stored_once_and_not_recoded(
    client: Client,
) -> None:
    state = state_of(client)
    feed = messages()
    await send(client, feed)
    assert await state.coder.run_once() == 1  # the A03 (MSG00001 too) closed the visit
    before = await state.store.get_encounter(VISIT)
    assert before is not None and before.state is EncounterState.CODED

    assert await send(client, feed[1:2]) == [("AA", "MSG00001")]  # the engine retries a RAS

    assert await stored(client, "MSG00001") == len(feed)
    assert await state.coder.run_once() == 0
    after = await state.store.get_encounter(VISIT)
    assert after == before  # same revision, still coded: nothing to code again
    assert await metric(client, "adapter_messages_total", outcome="duplicate") == 1
    assert await metric(client, "adapter_control_id_reused_total", format="hl7") == len(feed) - 1


async def test_a_reused_control_id_with_another_rxa_bills_both_administrations(
    client: Client,
) -> None:
    answers = await send(client, messages())

    assert answers == [("AA", "MSG00001")] * 5
    assert await stored(client, "MSG00001") == 5  # A04, two RAS, A08, A03: each kept
    assert await state_of(client).coder.run_once() == 1  # the A03 was read: discharged
    assert sorted(await claim_codes(client)) == ["96375", "96413", "J1100", "J9271"]
    assert await metric(client, "adapter_control_id_reused_total", format="hl7") == 4
    assert await metric(client, "adapter_messages_total", outcome="duplicate") == 0


@pytest.mark.parametrize("terminator", ["\r\n", "\n"])
async def test_a_resend_with_other_segment_terminators_is_a_duplicate(
    client: Client, terminator: str
) -> None:
    ras = messages()[1]
    resend = messages(terminator=terminator)[1].replace(
        b"IV infusion^HL70165", b"IV infusion^HL70165  "
    )

    assert await send(client, [ras, resend]) == [("AA", "MSG00001"), ("AA", "MSG00001")]

    assert await stored(client, "MSG00001") == 1
    assert await metric(client, "adapter_messages_total", outcome="duplicate") == 1
    assert await metric(client, "adapter_control_id_reused_total", format="hl7") == 0


async def test_a_reused_control_id_is_logged_as_a_warning_without_phi(client: Client) -> None:
    import structlog

    with structlog.testing.capture_logs() as logs:
        await send(client, messages()[:2])  # the check is answered by the commit

    (event,) = [e for e in logs if e["event"] == "message.control_id_reused"]
    assert (event["log_level"], event["control_id"], event["kind"]) == (
        "warning",
        "MSG00001",
        "RAS^O17",
    )
    text = repr(event)
    assert not any(phi in text for phi in ("T7700123", "TESTPATIENT", "QUINN", "19570830"))


# --- the key, as an invariant ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=4),
    st.lists(st.sampled_from(["\r", "\n", "\r\n", " \r", "\t\n", "\r\r"]), min_size=8),
)
def test_any_mix_of_terminators_and_trailing_blanks_keeps_the_dedup_key(
    which: int, terminators: list[str]
) -> None:
    """Whatever an engine does to segment ends, a re-send is the same message."""
    raw = messages()[which].decode()
    segments = raw.rstrip("\r").split("\r")
    mixed = "".join(seg + terminators[i % len(terminators)] for i, seg in enumerate(segments))

    (original,) = read_hl7(raw, MAPPINGS, NY, frame=True)
    (resend,) = read_hl7(mixed, MAPPINGS, NY, frame=True)
    assert resend.dedup_key == original.dedup_key
    assert resend.control_id == original.control_id == "MSG00001"


def test_the_five_messages_under_msg00001_have_five_keys() -> None:
    read = [read_hl7(raw, MAPPINGS, NY, frame=True)[0] for raw in messages()]
    assert len({m.dedup_key for m in read}) == 5
    assert {m.control_key for m in read} == {"hl7:ONCTEST^RIVERBEND:MSG00001"}


# --- the batch ------------------------------------------------------------------------


def run_code(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[str, str]:
    """`charge-adapter code --explain` as a user runs it: (summary line, explain report)."""
    assert main(["code", "--explain", *map(str, paths)]) == 0
    err = capsys.readouterr().err.splitlines()
    return err[-1], "\n".join(err)


def test_the_same_file_twice_is_read_once_and_names_each_duplicate_s_original(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary, report = run_code(capsys, REUSED, REUSED)

    assert "messages=10 duplicates=5 " in summary
    for copy, original in [(6, 1), (7, 2), (8, 3), (9, 4), (10, 5)]:
        line = next(ln for ln in report.splitlines() if ln.startswith(f"  message {copy} "))
        assert line.endswith(
            f"skipped: duplicate-message (duplicate of {REUSED} message {original})"
        )


def test_messages_sharing_a_sender_and_msg00001_are_each_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary, report = run_code(capsys, REUSED)

    assert "messages=5 duplicates=0 skipped_messages=0 encounters coded=1 " in summary
    assert "duplicate-message" not in report
    assert "warning: 4 messages reuse an earlier message's sender and control id" in report
    assert len(re.findall(r": coded: ", report)) == 2  # both RAS under MSG00001 billed


def test_adt_messages_of_one_test_sender_in_separate_files_are_each_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shaped after the FHIR-Converter ADT samples (A01, A03, A04, A08): one sender, all
    MSG00001, one file each; none is a duplicate of another."""
    paths = []
    for number, raw in enumerate(messages(terminator="\r\n")):
        if b"|ADT^" in raw:
            path = tmp_path / f"adt-{number}.hl7"
            path.write_bytes(raw)
            paths.append(path)

    summary, report = run_code(capsys, *paths)

    assert "messages=3 duplicates=0 skipped_messages=0 " in summary
    assert report.count(": no administration") == 3


# --- the control id the feed sent, as stored -------------------------------------------


@pytest.mark.parametrize("meta", [{}, {"meta": {"versionId": "2"}}])
async def test_a_fhir_resource_is_stored_under_its_type_and_id_for_replay_message(
    client: Client, meta: dict[str, Any]
) -> None:
    """`replay --message ma-1` finds it: the control id is the reader's `Type/id`, not the
    dedup key with its version or content digest."""
    resource = {**scenario_resource("S09", "MedicationAdministration"), **meta}
    response = await client.post(
        "/fhir/MedicationAdministration", data=fhir_body(resource), headers=FHIR_HEADERS
    )
    assert response.status == 201, await response.text()

    (found,) = await state_of(client).store.find_messages([resource["id"]])
    assert found.control_id == f"MedicationAdministration/{resource['id']}"


async def test_a_resend_of_a_message_stored_under_the_old_key_is_kept_once_more_and_billed_once(
    client: Client,
) -> None:
    """Before content digests a message was keyed `hl7:<sender>:<MSH-10>`; no migration
    rewrites those rows (docs/reliability.md). Its re-send after the upgrade is stored once
    more, any further re-send is a duplicate, and the visit bills each line once."""
    state = state_of(client)
    ras = messages()[1]
    (read,) = read_hl7(ras, MAPPINGS, NY, frame=True)
    old = NewMessage(
        read.control_key, "hl7", read.kind, ras, state.clock(), patient_key(read.events), "MSG00001"
    )
    await state.store.add_message(old, links_for(read.events, NY, None))

    await send(client, messages())
    await send(client, messages())  # and the whole visit once more

    assert await stored(client, "MSG00001") == 6  # the old row, then the five under new keys
    assert await state.coder.run_once() == 1
    response = await client.get("/fhir/Claim")
    (entry,) = (await response.json(content_type=None))["entry"]
    units = {
        i["productOrService"]["coding"][0]["code"]: i["quantity"]["value"]
        for i in entry["resource"]["item"]
    }
    assert units == {"96413": 1, "J9271": 200, "96375": 1, "J1100": 10}
