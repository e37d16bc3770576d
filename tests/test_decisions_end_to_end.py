"""Decisions that show only end to end: through a reader, the shipped tables and the output."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.core.catalog import Catalog
from adapter.core.mappings import Mappings
from adapter.core.model import Administration, Code, CodeSystem
from adapter.core.options import CodingOptions
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.readers.hl7v2 import read_hl7
from adapter.usecases.batch import Pipeline

NY = ZoneInfo("America/New_York")

RAS = (
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150800||RAS^O17^RAS_O17|T{n}|P|2.5.1\r"
    "PID|1||M1^^^HOSP^MR\r"
    "PV1|1|O|{loc}^^^MAIN||||||||||||||||V{n}\r"
    "ORC|RE|O{n}|F{n}\r"
    "RXA|0|1|{start}|{end}|{code}|{dose}|mg|||||||||||||CP|A\r"
    "RXR|IV||IVPB\r"
)
ADT = (
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150800||ADT^A04^ADT_A01|A{n}|P|2.5.1\r"
    "PID|1||M1^^^HOSP^MR\r"
    "PV1|1|O|{loc}^^^MAIN||||||||||||||||V{n}\r"
    "DG1|1||C83.30^^I10||||||||||||1\r"
)


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(default_mappings_dir())


def _run(mappings: Mappings, *messages: str) -> Any:
    pipeline = Pipeline(mappings, CodingOptions(), NY)
    pipeline.feed_file("\n".join(messages).encode(), "test.hl7")
    return pipeline.close()


def _ras(n: int, code: str, dose: str = "700", start: str = "202601150900", end: str = "202601151000",
         loc: str = "ONC-OFFICE") -> str:  # fmt: skip
    return RAS.format(n=n, code=code, dose=dose, start=start, end=end, loc=loc)


def test_hcpcs_comes_from_the_ndc_crosswalk_biosimilar_gets_its_q_code_r33(
    mappings: Mappings,
) -> None:
    result = _run(
        mappings, ADT.format(n=1, loc="ONC-OFFICE"), _ras(1, "63459-0103-10^rituximab-abbs^NDC")
    )
    codes = {ln.code for ln in result.coded[0].lines}
    assert "Q5115" in codes and "J9312" not in codes


@pytest.mark.parametrize("printed", ["00006-3026-02", "0006-3026-02", "00006302602", "0006302602"])
def test_ndc_matches_in_every_printed_form_d15(mappings: Mappings, printed: str) -> None:
    hit = mappings.catalog.match([Code(CodeSystem.NDC, printed)])
    assert hit is not None and hit.drug.hcpcs == "J9271"


def test_hl7_cwe_alternate_identifier_is_tried_for_the_drug_d15(mappings: Mappings) -> None:
    result = _run(mappings, ADT.format(n=2, loc="ONC-OFFICE"),
                  _ras(2, "ERX99^rituximab-abbs 100 mg^LOCAL^63459-0103-10^rituximab-abbs^NDC"))  # fmt: skip
    assert "Q5115" in {ln.code for ln in result.coded[0].lines}


def test_hl7_timestamp_without_offset_is_read_in_the_site_time_zone_d25(mappings: Mappings) -> None:
    (message,) = read_hl7(_ras(3, "63459-0103-10^x^NDC"), mappings, NY, "t.hl7")
    admin = next(e for e in message.events if isinstance(e, Administration))
    assert admin.start.utcoffset() == NY.utcoffset(admin.start.replace(tzinfo=None))
    assert admin.start.hour == 9


def test_a_held_encounter_is_a_draft_claim_with_a_review_task_naming_each_reason_d22(
    mappings: Mappings,
) -> None:
    result = _run(
        mappings, ADT.format(n=4, loc="ONC-OFFICE"), _ras(4, "63459-0103-10^x^NDC", end="")
    )
    by_type = {r["resourceType"]: r for r in result.resources}
    assert by_type["Claim"]["status"] == "draft"
    assert by_type["ChargeItem"]["status"] == "planned"
    task = by_type["Task"]
    assert (
        task["status"] == "requested"
        and task["focus"]["reference"] == f"Claim/{by_type['Claim']['id']}"
    )
    reasons = [i["valueCodeableConcept"]["coding"][0]["code"] for i in task["input"]]
    assert reasons == ["missing-stop-time"]
    assert task["input"][0]["valueCodeableConcept"]["text"]


def test_service_date_past_the_newest_cms_table_is_coded_with_a_warning_d27(
    mappings: Mappings,
) -> None:
    late = _ras(5, "63459-0103-10^x^NDC", start="202611270900", end="202611271000")
    result = _run(mappings, ADT.format(n=5, loc="ONC-OFFICE"), late)
    assert result.coded[0].lines and not result.coded[0].holds
    assert any("crosswalk table is effective to 2026-03-31" in w for w in result.warnings)


def test_unknown_location_without_override_uses_the_shipped_default_setting_d1(
    mappings: Mappings,
) -> None:
    result = _run(
        mappings, ADT.format(n=6, loc="ELSEWHERE"), _ras(6, "63459-0103-10^x^NDC", loc="ELSEWHERE")
    )
    assert result.coded[0].setting == "hospital-outpatient"


def test_empty_catalog_holds_every_drug_as_unknown_d14(mappings: Mappings) -> None:
    from dataclasses import replace

    empty = replace(mappings, catalog=Catalog.build([], []))
    result = _run(empty, ADT.format(n=7, loc="ONC-OFFICE"), _ras(7, "63459-0103-10^x^NDC"))
    assert {h.reason.value for h in result.coded[0].holds} == {"unknown-drug"}


@pytest.mark.parametrize("fmt", ["hl7", "json"])
def test_every_input_r12_names_reaches_the_event_model_from_both_formats(
    mappings: Mappings, fmt: str
) -> None:
    """R12: start and stop, route and method, access site, NDC, dose and units, wasted amount."""
    from pathlib import Path

    from adapter.core.model import Method, Route
    from adapter.readers.fhir import read_fhir

    path = Path(__file__).resolve().parents[1] / "fixtures/scenarios" / f"S16.{fmt}"
    reader = read_hl7 if fmt == "hl7" else read_fhir
    events = [e for m in reader(path.read_bytes(), mappings, NY, path.name) for e in m.events]
    (admin,) = [e for e in events if isinstance(e, Administration)]
    assert admin.end is not None and admin.end > admin.start
    assert admin.route is Route.IV and admin.method is not Method.PUSH
    assert admin.access_site
    (ingredient,) = admin.ingredients
    assert any(c.system == CodeSystem.NDC for c in ingredient.codes)
    assert ingredient.amount is not None and ingredient.amount.unit == "mg"
    assert admin.wasted is not None and admin.wasted.unit == "mg"


def test_push_documented_only_in_the_route_field_stays_a_push_d4(mappings: Mappings) -> None:
    """Epic-style RXR-1 `IV PUSH` with an empty RXR-4: the method table is consulted for RXR-1."""
    ras = _ras(8, "00409-4888-20^dexamethasone^NDC", dose="12", end="202601151030").replace(
        "RXR|IV||IVPB", "RXR|IV PUSH"
    )
    (message,) = read_hl7(ras, mappings, NY, "t.hl7")
    admin = next(e for e in message.events if isinstance(e, Administration))
    from adapter.core.model import Method, Route

    assert admin.method is Method.PUSH and admin.route is Route.IV
