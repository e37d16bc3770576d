"""Traffic for the benchmarks, shaped like real feeds.

Every `fixtures/scenarios/*.hl7` file is one outpatient infusion visit as an EHR sends it:
ADT^A04 (registration), RAS^O17 (the administrations, repeated RXA under one ORC, RXR after
them), ADT^A03 (discharge). They are templates: each visit gets its own MSH-10s, patient
(PID-3), visit number (PV1-19) and order numbers (ORC-2/3), so any number of distinct
visits of many patients can be produced while the clinical content (drugs, times,
diagnoses, payers) stays real.
- `visit_messages` / `connection_stream`: the throughput form (template `v % 37`,
  pre-rendered, one join per message) for `loadgen.py`.
- `Traffic`: the crash tests' form, deterministic per seed, a share of the visits asking
  for enhanced acknowledgement (MSH-15 AL, MSH-16 NE or AL: accepted on CA).
- `regimen_messages` / `drain_visit`: the fixed 5-administration regimen (`REGIMEN`) for
  the processing and batch benchmarks, where every encounter must code cleanly.
- `ingest_backlog`: in-process ingest through `AppState.handle_hl7`.

What sends it is `harness/load.py`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from . import ROOT

SCENARIOS = ROOT / "fixtures" / "scenarios"
BACKLOG_ORIGIN = "mllp 127.0.0.1"

# (NDC, dose, unit, minutes or None for a push, method)
REGIMEN = [
    ("00404-9795-30", "12", "mg", None, "IVP"),  # dexamethasone push (J1100)
    ("00409-2504-10", "0.25", "mg", None, "IVP"),  # palonosetron push (J2469)
    ("00006-3026-02", "200", "mg", 30, "IVPB"),  # pembrolizumab (J9271)
    ("00703-4239-01", "500", "mg", 35, "IVPB"),  # carboplatin (J9045)
    ("00264-5802-00", "1000", "mL", 90, "IVPB"),  # saline hydration with an indication
]
MESSAGES_PER_VISIT = 3
ADMINS_PER_DRAIN_VISIT = len(REGIMEN)


@dataclass(frozen=True, slots=True)
class OutMessage:
    control_id: str
    kind: str
    payload: bytes
    acks_expected: int  # ACK frames the server sends back (2 for MSH-15 AL + MSH-16 AL)


@dataclass(frozen=True, slots=True)
class Visit:
    index: int
    template: str
    visit_id: str
    mode: str  # "original" | "AL/NE" | "AL/AL"
    messages: tuple[OutMessage, ...]

    @property
    def encounter_key(self) -> str:
        return f"visit:{self.visit_id}"


@cache
def load_templates(directory: Path = SCENARIOS) -> list[tuple[str, list[list[str]]]]:
    """Each scenario file as (name, messages as segment lists); only A04 + RAS + A03 files."""
    templates = []
    for path in sorted(directory.glob("*.hl7")):
        text = path.read_bytes().decode("utf-8")  # segments end in CR, messages in LF
        messages = [
            [seg for seg in line.split("\r") if seg] for line in text.split("\n") if line.strip()
        ]
        kinds = [_msh(m)[8].split("^")[:2] for m in messages]
        if kinds == [["ADT", "A04"], ["RAS", "O17"], ["ADT", "A03"]]:
            templates.append((path.stem, messages))
    if not templates:
        raise SystemExit(f"no A04+RAS+A03 templates in {directory}")
    return templates


def _msh(segments: list[str]) -> list[str]:
    return segments[0].split("|")


def _set_first_component(fields: list[str], index: int, value: str) -> None:
    while len(fields) <= index:
        fields.append("")
    rest = fields[index].split("^", 1)
    fields[index] = value + ("^" + rest[1] if len(rest) > 1 else "")


class Traffic:
    """Deterministic visits: visit n of seed s is always the same bytes."""

    def __init__(self, prefix: str, seed: int, enhanced_share: float = 0.2) -> None:
        self.prefix = prefix
        self.seed = seed
        self.enhanced_share = enhanced_share
        self.templates = load_templates()

    def visit(self, n: int, force_mode: str | None = None) -> Visit:
        """Visit n; `force_mode` ("original", "AL/NE", "NE/AL", ...) overrides the draw."""
        rnd = random.Random(f"{self.seed}:{n}")
        name, template = rnd.choice(self.templates)
        roll = rnd.random()
        mode = "original"
        if roll < self.enhanced_share / 2:
            mode = "AL/NE"
        elif roll < self.enhanced_share:
            mode = "AL/AL"
        mode = force_mode or mode
        visit_id = f"{self.prefix}V{n:06d}"
        out = []
        for k, segments in enumerate(template, 1):
            control_id = f"{self.prefix}{n:06d}M{k}"
            rewritten = []
            for segment in segments:
                fields = segment.split("|")
                name_ = fields[0]
                if name_ == "MSH":  # MSH-n is fields[n - 1]
                    _set_first_component(fields, 9, control_id)
                    if mode != "original":
                        accept, app = mode.split("/")
                        _set_first_component(fields, 14, accept)
                        _set_first_component(fields, 15, app)
                elif name_ == "PID":
                    _set_first_component(fields, 3, f"{self.prefix}P{n:06d}")
                elif name_ == "PV1":
                    _set_first_component(fields, 19, visit_id)
                elif name_ == "ORC":
                    for index in (2, 3):
                        if len(fields) > index and fields[index]:
                            first = fields[index].split("^", 1)[0]
                            _set_first_component(fields, index, f"{first}-{self.prefix}{n}")
                rewritten.append("|".join(fields))
            kind = "^".join(_msh(segments)[8].split("^")[:2])
            payload = ("\r".join(rewritten) + "\r").encode()
            out.append(OutMessage(control_id, kind, payload, 2 if mode == "AL/AL" else 1))
        return Visit(n, name, visit_id, mode, tuple(out))


@cache
def templates() -> tuple[tuple[tuple[list[str], ...], ...], ...]:
    """Per scenario file: its messages, each a tuple of segments split into fields."""
    return tuple(
        tuple(tuple(segment.split("|") for segment in message) for message in messages)
        for _, messages in load_templates()
    )


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


def regimen_messages(n: int, prefix: str = "", discharge: bool = True) -> list[str]:
    """A04, RAS (5 administrations of `REGIMEN`), A03 for encounter `n`, segments joined by CR
    (no trailing CR); `discharge=False` leaves out the A03 (the batch benchmark's feed)."""
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
    if not discharge:
        return ["\r".join(a04), "\r".join(ras)]
    out_ts = clock.strftime("%Y%m%d%H%M")
    a03 = [
        f"MSH|^~\\&|EPIC|ONC|CHARGE|ONC|{out_ts}||ADT^A03|{prefix}X{n:07d}|P|2.5.1",
        f"EVN|A03|{out_ts}",
        pid,
        pv1 + "|" * 26 + out_ts,
    ]
    return ["\r".join(m) for m in (a04, ras, a03)]


def drain_visit(n: int, prefix: str = "D") -> list[bytes]:
    """A04, RAS (5 administrations of `REGIMEN`), A03 for encounter `n`: every one codes."""
    return [(m + "\r").encode() for m in regimen_messages(n, prefix)]


async def ingest_backlog(state: Any, encounters: int, prefix: str, workers: int = 8) -> int:
    """`drain_visit`s through `AppState.handle_hl7` in-process, `workers` at a time; the AA
    count (the processing benchmarks' backlog)."""
    accepted = 0

    async def worker(i: int) -> None:
        nonlocal accepted
        for n in range(i, encounters, workers):
            for raw in drain_visit(n, prefix):
                result = await state.handle_hl7(raw, BACKLOG_ORIGIN)
                if result.ack_code == "AA":
                    accepted += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return accepted
