"""DFT^P03 from the service: coded encounters reach a real MLLP receiver through the outbox.

The whole service runs (MLLP in, coder, store, outbox worker); the receiver is python-hl7's
asyncio MLLP server (tests/test_dft_sink.py). Each DFT received is parsed by hl7apy in
strict validation and read back with python-hl7 against the Claim the service stored.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest

from adapter.core.charges import CodedEncounter
from adapter.outbox.dft_posting import posting_json, posting_of
from adapter.outbox.dft_queue import DftQueue
from adapter.store.base import SearchQuery
from adapter.store.sqlite import SqliteStore
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.dft_support import field, ft1s, mappings, only_encounter, profile, repetitions
from tests.service_fixtures import Clock, make_settings
from tests.test_dft_sink import Receiver, receiving, strict_dft_p03
from tests.test_service_e2e import hl7_messages, send_messages

DEST = "dft:generic-2.5.1"


async def drain(state: AppState, clock: Clock) -> None:
    assert state.deliverer is not None
    for _ in range(200):
        clock.advance(seconds=5)
        await state.deliverer.run_once()
        if (await state.store.counts()).outbox_pending == 0:
            return
    pytest.fail("the outbox did not drain")


def claim_lines(claim: dict[str, Any]) -> list[tuple[str, tuple[str, ...], int]]:
    return [
        (
            item["productOrService"]["coding"][0]["code"],
            tuple(m["coding"][0]["code"] for m in item.get("modifier", [])),
            item["quantity"]["value"],
        )
        for item in claim.get("item", [])
    ]


async def run_service(tmp_path: Path, receiver: Receiver) -> tuple[list[dict[str, Any]], Any]:
    """S09 and S11 (coded) and S25 (held) through the service; the Claims it stored."""
    async for port in receiving(receiver):
        clock = Clock()
        settings = make_settings(
            tmp_path,
            close_check_seconds=3600,
            dft_url=f"mllp://127.0.0.1:{port}",
            delivery_backoff_base_seconds=1,
            delivery_backoff_max_seconds=4,
            dft_ack_timeout_seconds=2,
        )
        state = await start_state(settings, clock)
        try:
            assert state.mllp is not None
            for name in ("S09.hl7", "S11.hl7", "S25.hl7"):
                await send_messages("127.0.0.1", state.mllp.port, hl7_messages(name))
            clock.advance(days=1)
            await state.coder.run_once()
            await drain(state, clock)
            claims = []
            for key in await _claim_ids(state):
                row = await state.store.read_resource("Claim", key)
                assert row is not None
                claims.append(json.loads(row.body))
            counts = await state.store.counts()
        finally:
            await stop_state(state)
    return claims, counts


async def _claim_ids(state: AppState) -> list[str]:
    from adapter.store.base import SearchQuery

    rows, _ = await state.store.search(SearchQuery("Claim", count=100))
    return [r.resource_id for r in rows]


async def test_each_coded_encounter_reaches_the_receiver_as_a_strict_dft_equal_to_its_claim(
    tmp_path: Path,
) -> None:
    receiver = Receiver(lambda _m, _n: "AA")
    claims, counts = await run_service(tmp_path, receiver)

    active = [c for c in claims if c["status"] == "active"]
    drafts = [c for c in claims if c["status"] == "draft"]  # held for review: nothing sent
    assert len(active) >= 1 and drafts, [c["status"] for c in claims]
    assert len(active) + len(drafts) == len(claims) == 3
    by_control: dict[str, str] = {}
    for text in receiver.received:
        strict_dft_p03(text)
        control = hl7.parse(text).segment("MSH")[10][0]
        assert by_control.setdefault(control, text) == text  # a resend is the same message
    assert len(by_control) == len(active)
    sent = sorted(
        [(field(s, 25), tuple(repetitions(s, 26)), int(field(s, 10))) for s in ft1s(hl7.parse(t))]
        for t in by_control.values()
    )
    assert sent == sorted(claim_lines(c) for c in active)
    assert counts.outbox_pending == 0 and counts.outbox_rejected == 0
    assert receiver.connections == 1


async def test_an_ar_keeps_the_dft_as_rejected_with_the_receivers_text(tmp_path: Path) -> None:
    receiver = Receiver(lambda _m, n: "AR" if n == 1 else "AA", err_text="Account not found")
    _, counts = await run_service(tmp_path, receiver)
    assert (counts.outbox_pending, counts.outbox_rejected) == (0, 1)
    store = SqliteStore(tmp_path / "adapter.db")
    try:
        [rejected], total = await store.rejected_deliveries(10, 0)
    finally:
        await store.close()
    assert total == 1 and rejected.destination == DEST
    assert "Account not found" in rejected.last_error


def coded_s11() -> tuple[Any, CodedEncounter]:
    return only_encounter("S11")


async def test_a_re_coded_version_queues_credits_then_debits_against_what_was_queued(
    tmp_path: Path,
) -> None:
    """The posting kept per destination and encounter is what the next DFT credits."""
    store = SqliteStore(tmp_path / "adapter.db")
    await store.migrate()
    try:
        clock = Clock(datetime(2026, 2, 2, 15, 0, tzinfo=UTC))
        queue = DftQueue(store, profile("generic-2.5.1"), DEST, mappings().code_labels, clock)
        encounter, coded = coded_s11()
        claims = []
        for version in (1, 2):
            body = {"resourceType": "Claim", "id": "clm-s11", "status": "active", "v": version}
            claims.append(
                await store.put_resource_version(
                    "Claim", "clm-s11", "active", json.dumps(body), clock(), None
                )
            )
        first = await queue.enqueue(coded, encounter, claims[0], released=False)
        changed = coded.lines[-1]
        lines = (*coded.lines[:-1], replace(changed, units=changed.units + 1))
        second = await queue.enqueue(replace(coded, lines=lines), encounter, claims[1], False)
        assert first is not None and second is not None

        segments = ft1s(hl7.parse(second.text))
        assert [field(s, 6) for s in segments] == ["CD", "CG"]
        posted = {c.procedure_code: c.transaction_id for c in first.posting.charges}
        assert field(segments[0], 2) == posted[changed.code]
        stored = await store.dft_posting(DEST, coded.encounter_key)
        assert stored is not None and posting_of(stored) == second.posting
        due = await store.due_deliveries(clock(), 10)
        assert [(d.destination, d.version, d.payload) for d in due] == [
            (DEST, 1, first.text),
            (DEST, 2, second.text),
        ]
        assert await store.queued_before(DEST, "Claim", "clm-s11", 2)
        assert not await store.queued_before(DEST, "Claim", "clm-s11", 1)
    finally:
        await store.close()


def test_a_posting_reads_back_as_it_was_stored() -> None:
    encounter, coded = coded_s11()
    from adapter.hl7.dft import Dft, DftVisit, build_dft
    from tests.dft_support import POSTED_AT

    built = build_dft(coded, DftVisit.of(encounter), profile("generic-2.5.1"), version=1,
                      posted_at=POSTED_AT, labels=mappings().code_labels)  # fmt: skip
    assert isinstance(built, Dft)
    assert posting_of(posting_json(built.posting)) == built.posting


HL7_CT = {"Content-Type": "x-application/hl7-v2+er7"}


async def test_an_override_of_a_held_encounter_is_billed_by_the_catch_up(tmp_path: Path) -> None:
    """The override writes the Claim without re-coding; the catch-up queues its DFT."""
    from tests.service_fixtures import running_client, state_of

    receiver = Receiver(lambda _m, _n: "AA")
    async for port in receiving(receiver):
        clock = Clock()
        settings = make_settings(tmp_path, close_check_seconds=3600,
                                 dft_url=f"mllp://127.0.0.1:{port}")  # fmt: skip
        async with running_client(settings, clock) as client:
            state = state_of(client)
            for message in hl7_messages("S25.hl7"):
                assert (await client.post("/hl7", data=message, headers=HL7_CT)).status == 200
            await state.coder.run_once()
            await drain(state, clock)
            assert receiver.received == []  # held: nothing sent
            [item] = await (await client.get("/review")).json()
            body = {"action": "override", "note": "Stop time confirmed: 11:00.", "actor": "b-1"}
            response = await client.post(f"/review/{item['claimId']}/release", json=body)
            assert response.status == 200, await response.text()

            clock.advance(minutes=6)  # the catch-up looks again
            await state.coder.run_once()
            await drain(state, clock)
            claim = await state.store.read_resource("Claim", item["claimId"])
    assert claim is not None and claim.status == "active"
    [text] = list(dict.fromkeys(receiver.received))
    strict_dft_p03(text)
    sent = [(field(s, 25), int(field(s, 10))) for s in ft1s(hl7.parse(text))]
    assert [(c, q) for c, _m, q in claim_lines(json.loads(claim.body))] == sent


async def test_a_dft_lost_between_the_coding_and_its_queueing_is_queued_by_the_catch_up(
    tmp_path: Path,
) -> None:
    """The process died after the coding's transaction, before the DFT's: the database
    then has the Claim version and neither the DFT nor its posting."""
    import sqlite3

    receiver = Receiver(lambda _m, _n: "AA")
    async for port in receiving(receiver):
        clock = Clock()
        settings = make_settings(tmp_path, close_check_seconds=3600,
                                 dft_url=f"mllp://127.0.0.1:{port}")  # fmt: skip
        state = await start_state(settings, clock)
        try:
            assert state.mllp is not None and state.deliverer is not None
            await state.coder.catch_up_dft()  # DFTs begin now
            clock.advance(seconds=1)
            with sqlite3.connect(tmp_path / "adapter.db") as conn:  # the DFT step never ran
                conn.execute("CREATE TRIGGER lost AFTER INSERT ON dft_postings WHEN"
                             " NEW.encounter_key <> '' BEGIN DELETE FROM dft_postings WHERE"
                             " encounter_key = NEW.encounter_key; DELETE FROM outbox WHERE"
                             " payload IS NOT NULL; END")  # fmt: skip
            await send_messages("127.0.0.1", state.mllp.port, hl7_messages("S11.hl7"))
            clock.advance(days=1)
            await state.coder.run_once()
            claims, _ = await state.store.search(SearchQuery("Claim"))
            assert [c.status for c in claims] == ["active"]
            assert (await state.store.counts()).outbox_pending == 0  # lost
            with sqlite3.connect(tmp_path / "adapter.db") as conn:
                conn.execute("DROP TRIGGER lost")
            clock.advance(minutes=6)
            await state.coder.run_once()  # the catch-up finds the Claim ahead
            await drain(state, clock)
        finally:
            await stop_state(state)
    assert len(set(receiver.received)) == 1
    strict_dft_p03(receiver.received[0])
