"""DFT^P03 over MLLP: the sink against a real MLLP receiver on a real socket.

The receiver is python-hl7's asyncio MLLP server (an independent implementation): it
reads each DFT, keeps its text, and answers as the test scripts it (AA; AE then AA; AR
with an ERR; nothing at all). Every DFT it received is parsed by hl7apy in strict
validation for DFT_P03 2.5.1.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import hl7
import hl7.mllp
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from adapter.hl7.ack_reply import read_ack_reply
from adapter.hl7.dft import Dft, DftVisit, build_dft
from adapter.outbox.dft_mllp import DftMllpSink, DftUrlError, MllpEndpoint, destination_for
from adapter.outbox.sink import DeliveryResult, OutboxItem, Outcome
from adapter.store.base import Delivery
from tests.dft_support import POSTED_AT, mappings, only_encounter, profile
from tests.tls_fixtures import make_pki

DEST = destination_for("generic-2.5.1")
T0 = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)

Answer = Callable[[hl7.Message, int], str | None]  # the ACK code, None = never answer


@dataclass
class Receiver:
    """What the receiver got (each DFT's text, per connection) and how it answers."""

    answer: Answer
    received: list[str] = field(default_factory=list)
    connections: int = 0
    err_text: str = "Unknown chargemaster item"
    stale_ack: bytes = b""  # an MSA written (in an ACK) before each real ACK

    async def handle(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        self.connections += 1
        try:
            while True:
                message = await reader.readmessage()
                self.received.append(str(message))
                code = self.answer(message, len(self.received))
                if code is None:
                    continue
                if self.stale_ack:
                    header = b"MSH|^~\\&|R|F|A|F|20260202||ACK|9|P|2.5.1\r"
                    writer.writeblock(header + self.stale_ack + b"\r")
                ack = str(message.create_ack(code)).rstrip("\r")
                if code in ("AE", "AR"):
                    ack += f"\rERR|||207^Application internal error^HL70357|E||||{self.err_text}"
                writer.writeblock(ack.encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def receiving(receiver: Receiver, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await hl7.mllp.start_hl7_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def always_aa() -> AsyncIterator[tuple[Receiver, int]]:
    receiver = Receiver(lambda _m, _n: "AA")
    async for port in receiving(receiver):
        yield receiver, port


def dfts() -> list[Dft]:
    """Two real DFTs: scenario S17 (hospital nivolumab) and S09 (office R-CHOP)."""
    out = []
    for scenario in ("S17", "S09"):
        encounter, coded = only_encounter(scenario)
        built = build_dft(
            coded,
            DftVisit.of(encounter),
            profile("generic-2.5.1"),
            version=1,
            posted_at=POSTED_AT,
            released=True,
            labels=mappings().code_labels,
        )
        assert isinstance(built, Dft)
        out.append(built)
    return out


def item_of(dft: Dft, delivery_id: int = 1) -> OutboxItem:
    delivery = Delivery(delivery_id, DEST, "Claim", dft.posting.encounter_key, 1, 0, T0, "")
    return OutboxItem(
        delivery=delivery,
        ordering_key="Patient/p1",
        idempotency_key=dft.control_id,
        payload=dft.text.encode(),
    )


def sink(port: int, timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> DftMllpSink:
    endpoint = MllpEndpoint("127.0.0.1", port, tls is not None)
    return DftMllpSink(DEST, endpoint, tls, ack_timeout=timeout)


def strict_dft_p03(text: str) -> None:
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert (message.name, message.version) == ("DFT_P03", "2.5.1")
    assert message.validate()


async def test_aa_is_delivered_and_one_connection_carries_every_message(
    always_aa: tuple[Receiver, int],
) -> None:
    receiver, port = always_aa
    dft_sink = sink(port)
    try:
        results = [await dft_sink.deliver(item_of(d, i)) for i, d in enumerate(dfts(), 1)]
    finally:
        await dft_sink.close()

    assert results == [DeliveryResult.delivered()] * 2
    assert receiver.connections == 1 and dft_sink.connections_opened == 1
    assert [hl7.parse(t).segment("MSH")[10][0] for t in receiver.received] == [
        d.control_id for d in dfts()
    ]
    for text in receiver.received:
        strict_dft_p03(text)


async def test_ae_is_retried_and_the_resend_carries_the_same_msh_10() -> None:
    receiver = Receiver(lambda _m, n: "AE" if n == 1 else "AA", err_text="Account locked")
    async for port in receiving(receiver):
        dft_sink = sink(port)
        dft = dfts()[0]
        try:
            first = await dft_sink.deliver(item_of(dft))
            second = await dft_sink.deliver(item_of(dft))
        finally:
            await dft_sink.close()

    assert first.outcome is Outcome.RETRY_LATER
    assert first.reason == "AE: Account locked; 207 Application internal error"
    assert second == DeliveryResult.delivered()
    sent = [hl7.parse(t).segment("MSH")[10][0] for t in receiver.received]
    assert sent == [dft.control_id, dft.control_id]  # the receiver's duplicate check sees it
    assert receiver.received[0] == receiver.received[1]


async def test_ar_is_rejected_for_good_with_the_receivers_err_text() -> None:
    receiver = Receiver(lambda _m, _n: "AR", err_text="FT1-7 item 999 not on chargemaster")
    async for port in receiving(receiver):
        dft_sink = sink(port)
        try:
            result = await dft_sink.deliver(item_of(dfts()[0]))
        finally:
            await dft_sink.close()

    assert result.outcome is Outcome.REJECTED
    assert "FT1-7 item 999 not on chargemaster" in result.reason
    assert result.reason.startswith("AR: ")


async def test_no_ack_is_retried_and_the_next_attempt_opens_a_new_connection() -> None:
    receiver = Receiver(lambda _m, n: None if n == 1 else "AA")
    async for port in receiving(receiver):
        dft_sink = sink(port, timeout=0.3)
        dft = dfts()[0]
        try:
            first = await dft_sink.deliver(item_of(dft))
            second = await dft_sink.deliver(item_of(dft))
        finally:
            await dft_sink.close()

    assert first == DeliveryResult.retry_later("no ACK within 0.3 s")
    assert second == DeliveryResult.delivered()
    assert receiver.connections == 2 and dft_sink.connections_opened == 2


async def test_a_late_ack_for_another_message_is_not_taken_for_this_one() -> None:
    """Before its real ACK the receiver writes a refusal of another MSH-10 (a late ACK of
    an earlier, abandoned send): it must not be read as this message's."""
    receiver = Receiver(lambda _m, _n: "AA", stale_ack=b"MSA|AR|DSOMEOTHERVERSION0")
    async for port in receiving(receiver):
        dft_sink = sink(port)
        try:
            result = await dft_sink.deliver(item_of(dfts()[0]))
        finally:
            await dft_sink.close()
    assert result == DeliveryResult.delivered()


async def test_no_receiver_is_retried_naming_where() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    dft_sink = sink(port)
    result = await dft_sink.deliver(item_of(dfts()[0]))
    await dft_sink.close()
    assert result.outcome is Outcome.RETRY_LATER
    assert result.reason.startswith(f"connect 127.0.0.1:{port}: ")


async def test_mllps_with_a_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    if pki is None:
        pytest.skip("TLS TESTS NOT RUN: neither `cryptography` nor the `openssl` CLI is available")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki.server_cert, pki.server_key)
    server_tls.load_verify_locations(pki.ca)
    server_tls.verify_mode = ssl.CERT_REQUIRED  # the receiver wants our client certificate
    client_tls = ssl.create_default_context(cafile=str(pki.ca))
    client_tls.load_cert_chain(pki.client_cert, pki.client_key)
    receiver = Receiver(lambda _m, _n: "AA")
    async for port in receiving(receiver, server_tls):
        endpoint = MllpEndpoint("localhost", port, True)
        dft_sink = DftMllpSink(DEST, endpoint, client_tls, ack_timeout=2.0)
        try:
            result = await dft_sink.deliver(item_of(dfts()[0]))
        finally:
            await dft_sink.close()
    assert result == DeliveryResult.delivered()
    strict_dft_p03(receiver.received[0])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mllp://billing.example:2575", MllpEndpoint("billing.example", 2575, False)),
        ("mllps://10.0.0.5:6661", MllpEndpoint("10.0.0.5", 6661, True)),
    ],
)
def test_dft_url_names_host_port_and_tls(url: str, expected: MllpEndpoint) -> None:
    assert MllpEndpoint.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://billing:2575", "mllp://billing", "mllp://:2575", "mllp://b:99999", "mllp://b:1/x"],
)
def test_a_bad_dft_url_is_refused(url: str) -> None:
    with pytest.raises(DftUrlError):
        MllpEndpoint.parse(url)


@pytest.mark.parametrize(
    ("ack", "outcome"),
    [("AA", Outcome.DELIVERED), ("CA", Outcome.DELIVERED), ("AE", Outcome.RETRY_LATER),
     ("CE", Outcome.RETRY_LATER), ("AR", Outcome.REJECTED), ("CR", Outcome.REJECTED),
     ("ZZ", Outcome.RETRY_LATER)],
)  # fmt: skip
def test_each_ack_code_decides_the_result(ack: str, outcome: Outcome) -> None:
    from adapter.outbox.dft_mllp import result_of

    reply = read_ack_reply(f"MSH|^~\\&|R|F|A|F|20260202||ACK|9|P|2.5.1\rMSA|{ack}|D1\r".encode())
    assert result_of(reply).outcome is outcome
