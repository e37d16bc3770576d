"""The HTTP API, in one place: every route, and the CapabilityStatement that lists them.

| route | answer | module (`web/routes/`) |
|---|---|---|
| `POST /fhir` | batch/transaction/collection Bundle → its response Bundle | `fhir_bundle` |
| `POST /fhir/{type}`, `PUT .../{id}` | one resource → 201/200, Location | `fhir_resource` |
| `GET /fhir/{Claim,ChargeItem,Task}` | search (strict: unknown parameter → 400) | `fhir_search` |
| `GET /fhir/{type}/{id}[/_history[/{vid}]]` | read, history, vread (inbound too) | `fhir_read` |
| `GET /fhir/metadata` | the CapabilityStatement | here |
| `POST /hl7` | one HL7 v2 message → its ACK (`x-application/hl7-v2+er7`) | `hl7` |
| `GET /review`, `POST /review/{claim_id}/release` | the review worklist, release | `review` |
| `POST /admin/reload-mappings` | load the site tables again | `admin` |
| `GET /admin/dead-letters[/{id}/raw]` | the dead-letter worklist; one raw as received | `admin` |
| `GET /admin/outbox` | outbound versions by delivery state | `outbox` |
| `GET /healthz`, `/readyz`, `/metrics` | probes, Prometheus | `health` |

The workbench pages (`/ui/...`) are wired apart, by `web/app_ui.py`. Every error answers an
OperationOutcome (`web/outcome.py`: `error_middleware`). The CapabilityStatement is built from
the same constants as the routes, so it cannot promise an interaction that is not registered.

Access logs: request paths and query strings can carry patient ids (`?patient=`,
`/fhir/Patient/<id>`); whoever runs the app must not log them (no aiohttp access log,
or one that logs the route template only).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from adapter import __version__
from adapter.core.time_range import RANGE_TEXT
from adapter.logs import redact_library_logs
from adapter.web import security
from adapter.web.bodies import body_budget_middleware
from adapter.web.outcome import JSON, ApiError, Issue, error_middleware, fhir_response
from adapter.web.routes import (
    admin,
    fhir_bundle,
    fhir_read,
    fhir_resource,
    fhir_search,
    health,
    hl7,
    outbox,
    review,
)
from adapter.web.routes.fhir_read import OUTPUT_TYPES, fhir_base
from adapter.web.routes.fhir_resource import INBOUND_TYPES
from adapter.web.routes.fhir_search import DEFAULT_COUNT, MAX_COUNT, MAX_OFFSET
from adapter.web.state import STATE

FHIR_VERSION = "4.0.1"
Handler = Callable[[web.Request], Awaitable[web.Response]]
_OUT = "{type:" + "|".join(OUTPUT_TYPES) + "}"
_IN = "{type:" + "|".join(INBOUND_TYPES) + "}"


def setup_routes(app: web.Application) -> None:
    """Register every route, the error middleware and, inside it, the auth middleware.

    Auth runs after the error middleware so its 401/403 leave as OperationOutcomes; it needs
    `security.install` to have run (create_app does), else every request fails closed (500).
    """
    redact_library_logs()  # aiohttp's own error lines may quote URLs with patient ids
    app.middlewares.append(error_middleware)
    app.middlewares.append(body_budget_middleware)
    app.middlewares.append(security.auth_middleware)
    review.setup_review(app)
    router = app.router
    router.add_get("/healthz", health.healthz)
    router.add_get("/readyz", health.readyz)
    router.add_get("/metrics", health.metrics)
    router.add_post("/hl7", hl7.post_hl7)
    router.add_get("/review", review.list_review)
    router.add_post("/review/{claim_id}/release", review.release)
    router.add_post("/admin/reload-mappings", admin.reload_mappings)
    router.add_get("/admin/dead-letters", admin.list_dead_letters)
    router.add_get("/admin/dead-letters/{id}/raw", admin.dead_letter_raw)
    router.add_get("/admin/outbox", outbox.list_outbox)
    router.add_get("/fhir/metadata", metadata)
    router.add_post("/fhir", fhir_bundle.post_bundle)
    router.add_post(f"/fhir/{_IN}", fhir_resource.create)
    router.add_put(f"/fhir/{_IN}/{{id}}", fhir_resource.update)
    router.add_get(f"/fhir/{_OUT}", fhir_search.search)
    for types in (_OUT, _IN):  # inbound resources are read back as they were kept
        router.add_get(f"/fhir/{types}/{{id}}", fhir_read.read)
        router.add_get(f"/fhir/{types}/{{id}}/_history", fhir_read.history)
        router.add_get(f"/fhir/{types}/{{id}}/_history/{{vid}}", fhir_read.vread)
    for path, level in _FALLBACKS:
        router.add_route("*", path, _unsupported(level))


_FALLBACKS = (
    ("/fhir/{type}", "type"),
    ("/fhir/{type}/{id}", "instance"),
    ("/fhir/{type}/{id}/_history", "history"),
    ("/fhir/{type}/{id}/_history/{vid}", "version"),
)


def _unsupported(level: str) -> Handler:
    """After the real routes: a type not served here (404) or a method not offered (405)."""

    async def unsupported(request: web.Request) -> web.Response:
        rtype = request.match_info["type"]
        allowed = _allowed(rtype, level)
        if allowed:
            text = f"{request.method} is not supported here; allowed: {allowed}"
            raise ApiError(405, [Issue("not-supported", text)], {"Allow": allowed})
        raise ApiError(404, [Issue("not-supported", _not_served(rtype))])

    return unsupported


def _allowed(rtype: str, level: str) -> str:
    """The methods the registered routes accept for this type at this path level."""
    if rtype in OUTPUT_TYPES or (rtype == "metadata" and level == "type"):
        return "GET, HEAD"
    if rtype in INBOUND_TYPES:
        return {"type": "POST", "instance": "GET, HEAD, PUT"}.get(level, "GET, HEAD")
    return ""


def _not_served(rtype: str) -> str:
    return f"resource type {_safe(rtype)} is not supported"


def _safe(rtype: str) -> str:
    """Echo a type name only when it looks like one (never arbitrary path text)."""
    return rtype if rtype.isalnum() and len(rtype) <= 64 else "(invalid)"


async def metadata(request: web.Request) -> web.Response:
    """`GET /fhir/metadata`: what this server actually does."""
    now = request.app[STATE].clock()
    return fhir_response(capability_statement(fhir_base(request), now.isoformat("T", "seconds")))


def capability_statement(base_url: str, date: str) -> JSON:
    """R4 CapabilityStatement: the resources, interactions and search parameters served."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "charge-adapter",
        "kind": "instance",
        "software": {"name": "charge-adapter", "version": __version__},
        "implementation": {
            "description": "Oncology infusion charge capture: administrations in, coded "
            "Claims, ChargeItems and review Tasks out",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": _REST_DOCUMENTATION,
                "resource": [_output_resource(t) for t in OUTPUT_TYPES]
                + [_input_resource(t) for t in INBOUND_TYPES],
                "interaction": [
                    {"code": "batch", "documentation": "POST /fhir; also a collection Bundle"},
                    {"code": "transaction", "documentation": _TRANSACTION},
                ],
            }
        ],
    }


