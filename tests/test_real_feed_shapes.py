"""Messages shaped like other vendors' real RAS^O17 feeds (issue 9): read right, billed right.

Our first fixtures all had unique ids, one RXR per RXA and coded CWEs. Feeds written
by other hospitals' systems do not: a run of RXA shares one RXR, routes and
indications come as text only (CWE.1 empty), inpatient messages carry no visit
number, RXA-1/RXA-2 stay `0|1` for every RXA of an order. Each test here names the
reading it pins; the fixtures (fixtures/hl7v2/, README there) are our own messages
in those shapes.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.core.assembly import assemble
from adapter.core.charges import CodedEncounter, Outcome
from adapter.core.feed import collect
from adapter.core.mappings import Mappings
from adapter.core.model import (
    Administration,
    Code,
    CodeSystem,
    Method,
    PatientClass,
    Quantity,
    Route,
)
from adapter.core.options import CodingOptions
from adapter.mappings_loader import MappingError, default_mappings_dir, load_mappings
from adapter.readers.fhir import read_fhir
from adapter.readers.hl7v2 import read_hl7
from adapter.usecases.batch import Pipeline, PipelineResult

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "hl7v2"
NY = ZoneInfo("America/New_York")

MSH = "MSH|^~\\&|HIS|ONC|CHGCAP|ONC|20260115120000||RAS^O17^RAS_O17|{ctl}|P|2.5.1"
PID = "PID|1||P100^^^HOSP^MR"
PV1 = "PV1|1|O|ONCINF^^^HOSP||||||||||||||||V100"
ORC = "ORC|RE|ORD1|RX1||CM"


def seg(name: str, fields: dict[int, str]) -> str:
    top = max(fields)
    return "|".join([name, *(fields.get(i, "") for i in range(1, top + 1))])


def rxa(**changes: str) -> str:
    fields = {
        1: "0",
        2: "1",
        3: "20260115090000",
        4: "20260115100000",
        5: "00264-5802-00^SODIUM CHLORIDE 0.9% 1000 ML^NDC",
        6: "1000",
        7: "mL",
        20: "CP",
    }
    fields.update({int(k[1:]): v for k, v in changes.items()})
    return seg("RXA", fields)


def ras(*body: str, ctl: str = "M1", pv1: str = PV1, pid: str = PID) -> str:
    return "\r".join([MSH.format(ctl=ctl), pid, pv1, *body])


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


def read_admins(text: str, mappings: Mappings) -> list[Administration]:
    (message,) = read_hl7(text, mappings, NY, "t.hl7")
    assert message.error is None, message.error
    return [e for e in message.events if isinstance(e, Administration)]


def run(mappings: Mappings, *files: bytes) -> PipelineResult:
    pipeline = Pipeline(mappings, CodingOptions(), NY)
    for n, data in enumerate(files):
        pipeline.feed_file(data, f"f{n}.hl7")
    return pipeline.close()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def codes(coded: CodedEncounter) -> Counter[str]:
    found: Counter[str] = Counter()
    for line in coded.lines:
        found[line.code] += line.units if line.code.startswith("9") else 1
    return found


def by_visit(result: PipelineResult) -> dict[str, CodedEncounter]:
    return {c.encounter_key.rsplit(":", 1)[-1]: c for c in result.coded}


def hold_details(coded: CodedEncounter) -> list[str]:
    return [h.detail for h in coded.holds]


# --- class 2: text-only indications (D12) ---------------------------------------------


TEXT = "Hydration following chemotherapy"


@pytest.mark.parametrize(
    "body",
    [
        (ORC, rxa(f19=f"^{TEXT}")),
        (ORC, seg("RXE", {1: "^^^20260115^^R", 2: "NS^NS^L", 27: f"^{TEXT}"}), rxa()),
        (ORC, seg("RXO", {1: "NS^NS^L", 20: f"^{TEXT}"}), rxa()),
        (ORC, rxa(f19=f"^^^^{TEXT}")),  # text of the alternate triplet only
    ],
    ids=["RXA-19", "RXE-27", "RXO-20", "RXA-19.5"],
)
def test_text_only_indication_counts_as_an_indication_d12(
    body: tuple[str, ...], mappings: Mappings
) -> None:
    (found,) = read_admins(ras(*body), mappings)

    assert found.indications == (Code(CodeSystem.TEXT.value, "", TEXT),)


def test_coded_indication_still_wins_over_the_order_text(mappings: Mappings) -> None:
    rxe = seg("RXE", {1: "^^^20260115^^R", 2: "NS^NS^L", 27: "^Dehydration"})

    (found,) = read_admins(ras(ORC, rxe, rxa(f19="E86.0^Dehydration^I10")), mappings)

    assert [c.code for c in found.indications] == ["E86.0"]


def test_hydration_bag_after_chemo_with_text_indication_bills_96361_and_its_fluid_d12(
    mappings: Mappings,
) -> None:
    coded = by_visit(run(mappings, fixture("ras_o17_text_only_indications.hl7")))["VTXT0001"]

    assert coded.outcome is Outcome.CODED
    assert codes(coded) == Counter({"96413": 1, "J9271": 1, "96361": 1, "J7030": 1})


@pytest.mark.parametrize("visit", ["VTXT0002", "VTXT0003"], ids=["RXE-27", "RXO-20"])
def test_hydration_only_visit_with_text_indication_on_the_order_bills(
    visit: str, mappings: Mappings
) -> None:
    coded = by_visit(run(mappings, fixture("ras_o17_text_only_indications.hl7")))[visit]

    assert (coded.outcome, codes(coded)) == (Outcome.CODED, Counter({"96360": 1, "J7030": 1}))


def test_fhir_and_hl7_read_a_text_only_reason_the_same(mappings: Mappings) -> None:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "NS"},
        "effectivePeriod": {
            "start": "2026-01-15T09:00:00-05:00",
            "end": "2026-01-15T10:00:00-05:00",
        },
        "reasonCode": [{"text": TEXT}],
    }
    (message,) = read_fhir(json_bytes(resource), mappings, NY, "t.json")
    (fhir_admin,) = [e for e in message.events if isinstance(e, Administration)]
    (hl7_admin,) = read_admins(ras(ORC, rxa(f19=f"^{TEXT}")), mappings)

    assert fhir_admin.indications == hl7_admin.indications


def json_bytes(resource: dict[str, Any]) -> bytes:
    import json

    return json.dumps(resource).encode()


# --- class 5: inpatient without a visit number (D2) -------------------------------------


def test_pv1_2_inpatient_is_read_without_pv1_19(mappings: Mappings) -> None:
    pv1 = "PV1|0001|I|ONCINF^302^^^^N||||110^DOCTOR^ICHIRO|||01"

    (found,) = read_admins(ras(ORC, rxa(), pv1=pv1), mappings)

    assert (found.visit_id, found.patient_class) == (None, PatientClass.INPATIENT)


def test_inpatient_administration_without_visit_number_is_never_billed_with_the_outpatient_day_d2(
    mappings: Mappings,
) -> None:
    """Same patient, same day, same location: the inpatient RXAs stay apart, skipped (D2)."""
    result = run(mappings, fixture("ras_o17_inpatient_without_visit_number.hl7"))

    outcomes = sorted((c.outcome.value, c.skip_reason) for c in result.coded)
    assert outcomes == [("held", ""), ("skipped", "inpatient")]  # held: no diagnosis sent
    (outpatient,) = [c for c in result.coded if c.outcome is not Outcome.SKIPPED]
    assert sorted(ln.code for ln in outpatient.lines) == ["96374", "J2405"]  # 14:00 push only
    assert [ln.units for ln in outpatient.lines if ln.code == "J2405"] == [8]


def test_a_later_visit_class_decides_over_the_message_class(mappings: Mappings) -> None:
    """With a visit number, the visit's (latest) class decides, as before."""
    adt = (
        "MSH|^~\\&|HIS|ONC|CHGCAP|ONC|20260115130000||ADT^A08^ADT_A01|A1|P|2.5.1\r"
        f"{PID}\rPV1|1|I|ONCINF^^^HOSP||||||||||||||||V100"
    )
    result = run(mappings, ras(ORC, rxa(f19="E86.0^Dehydration^I10")).encode(), adt.encode())

    assert [c.skip_reason for c in result.coded] == ["inpatient"]


