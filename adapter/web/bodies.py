"""Inbound request bodies: read under limits, checked by the HTTP contract, kept when refused.

- `read_body` reads a whole body under the app's `BodyLimits`: a size, a deadline from the
  first read, and one budget of bytes shared by every request (`body_budget_middleware` gives
  a request's share back when its response is ready).
- `require_content_type` and `parse_json` are the contract's checks, the same for every route
  (FHIR resources, Bundles, `POST /hl7`, the review release): one JSON document, or a 4xx that
  names why without echoing the content (it can be PHI).
- `refusals_kept`: every bad input is kept for reprocessing, also one the contract refuses
  before the ingestor reads it; the refusal's reason and place travel typed (`ApiError.refusal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

from adapter.core.refusals import Refusal, RefusalReason
from adapter.readers.fhir import load_json
from adapter.web.outcome import ApiError, Issue
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


def require_content_type(request: web.Request, allowed: frozenset[str], what: str) -> None:
    """415 unless the request says it is one of `allowed` (parameters such as charset ignored)."""
    if request.content_type not in allowed:
        expected = ", ".join(sorted(allowed))
        text = f"Content-Type {request.content_type} not accepted for {what}; use one of: "
        refusal = Refusal(RefusalReason.WRONG_CONTENT_TYPE)
        raise ApiError.of(415, "not-supported", text + expected, refusal=refusal)


class BodyBudget:
    """Bytes of request bodies the process holds, against one limit (all requests together).

    A request reserves its Content-Length (chunked: the maximum body size) before its body
    is read, and gives it back when its response is ready (`body_budget_middleware`): 100
    slow 10 MiB uploads must not hold a gigabyte at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, amount: int) -> bool:
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give(self, amount: int) -> None:
        self.used -= amount


class _HitCounter(Protocol):
    def labels(self, *values: str) -> Any: ...


@dataclass(slots=True)
class BodyLimits:
    """How request bodies are read: size, deadline (from the first read), shared budget.

    `hits` (the metrics counter) and `on_release` (the app's `allocator.Trimmer`) are
    attached at start-up, when those are created.
    """

    max_bytes: int
    timeout: float
    budget: BodyBudget
    hits: _HitCounter | None = None  # adapter_limits_hit_total{listener, limit}
    on_release: Callable[[int], None] | None = None  # told the bytes of each body let go

    def hit(self, limit: str) -> None:
        if self.hits is not None:
            self.hits.labels("http", limit).inc()


BODY_LIMITS = web.AppKey("body_limits", BodyLimits)
_RESERVED = web.RequestKey("body_reserved", int)


async def read_body(request: web.Request) -> bytes:
    """The whole body, under the app's `BodyLimits` when it has them (the service does).

    Called by handlers, so after the auth middleware: an unauthenticated client never gets a
    body read. Over the size: 413. The budget spent: 503 with Retry-After, the body unread.
    Not complete within the deadline: 408 and the connection closed (a body dribbled at a
    byte a second would otherwise hold its connection and its buffer for ever). The chunks
    are joined once at the end: a growing buffer per request is what kept memory after
    slow uploads had gone.
    """
    limits = request.app.get(BODY_LIMITS)
    if limits is None:
        return await request.read()
    declared = request.content_length
    if declared is not None and declared > limits.max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=limits.max_bytes, actual_size=declared)
    reserve = declared if declared is not None else limits.max_bytes
    if not limits.budget.take(reserve):
        limits.hit("body_budget")
        text = "server busy: too many request bodies being read; retry later"
        raise ApiError(503, (Issue("transient", text),), {"Retry-After": "1"})
    request[_RESERVED] = request.get(_RESERVED, 0) + reserve
    try:
        async with asyncio.timeout(limits.timeout):
            return await _read_chunks(request, limits.max_bytes)
    except TimeoutError:
        limits.hit("body_timeout")
        text = f"request body not complete within {limits.timeout:g} s"
        raise ApiError(408, (Issue("timeout", text),), {"Connection": "close"}) from None


async def _read_chunks(request: web.Request, max_bytes: int) -> bytes:
    """The body's chunks joined; on any failure the chunks are dropped at once: the
    exception's traceback keeps this frame, and the frame its locals, until a garbage
    collection that may be minutes away (the reader holds the exception too: a cycle)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
            chunks.append(chunk)
    except BaseException:
        chunks.clear()
        raise
    return b"".join(chunks)


@web.middleware
async def body_budget_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Give back what `read_body` reserved once the handler is done with the body."""
    try:
        return await handler(request)
    finally:
        reserved = request.get(_RESERVED, 0)
        limits = request.app.get(BODY_LIMITS)
        if reserved and limits is not None:
            limits.budget.give(reserved)
            if limits.on_release is not None:
                limits.on_release(reserved)
