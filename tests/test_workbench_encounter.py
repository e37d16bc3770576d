"""The encounter page's parts over real HTTP (the real app, SQLite, the coder): the infusion
timeline, each line's rule trace in words and source messages, the Claim's versions as a
diff of lines, the expected payment in both settings; and the recently coded tab.

The browser tests (test_workbench_browser.py) walk the pages in Chromium with axe-core; here
the content is pinned against the fixtures themselves (RXA segments, MSH-10s, the price table
rows), never against numbers this code computed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapter.store.base import SearchQuery
from tests.service_fixtures import HL7_TYPE, hl7_messages, make_settings, running_client, state_of

Client = TestClient[Any, Any]
REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SCENARIOS = ("S09", "S24", "S25", "S27")
RAS_S25 = hl7_messages("S25")[1]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with running_client(make_settings(tmp_path)) as c:
        for name in SCENARIOS:
            await post_hl7(c, *hl7_messages(name))
        await state_of(c).coder.run_once()
        yield c


async def post_hl7(client: Client, *messages: bytes) -> None:
    for message in messages:
        response = await client.post("/hl7", data=message, headers={"Content-Type": HL7_TYPE})
        assert response.status == 200, await response.text()


async def claim_of(client: Client, visit: str) -> str:
    rows, _ = await state_of(client).store.search(
        SearchQuery("Claim", encounter=f"visit:{visit}", count=1)
    )
    return rows[0].resource_id


async def page(client: Client, visit: str) -> str:
    response = await client.get(f"/ui/encounters/{await claim_of(client, visit)}")
    assert response.status == 200
    return await response.text()


def segments(scenario: str, name: str) -> list[list[str]]:
    text = b"\r".join(hl7_messages(scenario)).decode()
    return [s.split("|") for s in re.split(r"[\r\n]+", text) if s.startswith(name + "|")]


def drawn(html: str) -> list[str]:
    return re.findall(r'<g class="adm (bar|tick)', html)


# ---------------------------------------------------------------- the timeline


async def test_the_timeline_draws_one_bar_or_tick_per_administration(client: Client) -> None:
    html = await page(client, "NV2601150109")  # S09: an R-CHOP day
    assert len(drawn(html)) == len(segments("S09", "RXA")) == 9
    assert {"bar", "tick"} <= set(drawn(html))  # infusions and pushes
    assert '<title id="tl-title">' in html and '<desc id="tl-desc">' in html


async def test_each_administration_is_labelled_with_its_drug_and_the_codes_it_produced(
    client: Client,
) -> None:
    html = await page(client, "NV2601150109")
    for rxa in segments("S09", "RXA"):
        drug = rxa[5].split("^")[1]
        assert re.search(re.escape(drug) + r" → (\d{5}|[A-Z]\d{4})", html), drug


async def test_the_timeline_marks_concurrent_infusions_and_groups_by_iv_site(
    client: Client,
) -> None:
    html = await page(client, "HV2601270128")  # S27: two chemo infusions, two sites
    sites = [s[2].split("^")[0] for s in segments("S27", "RXR")]
    lanes = re.findall(r'<text class="lane-label"[^>]*>([^<]+)</text>', html)
    assert lanes == sites and len(set(sites)) == 2
    assert html.count("· CONCURRENT") == 2


async def test_the_timeline_marks_the_midnight_boundary(client: Client) -> None:
    html = await page(client, "HV2601220125")  # S24: over midnight
    assert "midnight Jan 23" in html
    assert "CROSSES MIDNIGHT" in html


async def test_a_missing_stop_time_is_marked_in_words_and_pattern(client: Client) -> None:
    html = await page(client, "NV2601230126")  # S25
    assert 'class="adm bar mark-no-stop-time"' in html
    assert "NO STOP TIME" in html and "not documented" in html


# ---------------------------------------------------------------- the lines


def statements() -> dict[str, str]:
    with (MAPPINGS / "rule_statements.csv").open(encoding="utf-8") as handle:
        return {row["rule"]: row["statement"] for row in csv.DictReader(handle)}


async def test_each_line_shows_its_rule_trace_in_words_linked_to_the_statement(
    client: Client,
) -> None:
    html = await page(client, "NV2601230126")
    claim = (await client.get(f"/fhir/Claim/{await claim_of(client, 'NV2601230126')}")).json
    body = await claim()
    (item,) = body["item"]
    trace = next(e["valueString"] for e in item["extension"] if e["url"].endswith("coding-trace"))
    for rule in trace.split():
        assert f'<a href="#rule-{rule}">{rule}</a> {statements()[rule]}' in html.replace(
            "&#39;", "'"
        )
        assert f'<dt id="rule-{rule}">{rule}</dt>' in html


async def test_each_line_names_the_messages_it_came_from(client: Client) -> None:
    html = await page(client, "NV2601230126")
    msh = segments("S25", "MSH")
    ras = next(m for m in msh if m[8].startswith("RAS"))
    assert f"RAS^O17 {ras[9]}" in html
    adt = [m[9] for m in msh if m[8].startswith("ADT")]
    assert all(f"in {control}" not in html for control in adt)  # no RXA in them


async def test_each_line_shows_its_diagnosis_pointers_as_codes_in_order(client: Client) -> None:
    html = await page(client, "NV2601230126")
    assert "1. Z51.11<br>2. C56.9" in html


# ---------------------------------------------------------------- versions


async def test_a_correction_shows_as_a_new_claim_version_with_the_lines_it_changed(
    client: Client,
) -> None:
    corrected = (
        RAS_S25.replace(b"EP260123S2502", b"EP260123S2599")
        .replace(
            b"RXA|0|1|20260123100000-0500||", b"RXA|0|1|20260123100000-0500|20260123110000-0500|"
        )
        .replace(b"|CP|A|", b"|CP|U|")
    )
    await post_hl7(client, corrected)
    await state_of(client).coder.run_once()
    html = await page(client, "NV2601230126")
    versions = html[html.index('id="versions-h"') :]
    assert re.search(r"<td>1</td>.*first version", versions, re.S)
    assert re.search(r"<td>2</td>.*<code>\+ 96413 x1 2026-01-23</code>", versions, re.S)
    assert "RAS^O17 EP260123S2599" in html  # the correction is a source of the line now


async def test_an_override_is_a_version_that_bills_as_coded_without_changing_lines(
    client: Client,
) -> None:
    cid = await claim_of(client, "NV2601230126")
    html = await (await client.get(f"/ui/encounters/{cid}")).text()
    form = {"csrf": CSRF.findall(html)[0], "note": "Stop confirmed by phone.", "actor": "J. B."}
    assert (await client.post(f"/ui/encounters/{cid}/override", data=form)).status == 200
    html = await (await client.get(f"/ui/encounters/{cid}")).text()
    assert re.search(
        r"<td>2</td><td>[^<]+</td><td>active</td><td>billed as coded \(override\)</td>"
        r".*no change to the lines or diagnoses",
        html,
        re.S,
    )


# ---------------------------------------------------------------- expected payment


def price_row(table: str, code: str) -> dict[str, str]:
    with (MAPPINGS / f"price_{table}.csv").open(encoding="utf-8") as handle:
        return next(r for r in csv.DictReader(handle) if r["hcpcs"] == code)


async def test_expected_payment_in_both_settings_side_by_side_with_labels(client: Client) -> None:
    html = await page(client, "NV2601230126")  # S25, office: J9045 x10
    payment = html[html.index('id="payment-h"') :]
    office = (Decimal(price_row("asp", "J9045")["payment_limit"]) * 10).quantize(Decimal("0.01"))
    assert f"${office}" in payment
    assert "As coded: office" in payment
    assert "Same services in the other setting: hospital outpatient" in payment
    opps = price_row("opps", "J9045")
    assert opps["status_indicator"] == "N" and "opps-packaged" in payment  # $0, packaged
    label = "national, unadjusted (before locality, wage index and coinsurance), table period"
    assert payment.count(label) >= 2


async def test_a_price_table_past_its_period_is_flagged(client: Client) -> None:
    html = await page(client, "NV2601230126")  # served 2026-01-23
    with (MAPPINGS / "price_versions.csv").open(encoding="utf-8") as handle:
        pfs = next(r for r in csv.DictReader(handle) if r["name"] == "pfs")
    assert pfs["effective_end"] < "2026-01-23"
    assert f"PFS {pfs['effective_start']} to {pfs['effective_end']} (⚠ past its period)" in html
    assert "past its period for this service date (D27)" in html


# ---------------------------------------------------------------- the recently coded tab


async def test_the_coded_tab_lists_coded_encounters_newest_first(client: Client) -> None:
    html = await (await client.get("/ui/coded")).text()
    assert 'aria-current="page">Recently coded' in html
    shown = re.findall(r'href="/ui/encounters/([^"]+)"', html)
    assert await claim_of(client, "HV2601220125") in shown  # S24 is coded
    assert await claim_of(client, "NV2601230126") not in shown  # S25 is held


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("patient", "SBMC|SB200125", id="patient"),
        pytest.param("encounter", "HV2601220125", id="visit-number"),
        pytest.param("encounter", "visit:HV2601220125", id="encounter-key"),
    ],
)
async def test_the_coded_tab_searches_by_post_so_no_identifier_is_in_an_address(
    client: Client, field: str, value: str
) -> None:
    start = await (await client.get("/ui/coded")).text()
    response = await client.post("/ui/coded", data={"csrf": CSRF.findall(start)[0], field: value})
    assert response.status == 200 and str(response.url).endswith("/ui/coded")
    shown = re.findall(r'href="/ui/encounters/([^"]+)"', await response.text())
    assert shown == [await claim_of(client, "HV2601220125")]


async def test_the_coded_tab_searches_by_claim_id_and_coded_date(client: Client) -> None:
    cid = await claim_of(client, "HV2601220125")
    start = await (await client.get("/ui/coded")).text()
    csrf = CSRF.findall(start)[0]
    by_id = await client.post("/ui/coded", data={"csrf": csrf, "encounter": cid})
    assert re.findall(r'href="/ui/encounters/([^"]+)"', await by_id.text()) == [cid]
    later = await client.post("/ui/coded", data={"csrf": csrf, "coded_from": "2999-01-01"})
    assert "Nothing coded matches this search." in await later.text()
    wrong = await client.post("/ui/coded", data={"csrf": csrf, "coded_to": "yesterday"})
    assert "Not understood, so not applied: coded_to" in await wrong.text()


async def test_an_encounter_page_leads_back_to_the_tab_it_belongs_to(client: Client) -> None:
    assert '<a href="/ui">← Held for review</a>' in await page(client, "NV2601230126")
    assert '<a href="/ui/coded">← Recently coded</a>' in await page(client, "HV2601220125")


async def test_a_coded_search_without_the_csrf_token_is_403(client: Client) -> None:
    response = await client.post("/ui/coded", data={"patient": "SBMC|SB200125"})
    assert response.status == 403
