"""`GET /ui`: the worklist of held encounters, oldest first, filtered and paged by the store.

The filters live in the query string (they hold no patient data, so a filtered worklist can
be bookmarked); a value that is not one is ignored and said so, never a 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web

from adapter.core.ids import claim_id
from adapter.store.base import HeldItem, HeldQuery
from adapter.web import claim_view
from adapter.web.claim_view import SETTING_CODES
from adapter.web.pages import PREFIX, reason_texts, render, visible_patient
from adapter.web.state import STATE

log = structlog.get_logger()

PAGE_SIZE = 50
REASON_CODE = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class Filters:
    """The worklist's query string, read leniently: a value that is not one is ignored
    (and said so on the page), never a 400 to a biller who edited the address."""

    reason: str = ""
    location: str = ""
    setting: str = ""  # office | hospital outpatient
    service_from: str = ""
    service_to: str = ""
    page: int = 1
    ignored: tuple[str, ...] = ()

    @staticmethod
    def of(query: Mapping[str, str]) -> Filters:
        ignored: list[str] = []
        reason = query.get("reason", "").strip()
        if reason and not REASON_CODE.fullmatch(reason):
            ignored.append("reason")
            reason = ""
        setting = query.get("setting", "").strip()
        if setting and setting not in SETTING_CODES:
            ignored.append("setting")
            setting = ""
        dates = {}
        for name in ("service_from", "service_to"):
            dates[name] = query.get(name, "").strip()
            if dates[name] and not is_date(dates[name]):
                ignored.append(name)
                dates[name] = ""
        page = query.get("page", "1")
        return Filters(
            reason,
            query.get("location", "").strip()[:200],
            setting,
            dates["service_from"],
            dates["service_to"],
            int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1,
            tuple(ignored),
        )

    def store_query(self) -> HeldQuery:
        return HeldQuery(
            reason=self.reason,
            location=self.location,
            setting=SETTING_CODES.get(self.setting, ""),
            service_from=self.service_from,
            service_to=self.service_to,
            limit=PAGE_SIZE,
            offset=(self.page - 1) * PAGE_SIZE,
        )

    def url(self, **changes: str) -> str:
        """This worklist with some filters changed (page back to 1 unless given)."""
        current = {
            "reason": self.reason,
            "location": self.location,
            "setting": self.setting,
            "service_from": self.service_from,
            "service_to": self.service_to,
        }
        query = {k: v for k, v in (current | {"page": "1"} | changes).items() if v}
        if query.get("page") == "1":
            del query["page"]
        return f"{PREFIX}?{urlencode(query)}" if query else PREFIX


def is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


async def worklist(request: web.Request) -> web.StreamResponse:
    """`GET /ui`: held encounters, oldest first, filtered and paged by the store, with the
    counts per reason over all of them."""
    state = request.app[STATE]
    filters = Filters.of(request.query)
    held = await state.store.held_worklist(filters.store_query())
    now = state.clock()
    items = [_worklist_item(request, item, now) for item in held.items]
    log.info("ui.worklist", matching=held.total, shown=len(items))
    pages = max(1, -(-held.total // PAGE_SIZE))
    return render(
        request,
        "worklist.html",
        {
            "tab": "held",
            "items": items,
            "total": held.total,
            "held": held.held,
            "counts": held.reason_counts,
            "locations": held.locations,
            "settings": list(SETTING_CODES),
            "reason_text": reason_texts(state),
            "filters": filters,
            "page": filters.page,
            "pages": pages,
            "prev_url": filters.url(page=str(filters.page - 1)) if filters.page > 1 else "",
            "next_url": filters.url(page=str(filters.page + 1)) if filters.page < pages else "",
        },
    )


def _worklist_item(request: web.Request, item: HeldItem, now: datetime) -> dict[str, Any]:
    row = item.encounter
    claim = json.loads(item.claim_body) if item.claim_body else {}
    return {
        "claim_id": claim_id(row.key),
        "patient": visible_patient(request, claim),
        "service_date": claim_view.service_date(claim),
        "location": claim_view.location(claim),
        "setting": claim_view.setting(claim),
        "reasons": row.outcome_detail.split(),
        "held_for": held_for(now - row.updated_at),
        "held_since": row.updated_at.isoformat(timespec="minutes"),
    }


def held_for(age: timedelta) -> str:
    """How long a row has waited, in the unit a biller reads at a glance."""
    minutes = max(0, int(age.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"
