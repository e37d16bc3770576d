"""The workbench in a real browser: Debian's headless Chromium, the real app, real SQLite.

S25 (an infusion with no stop time) is sent over HTTP and held; a biller logs in with a
bearer token, finds it on the worklist with its reason, filters by that reason, opens it
and bills it as coded (refused without a note, done with one); an auditor whose token is
read-only sees no buttons and is refused a forged POST; a POST without the CSRF token is
refused; logging out ends the session. axe-core checks each page for serious or critical
accessibility violations; each page is saved as a screenshot in test-artifacts/.

The tests run in file order and share one app (module scope): the override comes last but
one, the logout last.
"""

from __future__ import annotations

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
    http,
    launched_chromium,
    log_in,
    post_hl7,
    screenshot,
    serve_in_thread,
)
from tests.service_fixtures import hl7_messages, make_settings

BILLER = "W7q2Lr9xZp4Kd8Vn3Tb6"
AUDITOR = "Rk5Hs2Nm8Qy4Jc7Fx1Ug"
NOTE = "Stop time confirmed with the charge nurse: 11:00."


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("workbench")
    settings = make_settings(
        tmp,
        auth_tokens=f"biller:{BILLER},auditor:{AUDITOR}",
        auth_read_only_names="auditor",
    )
    app = serve_in_thread(settings)
    post_hl7(app.base, hl7_messages("S25"), BILLER)
    post_hl7(app.base, hl7_messages("S24"), BILLER)  # coded: over midnight
    wait_until_held(app.base, BILLER)
    wait_until_coded(app.base, BILLER)
    yield app
    app.stop()


def wait_until_held(base: str, token: str) -> None:
    """The coder loop codes S25 (discharged) within its close check; wait for the hold."""
    for _ in range(200):
        if held_items(base, token):
            return
        time.sleep(0.05)
    raise AssertionError("S25 was not held")


def wait_until_coded(base: str, token: str) -> None:
    for _ in range(200):
        status, body = http(base, "GET", "/fhir/Claim?status=active", headers=_auth(token))
        if status == 200 and b'"Claim"' in body:
            return
        time.sleep(0.05)
    raise AssertionError("S24 was not coded")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def administrations(scenario: str) -> int:
    """RXA segments in the scenario's messages: the administrations the timeline must draw."""
    return sum(m.count(b"\rRXA|") + m.startswith(b"RXA|") for m in hl7_messages(scenario))


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(base_url=served.base)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def claim_id(served: Served) -> str:
    items = held_items(served.base, BILLER)
    return str(items[0]["claimId"]) if items else ""


def assert_accessible(page: Any) -> None:
    assert axe_violations(page) == []


def test_the_worklist_asks_a_browser_to_log_in_with_one_token_field(page: Any) -> None:
    page.goto("/ui")
    assert page.url.endswith("/ui/login")
    assert page.locator("form input:not([type=hidden])").evaluate_all(
        "els => els.map(e => e.name)"
    ) == ["token"]
    assert page.locator("input[name=csrf]").count() == 1
    assert_accessible(page)
    screenshot(page, "login")


def test_a_wrong_token_shows_the_form_again_and_sets_no_login(page: Any) -> None:
    page.goto("/ui/login")
    page.fill("input[name=token]", "not-a-token-of-anyone-here")
    page.click("button[type=submit]:has-text('Log in')")
    assert page.get_by_role("alert").inner_text() == "That token is not valid."
    page.goto("/ui")
    assert page.url.endswith("/ui/login")


def test_the_pages_send_the_security_headers_and_a_strict_httponly_cookie(
    page: Any, served: Served
) -> None:
    response = page.goto("/ui/login")
    headers = response.all_headers()
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none'
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")


def test_after_login_the_worklist_shows_the_held_encounter_with_its_reason(
    page: Any, claim_id: str
) -> None:
    log_in(page, BILLER)
    row = page.locator("table.worklist tbody tr")
    assert row.count() == 1
    text = row.inner_text()
    assert "missing-stop-time" in text
    assert "An infusion has a start time but no stop time" in text  # hold_reasons.csv
    assert "NSONC|NS100126" in text  # the patient reference, to a logged-in user
    assert "2026-01-23" in text and "office" in text
    assert row.locator("a").get_attribute("href") == f"/ui/encounters/{claim_id}"
    assert "Signed in as biller" in page.locator("header").inner_text()
    assert_accessible(page)
    screenshot(page, "worklist")


