"""OperationOutcome bodies, FHIR JSON responses, and the middleware behind every HTTP error.

A FHIR client reads an OperationOutcome whatever went wrong: a handler raises `ApiError`
with the issue code and (when known) the JSON path of the problem, and the middleware
turns it, aiohttp's own HTTP errors (unknown route 404, 405, 413 body too large) and any
unexpected exception into one. Unexpected exceptions answer 500 without a traceback and
are logged by type and route template only: URLs and bodies can carry PHI.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from adapter.core.model import InputError
from adapter.core.refusals import Refusal
from adapter.errors import AdapterError, Disposition
from adapter.hl7.ack import AckCode

log = structlog.get_logger()

JSON = dict[str, Any]
FHIR_JSON = "application/fhir+json"
FHIR_JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})

# OperationOutcome.issue.code for a status aiohttp raised itself (router, body limit).
_CODE_FOR_STATUS = {
    400: "invalid",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    503: "transient",
}
_MESSAGE_FOR_STATUS = {
    404: "no such endpoint; see GET /fhir/metadata for what this server offers",
    405: "method not allowed on this endpoint",
    413: "request body too large",
}


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue; `expression` is the FHIRPath of the failing element."""

    code: str
    diagnostics: str
    expression: str = ""
    severity: str = "error"

    def to_json(self) -> JSON:
        issue: JSON = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


@dataclass(eq=False)
class ApiError(AdapterError):
    """Raised by a handler: the middleware answers `status` with these issues.

    `refusal`, when set, says the body is refused by the HTTP contract (content type, not one
    JSON document, the wrong shape for the URL) and is kept as a dead letter with that code
    and place (`bodies.refusals_kept`): set where the check fails, never inferred later.
    """

    status: int
    issues: Sequence[Issue]
    headers: Mapping[str, str] = field(default_factory=dict)
    refusal: Refusal | None = None

    @staticmethod
    def of(
        status: int,
        code: str,
        diagnostics: str,
        expression: str = "",
        *,
        refusal: Refusal | None = None,
    ) -> ApiError:
        return ApiError(status, (Issue(code, diagnostics, expression),), refusal=refusal)

    @property
    def message(self) -> str:
        """The first issue's text."""
        return self.issues[0].diagnostics if self.issues else ""

    @property
    def disposition(self) -> Disposition:
        return Disposition(AckCode.AE, self.status, dead_letter=self.refusal is not None)

    def __str__(self) -> str:
        return f"{self.status} {self.issues[0].code if self.issues else ''}"


def api_error(error: AdapterError) -> ApiError:
    """Any error of the tree as the HTTP edge answers it: its status, its text."""
    if isinstance(error, ApiError):
        return error
    status = error.disposition.http_status
    code = _CODE_FOR_STATUS.get(status, "exception" if status >= 500 else "invalid")
    return ApiError(status, (Issue(code, error.message),))


def input_issue(error: InputError) -> Issue:
    """A reader's error: its JSON path as `expression` (typed: `InputError.path`), else its
    location. One translation for the single-resource routes and the Bundle entries alike."""
    if error.path:
        return Issue("invalid", f"{error.path}: {error.message}", error.path)
    return Issue("structure", f"{error.location}: {error.message}")


def operation_outcome(issues: Sequence[Issue]) -> JSON:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(diagnostics: str) -> JSON:
    """An informational OperationOutcome (the body of a successful create/update)."""
    return operation_outcome((Issue("informational", diagnostics, severity="information"),))


def dumps(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def fhir_response(
    document: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A FHIR JSON answer (`application/fhir+json; charset=utf-8`)."""
    return fhir_bytes(dumps(document), status, headers)


def fhir_bytes(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Already-serialized FHIR JSON (a stored resource version is served as stored)."""
    response = web.Response(body=body, status=status, headers=headers)
    response.content_type = FHIR_JSON
    response.charset = "utf-8"
    return response


def error_response(error: ApiError) -> web.Response:
    response = fhir_response(operation_outcome(error.issues), error.status, error.headers)
    if error.headers.get("Connection") == "close":
        response.force_close()  # the rest of an unread body is not waited for
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error status leaves as an OperationOutcome, never as text or a traceback."""
    try:
        return await handler(request)
    except AdapterError as error:
        return error_response(api_error(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(exc))
    except Exception as exc:
        log.error("http.unhandled", error=type(exc).__name__, route=route_name(request))
        issue = Issue("exception", "internal error; the request may not have been processed")
        return error_response(ApiError(500, (issue,)))


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    """aiohttp's own errors: keep the status (and Allow for a 405), explain in FHIR terms."""
    status = exc.status
    code = _CODE_FOR_STATUS.get(status, "exception" if status >= 500 else "invalid")
    diagnostics = _MESSAGE_FOR_STATUS.get(status) or exc.reason
    if status == 413 and isinstance(exc, web.HTTPRequestEntityTooLarge):
        diagnostics = f"request body too large: {exc.text or diagnostics}"
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    return ApiError(status, (Issue(code, diagnostics),), headers)


def route_name(request: web.Request) -> str:
    """The route template (`/fhir/{type}/{id}`), never the path: ids in paths can be PHI."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return canonical if isinstance(canonical, str) else "unmatched"
