"""Oncology infusion charge capture: HL7 v2 / FHIR administrations in, FHIR R4 Claims out."""

__version__ = "0.1.0"
