"""The FHIR JSON reader: docs/feed-conventions.md (FHIR part) rule by rule, then fixtures."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.core.assembly import assemble
from adapter.core.catalog import Catalog
from adapter.core.mappings import Mappings
from adapter.core.model import (
    Administration,
    AdminStatus,
    Code,
    CodeSystem,
    ConditionEvent,
    CoverageEvent,
    Diagnosis,
    InboundMessage,
    IngredientRole,
    Method,
    PatientClass,
    Quantity,
    Route,
    Visit,
    VisitStatus,
)
from adapter.readers.fhir import medadmin as medadmin_reader
from adapter.readers.fhir import read_fhir

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "fhir"
SAMPLES = ROOT / "fixtures" / "samples" / "fhir"
NY = ZoneInfo("America/New_York")
EST = timezone(timedelta(hours=-5))
NDC = "http://hl7.org/fhir/sid/ndc"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
EXT = "https://charge-adapter.org/fhir/StructureDefinition/"

MAPPINGS = Mappings(
    catalog=Catalog.build([], []),
    routes=MappingProxyType(
        {"47625008": Route.IV, "IV": Route.IV, "263887005": Route.SC, "IV PIGGYBACK": Route.IV}
    ),
    methods=MappingProxyType(
        {
            "420620005": Method.PUSH,
            "420883007": Method.INFUSION,
            "IVP": Method.PUSH,
            "IVPB": Method.INFUSION,
            "PUMP": Method.PUMP,
        }
    ),
)

Json = dict[str, Any]


# --- helpers ------------------------------------------------------------------------------


def read(data: object, origin: str = "") -> tuple[InboundMessage, ...]:
    text = data if isinstance(data, str | bytes) else json.dumps(data)
    return read_fhir(text, MAPPINGS, NY, origin)


def coding(system: str, code: str, display: str = "") -> Json:
    found = {"system": system, "code": code}
    return found | ({"display": display} if display else {})


def concept(*codings: Json, text: str = "") -> Json:
    found: Json = {"coding": list(codings)}
    return found | ({"text": text} if text else {})


def qty(value: float, unit: str) -> Json:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def medadmin(**changes: Any) -> Json:
    """A minimal valid R4 MedicationAdministration; `None` values remove an element."""
    resource: Json = {
        "resourceType": "MedicationAdministration",
        "id": "ma1",
        "meta": {"versionId": "1"},
        "status": "completed",
        "medicationCodeableConcept": concept(coding(NDC, "00006-3026-02", "KEYTRUDA")),
        "subject": {"reference": "Patient/p1", "display": "Doe, Jane"},
        "context": {"reference": "Encounter/e1"},
        "effectivePeriod": {
            "start": "2025-11-18T09:00:00-05:00",
            "end": "2025-11-18T09:30:00-05:00",
        },
        "dosage": {"route": concept(coding(SCT, "47625008")), "dose": qty(200, "mg")},
    }
    for key, value in changes.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def bundle(*resources: Json, kind: str = "collection", urls: tuple[str, ...] = ()) -> Json:
    entries = []
    for index, resource in enumerate(resources):
        entry: Json = {"resource": resource}
        if index < len(urls):
            entry["fullUrl"] = urls[index]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def only(messages: tuple[InboundMessage, ...]) -> InboundMessage:
    assert len(messages) == 1, messages
    return messages[0]


def admin_of(data: object) -> Administration:
    """The single Administration `data` reads to (fails on an error or a skip)."""
    message = only(tuple(m for m in read(data) if m.kind == "MedicationAdministration"))
    assert message.error is None, message.error
    (event,) = message.events
    assert isinstance(event, Administration)
    return event


def error_of(data: object, origin: str = "") -> tuple[str, str]:
    message = only(read(data, origin))
    assert message.error is not None, message
    return message.error.location, message.error.message


def event_of(data: object, kind: type[Any]) -> Any:
    message = only(read(data))
    assert message.error is None, message.error
    (event,) = message.events
    assert isinstance(event, kind)
    return event


def load(name: str) -> tuple[InboundMessage, ...]:
    return read_fhir((FIXTURES / name).read_bytes(), MAPPINGS, NY, name)


def admins(messages: tuple[InboundMessage, ...]) -> list[Administration]:
    return [e for m in messages for e in m.events if isinstance(e, Administration)]


# --- input shapes -------------------------------------------------------------------------


class TestInput:
    def test_single_resource(self) -> None:
        """One resource is one message whose kind is its resourceType."""
        message = only(read(medadmin()))
        assert (message.kind, message.dedup_key) == (
            "MedicationAdministration",
            "fhir:MedicationAdministration/ma1/_history/1",
        )

    def test_bytes_with_byte_order_mark(self) -> None:
        """A UTF-8 BOM (some exports write one) is not an error."""
        assert (
            admin_of(b"\xef\xbb\xbf" + json.dumps(medadmin()).encode()).patient_id == "Patient/p1"
        )

    def test_not_utf8(self) -> None:
        """Undecodable bytes are one error naming the byte offset."""
        assert error_of(b'{"a": "\xff"}', "feed.json") == ("feed.json byte 7", "not UTF-8 text")

    def test_invalid_json_names_file_line_and_column(self) -> None:
        """An analyst gets `<file> line L column C`, and the parser's reason."""
        text = '{\n  "resourceType": "Patient",\n    "id" "p1"\n}'
        location, message = error_of(text, "demo.json")
        assert location == "demo.json line 3 column 10"
        assert message == "Expecting ':' delimiter"

    @pytest.mark.parametrize("text", ['{"value": NaN}', '{"value": Infinity}', "[" * 100_000])
    def test_json_the_stdlib_rejects_late_is_an_error(self, text: str) -> None:
        """NaN/Infinity are not JSON and deep nesting exhausts recursion: errors, no raise."""
        location, _ = error_of(text, "x.json")
        assert location.startswith("x.json")

    @pytest.mark.parametrize("text", ["", "  \n\n", b""])
    def test_empty_input_reads_nothing(self, text: str | bytes) -> None:
        """An empty NDJSON export is legitimate: no messages."""
        assert read_fhir(text, MAPPINGS, NY) == ()

    def test_ndjson(self) -> None:
        """One resource per line, blank lines ignored, a bad line reported, the rest read."""
        lines = [
            json.dumps(medadmin(id="a")),
            "",
            '{"resourceType": "MedicationAdministration", "id": }',
            json.dumps(medadmin(id="b")),
        ]
        messages = read("\n".join(lines), "feed.ndjson")
        assert [m.dedup_key for m in messages if not m.error] == [
            "fhir:MedicationAdministration/a/_history/1",
            "fhir:MedicationAdministration/b/_history/1",
        ]
        (bad,) = [m.error for m in messages if m.error]
        assert bad.location == "feed.ndjson line 3 column 52"

    def test_ndjson_with_a_corrupt_first_line(self) -> None:
        """A truncated first line costs that line, not the export."""
        text = '{"resourceType": "Medication' + "}\n" + json.dumps(medadmin()) + "\n"
        messages = read(text, "f.ndjson")
        assert [m.error.location if m.error else m.kind for m in messages] == [
            "f.ndjson line 1 column 18",
            "MedicationAdministration",
        ]

    def test_ndjson_error_paths_name_the_line(self) -> None:
        """A resource error in NDJSON names its line, then the JSON path."""
        lines = [json.dumps(medadmin()), json.dumps(medadmin(id="b", subject=None))]
        (bad,) = [m.error for m in read("\n".join(lines), "f.ndjson") if m.error]
        assert bad.location == "f.ndjson line 2, MedicationAdministration.subject"

    def test_ndjson_lines_resolve_each_other(self) -> None:
        """A bulk export puts Medications on their own lines; references still resolve."""
        medication = {"resourceType": "Medication", "id": "m1", "code": concept(coding(NDC, "1"))}
        ma = medadmin(
            medicationCodeableConcept=None, medicationReference={"reference": "Medication/m1"}
        )
        text = json.dumps(ma) + "\n" + json.dumps(medication) + "\n"
        assert admin_of(text).ingredients[0].codes == (Code(CodeSystem.NDC, "1"),)

    def test_bare_array_of_resources(self) -> None:
        """A JSON array of resources is read item by item."""
        messages = read([medadmin(id="a"), {"resourceType": "Observation", "id": "o"}, 3], "x.json")
        assert [m.kind for m in messages] == ["MedicationAdministration", "Observation", "unknown"]
        assert messages[2].error is not None
        assert messages[2].error.location == "x.json, item 2, document"

    @pytest.mark.parametrize(
        "kind", ["collection", "batch", "transaction", "searchset", "history", "document"]
    )
    def test_bundle_entries_are_flattened(self, kind: str) -> None:
        """Every Bundle type is opened; each entry is its own message."""
        messages = read(bundle(medadmin(id="a"), medadmin(id="b"), kind=kind))
        assert [m.dedup_key.split("/")[1] for m in messages] == ["a", "b"]

    def test_nested_bundle_is_flattened(self) -> None:
        """A Bundle inside a Bundle (a message or document wrapper) is opened too."""
        messages = read(bundle(bundle(medadmin(id="inner"))))
        assert only(messages).dedup_key == "fhir:MedicationAdministration/inner/_history/1"

    def test_bundles_nested_too_deep(self) -> None:
        """Nesting has a bound: past it, one error instead of unbounded recursion."""
        nested: Json = medadmin()
        for _ in range(6):
            nested = bundle(nested)
        location, message = error_of(nested)
        assert message == "Bundles nested too deeply"
        assert location.startswith("Bundle.entry[0].resource.entry[0].resource")

    @pytest.mark.parametrize(
        ("kind", "status_type"),
        [("subscription-notification", "SubscriptionStatus"), ("history", "Parameters")],
    )
    def test_subscription_notification_status_entry_is_dropped(
        self, kind: str, status_type: str
    ) -> None:
        """R5/R4B SubscriptionStatus, R4 backport Parameters: envelope, not content."""
        status = {"resourceType": status_type, "id": "s"}
        messages = read(bundle(status, medadmin(), kind=kind))
        assert [m.kind for m in messages] == ["MedicationAdministration"]

    def test_parameters_elsewhere_is_unsupported(self) -> None:
        """Only a notification's first entry is envelope."""
        messages = read(bundle(medadmin(), {"resourceType": "Parameters", "id": "x"}))
        assert messages[1].skip_reason == "unsupported resource type Parameters"

    def test_entry_without_resource_is_skipped_with_its_request(self) -> None:
        """A transaction DELETE or an id-only notification entry: visible, not an error."""
        data = bundle(medadmin())
        data["entry"].append(
            {"request": {"method": "DELETE", "url": "MedicationAdministration/gone"}}
        )
        message = read(data)[1]
        assert message.dedup_key == "fhir:MedicationAdministration/gone"
        assert message.skip_reason == "bundle entry without a resource (request DELETE)"

    @pytest.mark.parametrize(
        ("data", "location", "message"),
        [
            ({"id": "x"}, "document", "missing resourceType"),
            ({"resourceType": "not a type"}, "document", "resourceType is not a type name"),
            ({"resourceType": 7}, "document", "resourceType is not a type name"),
            ({"resourceType": "Bundle", "entry": {}}, "Bundle.entry", "expected an array"),
            ({"resourceType": "Bundle", "entry": [1]}, "Bundle.entry[0]", "not a JSON object"),
            (
                {"resourceType": "Bundle", "entry": [{"resource": []}]},
                "Bundle.entry[0].resource",
                "not a JSON object",
            ),
        ],
    )
    def test_structural_errors_name_their_path(
        self, data: Json, location: str, message: str
    ) -> None:
        """A malformed envelope is an error where it is, not a crash."""
        assert error_of(data) == (location, message)

    def test_medication_is_used_not_emitted(self) -> None:
        """Medication resources only serve references."""
        med = {"resourceType": "Medication", "id": "m", "code": concept(coding(NDC, "1"))}
        assert read(med) == ()

    def test_patient_is_identity_only(self) -> None:
        """A Patient is read and kept out of the events, with a reason."""
        message = only(read({"resourceType": "Patient", "id": "p", "birthDate": "1961-04-09"}))
        assert (message.events, message.skip_reason) == ((), "patient identity only")

    def test_unknown_types_are_skipped_with_the_type(self) -> None:
        message = only(read({"resourceType": "Observation", "id": "o1"}))
        assert message.skip_reason == "unsupported resource type Observation"
        assert message.dedup_key == "fhir:Observation/o1"