_TRANSACTION = "all or nothing: any unreadable entry refuses the whole Bundle (422)"
_REST_DOCUMENTATION = (
    "Search is strict: an unknown search parameter is answered 400 unless the request "
    "sends 'Prefer: handling=lenient'. Result parameters: "
    f"_count (default {DEFAULT_COUNT}, max {MAX_COUNT}), _offset (at most {MAX_OFFSET}). "
    "Without a time zone, _lastUpdated values are read in the site time zone; years outside "
    f"{RANGE_TEXT} are refused. "
    "Inbound resources created or updated one by one (POST/PUT /fhir/{type}) are served "
    "back by read, vread and history; inbound resources are not searchable."
)

_SEARCH_PARAMS: list[JSON] = [
    {
        "name": "patient",
        "type": "reference",
        "documentation": "Patient/<id> (absolute URLs accepted), or the patient identifier "
        "value as the feed sent it (HL7 v2: '<assigning authority>|<id>')",
    },
    {
        "name": "encounter",
        "type": "token",
        "documentation": "the encounter key (Claim.identifier value, system "
        "urn:charge-adapter:encounter); Encounter/<id> means visit <id>",
    },
    {"name": "status", "type": "token", "documentation": "the resource's own status"},
    {
        "name": "_lastUpdated",
        "type": "date",
        "documentation": "prefixes eq, ge, gt, le, lt; may repeat (a range)",
    },
]


def _output_resource(rtype: str) -> JSON:
    return {
        "type": rtype,
        "interaction": [
            {"code": "read"},
            {"code": "vread"},
            {"code": "history-instance"},
            {"code": "search-type"},
        ],
        "versioning": "versioned",
        "readHistory": True,
        "searchParam": _SEARCH_PARAMS,
    }


def _input_resource(rtype: str) -> JSON:
    return {
        "type": rtype,
        "documentation": "accepted for charge capture (see docs/feed-conventions.md)",
        "interaction": [
            {"code": "create"},
            {"code": "update"},
            {"code": "read"},
            {"code": "vread"},
            {"code": "history-instance"},
        ],
        "versioning": "versioned",
        "updateCreate": True,
    }