# --- class 3: RXR after a group of RXA; RXC against a coded RXA-5 ------------------------


def test_one_rxr_after_a_group_of_rxa_applies_to_every_rxa_of_the_group(
    mappings: Mappings,
) -> None:
    body = (
        ORC,
        rxa(f1="", f2="1", f5="00404-9930-02^ondansetron^NDC", f6="8", f7="mg"),
        rxa(f1="", f2="2", f3="20260115123000", f5="00404-9930-02^ondansetron^NDC", f6="4"),
        "RXR|^IV push",
        "ORC|RE|ORD2|RX2||CM",
        rxa(f2="1"),
        rxa(f2="2", f3="20260115110000", f4="20260115120000"),
        "RXR|SC^Subcutaneous^HL70162",
    )

    found = read_admins(ras(*body), mappings)

    assert [(a.route, a.method) for a in found] == [
        (Route.IV, Method.PUSH),
        (Route.IV, Method.PUSH),
        (Route.SC, Method.UNSPECIFIED),
        (Route.SC, Method.UNSPECIFIED),
    ]


def test_an_rxa_with_its_own_rxr_keeps_it_and_does_not_lend_it_back(mappings: Mappings) -> None:
    body = (ORC, rxa(), "RXR|SC", "OBX|1|NM|WEIGHT||70|kg", rxa(f2="2"), "RXR|IM")

    assert [a.route for a in read_admins(ras(*body), mappings)] == [Route.SC, Route.IM]