# --- keys ---------------------------------------------------------------------------------


class TestKeys:
    def test_source_id_ignores_the_version(self) -> None:
        """Every version of an administration shares its source id (corrections replace)."""
        first = admin_of(medadmin(meta={"versionId": "1"}))
        second = admin_of(medadmin(meta={"versionId": "2"}))
        assert first.source_id == second.source_id == "fhir:MedicationAdministration/ma1"

    def test_versionless_resources_dedupe_by_content(self) -> None:
        """No versionId: a re-send (any key order) dedupes, a status update does not."""
        plain = medadmin(meta=None)
        reordered = dict(reversed(list(plain.items())))
        updated = medadmin(meta=None, status="entered-in-error")
        keys = [only(read(r)).dedup_key for r in (plain, reordered, updated)]
        assert keys[0] == keys[1] != keys[2]
        assert keys[0].startswith("fhir:MedicationAdministration/ma1#sha256:")

    def test_no_id_in_a_bundle_uses_the_full_url(self) -> None:
        url = "urn:uuid:9f0c6f8e-6bd1-4c39-9f3f-0d5e2b1c7a10"
        message = only(read(bundle(medadmin(id=None), urls=(url,))))
        assert message.dedup_key == f"fhir:{url}/_history/1"
        assert admin_of(bundle(medadmin(id=None), urls=(url,))).source_id == f"fhir:{url}"

    def test_no_id_prefers_the_business_identifier(self) -> None:
        """Transactions re-mint urn:uuid fullUrls per send; the EHR's identifier is stable."""
        identified = medadmin(id=None, identifier=[{"system": "urn:oid:1.2", "value": "884"}])
        once = admin_of(bundle(identified, urls=("urn:uuid:1",)))
        again = admin_of(bundle(identified, urls=("urn:uuid:2",)))
        assert once.source_id == again.source_id
        assert once.source_id == "fhir:MedicationAdministration?identifier=urn:oid:1.2|884"

    def test_nothing_to_key_on_uses_a_content_hash(self) -> None:
        """Without id, identifier and fullUrl, the same content keys the same."""
        anonymous = medadmin(id=None, meta=None)
        reordered = dict(reversed(list(anonymous.items())))
        first, second = only(read(anonymous)), only(read(reordered))
        assert first.dedup_key == second.dedup_key
        assert first.dedup_key.startswith("fhir:MedicationAdministration@sha256:")


