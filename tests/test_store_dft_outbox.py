"""The outbox's DFT order and refusal on both stores (SQLite and PostgreSQL, a fresh
schema each): a patient's rows wait for the earlier ones, delivered marks go together,
and a refused DFT takes its posting back and the later versions queued on it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapter.store.base import Store
from tests.store_fixtures import BACKENDS, StoreFactory, require_postgres

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DEST = "dft:site"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        await require_postgres()
    factory = StoreFactory(request.param, tmp_path)
    yield await factory.open()
    await factory.cleanup()


async def queue(store: Store, claim: str, version: int, patient: str, posting: str) -> int:
    body = {"resourceType": "Claim", "id": claim, "status": "active", "v": version}
    await store.put_resource_version("Claim", claim, "active", json.dumps(body), T0, None)
    await store.queue_message(
        DEST, ("Claim", claim, version), f"MSH|{claim}|{version}", f"enc-{claim}", posting,
        T0, ordering_key=patient,
    )  # fmt: skip
    due = await store.due_deliveries(T0 + timedelta(days=1), 100)
    return max(d.id for d in due if d.resource_id == claim and d.version == version)


async def test_a_row_waits_for_its_patients_earlier_rows_and_its_resources_not_others(
    store: Store,
) -> None:
    first = await queue(store, "c1", 1, "P1", "{}")
    other = await queue(store, "c2", 1, "P2", "{}")
    second = await queue(store, "c3", 1, "P1", "{}")
    assert await store.queued_ahead(DEST, "P1", second) == "Claim/c1"
    assert await store.queued_ahead(DEST, "P2", other) is None
    assert await store.queued_ahead(DEST, "P1", first) is None
    assert await store.queued_ahead("dft:other", "P1", second) is None
    await store.mark_delivered_many([first, other], T0)
    assert await store.queued_ahead(DEST, "P1", second) is None
    assert (await store.counts()).outbox_pending == 1


async def test_a_refused_dft_gives_back_the_accepted_posting_and_refuses_later_versions(
    store: Store,
) -> None:
    v1 = await queue(store, "c1", 1, "P1", '{"after":1}')
    await store.mark_delivered_many([v1], T0)
    v2 = await queue(store, "c1", 2, "P1", '{"after":2}')
    v3 = await queue(store, "c1", 3, "P1", '{"after":3}')
    assert await store.queued_ahead(DEST, "P1", v3) == "Claim/c1"

    later = await store.reject_dft(v2, "AR: account closed", T0, "enc-c1", '{"nothing":0}')

    assert later == 1
    rejected, total = await store.rejected_deliveries(10, 0)
    assert total == 2 and [(d.id, d.version) for d in rejected] == [(v2, 2), (v3, 3)]
    assert rejected[0].last_error == "AR: account closed" and rejected[0].attempts == 1
    assert "built on version 2" in rejected[1].last_error and rejected[1].attempts == 0
    assert await store.dft_posting(DEST, "enc-c1") == '{"after":1}'  # what was accepted
    assert (await store.counts()).outbox_pending == 0


async def test_a_refused_first_dft_leaves_nothing_posted(store: Store) -> None:
    v1 = await queue(store, "c1", 1, "P1", '{"after":1}')
    assert await store.reject_dft(v1, "AR", T0, "enc-c1", '{"nothing":0}') == 0
    assert await store.dft_posting(DEST, "enc-c1") == '{"nothing":0}'