def test_an_rxa_whose_group_has_no_rxr_takes_the_orders(mappings: Mappings) -> None:
    body = (ORC, "RXR|IV", rxa(), "OBX|1|NM|WEIGHT||70|kg", rxa(f2="2"), "RXR|SC")

    assert [a.route for a in read_admins(ras(*body), mappings)] == [Route.IV, Route.SC]


def test_grouped_rxr_fixture_codes_every_administration(mappings: Mappings) -> None:
    """Canadian-style: `RXA||1`, `RXA||2`, then one `RXR|^IV push`: both pushes coded."""
    coded = by_visit(run(mappings, fixture("ras_o17_grouped_rxr_text_routes.hl7")))["VIDR0001"]

    assert coded.outcome is Outcome.CODED
    assert codes(coded)["96375"] + codes(coded)["96376"] == 2


def test_order_rxc_does_not_overwrite_a_coded_rxa_5(mappings: Mappings) -> None:
    """RXA-5 is what was given: the bag RXA and the drug RXA stay themselves."""
    body = (
        ORC,
        "RXE|^^^20260115^^R|CARB450^carboplatin in NS^99LOCAL|1||EA",
        "RXC|B|NS500^sodium chloride 500 mL^99LOCAL|500|mL",
        "RXC|A|CARB10I^carboplatin 10 mg/mL^99LOCAL|450|mg",
        rxa(f1="", f5="00264-5802-00^sodium chloride^NDC", f6="500", f7="mL"),
        rxa(f1="", f5="00703-4239-01^carboplatin^NDC", f6="450", f7="mg"),
        "RXR|^Intravenous",
    )

    bag, drug = read_admins(ras(*body), mappings)

    assert [[c.code for c in i.codes] for i in bag.ingredients] == [["00264-5802-00"]]
    assert [[c.code for c in i.codes] for i in drug.ingredients] == [["00703-4239-01"]]


def test_order_rxc_still_describes_an_rxa_5_that_only_names_the_mix(mappings: Mappings) -> None:
    body = (
        ORC,
        "RXC|B|00264-5802-00^sodium chloride 500 mL^NDC|500|mL",
        "RXC|A|00703-4239-01^carboplatin^NDC|450|mg",
        rxa(f5="CARB450^carboplatin 450 mg in NS 500 mL^99LOCAL", f6="1", f7="EA"),
        "RXR|IV",
    )

    (mix,) = read_admins(ras(*body), mappings)

    assert [i.codes[0].code for i in mix.ingredients] == ["00264-5802-00", "00703-4239-01"]


# --- class 4: route as text only ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rxr", "route", "method"),
    [
        ("RXR|^Intravenous", Route.IV, Method.UNSPECIFIED),
        ("RXR|^IV push", Route.IV, Method.PUSH),
        ("RXR|^iv   Push", Route.IV, Method.PUSH),
        ("RXR|^Subcutaneous", Route.SC, Method.UNSPECIFIED),
        ("RXR|^^^^Intramuscular", Route.IM, Method.UNSPECIFIED),
        ("RXR|^Intravenous|||^IV piggyback", Route.IV, Method.INFUSION),
        ("RXR|47625008^Intravenous route^SCT", Route.IV, Method.UNSPECIFIED),
    ],
)
def test_route_given_as_text_maps_through_the_route_tables_synonyms(
    rxr: str, route: Route, method: Method, mappings: Mappings
) -> None:
    (found,) = read_admins(ras(ORC, rxa(), rxr), mappings)

    assert (found.route, found.method) == (route, method)


def test_unmapped_route_text_is_kept_to_be_named(mappings: Mappings) -> None:
    (found,) = read_admins(ras(ORC, rxa(), "RXR|^IV piggyback x"), mappings)

    assert (found.route, found.route_text) == (Route.UNKNOWN, "IV piggyback x")


def test_unmapped_route_is_held_naming_the_route(mappings: Mappings) -> None:
    coded = by_visit(run(mappings, fixture("ras_o17_grouped_rxr_text_routes.hl7")))["VIDR0002"]

    assert coded.outcome is Outcome.HELD
    assert [h.reason.value for h in coded.holds] == ["unknown-route"]
    assert hold_details(coded) == ["route 'IV piggyback x' not in mappings/routes.csv"]


def test_unmapped_route_of_an_indicated_fluid_is_held_too(mappings: Mappings) -> None:
    text = ras(ORC, rxa(f19="E86.0^Dehydration^I10"), "RXR|^Hypodermoclysis")

    (coded,) = run(mappings, text.encode()).coded

    assert "route 'Hypodermoclysis' not in mappings/routes.csv" in hold_details(coded)


