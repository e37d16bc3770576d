"""Every URL and URN the output names: code systems, our extensions, our identifier systems.

The reports (store/reports_common.py) and the review (core/review_decision.py) read the
resources back by these names, so they live here, apart from the builders.
"""

from __future__ import annotations

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
SUPPORTING_INFO_TYPE = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBSupportingInfoType"
TYPE_OF_BILL = "https://www.nubc.org/CodeSystem/TypeOfBill"
REVENUE_CODES = "https://www.nubc.org/CodeSystem/RevenueCodes"
PLACE_OF_SERVICE = (
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
)
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"

_SD = "https://charge-adapter.org/fhir/StructureDefinition/"
EXT_CODING_TRACE = _SD + "coding-trace"
EXT_SOURCE_ADMINISTRATION = _SD + "source-administration"
EXT_HOLD_REASON = _SD + "hold-reason"
# a drug code an unknown-drug hold could not match: the "top unknown drugs" report counts them
EXT_UNMATCHED_DRUG = _SD + "unmatched-drug-code"
EXT_MODIFIER = _SD + "charge-modifier"  # R4 ChargeItem has no modifier element

_CS = "https://charge-adapter.org/fhir/CodeSystem/"
TASK_CODE = _CS + "task-code"
TASK_INPUT = _CS + "task-input"
HOLD_REASON = _CS + "hold-reason"

ID_PATIENT = "urn:charge-adapter:patient"
ID_ENCOUNTER = "urn:charge-adapter:encounter"
ID_COVERAGE = "urn:charge-adapter:coverage"
ID_CHARGE_LINE = "urn:charge-adapter:charge-line"
ID_ADMINISTRATION = "urn:charge-adapter:administration"
