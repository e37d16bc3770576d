"""After an AR the posting is what the receiver accepted, and one patient's DFTs go in order.

The whole service runs against python-hl7's MLLP server (tests/test_dft_sink.py). An AR
keeps the DFT as rejected with the receiver's text, counted and listed; the next version
of the encounter is then built against what the receiver holds (nothing was accepted:
no credit, every line a charge), and a later DFT already queued on top of the refused
one is refused unsent with it and queued again by the catch-up. A DFT answered AE holds
back the patient's next encounter (not another patient's) until it is through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hl7

from adapter.hl7.dft import control_id
from adapter.web.app import start_state, stop_state
from adapter.web.state import AppState
from tests.dft_support import field, ft1s
from tests.service_fixtures import Clock, make_settings, running_client, state_of
from tests.test_dft import strict
from tests.test_dft_delivery import DEST, claim_lines, drain
from tests.test_dft_sink import Receiver, receiving
from tests.test_service_e2e import hl7_messages, send_messages


def correction_deleting_the_second_drug(messages: list[bytes]) -> bytes:
    """S11's RAS again under a new MSH-10 with only its second administration, RXA-21 D."""
    segments = messages[1].decode().rstrip("\r").split("\r")
    msh = segments[0].split("|")
    msh[9] = "CN260116S1199"
    head = ["|".join(msh)] + [s for s in segments if s[:3] in ("PID", "PV1")]
    groups = [i for i, s in enumerate(segments) if s.startswith("ORC")]
    start, end = groups[1], groups[2]
    group = segments[start:end]
    rxa = next(i for i, s in enumerate(group) if s.startswith("RXA"))
    fields = group[rxa].split("|")
    fields[21] = "D"
    group[rxa] = "|".join(fields)
    return ("\r".join(head + group) + "\r").encode()


def another_day(messages: list[bytes]) -> list[bytes]:
    """The same patient's next visit: its own visit number, day and control ids."""
    return [
        m.replace(b"HV2601160111", b"HV2601170111")
        .replace(b"20260116", b"20260117")
        .replace(b"CN260116S11", b"CN260117S11")
        for m in messages
    ]


async def code_and_drain(state: AppState, clock: Clock, *batches: list[bytes]) -> None:
    assert state.mllp is not None
    for batch in batches:
        await send_messages("127.0.0.1", state.mllp.port, batch)
    clock.advance(days=1)
    await state.coder.run_once()
    await drain(state, clock)


def settings_for(tmp_path: Path, port: int) -> Any:
    return make_settings(
        tmp_path,
        close_check_seconds=3600,
        dft_url=f"mllp://127.0.0.1:{port}",
        delivery_backoff_base_seconds=1,
        delivery_backoff_max_seconds=4,
        dft_ack_timeout_seconds=10,
    )


def kinds(text: str) -> list[str]:
    return [field(s, 6) for s in ft1s(hl7.parse(text))]


async def current_claim_lines(state: AppState) -> list[tuple[str, tuple[str, ...], int]]:
    import json

    from adapter.store.base import SearchQuery

    [row], _ = await state.store.search(SearchQuery("Claim"))
    return claim_lines(json.loads(row.body))


async def test_after_an_ar_the_next_version_charges_every_line_and_credits_nothing(
    tmp_path: Path,
) -> None:
    receiver = Receiver(lambda _m, n: "AR" if n == 1 else "AA", err_text="Account not open")
    s11 = hl7_messages("S11.hl7")
    async for port in receiving(receiver):
        clock = Clock()
        async with running_client(settings_for(tmp_path, port), clock) as client:
            state = state_of(client)
            await code_and_drain(state, clock, s11)
            listed = await (await client.get("/admin/outbox?state=rejected")).json()
            metrics = await (await client.get("/metrics")).text()
            await code_and_drain(state, clock, [correction_deleting_the_second_drug(s11)])
            lines = await current_claim_lines(state)
            counts = await state.store.counts()
    [item] = listed["items"]
    assert item["destination"] == DEST and "Account not open" in item["reason"]
    assert (
        f'adapter_delivery_attempts_total{{destination="{DEST}",result="rejected"}} 1.0' in metrics
    )
    assert f'adapter_destination_up{{destination="{DEST}"}} 1.0' in metrics
    assert "adapter_outbox_rejected 1.0" in metrics
    first, second = list(dict.fromkeys(receiver.received))  # a resend is the same text
    strict(second, "2.5.1")
    assert set(kinds(first)) == {"CG"}
    assert kinds(second) == ["CG"] * len(lines)  # no credit for what was never accepted
    sent = [(field(s, 25), int(field(s, 10))) for s in ft1s(hl7.parse(second))]
    assert sent == [(code, units) for code, _m, units in lines]
    assert (counts.outbox_pending, counts.outbox_rejected) == (0, 1)


async def test_a_version_queued_on_a_refused_one_is_refused_unsent_and_queued_again(
    tmp_path: Path,
) -> None:
    answers = {"first": True}

    def answer(_m: hl7.Message, _n: int) -> str:
        refuse, answers["first"] = answers["first"], False
        return "AR" if refuse else "AA"

    receiver = Receiver(answer)
    s11 = hl7_messages("S11.hl7")
    async for port in receiving(receiver):
        clock = Clock()
        state = await start_state(settings_for(tmp_path, port), clock)
        try:
            assert state.mllp is not None and state.deliverer is not None
            await send_messages("127.0.0.1", state.mllp.port, s11)
            clock.advance(days=1)
            await state.coder.run_once()  # version 1 queued
            await send_messages(
                "127.0.0.1", state.mllp.port, [correction_deleting_the_second_drug(s11)]
            )
            clock.advance(days=1)
            await state.coder.run_once()  # version 2 queued, built on version 1
            await drain(state, clock)  # 1 refused: 2 with it, unsent
            assert len(set(receiver.received)) == 1
            rejected, total = await state.store.rejected_deliveries(10, 0)
            clock.advance(minutes=6)  # the catch-up queues version 2 again
            await state.coder.run_once()
            await drain(state, clock)
            lines = await current_claim_lines(state)
            key = (await state.store.read_resource("Claim", rejected[0].resource_id)).encounter_key  # type: ignore[union-attr]
        finally:
            await stop_state(state)
    assert total == 2 and [d.version for d in rejected] == [1, 2]
    assert "not sent" in rejected[1].last_error
    _refused, second = list(dict.fromkeys(receiver.received))
    assert hl7.parse(second).segment("MSH")[10][0] == control_id(key, 2)
    assert kinds(second) == ["CG"] * len(lines)


async def test_a_patients_next_encounter_waits_while_the_earlier_one_is_retried(
    tmp_path: Path,
) -> None:
    answered: list[tuple[str, str]] = []

    def answer(message: hl7.Message, n: int) -> str:
        code = "AE" if n == 1 else "AA"
        answered.append((str(message.segment("PV1")[19]), code))
        return code

    receiver = Receiver(answer)
    s11 = hl7_messages("S11.hl7")
    async for port in receiving(receiver):
        clock = Clock()
        state = await start_state(settings_for(tmp_path, port), clock)
        try:
            await code_and_drain(state, clock, s11, another_day(s11), hl7_messages("S16.hl7"))
        finally:
            await stop_state(state)
    visits = [v for v, _ in answered]
    first = visits[0]
    assert first in ("HV2601160111", "HV2601170111")
    other = "HV2601170111" if first == "HV2601160111" else "HV2601160111"
    assert answered.index((first, "AA")) < visits.index(other)  # the patient's order kept
    assert len(set(visits)) == 3  # the other patient's DFT went meanwhile
