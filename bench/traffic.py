"""Realistic HL7 v2 traffic for the service benchmarks, generated from the scenario fixtures.

Every `fixtures/scenarios/*.hl7` file is one outpatient infusion visit as an EHR
sends it: ADT^A04 (registration), RAS^O17 (the administrations), ADT^A03
(discharge). They are used as templates: visit number `v` takes template
`v % len(templates)` and gets its own MSH-10 per message, its own patient
(PID-3 MRN), its own visit number (PV1-19) and its own order numbers (ORC-2,
ORC-3), so any number of distinct visits of many patients can be produced
while the clinical content (drugs, times, diagnoses, payers) stays real.

`drain_visit` builds the fixed 5-administration regimen of `bench_coding.py`
(A04, RAS with 5 RXA, A03) for the processing benchmarks, where every
encounter must code cleanly.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "fixtures" / "scenarios"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_coding import REGIMEN  # noqa: E402

MESSAGES_PER_VISIT = 3
ADMINS_PER_DRAIN_VISIT = len(REGIMEN)


@cache
def templates() -> tuple[tuple[tuple[list[str], ...], ...], ...]:
    """Per scenario file: its messages, each a tuple of segments split into fields."""
    out = []
    for path in sorted(SCENARIOS.glob("*.hl7")):
        text = path.read_text(encoding="utf-8")
        messages: list[list[str]] = []
        for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
            if not line:
                continue
            if line.startswith("MSH"):
                messages.append([])
            messages[-1].append(line)
        if len(messages) != MESSAGES_PER_VISIT:
            raise SystemExit(f"{path.name}: expected A04, RAS, A03; found {len(messages)}")
        out.append(tuple(tuple(seg.split("|") for seg in msg) for msg in messages))
    if not out:
        raise SystemExit(f"no scenario fixtures in {SCENARIOS}")
    return tuple(out)


_MARK = "\x01"


def _first_component(field: str, value: str) -> str:
    _, sep, rest = field.partition("^")
    return value + sep + rest


@cache
def _compiled() -> tuple[tuple[tuple[str, ...], ...], ...]:
    """Templates as alternating literal / slot-name parts, so rendering is one join."""
    out = []
    for template in templates():
        messages = []
        for k, message in enumerate(template):
            segments = []
            for fields in message:
                f = list(fields)
                name = f[0]
                if name == "MSH":
                    f[9] = f"{_MARK}msh10{_MARK}{k}"
                elif name == "PID" and len(f) > 3:
                    f[3] = _first_component(f[3], f"{_MARK}mrn{_MARK}")
                elif name == "PV1" and len(f) > 19:
                    f[19] = _first_component(f[19], f"{_MARK}vn{_MARK}")
                elif name == "ORC":
                    for i in (2, 3):
                        if len(f) > i and f[i]:
                            first, sep, rest = f[i].partition("^")
                            f[i] = f"{first}-{_MARK}ord{_MARK}{sep}{rest}"
                segments.append("|".join(f))
            messages.append(tuple(("\r".join(segments) + "\r").split(_MARK)))
        out.append(tuple(messages))
    return tuple(out)


def visit_messages(visit: int, prefix: str = "B") -> list[bytes]:
    """The three messages (A04, RAS, A03) of synthetic visit `visit`, segments joined by CR."""
    compiled = _compiled()
    values = {
        "msh10": f"{prefix}{visit:09d}",
        "mrn": f"{prefix}P{visit:09d}",
        "vn": f"{prefix}V{visit:09d}",
        "ord": f"{prefix}{visit}",
    }
    out = []
    for parts in compiled[visit % len(compiled)]:
        text = "".join(values[p] if i % 2 else p for i, p in enumerate(parts))
        out.append(text.encode())
    return out


def connection_stream(
    connection: int, connections: int, first_visit: int, prefix: str = "B"
) -> Iterator[bytes]:
    """Endless messages for one connection: visits connection, connection+N, ... in order."""
    visit = first_visit + connection
    while True:
        yield from visit_messages(visit, prefix)
        visit += connections


def drain_visit(n: int, prefix: str = "D") -> list[bytes]:
    """A04, RAS (5 administrations of `bench_coding.REGIMEN`), A03 for encounter `n`."""
    day = datetime(2026, 1, 5, 8, 0) + timedelta(days=n % 60)
    ts = day.strftime("%Y%m%d%H%M")
    visit, mrn = f"{prefix}V{n:07d}", f"{prefix}M{n:07d}"
    pid = f"PID|1||{mrn}^^^HOSP^MR||TEST^PATIENT"
    pv1 = f"PV1|1|O|ONCINF^^^MAIN||||||||||||||||{visit}"
    a04 = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{ts}||ADT^A04|{prefix}A{n:07d}|P|2.5.1",
        pid,
        pv1,
        "DG1|1||C34.90^Malignant neoplasm of lung^I10||||||||||||1",
    ]
    ras = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{ts}||RAS^O17^RAS_O17|{prefix}R{n:07d}|P|2.5.1",
        pid,
        pv1,
    ]
    clock = day
    for i, (ndc, dose, unit, minutes, method) in enumerate(REGIMEN):
        start = clock.strftime("%Y%m%d%H%M")
        end = (clock + timedelta(minutes=minutes or 0)).strftime("%Y%m%d%H%M")
        indication = "E86.0^Dehydration^I10" if unit == "mL" else ""
        ras += [
            f"ORC|RE|O{prefix}{n}-{i}|F{prefix}{n}-{i}",
            f"RXA|0|1|{start}|{end if minutes else ''}|{ndc}^drug^NDC|{dose}|{unit}"
            f"||||||||||||{indication}|CP|A",
            f"RXR|IV|L ARM||{method}",
        ]
        clock += timedelta(minutes=(minutes or 5) + 5)
    out_ts = clock.strftime("%Y%m%d%H%M")
    a03 = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{out_ts}||ADT^A03|{prefix}X{n:07d}|P|2.5.1",
        f"EVN|A03|{out_ts}",
        pid,
        pv1 + "|" * 26 + out_ts,
    ]
    return [("\r".join(m) + "\r").encode() for m in (a04, ras, a03)]
