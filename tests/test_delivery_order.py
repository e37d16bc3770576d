"""Delivery order: a Claim reaches the downstream server before what references it.

The downstream here is a strict FHIR server (a real aiohttp server on a real port): it
refuses a ChargeItem or Task whose Claim it does not hold (409, as HAPI refuses a
dangling reference), and it fails the first N requests of all (503) so that the Claim's
first attempts fail and its ChargeItems, due at the same time, are tempted to overtake.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapter.outbox.deliverer import claim_references
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.service_fixtures import Clock, make_settings
from tests.store_fixtures import PG_URL
from tests.test_service_e2e import _pg_available, hl7_messages, send_messages


@dataclass
class StrictServer:
    """What a strict downstream FHIR server holds and what it refused."""

    fail_first: int
    held: set[str] = field(default_factory=set)
    accepted: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    requests: int = 0

    async def put(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        local = f"{request.match_info['type']}/{request.match_info['id']}"
        body: dict[str, Any] = await request.json()
        missing = [c for c in claim_references(body) if f"Claim/{c}" not in self.held]
        if missing:
            self.dangling.append(local)
            return web.json_response(
                {"resourceType": "OperationOutcome", "issue": [{"severity": "error",
                 "code": "not-found", "diagnostics": f"Claim/{missing[0]} not found"}]},
                status=409,
            )  # fmt: skip
        self.held.add(local)
        self.accepted.append(local)
        return web.Response(status=200)


async def serve(strict: StrictServer) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_put("/fhir/{type}/{id}", strict.put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def deliver_all(state: AppState, clock: Clock) -> None:
    assert state.deliverer is not None
    for _ in range(500):
        clock.advance(seconds=1)
        await state.deliverer.run_once()
        if (await state.store.counts()).outbox_pending == 0:
            return
    pytest.fail("the outbox did not drain")


async def run_order_case(tmp_path: Path, fail_first: int, **store: Any) -> StrictServer:
    strict = StrictServer(fail_first)
    servers = serve(strict)
    port = await servers.__anext__()
    clock = Clock()
    settings = make_settings(
        tmp_path,
        close_check_seconds=3600,
        fhir_base_url=f"http://127.0.0.1:{port}/fhir",
        delivery_backoff_base_seconds=0.5,
        delivery_backoff_max_seconds=4,
    )
    state = await start_state(replace(settings, **store), clock)
    try:
        assert state.mllp is not None
        for name in ("S09.hl7", "S11.hl7", "S25.hl7"):  # two coded visits and a held one
            await send_messages("127.0.0.1", state.mllp.port, hl7_messages(name))
        clock.advance(days=1)
        await state.coder.run_once()
        await deliver_all(state, clock)
    finally:
        await stop_state(state)
        await servers.aclose()
    return strict


def assert_claims_first(strict: StrictServer) -> None:
    assert not strict.dangling, f"sent before their Claim: {strict.dangling}"
    kinds = {local.partition("/")[0] for local in strict.accepted}
    assert kinds == {"Claim", "ChargeItem", "Task"}
    claims = [local for local in strict.accepted if local.startswith("Claim/")]
    assert len(claims) >= 3  # the three visits' Claims


@pytest.mark.parametrize("fail_first", [0, 1, 3, 8])
async def test_claim_is_delivered_before_its_charge_items_and_task_under_retries(
    tmp_path: Path, fail_first: int
) -> None:
    strict = await run_order_case(tmp_path, fail_first)
    assert strict.requests > fail_first
    assert_claims_first(strict)


async def test_claim_first_on_postgresql_where_outbox_ids_follow_no_resource_order(
    tmp_path: Path,
) -> None:
    reason = await _pg_available()
    if reason:
        pytest.skip(f"POSTGRESQL TESTS DID NOT RUN: {PG_URL} unreachable ({reason})")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        strict = await run_order_case(tmp_path, 3, database_url=PG_URL, database_schema=schema)
    finally:
        import asyncpg

        conn = await asyncio.wait_for(asyncpg.connect(PG_URL), 5)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    assert_claims_first(strict)


def test_claim_references_are_read_from_charge_item_and_task() -> None:
    charge_item = {
        "resourceType": "ChargeItem",
        "supportingInformation": [{"reference": "Claim/c1"}, {"reference": "X/y"}],
    }
    task = {"resourceType": "Task", "focus": {"reference": "Claim/c2"}}
    assert claim_references(charge_item) == ["c1"]
    assert claim_references(task) == ["c2"]
    assert claim_references({"resourceType": "Claim"}) == []  # fmt: skip