def test_the_worklist_filters_by_hold_reason(page: Any) -> None:
    log_in(page, BILLER)
    page.select_option("select[name=reason]", "missing-stop-time")
    page.click("button:has-text('Filter')")
    assert "reason=missing-stop-time" in page.url
    assert page.locator("table.worklist tbody tr").count() == 1
    page.goto("/ui?reason=unknown-drug")
    assert page.locator("table.worklist").count() == 0
    assert "Nothing held matches these filters" in page.locator("main").inner_text()


def test_the_worklist_filters_by_location_setting_and_service_date(page: Any) -> None:
    log_in(page, BILLER)
    page.select_option("select[name=location]", "Infusion center")
    page.select_option("select[name=setting]", "office")
    page.fill("input[name=service_from]", "2026-01-23")
    page.fill("input[name=service_to]", "2026-01-23")
    page.click("button:has-text('Filter')")
    assert page.locator("table.worklist tbody tr").count() == 1
    assert_accessible(page)
    screenshot(page, "worklist-filtered")
    page.select_option("select[name=setting]", "hospital outpatient")
    page.click("button:has-text('Filter')")
    assert page.locator("table.worklist").count() == 0
    page.goto("/ui?service_from=2026-01-24")
    assert page.locator("table.worklist").count() == 0
    page.goto("/ui?service_from=not-a-date")
    assert "Not understood, so not applied: service_from" in page.get_by_role("alert").inner_text()
    assert page.locator("table.worklist tbody tr").count() == 1


def test_the_encounter_page_draws_one_timeline_bar_per_administration(
    page: Any, claim_id: str
) -> None:
    log_in(page, BILLER)
    page.goto(f"/ui/encounters/{claim_id}")
    timeline = page.locator("svg.timeline-svg")
    assert timeline.locator("g.adm.bar").count() == administrations("S25") == 1
    assert "no stop time" in (timeline.locator("g.adm title").text_content() or "")
    assert timeline.locator("title#tl-title").count() == 1
    lines = page.locator("table.lines").inner_text()
    assert "The drug's HCPCS code follows from its NDC" in lines  # R33, in words
    assert "RAS^O17 EP260123S2502" in lines  # the message the line came from
    payment = page.locator("section[aria-labelledby=payment-h]").inner_text()
    assert "national, unadjusted (before locality, wage index and coinsurance)" in payment
    assert "past its period" in payment
    assert_accessible(page)


def test_the_coded_tab_searches_by_post_and_opens_a_coded_encounter(page: Any) -> None:
    log_in(page, BILLER)
    page.click("nav[aria-label=Worklists] a:has-text('Recently coded')")
    page.wait_for_url(re.compile(r"/ui/coded$"))
    assert page.locator("table.coded tbody tr").count() == 1
    assert_accessible(page)
    page.fill("input[name=patient]", "SBMC|SB200125")
    page.click("button:has-text('Search')")
    assert page.url.endswith("/ui/coded")  # searched by POST: nothing in the address
    assert page.locator("table.coded tbody tr").count() == 1
    screenshot(page, "coded")
    page.fill("input[name=patient]", "NOBODY|0")
    page.click("button:has-text('Search')")
    assert "Nothing coded matches this search." in page.locator("main").inner_text()
    page.goto("/ui/coded")
    page.click("table.coded a")
    timeline = page.locator("svg.timeline-svg")
    assert timeline.locator("g.adm.bar").count() == administrations("S24")
    assert "midnight" in (timeline.locator("g.midnight").text_content() or "")
    assert page.locator("g.adm.mark-crosses-midnight").count() == 1
    assert_accessible(page)
    screenshot(page, "encounter-coded")


def test_the_refused_tab_lists_what_a_receiver_refused_and_is_accessible(page: Any) -> None:
    log_in(page, BILLER)
    page.click("nav[aria-label=Worklists] a:has-text('Refused by a receiver')")
    page.wait_for_url(re.compile(r"/ui/refused$"))
    assert "Nothing refused" in page.locator("main").inner_text()  # no DFT receiver here
    assert_accessible(page)


def test_a_read_only_user_sees_no_buttons_and_a_forged_post_is_403(
    page: Any, claim_id: str, served: Served
) -> None:
    log_in(page, AUDITOR)
    page.goto(f"/ui/encounters/{claim_id}")
    assert "J9045" in page.locator("table.lines").inner_text()
    assert page.locator("form[action$='/override']").count() == 0
    assert page.locator("form[action$='/recode']").count() == 0
    assert "needs a write token" in page.locator("main").inner_text()
    assert_accessible(page)
    screenshot(page, "encounter-read-only")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = page.request.post(
        f"/ui/encounters/{claim_id}/override", form={"csrf": csrf, "note": "forged"}
    )
    assert forged.status == 403
    assert len(held_items(served.base, BILLER)) == 1