def test_fhir_unmapped_route_text_is_held_naming_it(mappings: Mappings) -> None:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": "ma2",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "00703-4239-01"}]
        },
        "effectivePeriod": {
            "start": "2026-01-15T09:00:00-05:00",
            "end": "2026-01-15T10:00:00-05:00",
        },
        "dosage": {"route": {"text": "IV piggyback x"}, "dose": {"value": 450, "unit": "mg"}},
    }
    pipeline = Pipeline(mappings, CodingOptions(), NY)
    pipeline.feed_file(json_bytes(resource), "t.json")

    (coded,) = pipeline.close().coded

    assert "route 'IV piggyback x' not in mappings/routes.csv" in hold_details(coded)


def test_route_rows_differing_only_in_case_or_spacing_are_refused(tmp_path: Path) -> None:
    source = default_mappings_dir()
    for table in source.glob("*.csv"):
        (tmp_path / table.name).write_bytes(table.read_bytes())
    routes = tmp_path / "routes.csv"
    routes.write_text(routes.read_text() + "iv  push,IV\n")

    with pytest.raises(MappingError, match="duplicate route code 'IV PUSH'"):
        load_mappings(tmp_path)


# --- class 1: administration identity ---------------------------------------------------


def admins_of(*files: bytes) -> list[Administration]:
    """The administrations that assembly keeps, over the files read as one feed."""
    mappings = load_mappings(default_mappings_dir())
    messages = [m for n, f in enumerate(files) for m in read_hl7(f, mappings, NY, f"f{n}")]
    return [a for e in assemble(collect(messages).events, NY) for a in e.administrations]


def test_eight_rxa_with_constant_rxa1_rxa2_under_one_orc_are_eight_administrations(
    mappings: Mappings,
) -> None:
    """Every RXA of the plan is `0|1`: start and given code tell them apart."""
    (first, *_) = [m for m in split(fixture("ras_o17_constant_rxa_ids.hl7")) if b"RAS^O17" in m]

    found = read_admins(first.decode(), mappings)

    assert len(found) == 8
    assert len({a.source_id for a in found}) == 8
    assert {a.correction_key for a in found} == {"hl7:MY-PLAN-7:0:1"}


def test_two_identical_rxa_in_one_message_are_numbered_and_both_kept(mappings: Mappings) -> None:
    """Two identical bags hung together: still two; the resend numbers them the same way."""
    body = (ORC, rxa(f19="E86.0^Dehydration^I10"), rxa(f19="E86.0^Dehydration^I10"), "RXR|IV")

    first = read_admins(ras(*body, ctl="M1"), mappings)
    resend = read_admins(ras(*body, ctl="M2"), mappings)

    assert [a.source_id for a in first] == [a.source_id for a in resend]
    assert first[1].source_id == f"{first[0].source_id}#2"
    assert len(admins_of(ras(*body, ctl="M1").encode(), ras(*body, ctl="M2").encode())) == 2


def test_resend_under_a_new_msh10_and_corrections_still_find_their_originals_d23(
    mappings: Mappings,
) -> None:
    """The fixture: 8 RXA, the same message again under a new MSH-10 (no duplicate), a U
    that moved carboplatin's start by 5 minutes and changed its dose (replaces it), a D of
    diphenhydramine (removes it)."""
    result = run(mappings, fixture("ras_o17_constant_rxa_ids.hl7"))

    (coded,) = result.coded
    assert len(admins_of(fixture("ras_o17_constant_rxa_ids.hl7"))) == 7
    units = {ln.code: ln.units for ln in coded.lines}
    assert units["J9045"] == 8  # 400 mg as corrected, not 450 + 400
    assert "J1200" not in units  # deleted
    assert (units["J9267"], units["J2405"], units["J1100"], units["J7030"]) == (175, 8, 10, 1)
    assert Counter(ln.code for ln in coded.lines)["96375"] == 1 and units["96375"] == 2
    assert not result.warnings or all("matched no" not in w for w in result.warnings)


def test_an_order_number_reused_on_another_day_is_another_administration(
    mappings: Mappings,
) -> None:
    """A standing order keeps ORC-3 and `0|1` every day: day 2 must not replace day 1."""
    day1 = ras(ORC, rxa(f19="E86.0^Dehydration^I10"), "RXR|IV", ctl="D1", pv1=PV1_NO_VISIT)
    day2 = ras(
        ORC,
        rxa(f3="20260116090000", f4="20260116100000", f19="E86.0^Dehydration^I10"),
        "RXR|IV",
        ctl="D2",
        pv1=PV1_NO_VISIT,
    )

    found = admins_of(day1.encode(), day2.encode())

    assert sorted(str(a.start.date()) for a in found) == ["2026-01-15", "2026-01-16"]


