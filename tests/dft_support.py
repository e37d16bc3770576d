"""Coded scenario encounters for the DFT tests, through the batch pipeline's own steps,
and readers of a built DFT through python-hl7 (an independent parser)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

import hl7

from adapter.core.assembly import Encounter, assemble_noted
from adapter.core.charges import CodedEncounter
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.feed import collect
from adapter.core.mappings import Mappings
from adapter.core.options import CodingOptions
from adapter.dft_profiles_loader import load_dft_profile
from adapter.hl7.dft_profile import DftProfile
from adapter.icd10 import is_billable
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.usecases.batch import Pipeline
from tests.scenarios.expectations import FIXTURE_DIR, SCENARIOS

NY = ZoneInfo("America/New_York")
POSTED_AT = datetime(2026, 2, 2, 7, 30, tzinfo=NY)
BY_ID = {s.id: s for s in SCENARIOS}


@cache
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


@cache
def profile(name: str) -> DftProfile:
    return load_dft_profile(default_mappings_dir(), name, mappings())


@cache
def scenario_encounters(scenario_id: str) -> tuple[tuple[Encounter, CodedEncounter], ...]:
    """Read, assemble and code one scenario's HL7 fixture as `charge-adapter code` does."""
    flags = dict(BY_ID[scenario_id].options)
    options = CodingOptions(pump_code_g0498=flags.get("pump_code_g0498", "false") == "true")
    pipeline = Pipeline(mappings(), options, NY)
    path = FIXTURE_DIR / f"{scenario_id}.hl7"
    pipeline.feed_file(path.read_bytes(), path.name)
    feed = collect(pipeline.messages)
    assert not feed.errors, feed.errors
    ctx = CodingContext(mappings(), options, NY, is_billable)
    encounters, _ = assemble_noted(feed.events, NY)
    return tuple((e, code_encounter(e, ctx)) for e in encounters)


def only_encounter(scenario_id: str) -> tuple[Encounter, CodedEncounter]:
    found = scenario_encounters(scenario_id)
    assert len(found) == 1, scenario_id
    return found[0]


def parse(text: str) -> hl7.Message:
    return hl7.parse(text)


def field(segment: hl7.Segment, number: int, component: int = 1, rep: int = 1) -> str:
    """One leaf, unescaped by python-hl7; '' when absent."""
    if number >= len(segment):
        return ""
    value: str = segment.extract_field(1, number, rep, component, 1)
    return value


def repetitions(segment: hl7.Segment, number: int, component: int = 1) -> list[str]:
    """The given component of every repetition of a field, in order."""
    if number >= len(segment) or not str(segment[number]):
        return []
    value = segment[number]
    count = len(value) if isinstance(value[0], hl7.Repetition) else 1
    return [field(segment, number, component, rep) for rep in range(1, count + 1)]


def ft1s(message: hl7.Message) -> list[hl7.Segment]:
    return list(message.segments("FT1"))


def dg1_codes(message: hl7.Message) -> list[str]:
    try:
        return [field(s, 3) for s in message.segments("DG1")]
    except KeyError:
        return []
