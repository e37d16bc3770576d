"""The acceptance scenarios (coding-rules.md §2) end to end, from HL7 v2 and from FHIR.

Each fixture pair in fixtures/scenarios/ is read, assembled, coded and turned
into FHIR exactly as `charge-adapter code` does; the Claim lines are compared
with the hand-derived expectations in tests/scenarios/expectations.py, and the
whole Bundle with a golden file (tests/golden/, regenerate with
`UPDATE_GOLDEN=1 make test` and review the diff).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.mappings import Mappings
from adapter.core.options import CodingOptions
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.usecases.batch import Pipeline, PipelineResult
from tests.scenarios.expectations import FIXTURE_DIR, SCENARIOS, Scenario

GOLDEN = Path(__file__).parent / "golden"
NY = ZoneInfo("America/New_York")
FORMATS = ("hl7", "json")


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


def _options(scenario: Scenario) -> CodingOptions:
    flags = dict(scenario.options)
    return CodingOptions(pump_code_g0498=flags.get("pump_code_g0498", "false") == "true")


def run_scenario(scenario: Scenario, fmt: str, mappings: Mappings) -> PipelineResult:
    path = FIXTURE_DIR / f"{scenario.id}.{fmt}"
    pipeline = Pipeline(mappings, _options(scenario), NY)
    pipeline.feed_file(path.read_bytes(), path.name)
    return pipeline.close()


def _actual_lines(
    coded: CodedEncounter, dated: set[tuple[str, frozenset[str]]]
) -> Counter[tuple[str, frozenset[str], str]]:
    """Units per (code, modifiers, date); the date only where the scenario pins one."""
    out: Counter[tuple[str, frozenset[str], str]] = Counter()
    for ln in coded.lines:
        key = (ln.code, frozenset(ln.modifiers))
        out[(*key, ln.service_date.isoformat() if key in dated else "")] += ln.units
    return out


def _expected_lines(scenario: Scenario) -> Counter[tuple[str, frozenset[str], str]]:
    out: Counter[tuple[str, frozenset[str], str]] = Counter()
    for ln in scenario.lines:
        out[(ln.code, frozenset(ln.modifiers), ln.service_date or "")] += ln.units
    return out


def _only(result: PipelineResult) -> CodedEncounter:
    assert not result.errors, result.errors
    assert len(result.coded) == 1, [c.encounter_key for c in result.coded]
    return result.coded[0]


PARAMS = [pytest.param(s, f, id=f"{s.id}-{f}") for s in SCENARIOS for f in FORMATS]


@pytest.mark.parametrize(("scenario", "fmt"), PARAMS)
def test_scenario_claim_lines_match_the_hand_derived_expectation(
    scenario: Scenario, fmt: str, mappings: Mappings
) -> None:
    coded = _only(run_scenario(scenario, fmt, mappings))
    if scenario.skipped:
        assert coded.outcome is Outcome.SKIPPED
        assert coded.skip_reason == scenario.skipped
        return
    dated = {(ln.code, frozenset(ln.modifiers)) for ln in scenario.lines if ln.service_date}
    assert _actual_lines(coded, dated) == _expected_lines(scenario), scenario.rules
    assert coded.diagnoses == scenario.diagnoses
    assert sorted({h.reason.value for h in coded.holds}) == sorted(scenario.holds)


@pytest.mark.parametrize(("scenario", "fmt"), PARAMS)
def test_scenario_bundle_matches_golden_file(
    scenario: Scenario, fmt: str, mappings: Mappings
) -> None:
    text = run_scenario(scenario, fmt, mappings).bundle_json
    golden = GOLDEN / f"{scenario.id}.{fmt}.bundle.json"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not golden.exists():
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
        if os.environ.get("UPDATE_GOLDEN") != "1":
            pytest.fail(f"golden file {golden.name} was missing and has been written: review it")
    assert text == golden.read_text()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_hl7_and_fhir_versions_of_a_scenario_code_the_same(
    scenario: Scenario, mappings: Mappings
) -> None:
    hl7, fhir = (_only(run_scenario(scenario, f, mappings)) for f in FORMATS)
    assert [(ln.code, ln.modifiers, ln.units, ln.service_date) for ln in hl7.lines] == [
        (ln.code, ln.modifiers, ln.units, ln.service_date) for ln in fhir.lines
    ]
    assert hl7.diagnoses == fhir.diagnoses
    assert hl7.setting == fhir.setting


def test_reprocessing_a_scenario_gives_byte_identical_output_d24(mappings: Mappings) -> None:
    scenario = SCENARIOS[0]
    assert (
        run_scenario(scenario, "hl7", mappings).bundle_json
        == run_scenario(scenario, "hl7", mappings).bundle_json
    )


def test_every_scenario_resource_validates_with_fhir_resources_r4b(mappings: Mappings) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    for scenario in SCENARIOS:
        for fmt in FORMATS:
            for resource in run_scenario(scenario, fmt, mappings).resources:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_every_scenario_resource_validates_with_medplum_r4_definitions(mappings: Mappings) -> None:
    """Independent conformance check (@medplum/core validateResource), all outputs in one batch."""
    from tests.fhir_validator import require_medplum, validate_with_medplum

    require_medplum()
    resources = [
        r for s in SCENARIOS for f in FORMATS for r in run_scenario(s, f, mappings).resources
    ]
    assert len(resources) > 100
    failures = [v.describe() for v in validate_with_medplum(resources) if v.errors]
    assert not failures, "\n".join(failures[:20])