PV1_NO_VISIT = "PV1|1|O|ONCINF^^^HOSP"


def test_update_of_the_additive_replaces_the_additive_not_the_bag(mappings: Mappings) -> None:
    """Bag and additive share order and `0|1`; the U (new start) names the additive's drug."""
    bag = rxa(f1="", f5="00264-5802-00^NS^NDC", f6="250", f7="mL")
    drug = rxa(f1="", f5="00703-4239-01^carboplatin^NDC", f6="450", f7="mg")
    fixed = rxa(f1="", f3="20260115091000", f5="00703-4239-01^carboplatin^NDC", f6="400", f21="U")

    found = admins_of(
        ras(ORC, bag, drug, "RXR|IV", ctl="M1").encode(),
        ras(ORC, fixed, "RXR|IV", ctl="M2").encode(),
    )

    given = sorted((a.ingredients[0].codes[0].code, a.ingredients[0].amount) for a in found)
    assert [(code, str(q.value) if q else "") for code, q in given] == [
        ("00264-5802-00", "250"),
        ("00703-4239-01", "400"),
    ]


def test_unmatched_corrections_are_counted_never_silent(mappings: Mappings) -> None:
    update = ras(ORC, rxa(f21="U", f19="E86.0^Dehydration^I10"), "RXR|IV", ctl="U1")
    delete = ras("ORC|RE|ORD9|RX9||CM", rxa(f21="D"), "RXR|IV", ctl="D1")

    result = run(mappings, update.encode(), delete.encode())

    assert len(admins_of(update.encode(), delete.encode())) == 1  # the update, as given
    assert any(w.startswith("1 corrections (RXA-21 U) matched no") for w in result.warnings)
    assert any(w.startswith("1 deletions (RXA-21 D") for w in result.warnings)


def split(data: bytes) -> list[bytes]:
    from adapter.hl7.er7 import split_messages

    text = data.decode()
    return [("\r".join(c.lines) + "\r").encode() for c in split_messages(text)]


# --- class 6: batch and service agree; ids are per patient ------------------------------


def multi_patient_feed(patients: int) -> bytes:
    """One RAS per patient, all with the same order numbers, RXA `0|1`, start and drug."""
    messages = []
    for n in range(patients):
        pid = f"PID|1||P{n:04d}^^^HOSP^MR"
        pv1 = f"PV1|1|O|ONCINF^^^HOSP||||||||||||||||V{n:04d}"
        body = (ORC, rxa(f19="^Dehydration"), "RXR|IV")
        messages.append(ras(*body, ctl=f"MP{n:04d}", pid=pid, pv1=pv1))
    return ("\r".join(messages) + "\r").encode()


def test_reused_order_numbers_for_different_patients_are_kept_apart(mappings: Mappings) -> None:
    result = run(mappings, multi_patient_feed(5))

    assert len(result.coded) == 5 and result.count(Outcome.SKIPPED) == 0
    assert result.warnings[0] == (
        "1 order/administration ids (ORC-3 or ORC-2 with RXA-1/RXA-2) are used by more than "
        "one patient: each patient's administrations are kept apart"
    )


def test_one_patients_delete_never_removes_another_patients_administration(
    mappings: Mappings,
) -> None:
    feed = multi_patient_feed(2)
    delete = ras(ORC, rxa(f21="D"), "RXR|IV", ctl="DEL", pid="PID|1||P0000^^^HOSP^MR", pv1="PV1|1|O|ONCINF^^^HOSP||||||||||||||||V0000")  # fmt: skip

    assert [a.patient_id for a in admins_of(feed, delete.encode())] == ["HOSP|P0001"]


def test_batch_warns_about_reused_ids_on_stderr_without_patient_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adapter.cli.main import main

    feed = tmp_path / "feed.hl7"
    feed.write_bytes(multi_patient_feed(20))

    assert main(["code", str(feed)]) == 0
    err = capsys.readouterr().err
    (warning,) = [ln for ln in err.splitlines() if "order/administration ids" in ln]
    assert warning.startswith("warning: 1 order/administration ids")
    assert "P00" not in err and "V00" not in err
    assert "encounters coded=0 held=20 " in err  # held: no diagnosis was sent


