"""The workbench reports in a real browser: Debian's headless Chromium, the real app, real SQLite.

Seven scenarios are sent over HTTP and coded by the running service (S01-S05 coded, S25
held for a missing stop time, and S01 again with an NDC the catalog does not know, held as
unknown drug); a read-only user (reports are for everyone who may look) opens each report
from the navigation, sees its chart and table, downloads its CSV. axe-core checks each page
for serious or critical accessibility violations; each page is saved as a screenshot in
test-artifacts/ (and a failing test's page as FAILED-<test>.png).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_support import (
    Served,
    axe_violations,
    held_items,
    launched_chromium,
    log_in,
    post_hl7,
    screenshot,
    serve_in_thread,
)
from tests.service_fixtures import hl7_messages, make_settings

BILLER = "Pq8Zt3Lw6Hn1Xv5Rb2Kd"
AUDITOR = "Mj4Ty7Gs1Wc9Nf3Qe6Ua"
CODED = ("S01", "S02", "S03", "S04", "S05")
UNKNOWN_NDC = b"99999-0001-01"
ENCOUNTERS = len(CODED) + 2
PHI = ("NS1001", "Halvorsen", "Greta", "19610422")  # MRN prefix, name, birth date
REPORT_NAMES = ("gaps", "lag", "coded-held", "unknown-drugs", "payment")


def unknown_drug_visit() -> list[bytes]:
    """S01 on another visit, its zoledronic acid sent under an NDC no catalog row has."""
    return [
        m.replace(b"63323-0961-98", UNKNOWN_NDC)
        .replace(b"EP260105S01", b"EP260105X01")
        .replace(b"NV2601050101", b"NV2601050199")
        for m in hl7_messages("S01")
    ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("reports")
    settings = make_settings(
        tmp, auth_tokens=f"biller:{BILLER},auditor:{AUDITOR}", auth_read_only_names="auditor"
    )
    app = serve_in_thread(settings)
    for name in (*CODED, "S25"):
        post_hl7(app.base, hl7_messages(name), BILLER)
    post_hl7(app.base, unknown_drug_visit(), BILLER)
    for _ in range(400):
        if len(held_items(app.base, BILLER)) == 2:
            break
        time.sleep(0.05)
    yield app
    app.stop()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(base_url=served.base, accept_downloads=True)
    opened = context.new_page()
    log_in(opened, AUDITOR)
    wait_until_coded(opened)
    yield opened
    context.close()


def wait_until_coded(page: Any) -> None:
    """Every encounter has its Claim (the coder runs on the service's close check)."""
    for _ in range(200):
        rows = csv_rows(page, "coded-held")
        if sum(int(r["total"]) for r in rows) == ENCOUNTERS:
            return
        time.sleep(0.05)
    raise AssertionError(f"not every encounter was coded: {rows}")


def csv_rows(page: Any, name: str, query: str = "") -> list[dict[str, str]]:
    response = page.request.get(f"/ui/reports/{name}.csv{query}")
    assert response.status == 200
    return list(csv.DictReader(io.StringIO(response.text())))


def test_reports_are_in_the_navigation_and_listed_for_a_read_only_user(page: Any) -> None:
    page.click("header nav a:has-text('Reports')")
    page.wait_for_url(re.compile(r"/ui/reports$"))
    links = page.locator("main ul a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert links == [f"/ui/reports/{name}" for name in REPORT_NAMES]
    assert page.locator("header nav a[aria-current=page]").inner_text() == "Reports"
    assert axe_violations(page) == []
    screenshot(page, "reports")


@pytest.mark.parametrize("name", REPORT_NAMES)
def test_each_report_shows_a_chart_a_table_and_downloads_its_csv(page: Any, name: str) -> None:
    page.goto("/ui/reports")
    page.click(f"a[href='/ui/reports/{name}']")
    chart = page.locator("svg.report-chart").first
    assert chart.is_visible()
    assert chart.locator("rect").count() >= 1  # at least one bar: every report has data
    assert chart.get_attribute("role") == "img"
    assert page.locator("table.report-table tbody tr").count() >= 1
    assert axe_violations(page) == []
    screenshot(page, f"report-{name}")
    with page.expect_download() as downloading:
        page.locator("a:has-text('Download CSV')").first.click()
    download = downloading.value
    assert re.fullmatch(
        rf"charge-report-{name}-\d{{4}}-\d{{2}}-\d{{2}}\.csv", download.suggested_filename
    )
    text = Path(download.path()).read_text(encoding="utf-8")
    header = next(csv.reader(io.StringIO(text)))
    shown = page.locator("table.report-table").first.locator("thead th").all_inner_texts()
    assert header in (shown, [*shown, "note"])  # the payment label rides in a last column
    assert not any(phi in text for phi in PHI)


def test_a_csv_is_text_csv_as_an_attachment_without_patient_data(page: Any) -> None:
    for name in (*REPORT_NAMES, "stop-times"):
        response = page.request.get(f"/ui/reports/{name}.csv")
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"].startswith("attachment; filename=")
        assert not any(phi in response.text() for phi in PHI), name


def test_the_documentation_gaps_count_the_held_encounters(page: Any) -> None:
    rows = csv_rows(page, "gaps")
    reasons = {r["hold reason"]: int(r["encounters held"]) for r in rows}
    assert reasons == {"missing-stop-time": 1, "unknown-drug": 1}
    assert sum(int(r["encounters"]) for r in csv_rows(page, "stop-times")) == ENCOUNTERS


def test_the_unknown_drug_report_names_the_ndc_the_catalog_lacks(page: Any) -> None:
    page.goto("/ui/reports/unknown-drugs")
    assert UNKNOWN_NDC.decode() in page.locator("table.report-table").inner_text()
    [row] = csv_rows(page, "unknown-drugs")
    assert (row["code"], row["code system"], row["encounters held"]) == (
        UNKNOWN_NDC.decode(),
        "NDC",
        "1",
    )


def test_expected_payment_is_labelled_national_unadjusted_and_flags_old_tables(page: Any) -> None:
    page.goto("/ui/reports/payment")
    main = page.locator("main").inner_text()
    assert (
        "national, unadjusted (before locality, wage index and coinsurance), table period" in main
    )
    assert "PFS past its period" in main  # January 2026 against the 2025 PFS (D27)
    [january] = csv_rows(page, "payment")
    assert january["month"] == "2026-01" and int(january["encounters"]) == len(CODED)
    assert january["note"].startswith("national, unadjusted")


def test_the_filters_are_get_parameters_and_a_bad_one_is_said_not_applied(page: Any) -> None:
    page.goto("/ui/reports/coded-held")
    page.select_option("select[name=setting]", "hospital outpatient")
    page.click("button:has-text('Show')")
    assert "setting=hospital+outpatient" in page.url
    hospital = sum(
        int(r["total"]) for r in csv_rows(page, "coded-held", "?setting=hospital+outpatient")
    )
    office = sum(int(r["total"]) for r in csv_rows(page, "coded-held", "?setting=office"))
    assert hospital + office == ENCOUNTERS
    assert csv_rows(page, "coded-held", "?service_from=2027-01-01") == []
    page.goto("/ui/reports/coded-held?service_from=yesterday")
    assert "Not understood, so not applied: service_from" in page.get_by_role("alert").inner_text()


def test_reports_ask_for_a_login_when_auth_is_on(browser: Any, served: Served) -> None:
    context = browser.new_context(base_url=served.base)
    try:
        anonymous = context.new_page()
        anonymous.goto("/ui/reports/gaps")
        assert anonymous.url.endswith("/ui/login")
        assert anonymous.request.get("/ui/reports/gaps.csv", max_redirects=0).status == 303
    finally:
        context.close()