def test_a_post_without_the_csrf_token_is_403(page: Any, claim_id: str, served: Served) -> None:
    log_in(page, BILLER)
    refused = page.request.post(f"/ui/encounters/{claim_id}/override", form={"note": NOTE})
    assert refused.status == 403
    wrong = page.request.post(
        f"/ui/encounters/{claim_id}/override", form={"note": NOTE, "csrf": "x" * 43}
    )
    assert wrong.status == 403
    assert len(held_items(served.base, BILLER)) == 1


def test_a_post_from_outside_the_browser_session_is_403(claim_id: str, served: Served) -> None:
    status, _ = http(
        served.base,
        "POST",
        f"/ui/encounters/{claim_id}/override",
        b"note=x&csrf=y",
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {BILLER}"},
    )
    assert status == 403


def test_code_again_with_nothing_fixed_stays_held_and_is_in_the_history(
    page: Any, claim_id: str, served: Served
) -> None:
    log_in(page, BILLER)
    page.goto(f"/ui/encounters/{claim_id}")
    page.fill("#note-recode", "Asked the unit for the stop time.")
    page.click("button:has-text('Code again')")
    page.wait_for_url(re.compile(f"/ui/encounters/{claim_id}$"))
    assert page.locator(".state").inner_text() == "held"
    history = page.locator("section[aria-labelledby=history]").inner_text()
    assert "coded again" in history and "Asked the unit for the stop time." in history
    assert len(held_items(served.base, BILLER)) == 1


def test_override_without_a_note_is_refused_and_with_a_note_bills_it(
    page: Any, claim_id: str, served: Served
) -> None:
    log_in(page, BILLER)
    page.click(f"a[href='/ui/encounters/{claim_id}']")
    assert "missing-stop-time" in page.locator("section[aria-labelledby=why]").inner_text()
    assert_accessible(page)
    screenshot(page, "encounter")
    page.click("button:has-text('Bill as coded')")
    assert "note is required" in page.get_by_role("alert").inner_text()
    assert len(held_items(served.base, BILLER)) == 1
    page.fill("#note-override", NOTE)
    page.click("button:has-text('Bill as coded')")
    page.wait_for_url(re.compile(f"/ui/encounters/{claim_id}$"))
    assert page.locator(".state").inner_text() == "coded"
    assert page.locator("form[action$='/override']").count() == 0
    screenshot(page, "encounter-billed")
    history = page.locator("section[aria-labelledby=history]").inner_text()
    assert "biller" in history and "billed as coded" in history and NOTE in history
    assert held_items(served.base, BILLER) == []
    page.goto("/ui")
    assert "Nothing is held" in page.locator("main").inner_text()


def test_logout_ends_the_session(page: Any) -> None:
    log_in(page, BILLER)
    page.click("button:has-text('Log out')")
    page.wait_for_url(re.compile(r"/ui/login$"))
    page.goto("/ui")
    assert page.url.endswith("/ui/login")


@pytest.fixture(scope="module")
def open_served(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Served]:
    """The local default: no token configured, auth off."""
    app = serve_in_thread(make_settings(tmp_path_factory.mktemp("workbench-open")))
    post_hl7(app.base, hl7_messages("S25"), "")
    wait_until_held(app.base, "")
    yield app
    app.stop()


def test_with_auth_off_the_pages_are_open_say_so_and_ask_who_releases(
    browser: Any, open_served: Served
) -> None:
    context = browser.new_context(base_url=open_served.base)
    page = context.new_page()
    try:
        page.goto("/ui")
        assert "Authentication is off" in page.get_by_role("status").inner_text()
        assert "NSONC|NS100126" in page.locator("table.worklist").inner_text()
        assert_accessible(page)
        screenshot(page, "worklist-auth-off")
        page.click("table.worklist a")
        assert page.locator("#actor-override").count() == 1  # the audit needs a name
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        nameless = page.request.post(
            page.url.removeprefix(open_served.base) + "/override",
            form={"csrf": csrf, "note": NOTE},
        )
        assert nameless.status == 422  # the form marks the name required; the server too
        page.fill("#actor-override", "J. Biller")
        page.fill("#note-override", NOTE)
        page.click("button:has-text('Bill as coded')")
        assert page.locator(".state").inner_text() == "coded"
        assert "J. Biller" in page.locator("section[aria-labelledby=history]").inner_text()
    finally:
        context.close()
