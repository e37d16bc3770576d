"""Inbound request bodies as the HTTP contract takes them, and kept when it refuses them.

Every bad input is kept for reprocessing, also one the HTTP contract refuses before the
ingestor reads it (`refusals_kept`): `POST /hl7` and the FHIR routes alike. `parse_json` is the
one reading of a JSON body (FHIR resources, Bundles, the review release form), so every route
refuses a body that is not one JSON document the same way, with the same dead-letter reason.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import structlog

from adapter.core.refusals import Refusal, RefusalReason
from adapter.readers.fhir import load_json
from adapter.web.outcome import ApiError
from adapter.web.state import AppState

log = structlog.get_logger()

ORIGIN = "http"  # prefixes the readers' error locations and dead-letter details
NOT_JSON = Refusal(RefusalReason.NOT_JSON)
WRONG_SHAPE = Refusal(RefusalReason.WRONG_SHAPE)


def wrong_shape(element: str) -> Refusal:
    """The body's shape is wrong at one of our own element names (never input text)."""
    return Refusal(RefusalReason.WRONG_SHAPE, element)


@contextlib.asynccontextmanager
async def refusals_kept(state: AppState, raw: bytes, fmt: str = "fhir") -> AsyncIterator[None]:
    """Keep the body as a dead letter when the checks run inside refuse it (`ApiError`).

    Every bad input is kept for reprocessing (`charge-adapter replay`), also when the HTTP
    contract refuses it before the ingestor reads it: a wrong Content-Type (415), a body
    that is not one JSON document (400; NDJSON included, which the batch reader would
    accept: answering 400 must never leave resources accepted), or JSON of the wrong shape
    for the URL. A body over the size limit (413) is not kept: aiohttp stops reading it
    at the limit, and a truncated prefix could not be reprocessed.
    """
    try:
        yield
    except ApiError as error:
        await _keep_refused(state, raw, fmt, error)
        raise


async def _keep_refused(state: AppState, raw: bytes, fmt: str, error: ApiError) -> None:
    """One dead letter per distinct refused body (keyed by its hash, as the ingestor's); a
    blank body is not kept, there is nothing in it to reprocess."""
    if not raw.strip():
        return
    refusal = error.refusal
    if refusal is None:  # not a refusal of the body (a limit): nothing to reprocess
        return
    reasons = "; ".join(issue.diagnostics for issue in error.issues)
    kind = "Bundle" if fmt == "fhir" else "unknown"  # as the ingestor names its dead letters
    result = await state.ingestor.keep_refused(
        raw, fmt, kind, f"{ORIGIN}: refused {error.status}: {reasons}", refusal
    )
    state.metrics.message(fmt, "payload", "rejected")
    log.info(
        "http.refused_kept",
        format=fmt,
        status=error.status,
        message_id=result.message_id,
        duplicate=result.duplicate,
        reason=refusal.reason.value,
        location=refusal.location,
    )


def parse_json(raw: bytes) -> object:
    """One JSON document, or a 400 naming line and column (never echoing content: it can be
    PHI). Several documents (NDJSON) are a 400 too: a FHIR REST body is one resource."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"body is not UTF-8 text (byte {exc.start})"
        raise ApiError.of(400, "structure", problem, refusal=NOT_JSON) from None
    if not text.strip():
        problem = "empty body: a FHIR JSON resource is required"
        raise ApiError.of(400, "structure", problem, refusal=NOT_JSON)
    try:
        return load_json(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        problem = f"invalid JSON at {where}: {exc.msg}"
        raise ApiError.of(400, "structure", problem, refusal=NOT_JSON) from None
    except (ValueError, RecursionError):
        problem = "invalid JSON: NaN/Infinity, a number out of range or nesting too deep"
        raise ApiError.of(400, "structure", problem, refusal=NOT_JSON) from None
