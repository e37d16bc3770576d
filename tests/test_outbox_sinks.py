"""The outbox worker delivers through sinks and acts on their typed answers.

The worker, the store (real SQLite), the metrics and the HTTP app are the real ones; the
destination here is a receiver written in the test (it answers per resource what a billing
system or broker would: take it, not now, never), since the FHIR sink only ever retries.
FHIR PUT itself is covered end to end by tests/test_delivery_order.py and
tests/test_service_e2e.py against a real aiohttp server.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from yarl import URL

from adapter.metrics import Metrics
from adapter.outbox.deliverer import Deliverer, DeliveryConfig
from adapter.outbox.fhir_put import FhirPutConfig, FhirPutSink
from adapter.outbox.sink import DeliveryResult, OutboxItem, Prerequisite
from adapter.store.base import Delivery, ResourceRow, Store
from tests.service_fixtures import Clock, make_settings, running_client, state_of

DEST = "billing:test"


@dataclass
class Receiver:
    """A destination answering by resource id: `refuse` never, `busy` not now."""

    refuse: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    received: list[OutboxItem] = field(default_factory=list)
    name: str = "test-receiver"

    def accepts(self, destination: str) -> bool:
        return destination == DEST

    def item(self, delivery: Delivery, row: ResourceRow) -> OutboxItem:
        return OutboxItem(
            delivery=delivery,
            ordering_key=row.encounter_key or row.resource_id,
            idempotency_key=f"{row.resource_id}@{row.version}",
            payload=row.body.encode(),
        )

    async def deliver(self, item: OutboxItem) -> DeliveryResult:
        self.received.append(item)
        rid = item.delivery.resource_id
        if rid in self.refuse:
            return DeliveryResult.rejected(f"AR: {rid} is not on the chargemaster")
        if rid in self.busy:
            return DeliveryResult.retry_later("AE: application busy")
        return DeliveryResult.delivered()

    async def close(self) -> None:
        return None


def claim_body(cid: str) -> str:
    return json.dumps({"resourceType": "Claim", "id": cid, "status": "active"})


async def queue(store: Store, clock: Clock, *ids: str, destination: str = DEST) -> None:
    for cid in ids:
        await store.put_resource_version(
            "Claim", cid, "active", claim_body(cid), clock(), destination
        )


def worker(store: Store, clock: Clock, metrics: Metrics, receiver: Receiver) -> Deliverer:
    config = DeliveryConfig(backoff_base=1.0, backoff_max=8.0)
    return Deliverer(store, config, clock, metrics, [receiver], random.Random(7))


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return value


async def test_a_rejected_version_is_kept_listed_counted_and_never_retried(
    tmp_path: Path,
) -> None:
    clock = Clock()
    receiver = Receiver(refuse={"clm-bad"})
    async with running_client(make_settings(tmp_path), clock) as client:
        state = state_of(client)
        await queue(state.store, clock, "clm-ok", "clm-bad")
        deliverer = worker(state.store, clock, state.metrics, receiver)

        assert await deliverer.run_once() == 1
        clock.advance(hours=1)
        assert await deliverer.run_once() == 0  # nothing due: the rejected one is not retried

        assert [i.delivery.resource_id for i in receiver.received] == ["clm-ok", "clm-bad"]
        counts = await state.store.counts()
        assert (counts.outbox_pending, counts.outbox_rejected) == (0, 1)
        assert (
            sample(
                state.metrics,
                "adapter_delivery_attempts_total",
                destination=DEST,
                result="rejected",
            )
            == 1
        )
        assert sample(state.metrics, "adapter_outbox_rejected") == 1
        assert sample(state.metrics, "adapter_destination_up", destination=DEST) == 1

        response = await client.get("/admin/outbox?state=rejected")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        listed = await response.json()
        assert listed["total"] == 1
        [item] = listed["items"]
        assert (item["destination"], item["resource"], item["version"], item["attempts"]) == (
            DEST,
            "Claim/clm-bad",
            1,
            1,
        )
        assert item["reason"] == "AR: clm-bad is not on the chargemaster"
        assert item["rejected_at"] == (clock.now - timedelta(hours=1)).isoformat()

        exposition = (await (await client.get("/metrics")).text()).splitlines()
        assert "adapter_outbox_rejected 1.0" in exposition


async def test_the_rejected_list_pages_oldest_first(tmp_path: Path) -> None:
    clock = Clock()
    receiver = Receiver(refuse={"clm-1", "clm-2", "clm-3"})
    async with running_client(make_settings(tmp_path), clock) as client:
        state = state_of(client)
        await queue(state.store, clock, "clm-1", "clm-2", "clm-3")
        await worker(state.store, clock, state.metrics, receiver).run_once()

        first = await (await client.get("/admin/outbox?state=rejected&_count=2")).json()
        assert [i["resource"] for i in first["items"]] == ["Claim/clm-1", "Claim/clm-2"]
        assert first["next"].endswith("_offset=2")
        rest = await (await client.get(URL(first["next"]).path_qs)).json()
        assert [i["resource"] for i in rest["items"]] == ["Claim/clm-3"]
        assert "next" not in rest


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("", "state"), ("?state=pending", "state"), ("?state=rejected&_count=x", "_count")],
)
async def test_the_outbox_list_names_a_bad_parameter(
    tmp_path: Path, query: str, parameter: str
) -> None:
    async with running_client(make_settings(tmp_path)) as client:
        response = await client.get(f"/admin/outbox{query}")
        assert response.status == 400
        outcome = await response.json()
        assert outcome["issue"][0]["expression"] == [parameter]


async def test_retry_later_backs_off_with_its_reason_and_then_delivers(tmp_path: Path) -> None:
    clock = Clock()
    receiver = Receiver(busy={"clm-1"})
    async with running_client(make_settings(tmp_path), clock) as client:
        state = state_of(client)
        await queue(state.store, clock, "clm-1")
        deliverer = worker(state.store, clock, state.metrics, receiver)

        assert await deliverer.run_once() == 0
        [due] = await state.store.due_deliveries(clock() + timedelta(seconds=8), 10)
        assert (due.attempts, due.last_error) == (1, "AE: application busy")
        assert clock() + timedelta(seconds=1) <= due.next_attempt_at
        assert due.next_attempt_at <= clock() + timedelta(seconds=2)  # base * 2**0 .. 2**1
        assert sample(state.metrics, "adapter_destination_up", destination=DEST) == 0

        receiver.busy.clear()
        clock.advance(seconds=2)
        assert await deliverer.run_once() == 1
        assert (await state.store.counts()).outbox_pending == 0
        assert (
            sample(
                state.metrics, "adapter_delivery_attempts_total", destination=DEST, result="failed"
            )
            == 1
        )


async def test_a_destination_no_sink_takes_stays_queued_with_the_reason(tmp_path: Path) -> None:
    clock = Clock()
    receiver = Receiver()
    async with running_client(make_settings(tmp_path), clock) as client:
        state = state_of(client)
        await queue(state.store, clock, "clm-1", destination="kafka:charges")
        assert await worker(state.store, clock, state.metrics, receiver).run_once() == 0

        assert receiver.received == []
        [kept] = await state.store.due_deliveries(clock() + timedelta(hours=1), 10)
        assert (kept.destination, kept.last_error) == ("kafka:charges", "no sink for destination")
        assert (await state.store.counts()).outbox_pending == 1


def test_fhir_put_sink_sends_the_stored_version_keyed_by_encounter_and_version() -> None:
    sink = FhirPutSink(FhirPutConfig(auth_header=None, timeout=5))
    clock = Clock()
    body = json.dumps(
        {
            "resourceType": "ChargeItem",
            "id": "chg-1",
            "supportingInformation": [{"reference": "Claim/clm-1"}, {"reference": "Task/t"}],
        }
    )
    delivery = Delivery(1, "http://fhir.example/fhir", "ChargeItem", "chg-1", 3, 0, clock(), "")
    row = ResourceRow("ChargeItem", "chg-1", 3, "visit:1", "Patient/p1", "billable", clock(), body)

    item = sink.item(delivery, row)

    assert sink.accepts("https://fhir.example/fhir") and not sink.accepts("dft:generic-2.5.1")
    assert item.payload == body.encode()
    assert item.ordering_key == "visit:1"
    assert item.idempotency_key == "ChargeItem/chg-1/_history/3"
    assert item.after == (Prerequisite("Claim", ("clm-1",)),)
    claim = ResourceRow("Claim", "clm-1", 1, "visit:1", "Patient/p1", "active", clock(), "{}")
    claim_row = Delivery(2, "http://fhir.example/fhir", "Claim", "clm-1", 1, 0, clock(), "")
    assert sink.item(claim_row, claim).after == ()


def test_every_metric_sample_is_exposed() -> None:
    """The rejected gauge is part of the exposition from the start (0, not absent)."""
    text = generate_latest(Metrics().registry).decode()
    assert "adapter_outbox_rejected 0.0" in text.splitlines()