async def test_batch_and_service_code_the_same_multi_patient_file_into_as_many_claims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same file through `charge-adapter code` and through the running service (MLLP)."""
    from adapter.cli.main import main
    from adapter.store.base import SearchQuery
    from adapter.web.app import start_state, stop_state
    from tests.mllp_client import send_messages
    from tests.service_fixtures import Clock, make_settings

    data = multi_patient_feed(12)
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(data)
    assert main(["code", str(feed)]) == 0
    batch = [
        e["resource"]
        for e in json_loads(capsys.readouterr().out)["entry"]
        if e["resource"]["resourceType"] == "Claim"
    ]

    clock = Clock()
    state = await start_state(make_settings(tmp_path, close_check_seconds=3600), clock)
    try:
        assert state.mllp is not None
        await send_messages("127.0.0.1", state.mllp.port, split(data))
        clock.advance(minutes=241)
        await state.coder.run_once()
        rows, _ = await state.store.search(SearchQuery("Claim", count=500))
    finally:
        await stop_state(state)

    assert len(batch) == len(rows) == 12
    assert sorted(c["id"] for c in batch) == sorted(r.resource_id for r in rows)


def json_loads(text: str) -> Any:
    import json

    return json.loads(text)


# --- class 9: hold sentences say exactly what is missing --------------------------------


def held(mappings: Mappings, *body: str, setting: str | None = None) -> CodedEncounter:
    pipeline = Pipeline(mappings, CodingOptions(setting_override=setting), NY)
    pipeline.feed_file(ras(*body).encode(), "t.hl7")
    (coded,) = pipeline.close().coded
    return coded


def details_of(coded: CodedEncounter, reason: str) -> list[str]:
    return [h.detail for h in coded.holds if h.reason.value == reason]


CHEMO = "00703-4239-01^carboplatin^NDC"


EMPTY = "RXA-4 is empty; "
NEITHER = "no rate and no infused volume either, so D5 cannot compute the stop"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"f4": "20260115090000"}, f"RXA-4 equals RXA-3 (no real stop time); {NEITHER}"),
        ({"f4": ""}, EMPTY + NEITHER),
        (
            {"f4": "", "f12": "125 mL/h"},
            EMPTY + "rate 125 mL/h documented but no infused volume (D5 needs both)",
        ),
        (
            {"f4": "", "f23": "500"},
            EMPTY + "infused volume 500 mL documented but no rate (D5 needs both)",
        ),
        (
            {"f4": "", "f12": "10 mg/h", "f23": "500"},
            EMPTY + "rate 10 mg/h is not a volume per time (mL/h), so D5 cannot use it",
        ),
    ],
    ids=["equal", "empty", "rate-only", "volume-only", "rate-in-mass"],
)
def test_missing_stop_time_hold_names_what_is_missing_d5(
    changes: dict[str, str], expected: str, mappings: Mappings
) -> None:
    body = (ORC, rxa(f5=CHEMO, f6="450", f7="mg", **changes), "RXR|IV")

    assert details_of(held(mappings, *body), "missing-stop-time") == [expected]


def test_no_stop_time_is_never_said_alone_when_a_rate_is_present(mappings: Mappings) -> None:
    body = (ORC, rxa(f5=CHEMO, f6="450", f7="mg", f4="", f12="250"), "RXR|IV")

    (detail,) = details_of(held(mappings, *body), "missing-stop-time")

    assert "rate 250 mL/h documented" in detail and "no rate" not in detail


def test_fhir_stop_note_names_the_element(mappings: Mappings) -> None:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": "ma3",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "00703-4239-01"}]
        },
        "effectivePeriod": {
            "start": "2026-01-15T09:00:00-05:00",
            "end": "2026-01-15T09:00:00-05:00",
        },
        "dosage": {"route": {"text": "IV"}, "dose": {"value": 450, "unit": "mg"}},
    }
    pipeline = Pipeline(mappings, CodingOptions(), NY)
    pipeline.feed_file(json_bytes(resource), "t.json")
    (coded,) = pipeline.close().coded

    (detail,) = details_of(coded, "missing-stop-time")
    assert detail.startswith("effectivePeriod.end equals its start (no real stop time); ")


def rxnorm_rows(rxcui: str) -> tuple[int, list[str]]:
    """Counted from the shipped catalog itself: the oracle the hold sentence must match."""
    import csv

    with (default_mappings_dir() / "drug_catalog.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["rxnorm_ingredient"] == rxcui]
    return len(rows), sorted({r["hcpcs"] for r in rows})


def copy_mappings(tmp_path: Path, table: str, row: str) -> Mappings:
    for source in default_mappings_dir().glob("*.csv"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    path = tmp_path / table
    path.write_text(path.read_text(encoding="utf-8") + row + "\n", encoding="utf-8")
    return load_mappings(tmp_path)


def test_rxnorm_code_of_several_catalog_rows_is_held_as_ambiguous_not_unknown_d14(
    mappings: Mappings,
) -> None:
    body = (ORC, rxa(f5="3002^cyclophosphamide^RXNORM", f6="1000", f7="mg"), "RXR|IV")
    rows, hcpcs = rxnorm_rows("3002")

    (detail,) = details_of(held(mappings, *body), "unknown-drug")

    assert rows > 1
    assert detail.startswith(f"RxNorm 3002 is ambiguous: {rows} catalog rows under {', '.join(hcpcs)}")  # fmt: skip
    assert "no catalog entry" not in detail


def test_the_overlay_row_an_ambiguous_rxnorm_hold_recommends_clears_it(tmp_path: Path) -> None:
    """local_code 3002 (as the hold says) with the site's NDC: the drug now bills."""
    fixed = copy_mappings(tmp_path, "drug_catalog_local.csv", "3002,J9075,,,site: cyclophosphamide NOS")  # fmt: skip
    body = (ORC, rxa(f5="3002^cyclophosphamide^RXNORM", f6="1000", f7="mg"), "RXR|IV")

    coded = held(fixed, *body)

    assert details_of(coded, "unknown-drug") == []
    assert "J9075" in {ln.code for ln in coded.lines}


