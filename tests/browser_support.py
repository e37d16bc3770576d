"""Real-browser tests: Debian's Chromium driven by Playwright, the real app on a free port.

Why these parts: Playwright's own browser download cannot work here (only the package
registries are reached), so it drives `/usr/bin/chromium`, which `make test` installs
with apt-get when missing. Without it the browser tests are skipped with a loud message,
except under CI (CI=true), where a missing browser fails them: CI must run them.

The app runs in a thread with its own event loop (Playwright's sync API must not run inside
one), on a real SQLite file, with real tokens; one browser serves the whole session.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapter.config import Settings
from adapter.web.app import create_app
from tests.service_fixtures import HL7_TYPE

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_or_skip() -> None:
    """Skip loudly when the browser or axe-core is missing; fail instead under CI."""
    missing = [str(p) for p in (CHROMIUM, AXE) if not p.exists()]
    if not missing:
        return
    text = (
        f"BROWSER TESTS NOT RUN: {', '.join(missing)} missing "
        "(make test installs chromium with apt-get; make install installs axe-core with npm)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(text)
    pytest.skip(text)


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """One headless Debian Chromium, closed on the way out (skips or fails as above).

    Browser modules hold it in a module-scoped fixture, not a session one: while
    Playwright's sync API is alive its event loop is the thread's running loop, and the
    async tests after a browser module could not start theirs."""
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def log_in(page: Any, token: str) -> None:
    """Log in through the form, as a biller does, and wait for the worklist."""
    page.goto("/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]:has-text('Log in')")
    page.wait_for_url(re.compile(r"/ui$"))


@dataclass
class Served:
    """A running app: its base URL and the loop thread that serves it."""

    base: str
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def serve_in_thread(settings: Settings) -> Served:
    """Start the real app (create_app: store, MLLP, coder) on a free port in a thread."""
    loop = asyncio.new_event_loop()
    started: Future[Served] = Future()

    async def start() -> None:
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, settings.host, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        started.set_result(Served(f"http://{host}:{port}", loop, runner))

    def run() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(start())
        loop.run_forever()
        del task

    threading.Thread(target=run, daemon=True, name="ui-app").start()
    return started.result(60)


def http(
    base: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One plain HTTP request (stdlib): arranging data, or posting as a forger would."""
    request = urllib.request.Request(base + path, data=body or None, method=method)
    for name, value in (headers or {}).items():  # loopback only: the app under test
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_hl7(base: str, messages: list[bytes], token: str) -> None:
    for message in messages:
        status, _ = http(
            base,
            "POST",
            "/hl7",
            message,
            {"Content-Type": HL7_TYPE, "Authorization": f"Bearer {token}"},
        )
        assert status == 200


def held_items(base: str, token: str) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    status, body = http(base, "GET", "/review", headers=auth)
    assert status == 200
    items: list[dict[str, Any]] = json.loads(body)
    return items


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core run in the page: the serious and critical violations (none expected)."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
