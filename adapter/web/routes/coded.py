"""`/ui/coded`: the second worklist tab, recently coded encounters, newest first, searchable.

Search by patient, encounter and coded date goes by POST (with the CSRF token), so no
patient identifier or visit number is ever in an address, a browser history or a proxy
log; `GET /ui/coded` shows the newest page unfiltered. The store's own search answers it
(Claims that are `active`, newest first), so a page reads only the Claims it shows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import structlog
from aiohttp import web

from adapter.core.ids import is_fhir_id
from adapter.store.base import ResourceRow, SearchQuery, Store
from adapter.web import claim_view
from adapter.web.pages import render, visible_patient
from adapter.web.routes.worklist import is_date
from adapter.web.state import STATE

log = structlog.get_logger()

PAGE_SIZE = 50
MAX_FIELD = 200
ENCOUNTER_PREFIXES = ("visit:", "day:")


@dataclass(frozen=True, slots=True)
class Search:
    """The search form, read leniently: a date that is not one is ignored and said so."""

    patient: str = ""
    encounter: str = ""  # a Claim id, an encounter key or a visit number
    coded_from: str = ""
    coded_to: str = ""
    page: int = 1
    ignored: tuple[str, ...] = ()

    @staticmethod
    def of(form: Mapping[str, Any]) -> Search:
        fields = {n: str(form.get(n, "")).strip()[:MAX_FIELD] for n in Search.__match_args__}
        ignored = []
        for name in ("coded_from", "coded_to"):
            if fields[name] and not is_date(fields[name]):
                ignored.append(name)
                fields[name] = ""
        page = fields["page"]
        return Search(
            fields["patient"],
            fields["encounter"],
            fields["coded_from"],
            fields["coded_to"],
            int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1,
            tuple(ignored),
        )

    @property
    def any(self) -> bool:
        return bool(self.patient or self.encounter or self.coded_from or self.coded_to)


async def coded_list(request: web.Request) -> web.StreamResponse:
    """`GET /ui/coded`: the newest coded encounters."""
    return await _page(request, Search())


async def coded_search(request: web.Request) -> web.StreamResponse:
    """`POST /ui/coded`: the same, filtered by the search form."""
    return await _page(request, Search.of(await request.post()))


async def _page(request: web.Request, search: Search) -> web.StreamResponse:
    state = request.app[STATE]
    query = await store_query(state.store, search, state.settings.tz)
    rows, total = await state.store.search(query) if query is not None else ([], 0)
    items = [_item(request, row) for row in rows]
    log.info("ui.coded", matching=total, shown=len(items), searched=search.any)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "coded.html",
        {
            "tab": "coded",
            "search": search,
            "items": items,
            "total": total,
            "page": search.page,
            "pages": pages,
        },
    )


async def store_query(store: Store, search: Search, site_tz: tzinfo) -> SearchQuery | None:
    """The store search for the form; None when the encounter asked for does not exist."""
    encounter = await _encounter_key(store, search.encounter) if search.encounter else None
    if search.encounter and encounter is None:
        return None
    return SearchQuery(
        "Claim",
        patient=search.patient or None,
        encounter=encounter,
        status="active",
        last_updated_ge=_day_start(search.coded_from, site_tz),
        last_updated_le=_day_end(search.coded_to, site_tz),
        count=PAGE_SIZE,
        offset=(search.page - 1) * PAGE_SIZE,
    )


async def _encounter_key(store: Store, text: str) -> str | None:
    """A Claim id names its encounter; a key is used as it is; anything else is a visit number."""
    if text.startswith("clm-") and is_fhir_id(text):
        row = await store.read_resource("Claim", text)
        return row.encounter_key if row is not None else None
    return text if text.startswith(ENCOUNTER_PREFIXES) else f"visit:{text}"


def _day_start(text: str, site_tz: tzinfo) -> datetime | None:
    if not text:
        return None
    return datetime.combine(date.fromisoformat(text), time(0), site_tz)


def _day_end(text: str, site_tz: tzinfo) -> datetime | None:
    start = _day_start(text, site_tz)
    return start + timedelta(days=1, microseconds=-1) if start is not None else None


def _item(request: web.Request, row: ResourceRow) -> dict[str, Any]:
    claim = json.loads(row.body)
    return {
        "claim_id": row.resource_id,
        "patient": visible_patient(request, claim),
        "service_date": claim_view.service_date(claim),
        "location": claim_view.location(claim),
        "setting": claim_view.setting(claim),
        "lines": len(claim.get("item", ())),
        "codes": sorted({line["code"] for line in claim_view.claim_lines(claim)}),
        "version": row.version,
        "coded_at": row.last_updated.strftime("%Y-%m-%d %H:%M"),
    }