# --- MedicationAdministration -------------------------------------------------------------


class TestPatientAndVisit:
    @pytest.mark.parametrize(
        ("subject", "expected"),
        [
            ({"reference": "Patient/123"}, "Patient/123"),
            ({"reference": "https://ehr.example.org/fhir/Patient/123"}, "Patient/123"),
            ({"reference": "Patient/123/_history/4"}, "Patient/123"),
            ({"identifier": {"system": "urn:oid:1.2.3", "value": "MRN9"}}, "urn:oid:1.2.3|MRN9"),
            ({"reference": "urn:uuid:unbundled"}, "urn:uuid:unbundled"),
        ],
    )
    def test_patient_id(self, subject: Json, expected: str) -> None:
        assert admin_of(medadmin(subject=subject)).patient_id == expected

    def test_patient_urn_resolves_to_the_bundled_patient(self) -> None:
        patient = {"resourceType": "Patient", "id": "p77"}
        data = bundle(patient, medadmin(subject={"reference": "urn:uuid:p"}), urls=("urn:uuid:p",))
        assert admin_of(data).patient_id == "Patient/p77"

    @pytest.mark.parametrize(
        ("subject", "message"),
        [
            (None, "missing: no patient reference"),
            ({"display": "Doe, Jane"}, "has neither a reference nor an identifier"),
        ],
    )
    def test_patient_is_required(self, subject: Json | None, message: str) -> None:
        """No patient, no charge: an error at `.subject` that never repeats the display."""
        data = medadmin(subject=subject) if subject else medadmin(subject=None)
        assert error_of(data) == ("MedicationAdministration.subject", message)

    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"context": {"reference": "Encounter/abc"}}, "abc"),
            ({"context": None, "encounter": {"reference": "Encounter/r5"}}, "r5"),
            ({"context": {"reference": "https://x.org/fhir/Encounter/abs"}}, "abs"),
            ({"context": {"reference": "EpisodeOfCare/ep"}}, None),
            ({"context": {"reference": "urn:uuid:elsewhere"}}, "urn:uuid:elsewhere"),
            ({"context": {"identifier": {"system": "urn:visits", "value": "V9"}}}, "urn:visits|V9"),
            ({"context": None}, None),
        ],
    )
    def test_visit_id(self, changes: Json, expected: str | None) -> None:
        assert admin_of(medadmin(**changes)).visit_id == expected

    def test_visit_urn_resolves_to_the_bundled_encounter_id(self) -> None:
        encounter = {
            "resourceType": "Encounter",
            "id": "enc9",
            "subject": {"reference": "Patient/p1"},
        }
        data = bundle(
            encounter, medadmin(context={"reference": "urn:uuid:e"}), urls=("urn:uuid:e",)
        )
        messages = read(data)
        visit = messages[0].events[0]
        assert isinstance(visit, Visit)
        assert admins(messages)[0].visit_id == visit.visit_id == "enc9"

    def test_visit_urn_to_an_id_less_encounter_matches_its_visit(self) -> None:
        """Whatever key the Encounter gets, the administrations pointing to it get the same."""
        encounter = {"resourceType": "Encounter", "subject": {"reference": "Patient/p1"}}
        data = bundle(
            encounter, medadmin(context={"reference": "urn:uuid:e"}), urls=("urn:uuid:e",)
        )
        messages = read(data)
        visit = messages[0].events[0]
        assert isinstance(visit, Visit)
        assert admins(messages)[0].visit_id == visit.visit_id == "urn:uuid:e"


class TestTimes:
    @pytest.mark.parametrize(
        ("changes", "start", "end"),
        [
            (
                {"effectiveDateTime": "2025-11-18T09:00:00-05:00"},
                datetime(2025, 11, 18, 9, tzinfo=EST),
                None,
            ),
            (
                {"occurenceDateTime": "2025-11-18T14:00:00Z"},
                datetime(2025, 11, 18, 14, tzinfo=UTC),
                None,
            ),
            (
                {"occurencePeriod": {"start": "2025-11-18T09:00:00-05:00"}},
                datetime(2025, 11, 18, 9, tzinfo=EST),
                None,
            ),
            (
                {
                    "occurrencePeriod": {
                        "start": "2025-11-18T09:00:00-05:00",
                        "end": "2025-11-18T10:00:00-05:00",
                    }
                },
                datetime(2025, 11, 18, 9, tzinfo=EST),
                datetime(2025, 11, 18, 10, tzinfo=EST),
            ),
            (
                {"occurrenceDateTime": "2025-11-19T15:30:00.123456789Z"},
                datetime(2025, 11, 19, 15, 30, 0, 123456, tzinfo=UTC),
                None,
            ),
        ],
    )
    def test_r4_and_r5_spellings(
        self, changes: Json, start: datetime, end: datetime | None
    ) -> None:
        """effective[x] (R4), occurence[x] (R5 as published), occurrence[x] (errata)."""
        admin = admin_of(medadmin(effectivePeriod=None, **changes))
        assert (admin.start, admin.end) == (start, end)
        assert admin.start.utcoffset() == start.utcoffset()

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2025-11-18T09:00:00", datetime(2025, 11, 18, 9, tzinfo=NY)),
            ("2025-11-18T09:00", datetime(2025, 11, 18, 9, tzinfo=NY)),
            ("2025-11-18", datetime(2025, 11, 18, tzinfo=NY)),
            ("2025-07", datetime(2025, 7, 1, tzinfo=NY)),
            ("2025", datetime(2025, 1, 1, tzinfo=NY)),
        ],
    )
    def test_no_offset_is_site_time(self, text: str, expected: datetime) -> None:
        """D25: local, partial and date-only times are read in the site zone."""
        start = admin_of(medadmin(effectivePeriod=None, effectiveDateTime=text)).start
        assert start == expected
        assert start.utcoffset() == expected.utcoffset()

    def test_end_equal_to_start_documents_no_stop_time(self) -> None:
        """As HL7 RXA-4 = RXA-3: a zero-minute infusion would silently become a push (D4/D5)."""
        period = {"start": "2025-11-18T09:00:00-05:00", "end": "2025-11-18T09:00:00-05:00"}
        assert admin_of(medadmin(effectivePeriod=period)).end is None

    def test_time_is_required(self) -> None:
        location, message = error_of(medadmin(effectivePeriod=None))
        assert location == "MedicationAdministration"
        assert message.startswith("missing effective[x]")

    def test_period_needs_a_start(self) -> None:
        data = medadmin(effectivePeriod={"end": "2025-11-18T09:00:00-05:00"})
        assert error_of(data) == (
            "MedicationAdministration.effectivePeriod.start",
            "missing: no start time",
        )

    @pytest.mark.parametrize(
        "text",
        [
            "2025-13-01T10:00",
            "2025-02-30",
            "2025-11-18T25:00",
            "2025-11-18T09:00+99:00",
            "18/11/2025",
        ],
    )
    def test_invalid_datetime_names_the_path_and_the_value(self, text: str) -> None:
        data = bundle(medadmin(), medadmin(id="b", effectivePeriod={"start": text}))
        (bad,) = [m.error for m in read(data) if m.error]
        assert bad.location == "Bundle.entry[1].resource.effectivePeriod.start"
        assert bad.message == f"invalid dateTime '{text}'"

    def test_a_free_text_time_is_not_echoed(self) -> None:
        """A value that is not date-like may be anything, PHI included: never shown."""
        data = medadmin(effectivePeriod=None, effectiveDateTime="given by Jane Doe at ten")
        _, message = error_of(data)
        assert "Jane" not in message
        assert message == "invalid dateTime (value not shown: not date-like)"


