"""A FHIR input that cannot be read, as an `InboundMessage` carrying its `InputError`.

Where the fault is travels as text (`where`: origin and line, then the JSON path) and, when a
JSON path exists, typed too (`InputError.path`); never the value, which may be PHI.
"""

from __future__ import annotations

import hashlib

from adapter.core.model import InboundMessage, InputError

UNKNOWN_KIND = "unknown"


def failed(
    key: str,
    where: str,
    path: str,
    message: str,
    kind: str = UNKNOWN_KIND,
    control_id: str = "",
) -> InboundMessage:
    """An error at a JSON path (`path`: FHIRPath-like, "" for the document itself); the
    location is `where` (origin, line) followed by it, and the path travels typed too."""
    error = InputError(f"{where}{path or 'document'}", message, path=path)
    return InboundMessage(key, kind, error=error, control_id=control_id)


def unplaced(key: str, location: str, message: str) -> InboundMessage:
    """An error before any JSON path exists (bytes, a line that is no JSON)."""
    return InboundMessage(key, UNKNOWN_KIND, error=InputError(location, message))


def unparseable(text: str, location: str, message: str) -> InboundMessage:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return unplaced(f"fhir:sha256:{digest}", location, message)