VINCRISTINE = "61703-0309-16^vincristine 2 mg/2 mL^NDC"
DRUGS = {
    "ondansetron": "00404-9930-02^ondansetron^NDC",
    "dex": "00404-9795-30^dex^NDC",
}  # container unknown in the catalog


def test_waste_hold_names_the_ndc_and_the_overlay_columns_that_fix_it_d17(
    mappings: Mappings,
) -> None:
    body = (ORC, rxa(f5=VINCRISTINE, f6="1", f7="mg", f4="20260115091000"), "RXR|IV|||IVP")

    (detail,) = details_of(held(mappings, *body, setting="office"), "waste-undetermined")

    assert detail == (
        "J9370: container type of NDC 61703030916 unknown; add a row to "
        "mappings/drug_catalog_local.csv: local_code 61703030916, target 61703030916, "
        "container single-dose or multiple-dose, package_amount in mg per container"
    )


def test_the_overlay_row_the_waste_hold_recommends_clears_it_and_decides_jw_d17(
    tmp_path: Path,
) -> None:
    fixed = copy_mappings(tmp_path, "drug_catalog_local.csv", "61703030916,61703030916,single-dose,2,site: label read")  # fmt: skip
    body = (ORC, rxa(f5=VINCRISTINE, f6="1", f7="mg", f4="20260115091000"), "RXR|IV|||IVP")

    coded = held(fixed, *body, setting="office")

    assert details_of(coded, "waste-undetermined") == []
    assert sorted(
        (ln.code, ln.modifiers, ln.units) for ln in coded.lines if ln.code == "J9370"
    ) == [
        ("J9370", (), 1),
        ("J9370", ("JW",), 1),
    ]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("X1,J9070,single-dose,,hcpcs target", "need a target NDC"),
        ("X1,61703030916,unknown,,not a fix", "container"),
        ("X1,61703030916,single-dose,0,zero", "package_amount '0' must be a number greater than 0"),
    ],
)
def test_overlay_container_rows_are_validated(tmp_path: Path, row: str, problem: str) -> None:
    with pytest.raises(MappingError, match=problem):
        copy_mappings(tmp_path, "drug_catalog_local.csv", row)