class TestStatus:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("completed", AdminStatus.COMPLETED),
            ("stopped", AdminStatus.PARTIAL),
            ("not-done", AdminStatus.NOT_DONE),
            ("in-progress", AdminStatus.IN_PROGRESS),
            ("on-hold", AdminStatus.IN_PROGRESS),
            ("entered-in-error", AdminStatus.ENTERED_IN_ERROR),
            ("unknown", AdminStatus.IN_PROGRESS),
            (None, AdminStatus.IN_PROGRESS),
        ],
    )
    def test_status(self, status: str | None, expected: AdminStatus) -> None:
        assert admin_of(medadmin(status=status)).status is expected


class TestMedication:
    @pytest.mark.parametrize(
        ("system", "expected"),
        [
            ("http://hl7.org/fhir/sid/ndc", CodeSystem.NDC),
            ("http://www.nlm.nih.gov/research/umls/rxnorm", CodeSystem.RXNORM),
            ("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", CodeSystem.HCPCS),
            ("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", CodeSystem.HCPCS),
            ("urn:oid:2.16.840.1.113883.6.69", CodeSystem.NDC),
            (
                "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288",
                "urn:oid:1.2.840.114350.1.13.0.1.7.2.698288",
            ),
        ],
    )
    def test_coding_systems(self, system: str, expected: str) -> None:
        """Known systems are ours; any other system is kept as sent (a local code)."""
        data = medadmin(medicationCodeableConcept=concept(coding(system, "X1", "label")))
        assert admin_of(data).ingredients[0].codes == (Code(expected, "X1", "label"),)

    def test_codeable_concept_keeps_every_coding_and_the_text(self) -> None:
        med = concept(
            coding(NDC, "00006-3026-02"), coding(CodeSystem.RXNORM, "1547545"), text="pembro"
        )
        (ingredient,) = admin_of(medadmin(medicationCodeableConcept=med)).ingredients
        assert [c.code for c in ingredient.codes] == ["00006-3026-02", "1547545"]
        assert (ingredient.text, ingredient.amount) == ("pembro", Quantity(Decimal(200), "mg"))

    def test_contained_medication(self) -> None:
        contained = {"resourceType": "Medication", "id": "m", "code": concept(coding(NDC, "9"))}
        data = medadmin(
            medicationCodeableConcept=None,
            contained=[contained],
            medicationReference={"reference": "#m"},
        )
        assert admin_of(data).ingredients[0].codes == (Code(CodeSystem.NDC, "9"),)

    @pytest.mark.parametrize(
        "reference", ["Medication/m1", "urn:uuid:med", "https://x.org/fhir/Medication/m1"]
    )
    def test_bundled_medication(self, reference: str) -> None:
        med = {"resourceType": "Medication", "id": "m1", "code": concept(coding(NDC, "7"))}
        ma = medadmin(medicationCodeableConcept=None, medicationReference={"reference": reference})
        data = bundle(med, ma, urls=("urn:uuid:med",))
        assert admin_of(data).ingredients[0].codes == (Code(CodeSystem.NDC, "7"),)

    def test_r5_medication_concept(self) -> None:
        data = medadmin(
            medicationCodeableConcept=None, medication={"concept": concept(coding(NDC, "5"))}
        )
        assert admin_of(data).ingredients[0].codes == (Code(CodeSystem.NDC, "5"),)

    def test_r5_medication_reference(self) -> None:
        contained = {"resourceType": "Medication", "id": "m", "code": concept(coding(NDC, "6"))}
        data = medadmin(
            medicationCodeableConcept=None,
            contained=[contained],
            medication={"reference": {"reference": "#m"}},
        )
        assert admin_of(data).ingredients[0].codes == (Code(CodeSystem.NDC, "6"),)

    def test_unresolved_reference_is_an_uncoded_drug(self) -> None:
        """Not an error: the coder holds it as an unknown drug (D14) so it is not lost."""
        ref = {"reference": "Medication/elsewhere", "display": "pembrolizumab IVPB"}
        data = medadmin(medicationCodeableConcept=None, medicationReference=ref)
        (ingredient,) = admin_of(data).ingredients
        assert (ingredient.codes, ingredient.text) == ((), "pembrolizumab IVPB")

    @pytest.mark.parametrize(
        ("changes", "location", "message"),
        [
            ({}, "MedicationAdministration", "missing medication[x]: no medication named"),
            (
                {"medicationCodeableConcept": {"coding": []}},
                "MedicationAdministration.medicationCodeableConcept",
                "medication has neither a coding nor a text",
            ),
            (
                {"medicationReference": {}},
                "MedicationAdministration.medicationReference",
                "medication reference has neither a reference nor a display",
            ),
        ],
    )
    def test_medication_is_required(self, changes: Json, location: str, message: str) -> None:
        data = medadmin(medicationCodeableConcept=None) | changes
        assert error_of(data) == (location, message)


