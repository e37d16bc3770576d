"""`GET /ui/reports`, `/ui/reports/{name}` and `/ui/reports/{name}.csv`: the workbench reports.

Read-only pages: any logged-in user sees them (read-only token names too), nothing is
posted. The filters are GET parameters with no patient data (service dates, location,
setting), read leniently like the worklist's: a value that is not one is ignored and said
so. The rows come from the store's `Reports` port, the tables from the pure aggregations;
a CSV is the section's table, `text/csv` as an attachment, cells a spreadsheet would run
as a formula neutralised (adapter/core/report_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

import structlog
from aiohttp import web

from adapter.core.mappings import Setting
from adapter.core.report_rows import ReportFilter
from adapter.core.report_table import csv_text
from adapter.web.pages import PREFIX, not_found, render
from adapter.web.reports_view import CSV_OF, REPORTS, Report, Rows, Section, Source
from adapter.web.state import STATE

log = structlog.get_logger()

REPORTS_PATH = f"{PREFIX}/reports"
SETTINGS = {"office": Setting.OFFICE, "hospital outpatient": Setting.HOSPITAL_OUTPATIENT}


def add_routes(router: web.UrlDispatcher) -> None:
    """The report routes (app_ui.setup_ui calls this: one line there)."""
    router.add_get(REPORTS_PATH, reports_index)
    router.add_get(REPORTS_PATH + "/{name:[a-z-]+}.csv", report_csv)
    router.add_get(REPORTS_PATH + "/{name:[a-z-]+}", report_page)


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """The report filters as the page's query string gives them."""

    service_from: str = ""
    service_to: str = ""
    location: str = ""
    setting: str = ""  # office | hospital outpatient
    ignored: tuple[str, ...] = ()

    @staticmethod
    def of(query: Mapping[str, str]) -> ReportQuery:
        ignored: list[str] = []
        values = {}
        for name in ("service_from", "service_to"):
            text = query.get(name, "").strip()
            if text and _day(text) is None:
                ignored.append(name)
                text = ""
            values[name] = text
        setting = query.get("setting", "").strip()
        if setting and setting not in SETTINGS:
            ignored.append("setting")
            setting = ""
        location = query.get("location", "").strip()[:200]
        return ReportQuery(
            values["service_from"], values["service_to"], location, setting, tuple(ignored)
        )

    def store_filter(self) -> ReportFilter:
        return ReportFilter(
            _day(self.service_from),
            _day(self.service_to),
            self.location,
            SETTINGS.get(self.setting, ""),
        )

    def query_string(self) -> str:
        """The filters as a query string ('' when none): the same page or CSV, filtered."""
        params = {
            "service_from": self.service_from,
            "service_to": self.service_to,
            "location": self.location,
            "setting": self.setting,
        }
        kept = {k: v for k, v in params.items() if v}
        return f"?{urlencode(kept)}" if kept else ""


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


async def reports_index(request: web.Request) -> web.StreamResponse:
    """`GET /ui/reports`: the list of reports."""
    return render(
        request, "reports_index.html", {"tab": "reports", "reports": list(REPORTS.values())}
    )


async def _sections(request: web.Request, report: Report, query: ReportQuery) -> list[Section]:
    state = request.app[STATE]
    store, wanted = state.store, query.store_filter()
    rows: Rows
    if report.source is Source.CODED:
        rows = await store.coded_claims(wanted)
    else:
        rows = await store.claim_versions(wanted)
    return report.build(rows, state.mappings.prices)


async def report_page(request: web.Request) -> web.StreamResponse:
    """`GET /ui/reports/{name}`: the report's charts, tables and CSV links."""
    report = REPORTS.get(request.match_info["name"])
    if report is None:
        return not_found(request, "No such report.")
    query = ReportQuery.of(request.query)
    sections = await _sections(request, report, query)
    locations = await request.app[STATE].store.report_locations()
    log.info("ui.report", report=report.name, rows=sum(len(s.table.rows) for s in sections))
    return render(
        request,
        "reports_page.html",
        {
            "tab": "reports",
            "report": report,
            "reports": list(REPORTS.values()),
            "sections": sections,
            "query": query,
            "locations": sorted({*locations, query.location} - {""}),
            "settings": list(SETTINGS),
            "suffix": query.query_string(),
        },
    )


async def report_csv(request: web.Request) -> web.StreamResponse:
    """`GET /ui/reports/{name}.csv`: one section's table as a CSV attachment."""
    name = request.match_info["name"]
    report = REPORTS.get(CSV_OF.get(name, ""))
    if report is None:
        return not_found(request, "No such report.")
    query = ReportQuery.of(request.query)
    section = next(s for s in await _sections(request, report, query) if s.csv == name)
    log.info("ui.report_csv", report=name, rows=len(section.table.rows))
    stamp = request.app[STATE].clock().date().isoformat()
    return web.Response(
        text=csv_text(section.table, section.note),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="charge-report-{name}-{stamp}.csv"'},
    )