def test_overlay_file_in_the_earlier_three_column_layout_still_loads(tmp_path: Path) -> None:
    for source in default_mappings_dir().glob("*.csv"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    (tmp_path / "drug_catalog_local.csv").write_text(
        "local_code,target,note\nERX12345,00006302602,pembrolizumab\n", encoding="utf-8"
    )

    assert load_mappings(tmp_path).catalog.local["ERX12345"] == "00006302602"


def test_a_visit_number_used_by_two_patients_is_never_billed_as_one_claim(
    mappings: Mappings,
) -> None:
    """Two patients, one PV1-19: neither's drugs may land on the other's claim."""
    body = (ORC, rxa(f19="E86.0^Dehydration^I10"), "RXR|IV")
    first = ras(*body, ctl="S1", pid="PID|1||P1^^^HOSP^MR")
    second = ras(*body, ctl="S2", pid="PID|1||P2^^^HOSP^MR")

    result = run(mappings, first.encode(), second.encode())

    assert [c.skip_reason for c in result.coded] == ["visit number shared by several patients"]
    assert any(w.startswith("1 visit numbers (PV1-19, FHIR Encounter) name more") for w in result.warnings)  # fmt: skip


def test_a_visit_whose_adt_names_another_patient_is_not_billed_with_that_patients_payer(
    mappings: Mappings,
) -> None:
    adt = (
        "MSH|^~\\&|HIS|ONC|CHGCAP|ONC|20260115080000||ADT^A04^ADT_A01|A1|P|2.5.1\r"
        "PID|1||P9^^^HOSP^MR\r" + PV1 + "\rDG1|1||E86.0^^I10||||||||||||1\rIN1|1||123|ACME"
    )
    ras_text = ras(ORC, rxa(f19="E86.0^Dehydration^I10"), "RXR|IV", pid="PID|1||P1^^^HOSP^MR")

    (coded,) = run(mappings, adt.encode(), ras_text.encode()).coded

    assert coded.skip_reason == "visit number shared by several patients"


def test_the_same_patient_written_with_and_without_authority_is_one_patient(
    mappings: Mappings,
) -> None:
    adt = (
        "MSH|^~\\&|HIS|ONC|CHGCAP|ONC|20260115080000||ADT^A04^ADT_A01|A1|P|2.5.1\r"
        "PID|1||P100^^^HOSP^MR\r" + PV1 + "\rDG1|1||E86.0^^I10||||||||||||1"
    )
    ras_text = ras(ORC, rxa(f19="E86.0^Dehydration^I10"), "RXR|IV", pid="PID|1||P100")

    (coded,) = run(mappings, adt.encode(), ras_text.encode()).coded

    assert (coded.outcome, coded.skip_reason) == (Outcome.CODED, "")


async def test_service_logs_a_correction_that_matched_nothing_counted_without_phi(
    tmp_path: Path,
) -> None:
    """In the service the batch's warning is a structured log line of the coder."""
    from structlog.testing import capture_logs

    from adapter.web.app import start_state, stop_state
    from tests.mllp_client import send_messages
    from tests.service_fixtures import Clock, make_settings

    update = ras(ORC, rxa(f21="U", f19="E86.0^Dehydration^I10"), "RXR|IV", ctl="U1")
    clock = Clock()
    state = await start_state(make_settings(tmp_path, close_check_seconds=3600), clock)
    try:
        assert state.mllp is not None
        await send_messages("127.0.0.1", state.mllp.port, [(update + "\r").encode()])
        clock.advance(minutes=241)
        with capture_logs() as logs:
            assert await state.coder.run_once() == 1
    finally:
        await stop_state(state)

    (event,) = [e for e in logs if e["event"] == "encounter.assembly"]
    assert (event["unmatched_updates"], event["unmatched_deletes"]) == (1, 0)
    assert "P100" not in json_dumps(event) and "V100" not in json_dumps(event)


def json_dumps(value: object) -> str:
    import json

    return json.dumps(value, default=str)


_GIVEN = st.lists(
    st.tuples(st.sampled_from(["0900", "0905", "1300"]), st.sampled_from(list(DRUGS))),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(given_rxas=_GIVEN, resends=st.integers(min_value=0, max_value=2))
def test_every_rxa_under_constant_ids_is_kept_once_whatever_the_resends(
    given_rxas: list[tuple[str, str]], resends: int
) -> None:
    """Invariant: RXA in = administrations out, however many times the message is resent
    under new MSH-10s, whatever the mix of equal starts and equal codes."""
    body = [ORC]
    for hhmm, drug in given_rxas:
        body.append(rxa(f3=f"20260115{hhmm}00", f4="", f5=DRUGS[drug], f6="1", f7="mg"))
    body.append("RXR|IV|||IVP")
    files = [ras(*body, ctl=f"R{n}").encode() for n in range(resends + 1)]

    assert len(admins_of(*files)) == len(given_rxas)


# --- Japanese feeds: ISO 2022 (MSH-18 `~ISO IR87`) ---------------------------------------


def test_iso_2022_jp_text_is_decoded_before_the_message_is_cut_into_fields(
    mappings: Mappings,
) -> None:
    """JIS X 0208 bytes of `剤` are `:^` and of `ボ` `%\\`: read as ER7 they would be a
    component break and an escape. MSH-18 `~ISO IR87` says to decode first (JAHIS shape)."""
    name = "抗悪性腫瘍剤カルボプラチン注射液"
    msh = (
        "MSH|^~\\&|HIS123|SEND|CHGCAP|RCV|20260115113813||RAS^O17^RAS_O17|JP0001|P|2.5"
        "||||||~ISO IR87||ISO 2022-1994"
    )
    text = "\r".join(
        [
            msh,
            "PID|0001||9999013^^^^PI||患者^太郎^^^^^L^I||19650415|M",
            "PV1|0001|O|ONCINF^302^^^^N",
            "ORC|NW|123456789012345||1",
            rxa(f5=f"00703-4239-01^{name}^NDC", f6="450", f7="mg"),
            "RXR|IV^静脈内^HL70162",
        ]
    )
    data = text.encode("iso2022_jp")
    assert b"^" in name.encode("iso2022_jp") and b"\\" in name.encode("iso2022_jp")

    (found,) = [e for e in read_hl7(data, mappings, NY)[0].events if isinstance(e, Administration)]

    assert (found.ingredients[0].text, found.ingredients[0].amount) == (
        name,
        Quantity(Decimal("450"), "mg"),
    )
    assert found.route is Route.IV
