"""`charge-adapter code --explain`: no administration read is unaccounted for.

Every administration event a reader produced appears exactly once in the report, as
coded (its lines), held (its reasons), or skipped (a typed reason). Checked over every
fixture file (the vendor samples, the feed-shape fixtures, the scenarios), over random
feeds built from their messages (hypothesis: re-sends, corrections and any order), and
for each reason on messages shaped like the real ones.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.cli.main import main
from adapter.core.explain import AdminSkip, Explanation, Fate, render
from adapter.core.model import Administration
from adapter.core.options import CodingOptions
from adapter.hl7.er7 import split_messages
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.usecases.batch import Pipeline
from tests.coding_support import NY

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
FILES = sorted(
    p
    for folder in ("samples", "hl7v2", "fhir", "scenarios")
    for p in (FIXTURES / folder).rglob("*")
    if p.suffix in (".hl7", ".json", ".ndjson")
)
MAPPINGS = load_mappings(default_mappings_dir())


def explained(*inputs: tuple[str, bytes]) -> tuple[Pipeline, Explanation]:
    pipeline = Pipeline(MAPPINGS, CodingOptions(), NY)
    for origin, data in inputs:
        pipeline.feed_file(data, origin)
    return pipeline, pipeline.explain(pipeline.close())


def administrations_read(pipeline: Pipeline) -> list[Administration]:
    return [e for m in pipeline.messages for e in m.events if isinstance(e, Administration)]


def assert_each_accounted_for_once(pipeline: Pipeline, explanation: Explanation) -> None:
    read = administrations_read(pipeline)
    reported = [a.admin for a in explanation.administrations]
    assert sorted(map(id, reported)) == sorted(map(id, read))  # each one, exactly once
    assert all(a.reason is not AdminSkip.UNACCOUNTED for a in explanation.administrations)
    assert all(a.reason for a in explanation.administrations if a.fate is Fate.SKIPPED)
    assert all(a.lines or a.holds for a in explanation.administrations if a.fate is Fate.HELD)
    assert all(a.lines for a in explanation.administrations if a.fate is Fate.CODED)
    text = list(render(explanation))
    assert sum(" administration " in line for line in text) == len(read)


def test_the_fixture_set_is_the_one_expected() -> None:
    assert len([p for p in FILES if "samples" in p.parts]) >= 40
    assert len([p for p in FILES if "hl7v2" in p.parts and "samples" not in p.parts]) >= 10


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FIXTURES)) for p in FILES])
def test_every_administration_of_every_fixture_is_accounted_for_exactly_once(path: Path) -> None:
    pipeline, explanation = explained((str(path), path.read_bytes()))
    assert_each_accounted_for_once(pipeline, explanation)


def _hl7_messages() -> list[str]:
    """Every HL7 v2 message of the fixtures, one string each (CR segments)."""
    out = []
    for path in FILES:
        if path.suffix == ".hl7" and "samples" not in path.parts:
            text = path.read_text(encoding="utf-8", errors="replace")
            out += ["\r".join(c.lines) + "\r" for c in split_messages(text)]
    return out


MESSAGES = _hl7_messages()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(MESSAGES), min_size=1, max_size=25))
def test_any_feed_of_real_shaped_messages_leaves_no_administration_unaccounted(
    feed: list[str],
) -> None:
    """Re-sends (the same message twice), corrections before or after their original,
    several patients and visits in one file: still each administration exactly once."""
    pipeline, explanation = explained(("feed.hl7", "\n".join(feed).encode()))
    assert_each_accounted_for_once(pipeline, explanation)


# --- each reason, on the messages that produce it ----------------------------------------


def fates(explanation: Explanation) -> list[tuple[str, str]]:
    return [(a.fate.value, str(a.reason)) for a in explanation.administrations]


def scenario(name: str) -> tuple[str, bytes]:
    path = FIXTURES / "scenarios" / name
    return str(path), path.read_bytes()


def test_a_correction_a_resend_and_a_deletion_each_say_what_they_did() -> None:
    path = FIXTURES / "hl7v2" / "ras_correction_update_delete.hl7"
    _, explanation = explained((str(path), path.read_bytes()))
    assert fates(explanation) == [
        ("skipped", AdminSkip.SUPERSEDED),  # replaced by the RXA-21 U of message 3
        ("skipped", AdminSkip.SUPERSEDED),  # removed by the RXA-21 D of message 4
        ("skipped", AdminSkip.DUPLICATE_MESSAGE),  # message 2 resends message 1 (same MSH-10)
        ("skipped", AdminSkip.DUPLICATE_MESSAGE),
        ("held", ""),  # the update: billed as a draft (no neoplasm diagnosis in the feed)
        ("skipped", AdminSkip.DELETION),
    ]


def test_a_visit_resent_under_new_control_ids_bills_the_later_copy_once() -> None:
    origin, data = scenario("S14.hl7")
    again = data.decode().replace("|EP260122S14", "|EP260122R14")
    _, explanation = explained((origin, data), (origin + " (resent)", again.encode()))
    first, second = explanation.administrations[:2], explanation.administrations[2:]
    assert [a.reason for a in first] == [AdminSkip.RESENT, AdminSkip.RESENT]
    assert fates(Explanation(second, ())) == [("skipped", AdminSkip.CARRIER_FLUID), ("coded", "")]


def test_a_carrier_fluid_is_skipped_beside_the_drug_it_carried() -> None:
    _, explanation = explained(scenario("S14.hl7"))
    assert fates(explanation) == [("skipped", AdminSkip.CARRIER_FLUID), ("coded", "")]
    coded = explanation.administrations[1]
    assert [line.code for line in coded.lines] == ["96413", "J9271"]


def test_a_visit_with_nothing_billable_names_each_administration_s_reason() -> None:
    _, explanation = explained(scenario("S22.hl7"))  # a port flush only
    assert fates(explanation) == [("skipped", AdminSkip.CARRIER_FLUID)]


def test_an_administration_not_given_is_skipped_as_such() -> None:
    origin, data = scenario("S11.hl7")
    text = data.decode().replace("|||||||||CP|A|", "|||||||||NA|A|", 1)
    _, explanation = explained((origin, text.encode()))
    reasons = [a.reason for a in explanation.administrations]
    assert reasons[0] is AdminSkip.NOT_GIVEN
    assert AdminSkip.NOT_GIVEN not in reasons[1:]


def test_a_held_administration_carries_its_own_hold_and_its_draft_lines() -> None:
    _, explanation = explained(scenario("S25.hl7"))  # carboplatin, no stop time
    (held,) = explanation.administrations
    assert held.fate is Fate.HELD
    assert [h.reason.value for h in held.holds] == ["missing-stop-time"]
    assert {line.code for line in held.lines} >= {"J9045"}


def test_an_inpatient_visit_is_skipped_with_the_encounter_reason() -> None:
    path = FIXTURES / "hl7v2" / "ras_o17_inpatient_without_visit_number.hl7"
    _, explanation = explained((str(path), path.read_bytes()))
    assert "inpatient" in {str(a.reason) for a in explanation.administrations}


class _FutureReason(StrEnum):
    UNMAPPED = "some-reason-added-later"


def test_a_reason_from_any_enum_is_rendered_by_its_value() -> None:
    """Reasons added elsewhere (another enum) show without a change to the renderer."""
    from dataclasses import replace

    _, explanation = explained(scenario("S22.hl7"))
    (one,) = explanation.administrations
    changed = Explanation((replace(one, reason=_FutureReason.UNMAPPED),), explanation.messages)
    assert any(line.endswith("skipped: some-reason-added-later") for line in render(changed))


# --- the command ---------------------------------------------------------------------------

CLI_FILES = [p for p in FILES if "samples" in p.parts or p.parent.name == "hl7v2"]


@pytest.mark.parametrize("path", CLI_FILES, ids=[str(p.relative_to(FIXTURES)) for p in CLI_FILES])
def test_code_explain_to_a_file_keeps_the_bundle_on_stdout(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "explain.txt"
    status = main(["code", "--explain-to", str(report), str(path)])
    out = capsys.readouterr()
    assert status in (0, 2)
    assert json.loads(out.out)["resourceType"] == "Bundle"
    lines = report.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"explain: {path}"
    pipeline, _ = explained((str(path), path.read_bytes()))
    assert sum(" administration " in line for line in lines) == len(administrations_read(pipeline))
    assert out.err.splitlines()[-1].startswith("summary: ")


def test_code_explain_goes_to_stderr_before_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = FIXTURES / "scenarios" / "S14.hl7"
    assert main(["code", "--explain", str(path)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["resourceType"] == "Bundle"
    err = out.err.splitlines()
    assert err[0] == f"explain: {path}"
    assert any("skipped: carrier-fluid" in line for line in err)
    assert err[-1].startswith("summary: ")