class TestIngredients:
    PEMBRO = concept(coding(NDC, "00006-3026-02"))
    SALINE = concept(coding(NDC, "00338-0049-02"))

    def mix(self, *ingredients: Json) -> Administration:
        med: Json = {
            "resourceType": "Medication",
            "id": "bag",
            "code": concept(coding("urn:local", "MIX")),
            "ingredient": list(ingredients),
        }
        data = medadmin(
            medicationCodeableConcept=None,
            contained=[med],
            medicationReference={"reference": "#bag"},
        )
        return admin_of(data)

    def test_r4_premixed_bag(self) -> None:
        """Several ingredients: one each, the strength numerator as amount, isActive false = base."""
        admin = self.mix(
            {
                "itemCodeableConcept": self.PEMBRO,
                "isActive": True,
                "strength": {"numerator": qty(200, "mg"), "denominator": qty(100, "mL")},
            },
            {
                "itemCodeableConcept": self.SALINE,
                "isActive": False,
                "strength": {"numerator": qty(100, "mL"), "denominator": qty(100, "mL")},
            },
        )
        drug, fluid = admin.ingredients
        assert (drug.codes[0].code, drug.amount, drug.role) == (
            "00006-3026-02",
            Quantity(Decimal(200), "mg"),
            IngredientRole.ACTIVE,
        )
        assert (fluid.amount, fluid.role) == (Quantity(Decimal(100), "mL"), IngredientRole.BASE)

    @pytest.mark.parametrize(
        "strength",
        [
            {"strengthRatio": {"numerator": qty(140, "mg"), "denominator": qty(250, "mL")}},
            {"strengthQuantity": qty(140, "mg")},
            {"strength": {"ratio": {"numerator": qty(140, "mg"), "denominator": qty(250, "mL")}}},
        ],
    )
    def test_r5_item_and_strength(self, strength: Json) -> None:
        admin = self.mix(
            {"item": {"concept": self.PEMBRO}, **strength},
            {"item": {"concept": self.SALINE}, "isActive": False},
        )
        assert admin.ingredients[0].amount == Quantity(Decimal(140), "mg")
        assert admin.ingredients[1].amount is None

    def test_single_ingredient_product_takes_the_dose(self) -> None:
        """One ingredient's strength is a concentration, not what was given: the dose wins."""
        admin = self.mix(
            {
                "itemCodeableConcept": self.PEMBRO,
                "strength": {"numerator": qty(25, "mg"), "denominator": qty(1, "mL")},
            }
        )
        (ingredient,) = admin.ingredients
        assert [c.code for c in ingredient.codes] == ["MIX", "00006-3026-02"]
        assert ingredient.amount == Quantity(Decimal(200), "mg")

    def test_ingredient_by_reference(self) -> None:
        substance = {
            "resourceType": "Substance",
            "id": "s",
            "code": {"concept": concept(coding(NDC, "42"))},
        }
        med = {
            "resourceType": "Medication",
            "id": "bag",
            "ingredient": [
                {"item": {"reference": {"reference": "#s"}}},
                {"itemReference": {"reference": "Substance/unknown", "display": "saline"}},
            ],
        }
        data = medadmin(
            medicationCodeableConcept=None,
            contained=[med, substance],
            medicationReference={"reference": "#bag"},
        )
        first, second = admin_of(data).ingredients
        assert first.codes == (Code(CodeSystem.NDC, "42"),)
        assert (second.codes, second.text) == ((), "saline")

    @pytest.mark.parametrize(
        ("dose", "expected"),
        [
            (qty(2.5, "mg"), Quantity(Decimal("2.5"), "mg")),
            (qty(0.1, "g"), Quantity(Decimal("0.1"), "g")),
            ({"value": 250, "unit": "mcg"}, Quantity(Decimal(250), "mcg")),
            ({"value": 1, "unit": "L"}, Quantity(Decimal(1), "L")),
            ({"value": 20, "code": "[iU]"}, Quantity(Decimal(20), "units")),
            ({"value": 100, "unit": "ml"}, Quantity(Decimal(100), "mL")),
            ({"unit": "mg"}, None),
        ],
    )
    def test_dose_units_are_normalized_and_exact(
        self, dose: Json, expected: Quantity | None
    ) -> None:
        data = medadmin(dosage={"dose": dose})
        assert admin_of(data).ingredients[0].amount == expected


class TestDosage:
    @pytest.mark.parametrize(
        ("route", "expected"),
        [
            (concept(coding("urn:epic", "11"), coding(SCT, "47625008")), Route.IV),
            (concept(coding(SCT, "263887005")), Route.SC),
            (concept(coding("urn:cerner", "318185"), text="IV Piggyback"), Route.IV),
            (concept(coding("urn:epic", "99")), Route.UNKNOWN),
        ],
    )
    def test_route_is_the_first_recognized_code(self, route: Json, expected: Route) -> None:
        assert admin_of(medadmin(dosage={"route": route})).route is expected

    @pytest.mark.parametrize(
        ("method", "expected"),
        [
            (concept(coding(SCT, "420620005")), Method.PUSH),
            (concept(coding("urn:x", "IVPB")), Method.INFUSION),
            (concept(text="pump"), Method.PUMP),
            (concept(text="over 2 min"), Method.UNSPECIFIED),
        ],
    )
    def test_method(self, method: Json, expected: Method) -> None:
        assert admin_of(medadmin(dosage={"method": method})).method is expected

    @pytest.mark.parametrize(
        ("site", "expected"),
        [
            (concept(coding(SCT, "91466001"), text="Right chest port"), "91466001"),
            (concept(text="Left forearm"), "Left forearm"),
        ],
    )
    def test_access_site(self, site: Json, expected: str) -> None:
        assert admin_of(medadmin(dosage={"site": site})).access_site == expected

    @pytest.mark.parametrize(
        ("dosage", "expected"),
        [
            ({"rateQuantity": qty(200, "mL/h")}, Decimal(200)),
            ({"rateQuantity": {"value": 272, "unit": "mL/hr"}}, Decimal(272)),
            ({"rateQuantity": qty(5, "mL/min")}, Decimal(300)),
            ({"rateQuantity": qty(0.5, "L/h")}, Decimal(500)),
            ({"rateQuantity": qty(20, "min")}, None),
            ({"rateQuantity": qty(2, "mg/h")}, None),
            ({"rateRatio": {"numerator": qty(50, "mL"), "denominator": qty(1, "h")}}, Decimal(50)),
            (
                {"rateRatio": {"numerator": qty(100, "mL"), "denominator": qty(60, "min")}},
                Decimal(100),
            ),
            (
                {"rateRatio": {"numerator": qty(250, "mL"), "denominator": qty(30, "min")}},
                Decimal(500),
            ),
            (
                {"rateRatio": {"numerator": qty(8, "ml"), "denominator": qty(1, "min")}},
                Decimal(480),
            ),
            ({"rateRatio": {"numerator": qty(8, "mL"), "denominator": qty(0, "min")}}, None),
            ({"rateRatio": {"numerator": qty(8, "mL")}}, None),
        ],
    )
    def test_rate_is_ml_per_hour(self, dosage: Json, expected: Decimal | None) -> None:
        """D5 needs a volume rate: any time denominator converts; anything else is dropped."""
        rate = admin_of(medadmin(dosage=dosage)).rate
        assert rate == (None if expected is None else Quantity(expected, "mL/h"))

    def test_extensions(self) -> None:
        """Waste (D17), infused volume (D5), expected duration (D13)."""
        extensions = [
            {"url": EXT + "discarded-amount", "valueQuantity": qty(120, "mg")},
            {"url": EXT + "infused-volume", "valueQuantity": qty(136, "mL")},
            {"url": EXT + "expected-duration", "valueDuration": {"value": 46, "code": "h"}},
            {"url": "http://other.org/ext", "valueString": "ignored"},
        ]
        admin = admin_of(medadmin(extension=extensions))
        assert admin.wasted == Quantity(Decimal(120), "mg")
        assert admin.volume == Quantity(Decimal(136), "mL")
        assert admin.expected_minutes == 46 * 60

    def test_no_extensions(self) -> None:
        admin = admin_of(medadmin())
        assert (admin.wasted, admin.volume, admin.expected_minutes, admin.rate) == (None,) * 4


