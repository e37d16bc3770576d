"""FHIR R4 / R5 JSON to inbound messages, as `docs/feed-conventions.md` describes.

Where is what: `read.py` (`read_fhir`: each resource to its type's reader, dedup keys and
failures per resource), `documents.py` (bytes, JSON or NDJSON, `load_json`), `bundles.py`
(Bundles opened into entries, the index references resolve through), `keys.py` (source,
id, version, dedup key), `failures.py` (an input error as a message); the resource readers
`medadmin.py` (MedicationAdministration), `indications.py` (its reasons, D12), `visit.py`
(Encounter, Condition, Coverage) over `reading.py` (one resource being read: references,
patient and visit keys); the datatypes `elements.py` (typed JSON access, FHIR primitives,
`ReadError`), `datetimes.py`, `codes.py`, `quantities.py`.
"""

from adapter.readers.fhir.documents import load_json
from adapter.readers.fhir.read import read_fhir

__all__ = ["load_json", "read_fhir"]
