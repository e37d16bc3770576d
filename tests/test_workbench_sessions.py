"""Workbench sessions and logins over real HTTP (the real app, aiohttp's client, SQLite).

The browser tests (test_workbench_browser.py) walk the pages; here are the rules a browser
walk would make slow to pin: the failed-login limit per address, the idle expiry, the
session id replaced at login, auth off (open pages with a banner), and that no token is
ever logged.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from adapter.web.sessions import LoginLimiter, Sessions
from tests.service_fixtures import START, Clock, make_settings, running_client

Client = TestClient[Any, Any]
TOKEN = "W7q2Lr9xZp4Kd8Vn3Tb6"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(tmp_path: Path, clock: Clock) -> AsyncIterator[Client]:
    settings = make_settings(tmp_path, auth_tokens=f"biller:{TOKEN}", ui_session_idle_minutes=30)
    async with running_client(settings, clock) as c:
        yield c


async def csrf_of(client: Client, path: str = "/ui/login") -> str:
    response = await client.get(path)
    match = CSRF.search(await response.text())
    assert match is not None
    return match.group(1)


async def log_in(client: Client, token: str) -> Any:
    csrf = await csrf_of(client)
    return await client.post(
        "/ui/login", data={"csrf": csrf, "token": token}, allow_redirects=False
    )


async def test_a_login_with_a_valid_token_replaces_the_session_id(client: Client) -> None:
    await client.get("/ui/login")
    before = client.session.cookie_jar.filter_cookies(client.make_url("/ui"))["adapter_session"]
    response = await log_in(client, TOKEN)
    assert (response.status, response.headers["Location"]) == (303, "/ui")
    after = client.session.cookie_jar.filter_cookies(client.make_url("/ui"))["adapter_session"]
    assert after.value != before.value
    assert (await client.get("/ui", allow_redirects=False)).status == 200


async def test_five_failed_logins_from_one_address_lock_it_out_for_the_window(
    client: Client, clock: Clock
) -> None:
    for _ in range(5):
        assert (await log_in(client, "wrong-token-wrong-token")).status == 401
    assert (await log_in(client, TOKEN)).status == 429  # even the right token, for now
    clock.advance(minutes=6)
    assert (await log_in(client, TOKEN)).status == 303


async def test_a_failed_login_is_logged_without_the_token(client: Client) -> None:
    with capture_logs() as logs:
        await log_in(client, "a-wrong-token-0123456789")
    refused = [e for e in logs if e.get("event") == "ui.refused"]
    assert [e["reason"] for e in refused] == ["login_failed"]
    assert "a-wrong-token-0123456789" not in repr(logs)


async def test_a_session_unused_past_the_idle_expiry_must_log_in_again(
    client: Client, clock: Clock
) -> None:
    await log_in(client, TOKEN)
    clock.advance(minutes=29)
    assert (await client.get("/ui", allow_redirects=False)).status == 200
    clock.advance(minutes=31)
    response = await client.get("/ui", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/ui/login")


async def test_the_api_bearer_token_does_not_open_the_pages(client: Client) -> None:
    """A page needs the browser session: a bearer header alone is sent to the login."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = await client.get("/ui", headers=headers, allow_redirects=False)
    assert response.status == 303


async def test_with_auth_off_the_pages_are_open_and_say_so(tmp_path: Path) -> None:
    async with running_client(make_settings(tmp_path), Clock()) as c:
        response = await c.get("/ui")
        assert response.status == 200
        assert "Authentication is off" in await response.text()
        assert (await c.get("/ui/login", allow_redirects=False)).status == 303


async def test_the_stylesheet_is_served_by_the_app_with_the_security_headers(
    client: Client,
) -> None:
    response = await client.get("/ui/static/ui.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_sessions_past_the_cap_drop_the_one_idle_longest() -> None:
    sessions = Sessions(timedelta(minutes=30), cap=2)
    first, second = sessions.new(START), sessions.new(START)
    sessions.touch(first.id, START + timedelta(minutes=1))
    sessions.new(START + timedelta(minutes=2))
    assert sessions.touch(second.id, START + timedelta(minutes=3)) is None
    assert sessions.touch(first.id, START + timedelta(minutes=3)) is not None


def test_a_flood_of_anonymous_sessions_does_not_log_anyone_out() -> None:
    sessions = Sessions(timedelta(minutes=30), cap=3)
    biller = sessions.log_in(None, "biller", False, START)
    for _ in range(10):
        sessions.new(START)
    assert sessions.touch(biller.id, START + timedelta(minutes=1)) is not None
    assert len(sessions) == 4


def test_a_successful_login_clears_the_failures_of_its_address() -> None:
    limiter = LoginLimiter(2, timedelta(minutes=5))
    limiter.failed("127.0.0.9", START)
    limiter.succeeded("127.0.0.9")
    limiter.failed("127.0.0.9", START)
    assert not limiter.blocked("127.0.0.9", START)
    limiter.failed("127.0.0.9", START)
    assert limiter.blocked("127.0.0.9", START)
