"""The internal event model: what every HL7 v2 and FHIR input is mapped to.

Readers turn wire formats into these immutable values; the rest of the core
never sees a segment or a JSON dict. Times are always timezone-aware (the
reader applies the site time zone, D25), amounts are Decimals (billing units
are money-adjacent: no binary floats).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class CodeSystem(StrEnum):
    """Identifier systems a drug, diagnosis or route code can come from."""

    NDC = "http://hl7.org/fhir/sid/ndc"
    RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
    HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    CPT = "http://www.ama-assn.org/go/cpt"
    ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
    SNOMED = "http://snomed.info/sct"
    LOCAL = "urn:charge-adapter:local"
    TEXT = "text"  # a value given as text only (CWE.1 empty, CodeableConcept.text): no code


@dataclass(frozen=True, slots=True)
class Code:
    """One coded value; `system` is a CodeSystem value or the raw source system."""

    system: str
    code: str
    display: str = ""


@dataclass(frozen=True, slots=True)
class Quantity:
    """An amount with a normalized unit (`mg`, `mcg`, `g`, `mL`, `units`, `mL/h`...)."""

    value: Decimal
    unit: str


class Route(StrEnum):
    """Administration route, reduced to what decides the CPT family."""

    IV = "IV"
    SC = "SC"
    IM = "IM"
    INTRATHECAL = "IT"
    ORAL = "PO"
    OTHER = "other"
    UNKNOWN = "unknown"


class Method(StrEnum):
    """How an IV drug went in: a documented push stays a push (D4); a pump is 96416 (D13)."""

    PUSH = "push"
    INFUSION = "infusion"
    PUMP = "pump"
    UNSPECIFIED = "unspecified"


class AdminStatus(StrEnum):
    """Completion status, unified from HL7 RXA-20 and FHIR status (D23)."""

    COMPLETED = "completed"
    PARTIAL = "partial"  # RXA-20 PA, FHIR stopped: bill what was given, hold (D8)
    NOT_DONE = "not-done"  # RXA-20 NA/RE, FHIR not-done: bill nothing
    IN_PROGRESS = "in-progress"
    ENTERED_IN_ERROR = "entered-in-error"


class Action(StrEnum):
    """Correction semantics: HL7 RXA-21 and FHIR entered-in-error (D23)."""

    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"


class IngredientRole(StrEnum):
    """A bag may hold a drug plus the fluid that carries it (RXC base/additive)."""

    ACTIVE = "active"
    BASE = "base"


@dataclass(frozen=True, slots=True)
class Ingredient:
    """One substance in an administration: codes to match the catalog, and the amount given."""

    codes: tuple[Code, ...]
    amount: Quantity | None
    role: IngredientRole = IngredientRole.ACTIVE
    text: str = ""


class PatientClass(StrEnum):
    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    EMERGENCY = "emergency"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Provider:
    """A clinician as the feed named them (an HL7 XCN: RXA-10, ORC-12, PV1-7): kept only
    to be passed on as received (DFT FT1-20/FT1-21, PV1-7), never looked up or guessed.

    `authority` (XCN-9) and `id_type` (XCN-13) say what the id is: an NPI when either
    says NPI; otherwise a local id of the sender.
    """

    id: str
    family: str = ""
    given: str = ""
    middle: str = ""
    suffix: str = ""
    prefix: str = ""
    degree: str = ""
    authority: str = ""
    id_type: str = ""

    @property
    def is_npi(self) -> bool:
        return "NPI" in (self.authority.strip().upper(), self.id_type.strip().upper())


@dataclass(frozen=True, slots=True)
class Administration:
    """One documented administration (an RXA, or a FHIR MedicationAdministration).

    Several ingredients mean one premixed container: one administration (R8).
    """

    source_id: str  # stable across re-sends: used for corrections and deterministic ids
    patient_id: str
    start: datetime
    ingredients: tuple[Ingredient, ...]
    # what a correction (RXA-21 U/D) that changed a distinguishing field (start, code)
    # still shares with its original: HL7 order + RXA-1/RXA-2. "" = the source id
    correction_key: str = ""
    end: datetime | None = None
    # why `end` is None, in the feed's own terms ("RXA-4 equals RXA-3 (no real stop
    # time)", "no effectivePeriod.end"): hold texts name exactly what is missing
    stop_note: str = ""
    visit_id: str | None = None
    route: Route = Route.UNKNOWN
    # the route as the feed wrote it (code, else text): names the route in a hold when
    # the route table does not know it, so "unknown" is never said without what was sent
    route_text: str = ""
    method: Method = Method.UNSPECIFIED
    access_site: str | None = None
    rate: Quantity | None = None  # e.g. mL/h, for D5's computed stop time
    volume: Quantity | None = None  # infused volume
    indications: tuple[Code, ...] = ()
    status: AdminStatus = AdminStatus.COMPLETED
    action: Action = Action.ADD
    wasted: Quantity | None = None  # documented discard (D17: wins over computed)
    location: str | None = None
    expected_minutes: int | None = None  # ordered duration: only ever used for the pump test (D13)
    # the class the message itself states (PV1-2 of the RAS): decides D2 when no visit
    # number ties the administration to a visit whose class is known
    patient_class: PatientClass = PatientClass.UNKNOWN
    # passed on to the billing system (DFT FT1-20, FT1-21, FT1-23), never coded on
    performer: Provider | None = None  # RXA-10 administering provider
    orderer: Provider | None = None  # ORC-12 ordering provider
    filler_order: str = ""  # ORC-3 filler order number (EI-1)


class VisitStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in-progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A source diagnosis and its rank (DG1-15 priority, Encounter.diagnosis.rank)."""

    code: str  # ICD-10-CM, normalized with the dot (C50.911)
    rank: int | None = None
    order: int = 0  # position in the source, the tie-break after rank


