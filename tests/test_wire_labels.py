"""Nothing a sender typed reaches /metrics or a log line unless it has its field's grammar.

The unit tables pin the grammar (MSH-9 from HL7 tables 0076/0003, versions from 0104,
control ids, FHIR kinds); the live test plants one identifier in every MSH field in turn,
sends each message over MLLP and `POST /hl7`, and greps `/metrics` and every log line the
service wrote meanwhile. The `Server` header test is here too: it is the other thing the
service told every caller that it should not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.labels import (
    OTHER,
    TABLE_0003,
    TABLE_0076,
    control_id_label,
    fhir_kind_label,
    hl7_kind_label,
    version_label,
)
from adapter.metrics import Metrics
from tests.mllp_client import send_messages
from tests.service_fixtures import HL7_TYPE, make_settings, running_client, state_of

IDENTIFIER = "E2200931"  # an MRN-shaped value a misconfigured engine could put anywhere
MSH_FIELDS = range(3, 22)  # MSH-3 (sending application) .. MSH-21 (message profile)
BASE_MSH = [  # index n is MSH-n
    "MSH",
    "|",
    "^~\\&",
    "EPIC",
    "NRH_ONC",
    "CHGCAP",
    "NRH_BILLING",
    "20250314161502-0400",
    "",
    "RAS^O17^RAS_O17",
    "CTL0001",
    "P",
    "2.5.1",
]


@pytest.mark.parametrize(
    "kind",
    ["RAS^O17", "RAS^O17^RAS_O17", "ADT^A08", "ADT^A08^ADT_A01", "DFT^P03", "RDE^O11", "ORU^R01"],
)
def test_a_message_type_of_the_hl7_tables_is_its_own_label(kind: str) -> None:
    assert hl7_kind_label(kind) == kind


@pytest.mark.parametrize(
    "kind",
    [
        f"MRN^{IDENTIFIER}",
        f"{IDENTIFIER}",
        "ZRX^Z01",  # site-defined: not in table 0076
        "RAS^X17",
        "RAS^O17^DOE_JAN",
        "ras^o17",
        "RAS^O17^RAS_O17^EXTRA",
        "RAS",
        "",
        "RAS^O17 ",
        "RAS\u00a0O17",
    ],
)
def test_a_message_type_outside_the_tables_is_other(kind: str) -> None:
    assert hl7_kind_label(kind) == OTHER


def test_the_tables_hold_the_types_this_service_reads() -> None:
    assert {"RAS", "RDE", "ADT", "DFT", "ACK", "ORM"} <= TABLE_0076
    assert {"O17", "O11", "A01", "A08", "A62", "P03", "R01"} <= TABLE_0003
    assert "A63" not in TABLE_0003 and "Z01" not in TABLE_0003


@pytest.mark.parametrize(
    ("version", "label"),
    [("2.5.1", "2.5.1"), ("2.3", "2.3"), ("2.9", "2.9"), ("2.5.9", OTHER), (IDENTIFIER, OTHER)],
)
def test_versions_come_from_table_0104(version: str, label: str) -> None:
    assert version_label(version) == label


@pytest.mark.parametrize(
    ("control_id", "logged"),
    [
        ("CTL0001", "CTL0001"),
        ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", "3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
        ("DOE JANE", ""),
        ("MRN^E2200931", ""),
        ("x" * 65, ""),
        ("", ""),
        ("CTL\u00000001", ""),
    ],
)
def test_a_control_id_is_logged_only_with_its_shape(control_id: str, logged: str) -> None:
    assert control_id_label(control_id) == logged


@pytest.mark.parametrize(
    ("kind", "label"),
    [("MedicationAdministration", "MedicationAdministration"), ("Bundle", "Bundle"),
     ("Doejane", OTHER), ("Observation", OTHER)],
)  # fmt: skip
def test_fhir_kinds_are_the_types_read_here(kind: str, label: str) -> None:
    assert fhir_kind_label(kind) == label


def test_an_identifier_in_msh_9_is_counted_as_other() -> None:
    metrics = Metrics()
    metrics.message("hl7", f"MRN^{IDENTIFIER}", "rejected")
    text = metrics.render().decode()
    assert IDENTIFIER not in text
    assert 'adapter_messages_total{format="hl7",outcome="rejected",type="other"} 1.0' in text


def _message_with(field: int, value: str) -> bytes:
    """The fixture RAS^O17 with MSH-<field> replaced by `value` (MSH-10 kept distinct)."""
    msh = BASE_MSH + [""] * (22 - len(BASE_MSH))
    msh[field] = value
    if field != 10:
        msh[10] = f"CTL{field:04d}"
    segments = [
        "MSH|" + "|".join(msh[2:]),
        "PID|1||E1004417^^^NRH^MR||SAMPLEPATIENT^AVERY^J||19610422|F",
        "PV1|1|O|ONCINF^CHAIR12^^NRH_CANCER_CTR",
        "ORC|RE|ORD70001^EPIC|RX70001^EPICRX||CM",
        "RXA|0|1|20250314093000-0400|20250314094600-0400|00409-4755-03^ONDANSETRON^NDC|8|mg",
    ]
    return ("\r".join(segments) + "\r").encode()


def _planted() -> list[bytes]:
    """The identifier alone, and as MSH-9's components, in every header field; MSH-10 gets
    only values outside its grammar (a well-shaped control id is logged by design)."""
    messages = []
    for field in MSH_FIELDS:
        values = [f"MRN^{IDENTIFIER}", f"{IDENTIFIER} DOE"]
        if field != 10:
            values.append(IDENTIFIER)
        if field == 9:
            values += [f"RAS^{IDENTIFIER}", f"RAS^O17^{IDENTIFIER}"]
        messages += [_message_with(field, value) for value in values]
    return messages


async def test_an_identifier_in_any_header_field_reaches_neither_metrics_nor_logs(
    tmp_path: Path, session_log_lines: list[str]
) -> None:
    settings = make_settings(tmp_path)
    first_line = len(session_log_lines)
    async with running_client(settings) as client:
        mllp = state_of(client).mllp
        assert mllp is not None
        messages = _planted()
        acks = await send_messages(settings.host, mllp.port, messages)
        assert len(acks) == len(messages)
        for message in messages:
            response = await client.post("/hl7", data=message, headers={"Content-Type": HL7_TYPE})
            assert response.status == 200
        metrics = await (await client.get("/metrics")).text()
    logged = session_log_lines[first_line:]
    assert any('"event": "mllp.message"' in line for line in logged)
    assert IDENTIFIER not in metrics
    leaks = [line for line in logged if IDENTIFIER in line]
    assert not leaks, "\n".join(leaks[:5])


async def test_the_server_header_names_no_versions(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        for path in ("/healthz", "/no/such/route", "/fhir/metadata"):
            response = await client.get(path)
            assert response.headers["Server"] == "charge-adapter"
