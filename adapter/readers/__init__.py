"""Wire formats (HL7 v2 ER7, FHIR JSON) to the event model."""