class TestIndications:
    def test_reason_code_codings(self) -> None:
        reason = [concept(coding(ICD, "C50912"), coding(SCT, "254837009"))]
        assert admin_of(medadmin(reasonCode=reason)).indications == (
            Code(CodeSystem.ICD10CM, "C50.912"),
            Code(SCT, "254837009"),
        )

    def test_reason_medication_given_is_not_an_indication(self) -> None:
        """`b` given as ordered would make every carrier bag hydration (D12)."""
        given = "http://terminology.hl7.org/CodeSystem/reason-medication-given"
        assert admin_of(medadmin(reasonCode=[concept(coding(given, "b"))])).indications == ()

    def test_uncoded_reason_still_documents_an_indication(self) -> None:
        admin = admin_of(medadmin(reasonCode=[{"text": "dehydration"}]))
        assert admin.indications == (Code("text", "", "dehydration"),)

    def test_reason_reference_resolves_a_bundled_condition(self) -> None:
        condition = {"resourceType": "Condition", "id": "c", "code": concept(coding(ICD, "E860"))}
        ma = medadmin(reasonReference=[{"reference": "urn:uuid:c"}, {"reference": "Condition/x"}])
        admin = admin_of(bundle(condition, ma, urls=("urn:uuid:c",)))
        assert admin.indications == (
            Code(CodeSystem.ICD10CM, "E86.0"),
            Code("reference", "Condition/x"),
        )

    def test_r5_reason_codeable_reference(self) -> None:
        reasons = [
            {"concept": concept(coding(ICD, "C34.90"))},
            {"reference": {"reference": "Condition/y"}},
        ]
        assert admin_of(medadmin(reason=reasons)).indications == (
            Code(CodeSystem.ICD10CM, "C34.90"),
            Code("reference", "Condition/y"),
        )


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("changes", "location", "message"),
        [
            ({"dosage": []}, "MedicationAdministration.dosage", "expected an object, got array"),
            ({"status": 5}, "MedicationAdministration.status", "expected a string, got number"),
            (
                {"dosage": {"dose": {"value": "200"}}},
                "MedicationAdministration.dosage.dose.value",
                "expected a finite number, got string",
            ),
            (
                {"reasonCode": [1]},
                "MedicationAdministration.reasonCode[0]",
                "expected an object, got number",
            ),
            (
                {"contained": "x"},
                "MedicationAdministration.contained",
                "expected an array, got string",
            ),
        ],
    )
    def test_a_mistyped_element_is_an_error_at_its_path(
        self, changes: Json, location: str, message: str
    ) -> None:
        assert error_of(medadmin(**changes)) == (location, message)

    def test_a_reader_defect_is_contained(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unexpected exception fails one resource, names no value, and the rest are read."""

        def broken(*_: object) -> None:
            raise TypeError("Doe, Jane")

        monkeypatch.setattr(medadmin_reader, "read_indications", broken)
        messages = read(
            bundle(
                medadmin(),
                {
                    "resourceType": "Condition",
                    "id": "c",
                    "subject": {"reference": "Patient/p"},
                    "code": concept(coding(ICD, "C50.911")),
                },
            )
        )
        assert messages[0].error is not None
        assert messages[0].error.message == "unexpected TypeError while reading (adapter defect)"
        assert messages[1].events


# --- Encounter, Condition, Coverage -------------------------------------------------------


def encounter(**changes: Any) -> Json:
    resource: Json = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
        "subject": {"reference": "Patient/p1"},
    }
    return resource | changes


class TestEncounter:
    @pytest.mark.parametrize(
        ("klass", "expected"),
        [
            (coding("v3", "IMP"), PatientClass.INPATIENT),
            (coding("v3", "ACUTE"), PatientClass.INPATIENT),
            (coding("v3", "NONAC"), PatientClass.INPATIENT),
            (coding("v3", "AMB"), PatientClass.OUTPATIENT),
            (coding("v3", "OBSENC"), PatientClass.OUTPATIENT),
            (coding("v3", "EMER"), PatientClass.EMERGENCY),
            (coding("v3", "HH"), PatientClass.UNKNOWN),
            ([concept(coding("v3", "IMP"))], PatientClass.INPATIENT),
            ([concept(coding("v3", "VR")), concept(coding("v3", "AMB"))], PatientClass.OUTPATIENT),
        ],
    )
    def test_class_r4_coding_and_r5_list(
        self, klass: Json | list[Json], expected: PatientClass
    ) -> None:
        assert event_of(encounter(**{"class": klass}), Visit).patient_class is expected

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("finished", VisitStatus.FINISHED),
            ("completed", VisitStatus.FINISHED),
            ("in-progress", VisitStatus.IN_PROGRESS),
            ("arrived", VisitStatus.IN_PROGRESS),
            ("planned", VisitStatus.PLANNED),
            ("cancelled", VisitStatus.CANCELLED),
            ("entered-in-error", VisitStatus.CANCELLED),
            ("gibberish", VisitStatus.UNKNOWN),
        ],
    )
    def test_status(self, status: str, expected: VisitStatus) -> None:
        assert event_of(encounter(status=status), Visit).status is expected

    @pytest.mark.parametrize("key", ["period", "actualPeriod"])
    def test_period(self, key: str) -> None:
        period = {"start": "2025-11-18T08:45:00-05:00", "end": "2025-11-18"}
        visit = event_of(encounter(**{key: period}), Visit)
        assert (visit.start, visit.end) == (
            datetime(2025, 11, 18, 8, 45, tzinfo=EST),
            datetime(2025, 11, 18, tzinfo=NY),
        )

    def test_visit_keys(self) -> None:
        visit = event_of(encounter(), Visit)
        assert (visit.source_id, visit.visit_id, visit.patient_id) == (
            "fhir:Encounter/e1",
            "e1",
            "Patient/p1",
        )

    def test_r4_diagnoses_resolve_bundled_conditions_with_rank(self) -> None:
        conditions = [
            {"resourceType": "Condition", "id": "c1", "code": concept(coding(ICD, "D6481"))},
            {"resourceType": "Condition", "id": "c2", "code": concept(coding(ICD, "C34.12"))},
        ]
        diagnosis = [
            {"condition": {"reference": "Condition/c1"}, "rank": 2},
            {"condition": {"reference": "Condition/unbundled"}, "rank": 3},
            {"condition": {"reference": "Condition/c2"}, "rank": 1},
        ]
        data = bundle(encounter(diagnosis=diagnosis), *conditions)
        visit = read(data)[0].events[0]
        assert isinstance(visit, Visit)
        assert visit.diagnoses == (Diagnosis("D64.81", 2, 0), Diagnosis("C34.12", 1, 1))

    def test_r5_diagnosis_codeable_references(self) -> None:
        contained = {"resourceType": "Condition", "id": "c", "code": concept(coding(ICD, "E86.0"))}
        diagnosis = [
            {
                "condition": [
                    {"concept": concept(coding(ICD, "C50.911"))},
                    {"reference": {"reference": "#c"}},
                ]
            },
            {"condition": [{"concept": concept(coding(SCT, "254837009"))}]},
        ]
        visit = event_of(encounter(contained=[contained], diagnosis=diagnosis), Visit)
        assert visit.diagnoses == (Diagnosis("C50.911", None, 0), Diagnosis("E86.0", None, 1))

    @pytest.mark.parametrize(
        ("location", "expected"),
        [
            ([{"location": {"reference": "Location/inf4", "display": "Infusion 4"}}], "inf4"),
            ([{"location": {"display": "Infusion 4"}}], "Infusion 4"),
            ([{"location": {"reference": "#home"}}], "home"),
            ([{"status": "planned"}, {"location": {"reference": "Location/b"}}], "b"),
            ([], None),
        ],
    )
    def test_location(self, location: list[Json], expected: str | None) -> None:
        assert event_of(encounter(location=location), Visit).location == expected

    @pytest.mark.parametrize(
        ("provider", "expected"),
        [
            ({"reference": "Organization/o1", "display": "Lakeside HOPD"}, "Lakeside HOPD"),
            ({"reference": "Organization/o1"}, "o1"),
        ],
    )
    def test_facility(self, provider: Json, expected: str) -> None:
        assert event_of(encounter(serviceProvider=provider), Visit).facility == expected

    def test_subject_is_required(self) -> None:
        data = encounter()
        del data["subject"]
        assert error_of(data) == ("Encounter.subject", "missing: no patient reference")


def condition(**changes: Any) -> Json:
    resource: Json = {
        "resourceType": "Condition",
        "id": "c1",
        "code": concept(coding(SCT, "254637007"), coding(ICD, "C3490")),
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "recordedDate": "2025-11-18T08:52:00-05:00",
    }
    return resource | changes


class TestCondition:
    def test_first_icd10_coding_dotted(self) -> None:
        event = event_of(condition(), ConditionEvent)
        assert event == ConditionEvent(
            "fhir:Condition/c1",
            "Patient/p1",
            "C34.90",
            "e1",
            datetime(2025, 11, 18, 8, 52, tzinfo=EST),
        )

    def test_patient_level_condition(self) -> None:
        data = condition()
        del data["encounter"]
        assert event_of(data, ConditionEvent).visit_id is None

    def test_without_icd10_is_skipped(self) -> None:
        message = only(read(condition(code=concept(coding(SCT, "254637007")))))
        assert message.skip_reason == "Condition without an ICD-10-CM code"

    @pytest.mark.parametrize("status", ["entered-in-error", "refuted"])
    def test_void_conditions_are_skipped(self, status: str) -> None:
        data = condition(verificationStatus=concept(coding("ver-status", status)))
        assert only(read(data)).skip_reason == f"Condition {status}"


class TestCoverage:
    def test_r4(self) -> None:
        data = {
            "resourceType": "Coverage",
            "id": "cv",
            "status": "active",
            "beneficiary": {"reference": "Patient/p1"},
            "subscriberId": "1EG4TE5MK73",
            "payor": [{"reference": "Organization/cms", "display": "Medicare Part B"}],
        }
        event = event_of(data, CoverageEvent)
        assert event.patient_id == "Patient/p1"
        assert (event.coverage.source_id, event.coverage.payer) == (
            "fhir:Coverage/cv",
            "Medicare Part B",
        )
        assert (event.coverage.payer_id, event.coverage.member_id) == ("cms", "1EG4TE5MK73")

    def test_r5(self) -> None:
        data = {
            "resourceType": "Coverage",
            "id": "cv",
            "status": "active",
            "beneficiary": {"reference": "Patient/p1"},
            "subscriberId": [{"system": "urn:payer", "value": "W123"}],
            "insurer": {"identifier": {"value": "60054"}},
        }
        coverage = event_of(data, CoverageEvent).coverage
        assert (coverage.payer, coverage.payer_id, coverage.member_id) == ("60054", "60054", "W123")

    def test_cancelled_is_skipped(self) -> None:
        data = {
            "resourceType": "Coverage",
            "id": "cv",
            "status": "cancelled",
            "beneficiary": {"reference": "Patient/p1"},
        }
        assert only(read(data)).skip_reason == "Coverage cancelled"

    def test_beneficiary_is_required(self) -> None:
        data = {"resourceType": "Coverage", "id": "cv", "status": "active"}
        assert error_of(data)[0] == "Coverage.beneficiary"


# --- fixtures -----------------------------------------------------------------------------


class TestFixtures:
    def test_transaction_chemo_visit(self) -> None:
        """Epic-style transaction: urn:uuid references resolve to ids across the Bundle."""
        messages = load("bundle_transaction_chemo_visit.json")
        assert [m.kind for m in messages] == [
            "Patient",
            "Encounter",
            "Condition",
            "Condition",
            "Condition",
            "Coverage",
            *["MedicationAdministration"] * 6,
        ]
        assert all(m.error is None for m in messages)
        visit = messages[1].events[0]
        assert isinstance(visit, Visit)
        assert visit.patient_class is PatientClass.OUTPATIENT
        assert visit.diagnoses == (
            Diagnosis("C34.12", 1, 0),
            Diagnosis("D64.81", 2, 1),
            Diagnosis("E86.0", 3, 2),
        )
        administrations = admins(messages)
        assert {a.visit_id for a in administrations} == {visit.visit_id}
        assert {a.patient_id for a in administrations} == {visit.patient_id}

    def test_transaction_premixed_bag_and_hydration(self) -> None:
        by_id = {a.source_id: a for a in admins(load("bundle_transaction_chemo_visit.json"))}
        bag = by_id["fhir:MedicationAdministration/eMA0003pembro"]
        assert [(i.codes[0].code, i.amount, i.role) for i in bag.ingredients] == [
            ("00006-3026-02", Quantity(Decimal(200), "mg"), IngredientRole.ACTIVE),
            ("00338-0049-02", Quantity(Decimal(100), "mL"), IngredientRole.BASE),
        ]
        assert (bag.rate, bag.method) == (Quantity(Decimal(200), "mL/h"), Method.INFUSION)
        fluid = by_id["fhir:MedicationAdministration/eMA0006ns"]
        assert fluid.indications == (Code(CodeSystem.ICD10CM, "E86.0"),)
        assert (fluid.volume, fluid.end) == (Quantity(Decimal(500), "mL"), None)

    def test_transaction_post_entry_keys_on_its_identifier(self) -> None:
        sources = [a.source_id for a in admins(load("bundle_transaction_chemo_visit.json"))]
        assert "fhir:MedicationAdministration?identifier=" in sources[3]

    def test_contained_medication(self) -> None:
        (admin,) = admins(load("medadmin_contained_medication.json"))
        assert [c.code for c in admin.ingredients[0].codes][:2] == ["00003373413", "1597876"]
        assert admin.start == datetime(2025, 11, 19, 15, 30, tzinfo=UTC)
        assert (admin.route, admin.visit_id, admin.access_site) == (Route.IV, "97953480", "3325497")
        assert (admin.wasted, admin.expected_minutes) == (Quantity(Decimal(120), "mg"), 30)

    def test_r5_occurence(self) -> None:
        (admin,) = admins(load("r5_medadmin_occurence.json"))
        assert admin.start == datetime(2025, 11, 20, 10, 5, tzinfo=EST)
        assert [i.role for i in admin.ingredients] == [IngredientRole.ACTIVE, IngredientRole.BASE]
        assert admin.rate == Quantity(Decimal(250), "mL/h")
        assert admin.indications[0] == Code(
            CodeSystem.ICD10CM, "C50.912", admin.indications[0].display
        )
        assert admin.expected_minutes == 60

    def test_subscription_notification(self) -> None:
        messages = load("subscription_notification.json")
        assert [m.kind for m in messages] == ["MedicationAdministration", "Bundle.entry"]
        assert admins(messages)[0].status is AdminStatus.IN_PROGRESS

    def test_ndjson(self) -> None:
        messages = load("medadmins.ndjson")
        assert [m.kind for m in messages] == [*["MedicationAdministration"] * 3, "Observation"]
        assert admins(messages)[0].ingredients[0].codes[0].code == "00006-3061-00"

    def test_stopped(self) -> None:
        (admin,) = admins(load("medadmin_stopped.json"))
        assert (admin.status, admin.ingredients[0].amount) == (
            AdminStatus.PARTIAL,
            Quantity(Decimal(60), "mg"),
        )

    def test_entered_in_error_removes_the_earlier_version(self) -> None:
        """Same source id as the transaction's pembrolizumab: assembly drops it (D23)."""
        messages = load("bundle_transaction_chemo_visit.json") + load(
            "medadmin_entered_in_error.json"
        )
        assert admins(messages)[-1].status is AdminStatus.ENTERED_IN_ERROR
        (visit,) = assemble([e for m in messages for e in m.events], NY)
        assert "fhir:MedicationAdministration/eMA0003pembro" not in {
            a.source_id for a in visit.administrations
        }
        assert len(visit.administrations) == 5

    def test_bad_resources(self) -> None:
        """One good administration read, two errors with their JSON paths, no PHI."""
        messages = load("bad_resources.json")
        assert len(admins(messages)) == 1
        errors = [m.error for m in messages if m.error]
        assert [(e.location, e.message) for e in errors] == [
            (
                "bad_resources.json, Bundle.entry[1].resource.effectivePeriod.start",
                "invalid dateTime '2025-13-01T10:00'",
            ),
            (
                "bad_resources.json, Bundle.entry[2].resource",
                "missing medication[x]: no medication named",
            ),
        ]
        raw = (FIXTURES / "bad_resources.json").read_text()
        assert "Testpatient" in raw
        assert not any("Testpatient" in e.location + e.message for e in errors)


def sample_files() -> Iterator[Path]:
    yield from sorted(SAMPLES.glob("r*/*.json"))


class TestSpecificationSamples:
    @pytest.mark.parametrize(
        "path", list(sample_files()), ids=lambda p: f"{p.parent.name}/{p.name}"
    )
    def test_every_sample_reads(self, path: Path) -> None:
        """HL7's own examples: each message is exactly one of events, skip or error."""
        messages = read_fhir(path.read_bytes(), MAPPINGS, NY, path.name)
        assert messages
        for message in messages:
            outcomes = [bool(message.events), bool(message.skip_reason), message.error is not None]
            assert outcomes.count(True) == 1, message
        if path.name.startswith("MedicationAdministration"):
            assert admins(messages)

    def test_samples_are_all_there(self) -> None:
        assert len(list(sample_files())) == 54


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    """The site tables in mappings/, through adapter.mappings_loader."""
    loader = pytest.importorskip("adapter.mappings_loader")
    mappings: Mappings = loader.load_mappings(ROOT / "mappings")
    return mappings


class TestWithShippedMappings:
    """The same fixtures through the shipped site tables."""

    def test_cerner_route_and_method(self, shipped: Mappings) -> None:
        data = (FIXTURES / "medadmin_contained_medication.json").read_bytes()
        (admin,) = admins(read_fhir(data, shipped, NY))
        assert (admin.route, admin.method) == (Route.IV, Method.INFUSION)

    def test_epic_push(self, shipped: Mappings) -> None:
        data = (FIXTURES / "bundle_transaction_chemo_visit.json").read_bytes()
        first = admins(read_fhir(data, shipped, NY))[0]
        assert (first.route, first.method) == (Route.IV, Method.PUSH)


# --- never raises -------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=24,
)
FHIR_KEYS = st.sampled_from(
    [
        "resourceType", "id", "meta", "status", "subject", "context", "encounter",
        "effectiveDateTime", "effectivePeriod", "occurencePeriod", "medicationCodeableConcept",
        "medicationReference", "medication", "contained", "dosage", "reasonCode",
        "reasonReference", "reason", "extension", "class", "diagnosis", "location", "entry",
        "resource", "fullUrl", "code", "coding", "ingredient", "payor", "subscriberId",
    ]
)  # fmt: skip


