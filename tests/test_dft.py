"""DFT^P03 out: one message per coded encounter version, corrections as credits + debits.

Every message built here is parsed by hl7apy in strict validation for its version and the
DFT_P03 structure, and read back by python-hl7 (an independent parser): the FT1 codes,
quantities and modifiers and the DG1 order must equal the FHIR Claim's for the same
encounter, which the scenario tests pin to the hand-derived expectations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.core.charges import ChargeLine, CodedEncounter, LineKind, Outcome
from adapter.core.emit.claim import OutputOptions
from adapter.core.emit.encounter import encounter_resources
from adapter.core.holds import Hold, HoldReason
from adapter.core.mappings import Setting
from adapter.hl7.dft import (
    Dft,
    DftVisit,
    NoDft,
    NoDftReason,
    Posting,
    UnmappedCharge,
    build_dft,
    control_id,
)
from adapter.hl7.dft_profile import (
    Chargemaster,
    ChargemasterItem,
    CodeField,
    CreditQuantity,
    DftProfile,
    HL7Version,
    ModifierPlacement,
    OptionalField,
)
from tests.dft_support import (
    BY_ID,
    POSTED_AT,
    dg1_codes,
    field,
    ft1s,
    mappings,
    only_encounter,
    parse,
    profile,
    repetitions,
)
from tests.scenarios.expectations import SCENARIOS

GENERIC = "generic-2.5.1"
CPT_IN_FT1_7 = "cpt-in-ft1-7-2.3"


def generic_24() -> DftProfile:
    """The generic profile spoken in 2.4: FT1-26 exists, FT1-29 (NDC) does not."""
    base = profile(GENERIC)
    return replace(
        base, name="generic-2.4", version=HL7Version.V2_4, fill=base.fill - {OptionalField.NDC}
    )


def build(
    coded: CodedEncounter,
    visit: DftVisit,
    prof: DftProfile,
    version: int = 1,
    previous: Posting | None = None,
    released: bool = False,
) -> Dft | NoDft:
    return build_dft(
        coded,
        visit,
        prof,
        version=version,
        posted_at=POSTED_AT,
        previous=previous,
        released=released,
        labels=mappings().code_labels,
    )


def sent(result: Dft | NoDft) -> Dft:
    assert isinstance(result, Dft), result
    return result


def strict(text: str, version: str) -> None:
    """hl7apy, strict: every segment, field, datatype and cardinality of DFT_P03."""
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.name == "DFT_P03"
    assert message.version == version
    assert message.validate()


def claim_of(coded: CodedEncounter) -> dict[str, object]:
    resources = encounter_resources(coded, mappings(), OutputOptions())
    claim = resources[0]
    assert claim["resourceType"] == "Claim"
    return claim


def claim_lines(claim: dict[str, object]) -> list[tuple[str, tuple[str, ...], int]]:
    items = claim.get("item", [])
    assert isinstance(items, list)
    return [
        (
            item["productOrService"]["coding"][0]["code"],
            tuple(m["coding"][0]["code"] for m in item.get("modifier", [])),
            item["quantity"]["value"],
        )
        for item in items
    ]


def claim_diagnoses(claim: dict[str, object]) -> list[str]:
    found = claim.get("diagnosis", [])
    assert isinstance(found, list)
    return [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in found]


def billed_scenarios() -> list[str]:
    return [s.id for s in SCENARIOS if not s.skipped]


# --- structure and content against the Claim ---------------------------------------------


@pytest.mark.parametrize("scenario_id", billed_scenarios())
def test_every_billed_scenario_is_a_strictly_valid_2_5_1_DFT_P03_whose_FT1_and_DG1_equal_the_claim(
    scenario_id: str,
) -> None:
    encounter, coded = only_encounter(scenario_id)
    dft = sent(build(coded, DftVisit.of(encounter), profile(GENERIC), released=True))
    strict(dft.text, "2.5.1")
    message = parse(dft.text)
    claim = claim_of(coded)
    segments = ft1s(message)
    got = [(field(s, 25), tuple(repetitions(s, 26)), int(field(s, 10))) for s in segments]
    assert got == claim_lines(claim)
    assert [field(s, 6) for s in segments] == ["CG"] * len(segments)
    assert dg1_codes(message) == claim_diagnoses(claim)
    assert [field(s, 15) for s in message.segments("DG1")] == [
        str(i) for i in range(1, len(coded.diagnoses) + 1)
    ]


@pytest.mark.parametrize(
    ("scenario_id", "prof_name"),
    [
        (sid, name)
        for sid in ("S03", "S09", "S11", "S20", "S24")
        for name in ("generic-2.4", CPT_IN_FT1_7)
    ],
)
def test_the_2_4_and_2_3_profiles_build_strictly_valid_DFT_P03_of_their_version(
    scenario_id: str, prof_name: str
) -> None:
    encounter, coded = only_encounter(scenario_id)
    prof = generic_24() if prof_name == "generic-2.4" else profile(prof_name)
    coded = replace(coded, setting=Setting.OFFICE)  # the 2.3 profile takes professional only
    dft = sent(build(coded, DftVisit.of(encounter), prof, released=True))
    strict(dft.text, prof.version.value)
    segments = ft1s(parse(dft.text))
    assert all(len(s) - 1 <= prof.version.ft1_fields for s in segments)
    assert [int(field(s, 10)) for s in segments] == [ln.units for ln in coded.lines]


def test_the_strict_check_refuses_a_2_5_1_message_declared_as_2_3() -> None:
    """The check above can fail: 2.3 has no FT1-26 nor FT1-29, so it refuses them."""
    encounter, coded = only_encounter("S11")
    text = sent(build(coded, DftVisit.of(encounter), profile(GENERIC))).text
    strict(text, "2.5.1")
    with pytest.raises(HL7apyException):
        strict(text.replace("|2.5.1\r", "|2.3\r", 1).replace("^DFT_P03|", "|", 1), "2.3")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"version": HL7Version.V2_3}, "FT1-26 does not exist in HL7 2.3"),
        (
            {"version": HL7Version.V2_4, "modifiers": ModifierPlacement.CODE_SUFFIX},
            "FT1-29 (NDC) does not exist in HL7 2.4",
        ),
        (
            {"procedure_code_in": (CodeField.FT1_7,), "modifiers": ModifierPlacement.CHARGEMASTER},
            "need FT1-7 to hold the chargemaster item",
        ),
        ({"procedure_code_in": ()}, "must go to FT1-7 or FT1-25"),
    ],
)
def test_a_profile_that_would_fill_a_field_its_version_lacks_cannot_exist(
    change: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        replace(profile(GENERIC), **change)


def test_cpt_in_ft1_7_profile_posts_the_code_with_its_modifier_suffix_in_ft1_7_and_ft1_25() -> None:
    encounter, coded = only_encounter("S09")
    dft = sent(build(coded, DftVisit.of(encounter), profile(CPT_IN_FT1_7), released=True))
    segments = ft1s(parse(dft.text))
    expected = ["-".join((ln.code, *ln.modifiers)) for ln in coded.lines]
    assert [field(s, 7) for s in segments] == expected
    assert [field(s, 25) for s in segments] == expected
    assert {field(s, 7, 3) for s in segments} == {"C4", "HCPCS"}
    assert "J9075-JW" in expected and "J1100-JZ" in expected


def test_generic_profile_sends_the_chargemaster_item_for_code_and_modifiers_else_the_code() -> None:
    encounter, coded = only_encounter("S11")  # carboplatin J9045, paclitaxel J9267, 96413
    dft = sent(build(coded, DftVisit.of(encounter), profile(GENERIC)))
    by_code = {field(s, 25): s for s in ft1s(parse(dft.text))}
    cdm = profile(GENERIC).chargemaster
    for code, segment in by_code.items():
        item = cdm.lookup(code, ())
        if item is not None:
            assert field(segment, 7) == item.transaction_code
            assert field(segment, 7, 3) == ""
        else:
            assert field(segment, 7) == code
            assert field(segment, 7, 3) in {"C4", "HCPCS"}
    assert field(by_code["J9045"], 7) == "63690450"


def test_a_waste_line_takes_its_own_chargemaster_row_and_keeps_jw_in_ft1_26() -> None:
    prof = profile(GENERIC)
    coded = _coded([_line("J9267", 300), _line("J9267", 20, "JW", kind=LineKind.WASTE)])
    segments = ft1s(parse(sent(build(coded, _VISIT, prof)).text))
    assert [field(s, 7) for s in segments] == ["63692670", "63692671"]
    assert [repetitions(s, 26) for s in segments] == [[], ["JW"]]


def test_chargemaster_placement_refuses_a_modified_line_without_its_row_rather_than_drop_jw() -> (
    None
):
    prof = replace(
        profile(GENERIC),
        modifiers=ModifierPlacement.CHARGEMASTER,
        chargemaster=Chargemaster({("J9045", ()): ChargemasterItem("J9045", (), "111")}),
    )
    coded = _coded([_line("J9045", 12), _line("J9045", 2, "JW", kind=LineKind.WASTE)])
    with pytest.raises(UnmappedCharge) as raised:
        build(coded, _VISIT, prof)
    assert (raised.value.code, raised.value.modifiers) == ("J9045", ("JW",))


def test_pid_and_pv1_carry_the_identifiers_as_received() -> None:
    encounter, coded = only_encounter("S11")
    message = parse(sent(build(coded, DftVisit.of(encounter), profile(GENERIC))).text)
    pid, pv1 = message.segment("PID"), message.segment("PV1")
    assert (field(pid, 3), field(pid, 3, 4)) == ("SB200111", "SBMC")
    assert field(pv1, 2) == "O"
    assert (field(pv1, 3), field(pv1, 3, 4)) == ("ONCINF", "SBMC")
    assert field(pv1, 19) == "HV2601160111"
    segment = ft1s(message)[0]
    assert (field(segment, 13), field(segment, 16)) == ("ONC-INF", "ONCINF")
    assert repetitions(segment, 19) == list(coded.diagnoses[:4])
    assert field(segment, 4) == field(segment, 4, 2) == "20260116"
    assert field(segment, 5) == "20260202073000-0500"


def test_ndc_goes_to_ft1_29_as_11_digits_in_2_5_1() -> None:
    encounter, coded = only_encounter("S11")
    segments = ft1s(parse(sent(build(coded, DftVisit.of(encounter), profile(GENERIC))).text))
    ndcs = {field(s, 25): (field(s, 29), field(s, 29, 3)) for s in segments}
    assert ndcs["J9045"] == ("63323017260", "NDC")
    assert ndcs["96413"] == ("", "")


def test_text_with_delimiters_is_escaped_and_read_back_unchanged() -> None:
    prof = replace(
        profile(GENERIC),
        chargemaster=Chargemaster(
            {("J9045", ()): ChargemasterItem("J9045", (), "CDM-1", "Carbo|50^mg & ~vial\\x")}
        ),
    )
    visit = replace(_VISIT, location="ONC|A^B")
    text = sent(build(_coded([_line("J9045", 3)]), visit, prof)).text
    strict(text, "2.5.1")
    segment = ft1s(parse(text))[0]
    assert field(segment, 7, 2) == "Carbo|50^mg & ~vial\\x"
    assert field(segment, 16) == "ONC|A^B"


# --- what is not sent --------------------------------------------------------------------


def test_a_held_encounter_sends_nothing_and_says_why() -> None:
    encounter, coded = only_encounter("S25")
    assert coded.outcome is Outcome.HELD
    result = build(coded, DftVisit.of(encounter), profile(GENERIC))
    assert isinstance(result, NoDft)
    assert result.reason is NoDftReason.HELD
    assert all(h.reason.value in result.detail for h in coded.holds)


def test_a_held_draft_released_by_override_is_billed() -> None:
    encounter, coded = only_encounter("S25")
    dft = sent(build(coded, DftVisit.of(encounter), profile(GENERIC), released=True))
    assert len(dft.debits) == len(coded.lines)


@pytest.mark.parametrize("scenario_id", [s.id for s in SCENARIOS if s.skipped])
def test_a_skipped_encounter_never_posted_sends_nothing(scenario_id: str) -> None:
    encounter, coded = only_encounter(scenario_id)
    result = build(coded, DftVisit.of(encounter), profile(GENERIC))
    assert isinstance(result, NoDft)
    assert result.reason is NoDftReason.SKIPPED
    assert result.detail == BY_ID[scenario_id].skipped


def test_a_professional_only_profile_sends_nothing_for_a_hospital_encounter() -> None:
    encounter, coded = only_encounter("S11")
    assert coded.setting == Setting.HOSPITAL_OUTPATIENT
    result = build(coded, DftVisit.of(encounter), profile(CPT_IN_FT1_7))
    assert isinstance(result, NoDft)
    assert result.reason is NoDftReason.NOT_FOR_RECEIVER


# --- corrections -------------------------------------------------------------------------


def test_a_correction_sends_credits_first_then_debits_with_the_credited_transaction_ids() -> None:
    encounter, coded = only_encounter("S11")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    first = sent(build(coded, visit, prof, version=1))
    changed = coded.lines[-1]  # paclitaxel: one more unit documented
    lines = (*coded.lines[:-1], replace(changed, units=changed.units + 1))
    second = sent(
        build(replace(coded, lines=lines), visit, prof, version=2, previous=first.posting)
    )
    strict(second.text, "2.5.1")
    segments = ft1s(parse(second.text))
    assert [field(s, 6) for s in segments] == ["CD", "CG"]
    credit, debit = segments
    posted = {c.procedure_code: c for c in first.posting.charges}
    assert field(credit, 2) == posted[changed.code].transaction_id
    assert int(field(credit, 10)) == changed.units
    assert int(field(debit, 10)) == changed.units + 1
    assert field(debit, 2) != field(credit, 2)
    assert field(credit, 25) == field(debit, 25) == changed.code
    assert second.control_id != first.control_id


def test_removed_lines_are_credited_and_unchanged_lines_send_nothing() -> None:
    encounter, coded = only_encounter("S11")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    first = sent(build(coded, visit, prof, version=1))
    removed = coded.lines[0]
    second = sent(
        build(replace(coded, lines=coded.lines[1:]), visit, prof, version=2, previous=first.posting)
    )
    assert [c.procedure_code for c in second.credits] == [removed.code]
    assert second.debits == ()
    assert len(second.posting.charges) == len(coded.lines) - 1
    again = build(replace(coded, lines=coded.lines[1:]), visit, prof, 3, second.posting)
    assert isinstance(again, NoDft)
    assert again.reason is NoDftReason.UNCHANGED


def test_an_encounter_that_becomes_inpatient_after_posting_is_credited_in_full() -> None:
    encounter, coded = only_encounter("S11")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    first = sent(build(coded, visit, prof, version=1))
    skipped = replace(coded, lines=(), diagnoses=(), skip_reason="inpatient")
    second = sent(build(skipped, visit, prof, version=2, previous=first.posting))
    assert second.credits == first.posting.charges
    assert second.posting.charges == ()
    strict(second.text, "2.5.1")


def test_a_held_re_code_keeps_what_was_posted_until_it_is_released() -> None:
    encounter, coded = only_encounter("S11")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    first = sent(build(coded, visit, prof, version=1))
    held = replace(coded, holds=(Hold(HoldReason.MISSING_STOP_TIME, "RXA"),))
    assert isinstance(build(held, visit, prof, 2, first.posting), NoDft)
    released = build(held, visit, prof, 3, first.posting, released=True)
    assert isinstance(released, NoDft) and released.reason is NoDftReason.UNCHANGED


def test_a_re_charge_after_its_credit_gets_a_new_transaction_id() -> None:
    coded = _coded([_line("J9045", 12)])
    prof = profile(GENERIC)
    v1 = sent(build(coded, _VISIT, prof, version=1))
    v2 = sent(build(_coded([_line("J9045", 10)]), _VISIT, prof, 2, v1.posting))
    v3 = sent(build(coded, _VISIT, prof, 3, v2.posting))
    ids = [v1.debits[0].transaction_id, v2.debits[0].transaction_id, v3.debits[0].transaction_id]
    assert len(set(ids)) == 3
    assert v3.credits[0].transaction_id == ids[1]


def test_negative_credit_quantity_profile_negates_only_credits() -> None:
    prof = replace(profile(GENERIC), credit_quantity=CreditQuantity.NEGATIVE)
    v1 = sent(build(_coded([_line("J9045", 12)]), _VISIT, prof, version=1))
    v2 = sent(build(_coded([_line("J9045", 10)]), _VISIT, prof, 2, v1.posting))
    assert [field(s, 10) for s in ft1s(parse(v2.text))] == ["-12", "10"]


# --- ids ---------------------------------------------------------------------------------


def test_msh_10_is_the_same_for_a_resend_of_a_version_and_differs_between_versions() -> None:
    encounter, coded = only_encounter("S11")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    once = sent(build(coded, visit, prof, version=4))
    later = sent(build_dft(coded, visit, prof, version=4, posted_at=POSTED_AT + timedelta(hours=5)))
    assert once.control_id == later.control_id == control_id(coded.encounter_key, 4)
    assert field(parse(once.text).segment("MSH"), 10) == once.control_id
    assert control_id(coded.encounter_key, 5) != once.control_id
    assert control_id("visit:other", 4) != once.control_id
    assert len(once.control_id) <= 20
    assert all(len(c.transaction_id) == 12 for c in once.debits)


def test_the_same_inputs_give_byte_identical_messages() -> None:
    encounter, coded = only_encounter("S09")
    visit, prof = DftVisit.of(encounter), profile(GENERIC)
    assert (
        sent(build(coded, visit, prof, released=True)).text
        == sent(build(coded, visit, prof, released=True)).text
    )


# --- the invariant -----------------------------------------------------------------------

_CODES = ("96413", "96415", "J9045", "J9267", "Q5115")
_line_strategy = st.tuples(
    st.sampled_from(_CODES),
    st.sampled_from(((), ("JW",), ("JZ",))),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=1),  # service day offset
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_line_strategy, max_size=6), min_size=1, max_size=6))
def test_charges_minus_credits_over_a_chain_of_versions_equal_the_last_versions_units(
    versions: list[list[tuple[str, tuple[str, ...], int, int]]],
) -> None:
    prof = profile(GENERIC)
    net: Counter[tuple[str, tuple[str, ...]]] = Counter()
    posting: Posting | None = None
    for number, spec in enumerate(versions, start=1):
        lines = [_line(c, u, *m, day=date(2026, 1, 15) + timedelta(d)) for c, m, u, d in spec]
        result = build(_coded(lines), _VISIT, prof, number, posting)
        if isinstance(result, NoDft):
            assert result.reason is not NoDftReason.HELD
            continue
        message = parse(result.text)
        kinds = [field(s, 6) for s in ft1s(message)]
        assert kinds == sorted(kinds, key=lambda k: k != "CD"), "credits come first"
        for segment in ft1s(message):
            key = (field(segment, 25), tuple(repetitions(segment, 26)))
            sign = 1 if field(segment, 6) == "CG" else -1
            net[key] += sign * int(field(segment, 10))
        posting = result.posting
    last: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for code, modifiers, units, _ in versions[-1]:
        last[(code, modifiers)] += units
    assert +net == +last
    assert all(v >= 0 for v in net.values())


# --- helpers -----------------------------------------------------------------------------

_VISIT = DftVisit(
    patient_id="SBMC|MRN1", visit_id="V1", location="ONCINF", facility="SBMC", locations=("ONCINF",)
)


def _line(
    code: str,
    units: int,
    *modifiers: str,
    kind: LineKind | None = None,
    day: date = date(2026, 1, 15),
) -> ChargeLine:
    if kind is None:
        kind = LineKind.ADMINISTRATION if code[:1].isdigit() else LineKind.DRUG
    return ChargeLine(kind, code, units, day, ("R1",), ("src",), modifiers=tuple(modifiers))


def _coded(lines: list[ChargeLine]) -> CodedEncounter:
    return CodedEncounter(
        encounter_key="visit:V1",
        patient_id="SBMC|MRN1",
        setting=Setting.HOSPITAL_OUTPATIENT,
        lines=tuple(lines),
        diagnoses=("C56.9", "Z51.11"),
        holds=(),
        period_start=None,
        period_end=None,
    )
