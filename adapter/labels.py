"""Label and log values taken off the wire, each checked against its grammar (else "other").

Why: `/metrics` is open to anyone who reaches the HTTP port and logs leave the PHI
boundary, so a value a sender typed (MSH-9, MSH-10, a FHIR resourceType) may appear
there only when it has the shape, and for coded fields the value, its standard allows.
An MSH-9 of `MRN^E2200931` is not a message type: it is counted and logged as "other".

- MSH-9 message type: `AAA^AAA[^AAA_AAA]`, MSH-9.1 from HL7 table 0076, MSH-9.2 from
  table 0003, MSH-9.3 (the message structure) as `<0076 value>_<0003 value>`.
- MSH-12 version: a value of HL7 table 0104.
- MSH-10 control id: an ST of letters, digits, `.`, `_`, `-` (GUIDs included), 1-64 long;
  anything else is not logged (""), since a control id cannot be bucketed meaningfully.
- FHIR kind: the resource types this service reads, `Bundle` and `payload`.

Pure: no I/O. The tables are HL7 v2.9's values (0076, 0003, 0104), kept as data here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "OTHER",
    "TABLE_0003",
    "TABLE_0076",
    "TABLE_0104",
    "control_id_label",
    "fhir_kind_label",
    "hl7_kind_label",
    "message_kind_label",
    "version_label",
]

OTHER = "other"


def _codes(text: str) -> frozenset[str]:
    """A table written as whitespace-separated codes (readable against the standard's list)."""
    return frozenset(text.split())


TABLE_0076 = _codes(
    """ACK ADR ADT BAR BPS BRP BRT BTS CCF CCI CCM CCQ CCR CCU CQU CRM CSU DBC DBU DEL DFT
    DOC DSR EAC EAN EAR EHC ESR ESU INR INU LSR LSU MDM MFD MFK MFN MFQ MFR NMD NMQ NMR OMB
    OMD OMG OMI OML OMN OMP OMQ OMS OPL OPR OPU ORA ORB ORD ORF ORG ORI ORL ORM ORN ORP ORR
    ORS ORU OSM OSQ OSR OSU OUL PEX PGL PIN PMU PPG PPP PPR PPT PPV PRR PTR QBP QCK QCN QRY
    QSB QSX QVR RAR RAS RCI RCL RDE RDR RDS RDY REF RER RGR RGV ROC ROR RPA RPI RPL RPR RQA
    RQC RQI RQP RRA RRD RRE RRG RRI RSP RTB SCN SDN SDR SIU SLN SLR SMD SQM SQR SRM SRR SSR
    SSU STC STI SUR TBR TCR TCU UDM VXQ VXR VXU VXX"""
)


def _events(ranges: Iterable[tuple[str, int, int]], extra: str) -> frozenset[str]:
    """Table 0003 is mostly letter + two-digit runs (A01-A62); written as ranges, not 600 codes."""
    codes = {f"{letter}{n:02d}" for letter, low, high in ranges for n in range(low, high + 1)}
    return frozenset(codes) | _codes(extra)


TABLE_0003 = _events(
    (
        ("A", 1, 62),
        ("B", 1, 8),
        ("C", 1, 12),
        ("E", 1, 4),
        ("E", 10, 13),
        ("E", 15, 15),
        ("E", 20, 22),
        ("E", 24, 24),
        ("E", 30, 31),
        ("I", 1, 23),
        ("J", 1, 2),
        ("K", 11, 11),
        ("K", 13, 13),
        ("K", 15, 15),
        ("K", 21, 25),
        ("K", 31, 34),
        ("M", 1, 21),
        ("N", 1, 2),
        ("O", 1, 44),
        ("P", 1, 12),
        ("Q", 1, 9),
        ("Q", 11, 11),
        ("Q", 13, 17),
        ("Q", 21, 27),
        ("Q", 30, 31),
        ("R", 1, 33),
        ("S", 1, 37),
        ("T", 1, 12),
        ("U", 1, 13),
        ("V", 1, 4),
        ("W", 1, 2),
        ("Z", 73, 99),
    ),
    "CNQ PC1 PC2 PC3 PC4 PC5 PC6 PC7 PC8 PC9 PCA PCB PCC PCD PCE PCF PCG PCH PCJ PCK PCL "
    "R0R ROR VQQ",
)

TABLE_0104 = _codes("2.0 2.0D 2.1 2.2 2.3 2.3.1 2.4 2.5 2.5.1 2.6 2.7 2.7.1 2.8 2.8.1 2.8.2 2.9")

_KIND = re.compile(r"([A-Z0-9]{3})\^([A-Z0-9]{3})(?:\^([A-Z0-9]{3})_([A-Z0-9]{3}))?", re.ASCII)
_CONTROL_ID = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
_OWN_HL7_KINDS = frozenset({"unknown", "oversize"})
FHIR_KINDS = frozenset(
    {
        "MedicationAdministration",
        "Encounter",
        "Condition",
        "Coverage",
        "Patient",
        "Medication",
        "Bundle",
        "payload",
    }
)


def hl7_kind_label(kind: str) -> str:
    """MSH-9 (`RAS^O17`, `ADT^A08^ADT_A01`) when every part is a table value, else "other".

    `unknown` and `oversize` are the ingestor's own names for a frame without a header.
    """
    if kind in _OWN_HL7_KINDS:
        return kind
    match = _KIND.fullmatch(kind)
    if match is None:
        return OTHER
    code, event, structure_code, structure_event = match.groups()
    if code not in TABLE_0076 or event not in TABLE_0003:
        return OTHER
    if structure_code is not None and (
        structure_code not in TABLE_0076 or structure_event not in TABLE_0003
    ):
        return OTHER
    return kind


def fhir_kind_label(kind: str) -> str:
    """A resource type this service reads, `Bundle` or `payload`; anything else "other"."""
    return kind if kind in FHIR_KINDS else OTHER


def message_kind_label(fmt: str, kind: str) -> str:
    """The `type` label of adapter_messages_total and the `kind` field of message logs."""
    if fmt == "hl7":
        return hl7_kind_label(kind)
    if fmt == "fhir":
        return fhir_kind_label(kind)
    return OTHER


def version_label(version: str) -> str:
    """MSH-12.1 when it is a version of HL7 table 0104, else "other"."""
    return version if version in TABLE_0104 else OTHER


def control_id_label(control_id: str) -> str:
    """MSH-10 for a log line when it has a control id's shape; "" (not logged) otherwise."""
    return control_id if _CONTROL_ID.fullmatch(control_id) else ""
