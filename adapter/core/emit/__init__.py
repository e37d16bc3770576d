"""FHIR R4 (4.0.1) output, emitted: a coded encounter as a Claim, its ChargeItems and a review Task.

Pure: no I/O and no clock. Every timestamp comes from the encounter itself, so the same
input always yields byte-identical JSON (D24).

Resources are plain JSON-ready dicts, not fhir.resources models, by measurement (Claim +
6 ChargeItems, one core): dicts 0.17 ms; models with validation + model_dump 9-15 ms;
model_construct + model_dump 11-13 ms (the dump alone is ~6 ms). The budget is ~1 ms per
encounter, so the models cannot be on the hot path; instead the tests pass every shape
through fhir.resources R4B *and* an independent validator (tests/test_conformance.py).

Key order follows the element order of the R4 specification, so the JSON reads like the
spec's own examples.

Where is what: `encounter.py` (`encounter_resources`, the entry), `claim.py` (with `OutputOptions`),
`charge_item.py`, `task.py` (one resource each), `facts.py` (what the three share), `lines.py`
(a line's codes, trace, NDC, drug quantity), `datatypes.py` (Coding, CodeableConcept, Period,
dateTime), `urls.py` (code systems, extensions, identifier systems), `bundle.py` (`bundle`,
`dumps`).
"""