def no_defect(messages: tuple[InboundMessage, ...]) -> None:
    for message in messages:
        assert message.error is None or "adapter defect" not in message.error.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_arbitrary_json_never_raises(value: object) -> None:
    no_defect(read_fhir(json.dumps(value), MAPPINGS, NY, "fuzz.json"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["MedicationAdministration", "Encounter", "Condition", "Coverage", "Bundle"]),
    st.dictionaries(FHIR_KEYS, JSON_VALUES, max_size=6),
)
def test_arbitrary_resources_never_raise(rtype: str, body: dict[str, object]) -> None:
    no_defect(read_fhir(json.dumps(body | {"resourceType": rtype}), MAPPINGS, NY))


def _paths(node: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


TRANSACTION = json.loads((FIXTURES / "bundle_transaction_chemo_visit.json").read_text())
TRANSACTION_PATHS = [p for p in _paths(TRANSACTION) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TRANSACTION_PATHS), JSON_VALUES)
def test_any_element_of_a_real_bundle_replaced_never_raises(
    path: tuple[object, ...], value: object
) -> None:
    """Every element of the Epic-style fixture, swapped for any JSON value."""
    data = copy.deepcopy(TRANSACTION)
    node: Any = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    no_defect(read_fhir(json.dumps(data), MAPPINGS, NY))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    no_defect(read_fhir(data, MAPPINGS, NY))