@dataclass(frozen=True, slots=True)
class Coverage:
    """Payer reference for Claim.insurance; no member ids travel beyond the Claim."""

    source_id: str
    payer: str
    payer_id: str = ""
    member_id: str = ""


@dataclass(frozen=True, slots=True)
class Visit:
    """Visit context from ADT (PID/PV1/DG1/IN1) or a FHIR Encounter."""

    source_id: str
    patient_id: str
    visit_id: str
    patient_class: PatientClass = PatientClass.UNKNOWN
    status: VisitStatus = VisitStatus.UNKNOWN
    location: str | None = None
    facility: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    diagnoses: tuple[Diagnosis, ...] = ()
    coverages: tuple[Coverage, ...] = ()
    attending: Provider | None = None  # PV1-7, passed on (DFT PV1-7)


@dataclass(frozen=True, slots=True)
class ConditionEvent:
    """A FHIR Condition: a diagnosis tied to an encounter, or to the patient only."""

    source_id: str
    patient_id: str
    code: str
    visit_id: str | None = None
    recorded: datetime | None = None


@dataclass(frozen=True, slots=True)
class CoverageEvent:
    """A standalone FHIR Coverage for a patient."""

    patient_id: str
    coverage: Coverage


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """RDE/RDS orders and dispenses: read and kept for context, never charged (D26)."""

    source_id: str
    patient_id: str
    kind: str  # "order" | "dispense"
    visit_id: str | None = None


Event = Administration | Visit | ConditionEvent | CoverageEvent | OrderEvent


@dataclass(frozen=True, slots=True)
class SegmentLocation:
    """Where a fault is: segment name, its occurrence (1-based), the field (0: the segment).

    Typed so the ACK's ERR location and the dead letter's place are carried from where the
    fault is found (the ER7 tokenizer, the HL7 reader), never read back out of the error
    text. Here, not in `adapter.hl7`, because `InputError` carries it and the core imports
    nothing outside the core. `str()` is the text form the
    error messages have always used (`segment RXA #2 field RXA-3`).
    Sequence and field are 1-based, 0 = not given.
    """

    segment: str
    sequence: int
    field: int = 0
    repetition: int = 0  # ERR-2.4..6 (an ACK's deeper place); 0 = not given
    component: int = 0
    subcomponent: int = 0

    def __str__(self) -> str:
        where = f"segment {self.segment} #{self.sequence}"
        return f"{where} field {self.segment}-{self.field}" if self.field else where


@dataclass(frozen=True, slots=True)
class InputError:
    """Why a message or resource could not be read, and where: file, line, segment or path.

    `location` is what an interface analyst needs to find the fault, e.g.
    `message 3 (MSH-10 MSG0003), segment RXA #2, field RXA-3` or
    `Bundle.entry[4].resource.effectivePeriod.start`. Never PHI. `at` is the same place
    typed, when it is a named HL7 segment (the ACK's ERR-2 and the dead letter use it);
    `path` the JSON path alone, for a FHIR fault (the OperationOutcome's `expression`).
    """

    location: str
    message: str
    at: SegmentLocation | None = None
    path: str = ""  # FHIR: the JSON path (FHIRPath-like) of the fault, "" when there is none


class Unsupported(StrEnum):
    """What a reader does not read, so a message was skipped (and, for HL7, refused AR)."""

    MESSAGE_TYPE = "message type"  # MSH-9
    VERSION = "HL7 version"  # MSH-12
    RESOURCE_TYPE = "resource type"  # a FHIR resourceType nothing here reads


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One HL7 v2 message or one FHIR resource, as read.

    `dedup_key` makes re-sends harmless and nothing else: the same key means the
    same message, `hl7:<sender>:<MSH-10>:<content digest>` (a sender reusing a
    control id for other content gets another key) or
    `fhir:<Type>/<id>[/_history/<version>|#<content digest>]`. It is opaque: what
    the feed called the message is `control_id`, MSH-10 (empty when the header
    could not be trusted: it may then be patient data) or the FHIR `Type/id`.
    Exactly one of `events`, `skip_reason` and `error` says what became of it
    (events may be empty for a read-and-kept message such as an order); `unsupported`
    says, typed, when the skip is for something not read here at all.
    """

    dedup_key: str
    kind: str  # "RAS^O17", "ADT^A08", "MedicationAdministration", ...
    events: tuple[Event, ...] = ()
    skip_reason: str = ""
    error: InputError | None = None
    control_id: str = ""
    control_key: str = ""  # HL7: `hl7:<sender>:<MSH-10>`, the key before content digests
    unsupported: Unsupported | None = None
    resource_id: str = ""  # FHIR: the resource's own `id` ("" when it has none)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message or resource that was read but carries nothing to charge, and why."""

    source_id: str
    reason: str
