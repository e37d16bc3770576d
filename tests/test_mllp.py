"""MLLP framing (the decoder, pure) and the MLLP server on real TCP sockets."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import prometheus_client
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.hl7.ack import AckCode, build_ack
from adapter.hl7.er7 import parse_message, split_messages
from adapter.hl7.mllp_framing import (
    DEFAULT_MAX_FRAME_BYTES,
    Frame,
    MllpDecoder,
    Oversize,
    encode_frame,
)
from adapter.hl7.msh import read_msa, read_msh
from adapter.hl7_answers import HandlerResult
from adapter.listeners.mllp import MllpServer, PeerInfo
from tests.mllp_client import connect, hl7_message, send_messages, send_raw

HOST = "127.0.0.1"
NOW = datetime(2025, 3, 14, 20, 15, 2, tzinfo=UTC)
_ids = itertools.count(1)

Handler = Callable[[bytes, PeerInfo], Awaitable[HandlerResult]]


async def accept_all(payload: bytes, peer: PeerInfo) -> HandlerResult:
    """The simplest real handler: AA for everything, built by the project's ACK builder."""
    ack = build_ack(payload, AckCode.AA, now=NOW, control_id=f"ACK{next(_ids)}")
    msh = read_msh(payload)
    return HandlerResult(ack, AckCode.AA, msh.loggable_control_id if msh else "")


def payloads(items: list[Frame | Oversize]) -> list[bytes]:
    return [item.payload for item in items if isinstance(item, Frame)]


def err_code(ack: bytes) -> str:
    """ERR-3.1 of an ACK (read with the project's tokenizer)."""
    message = parse_message(split_messages(ack.decode())[0].lines)
    err = message.first("ERR")
    return err.get(3) if err is not None else ""


ServerFactory = Callable[..., Awaitable[MllpServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    """Start servers on 127.0.0.1, port 0; every one is stopped at teardown."""
    servers: list[MllpServer] = []

    async def start(handler: Handler = accept_all, **options: Any) -> MllpServer:
        server = MllpServer(handler, **options)
        await server.start(HOST, 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(1.0)


# --- decoder -----------------------------------------------------------------------------

MSG_A = hl7_message("A1")
MSG_B = hl7_message("B2", sep="\n")


class TestDecoder:
    def test_one_frame(self) -> None:
        assert MllpDecoder().feed(encode_frame(MSG_A)) == [Frame(MSG_A)]

    def test_many_frames_in_one_read(self) -> None:
        data = b"".join(encode_frame(m) for m in (MSG_A, MSG_B, MSG_A))
        assert payloads(MllpDecoder().feed(data)) == [MSG_A, MSG_B, MSG_A]

    def test_frame_split_at_every_byte_boundary(self) -> None:
        data = encode_frame(MSG_A) + encode_frame(MSG_B)
        for cut in range(1, len(data)):
            decoder = MllpDecoder()
            items = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
            assert payloads(items) == [MSG_A, MSG_B], cut
            assert decoder.buffered == 0 and not decoder.in_frame

    def test_frame_fed_one_byte_at_a_time(self) -> None:
        decoder = MllpDecoder()
        items = [item for byte in encode_frame(MSG_A) for item in decoder.feed(bytes([byte]))]
        assert items == [Frame(MSG_A)]

    def test_stray_bytes_between_frames_are_skipped_and_counted(self) -> None:
        data = b"\r\n" + encode_frame(MSG_A) + b"\n\ngarbage" + encode_frame(MSG_B) + b"\r\n"
        decoder = MllpDecoder()
        items = decoder.feed(data)
        assert items == [Frame(MSG_A, skipped=2), Frame(MSG_B, skipped=9)]
        assert decoder.skipped_bytes == 11  # the trailing CRLF is not reported until a frame
        assert not decoder.in_frame

    def test_lf_and_crlf_inside_the_payload_are_kept(self) -> None:
        crlf = hl7_message("C3", sep="\r\n")
        items = MllpDecoder().feed(encode_frame(crlf) + encode_frame(MSG_B))
        assert payloads(items) == [crlf, MSG_B]

    def test_end_block_followed_by_a_start_block_ends_the_frame(self) -> None:
        decoder = MllpDecoder()
        items = decoder.feed(b"\x0b" + MSG_A + b"\x1c" + encode_frame(MSG_B))
        assert items == [Frame(MSG_A, missing_cr=True), Frame(MSG_B)]
        assert decoder.missing_cr == 1

    def test_end_block_followed_by_other_bytes_ends_the_frame_and_they_are_skipped(self) -> None:
        items = MllpDecoder().feed(b"\x0b" + MSG_A + b"\x1c\n" + encode_frame(MSG_B))
        assert items == [Frame(MSG_A, missing_cr=True), Frame(MSG_B, skipped=1)]

    def test_end_block_at_the_end_of_a_read_completes_the_frame_at_once(self) -> None:
        decoder = MllpDecoder()
        assert decoder.feed(b"\x0b" + MSG_A + b"\x1c") == [Frame(MSG_A)]
        assert not decoder.in_frame
        assert decoder.feed(b"\x0b") == []  # no CR came: counted, the frame was already out
        assert decoder.missing_cr == 1
        assert decoder.feed(MSG_B + b"\x1c") == [Frame(MSG_B)]
        assert decoder.feed(b"\r") == []  # the late CR is the end of that frame, not a stray
        assert decoder.skipped_bytes == 0 and decoder.missing_cr == 1

    def test_start_block_inside_a_frame_abandons_the_partial_frame(self) -> None:
        decoder = MllpDecoder()
        items = decoder.feed(b"\x0bMSH|partial" + encode_frame(MSG_A))
        assert items == [Frame(MSG_A, skipped=12)]
        assert decoder.abandoned == 1

    def test_frame_of_exactly_the_limit_is_accepted(self) -> None:
        payload = b"M" * 100
        assert MllpDecoder(100).feed(encode_frame(payload)) == [Frame(payload)]

    def test_frame_over_the_limit_is_reported_with_its_head_and_not_buffered(self) -> None:
        big = hl7_message("BIG1", filler=5000)
        decoder = MllpDecoder(1024)
        data = encode_frame(big) + encode_frame(MSG_A)
        items: list[Frame | Oversize] = []
        for start in range(0, len(data), 700):
            items += decoder.feed(data[start : start + 700])
            assert decoder.buffered <= 1024
        assert items == [Oversize(big[:1024], len(big)), Frame(MSG_A)]
        assert decoder.oversize_frames == 1 and decoder.frames == 1

    def test_frame_one_byte_over_the_limit_is_oversize(self) -> None:
        items = MllpDecoder(100).feed(encode_frame(b"M" * 101))
        assert items == [Oversize(b"M" * 100, 101)]

    def test_oversize_head_is_capped_for_large_limits(self) -> None:
        payload = b"M" * (DEFAULT_MAX_FRAME_BYTES + 10)
        (item,) = MllpDecoder().feed(encode_frame(payload))
        assert isinstance(item, Oversize) and len(item.head) == 4096
        assert item.size == len(payload)

    def test_encode_frame_refuses_block_characters(self) -> None:
        with pytest.raises(ValueError):
            encode_frame(b"MSH|\x1c")
        with pytest.raises(ValueError):
            encode_frame(b"\x0bMSH|")

    @settings(max_examples=300, deadline=None)
    @given(
        chunks=st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.lists(st.sampled_from(b"\x0b\x1c\x0d\nAM")).map(bytes),
            ),
            max_size=40,
        ),
        limit=st.integers(min_value=1, max_value=200),
    )
    def test_random_bytes_never_raise_and_memory_stays_bounded(
        self, chunks: list[bytes], limit: int
    ) -> None:
        decoder = MllpDecoder(limit)
        for chunk in chunks:
            for item in decoder.feed(chunk):
                if isinstance(item, Frame):
                    assert len(item.payload) <= limit
                    assert b"\x0b" not in item.payload and b"\x1c" not in item.payload
                else:
                    assert len(item.head) <= limit < item.size
            assert decoder.buffered <= limit

    @settings(max_examples=200, deadline=None)
    @given(
        messages=st.lists(
            st.binary(max_size=200).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")),
            max_size=10,
        ),
        strays=st.lists(st.binary(max_size=5).map(lambda b: b.replace(b"\x0b", b""))),
        cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20),
    )
    def test_frames_survive_any_cutting_and_stray_bytes(
        self, messages: list[bytes], strays: list[bytes], cuts: list[int]
    ) -> None:
        """Stray bytes (anything but a start block) before frames never change the payloads."""
        parts = [
            stray + encode_frame(message)
            for stray, message in zip(itertools.cycle(strays or [b""]), messages, strict=False)
        ]
        data = b"".join(parts)
        decoder = MllpDecoder()
        items: list[Frame | Oversize] = []
        for start, stop in itertools.pairwise([0, *sorted(set(cuts)), len(data)]):
            items += decoder.feed(data[start:stop])
        assert payloads(items) == messages


# --- server -------------------------------------------------------------------------------


async def test_port_zero_picks_a_free_port(start_server: ServerFactory) -> None:
    first, second = await start_server(), await start_server()
    assert first.port > 0 and second.port > 0 and first.port != second.port
    with pytest.raises(RuntimeError):
        await first.start(HOST, 0)


async def test_several_messages_on_one_connection_are_answered_in_order(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    ids = [f"RAS{n:04d}" for n in range(10)]
    acks = await send_messages(HOST, server.port, [hl7_message(i) for i in ids])
    assert [read_msa(ack) for ack in acks] == [("AA", i) for i in ids]


async def test_frames_cut_at_every_byte_boundary_across_writes(start_server: ServerFactory) -> None:
    server = await start_server()
    frame = encode_frame(hl7_message("CUT1"))
    async with connect(HOST, server.port) as client:
        for cut in range(1, len(frame)):
            await client.write_raw(frame[:cut])
            await asyncio.sleep(0.0005)  # let the server read the first part on its own
            await client.write_raw(frame[cut:])
            assert read_msa(await client.read_ack()) == ("AA", "CUT1"), cut


async def test_many_messages_cut_at_random_points(start_server: ServerFactory) -> None:
    server = await start_server()
    messages = [hl7_message(f"RND{n}", filler=n * 7) for n in range(200)]
    acks = await send_messages(HOST, server.port, messages, split_writes=True, seed=7)
    assert [read_msa(ack)[1] for ack in acks] == [f"RND{n}" for n in range(200)]


async def test_stray_bytes_and_line_breaks_between_frames(start_server: ServerFactory) -> None:
    server = await start_server()
    chunks = [
        b"\r\n" + encode_frame(hl7_message("S1")),
        b"\n" + encode_frame(hl7_message("S2", sep="\n")) + b"\r\n",
        b"noise" + encode_frame(hl7_message("S3", sep="\r\n")) + b"\r",
    ]
    acks = await send_raw(HOST, server.port, chunks, expect=3)
    assert [read_msa(ack) for ack in acks] == [("AA", "S1"), ("AA", "S2"), ("AA", "S3")]


async def test_handler_receives_the_payload_exactly_as_sent(start_server: ServerFactory) -> None:
    seen: list[bytes] = []

    async def record(payload: bytes, peer: PeerInfo) -> HandlerResult:
        seen.append(payload)
        return await accept_all(payload, peer)

    server = await start_server(record)
    messages = [hl7_message("L1", sep="\n"), hl7_message("L2", sep="\r\n")]
    await send_messages(HOST, server.port, messages)
    assert seen == messages


async def test_oversize_frame_is_rejected_without_the_handler_and_the_connection_goes_on(
    start_server: ServerFactory,
) -> None:
    called: list[bytes] = []

    async def record(payload: bytes, peer: PeerInfo) -> HandlerResult:
        called.append(payload)
        return await accept_all(payload, peer)

    server = await start_server(record, max_frame_bytes=1024)
    big, small = hl7_message("BIG1", filler=20_000), hl7_message("OK2")
    acks = await send_messages(HOST, server.port, [big, small])
    assert read_msa(acks[0]) == ("AR", "BIG1")
    assert err_code(acks[0]) == "207"
    assert read_msa(acks[1]) == ("AA", "OK2")
    assert called == [small]


async def test_oversize_frame_in_enhanced_mode_is_answered_cr(start_server: ServerFactory) -> None:
    server = await start_server(max_frame_bytes=512)
    header = (
        "MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH|20250314161502||RAS^O17^RAS_O17|ENH1|P|2.5.1|||AL|NE"
    )
    (ack,) = await send_messages(HOST, server.port, [hl7_message("", header=header, filler=900)])
    assert read_msa(ack) == ("CR", "ENH1")


async def test_handler_exception_is_answered_ae_207_and_the_connection_stays_usable(
    start_server: ServerFactory,
) -> None:
    async def fail_first(payload: bytes, peer: PeerInfo) -> HandlerResult:
        if b"|BOOM|" in payload:
            raise RuntimeError("handler bug")
        return await accept_all(payload, peer)

    server = await start_server(fail_first)
    with structlog.testing.capture_logs() as logs:
        acks = await send_messages(HOST, server.port, [hl7_message("BOOM"), hl7_message("N2")])
    assert read_msa(acks[0]) == ("AE", "BOOM")
    assert err_code(acks[0]) == "207"
    assert read_msa(acks[1]) == ("AA", "N2")
    failure = next(e for e in logs if e["event"] == "mllp.handler_failed")
    assert failure["error"] == "RuntimeError"
    assert "handler bug" not in repr(logs)


async def test_a_handler_not_answering_within_the_handler_timeout_is_answered_ae_207_and_the_connection_goes_on(
    start_server: ServerFactory,
) -> None:
    """The store stalled, say: the sender hears AE 207 (resend later) after the limit, not
    silence, and the next message on the same connection is handled as usual."""
    cancelled = asyncio.Event()

    async def stall_first(payload: bytes, peer: PeerInfo) -> HandlerResult:
        if b"|STALL|" in payload:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return await accept_all(payload, peer)

    server = await start_server(stall_first, handler_timeout=0.3)
    with structlog.testing.capture_logs() as logs:
        started = time.monotonic()
        async with connect(HOST, server.port) as client:
            await client.send(hl7_message("STALL"))
            late = await client.read_ack(timeout=5)
            waited = time.monotonic() - started
            await client.send(hl7_message("NEXT"))
            assert read_msa(await client.read_ack()) == ("AA", "NEXT")
    assert read_msa(late) == ("AE", "STALL")
    assert err_code(late) == "207"
    assert 0.3 <= waited < 1.5
    assert cancelled.is_set()  # the handler's wait was cancelled, not left running
    assert [e["seconds"] for e in logs if e["event"] == "mllp.handler_timeout"] == [0.3]


async def test_a_server_stopping_cancels_a_handler_within_its_timeout_without_an_answer(
    start_server: ServerFactory,
) -> None:
    """The handler's deadline is the server's: a stop's own cancellation is not taken for
    it (no AE written, the connection cut as before)."""
    entered = asyncio.Event()

    async def stuck(payload: bytes, peer: PeerInfo) -> HandlerResult:
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    server = await start_server(stuck, handler_timeout=60)
    async with connect(HOST, server.port) as client:
        await client.send(hl7_message("STOPPED"))
        await asyncio.wait_for(entered.wait(), 5)
        await server.stop(0.2)
        with pytest.raises(EOFError):
            await client.read_ack(timeout=5)


async def test_handler_returning_an_unframeable_ack_is_answered_ae(
    start_server: ServerFactory,
) -> None:
    async def broken(payload: bytes, peer: PeerInfo) -> HandlerResult:
        return HandlerResult(b"MSH|\x1c", AckCode.AA)

    server = await start_server(broken)
    (ack,) = await send_messages(HOST, server.port, [hl7_message("BAD1")])
    assert read_msa(ack) == ("AE", "BAD1")


async def test_the_log_line_says_the_code_the_handler_gave_never_one_read_back_from_msa(
    start_server: ServerFactory,
) -> None:
    """The code travels with the ACK: the server logs it as given (here a handler whose ACK
    says CA while it reports AE shows the log follows the typed code, not the MSA)."""

    async def typed(payload: bytes, peer: PeerInfo) -> HandlerResult:
        return HandlerResult(build_ack(payload, "CA", now=NOW, control_id="X1"), AckCode.AE, "P1")

    server = await start_server(typed)
    with structlog.testing.capture_logs() as logs:
        (ack,) = await send_messages(HOST, server.port, [hl7_message("P1")])
    assert read_msa(ack) == ("CA", "P1")
    line = next(e for e in logs if e["event"] == "mllp.message")
    assert line["ack_code"] == AckCode.AE


async def test_handler_returning_no_ack_sends_nothing(start_server: ServerFactory) -> None:
    """Enhanced mode with MSH-15 NE: the handler answers None and nothing is written."""

    async def silent_for_ne(payload: bytes, peer: PeerInfo) -> HandlerResult:
        if b"|NE|" in payload:
            return HandlerResult(None, None)
        return await accept_all(payload, peer)

    server = await start_server(silent_for_ne)
    header = "MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH|20250314161502||RAS^O17^RAS_O17|Q1|P|2.5.1|||NE|NE"
    async with connect(HOST, server.port) as client:
        await client.send(hl7_message("", header=header))
        await client.send(hl7_message("Q2"))
        assert read_msa(await client.read_ack()) == ("AA", "Q2")


async def test_handler_may_answer_an_accept_and_an_application_ack(
    start_server: ServerFactory,
) -> None:
    """Enhanced mode, MSH-15 AL and MSH-16 AL: CA then AA, both before the next message's."""

    async def both(payload: bytes, peer: PeerInfo) -> HandlerResult:
        accept = build_ack(payload, "CA", now=NOW, control_id="X1")
        application = build_ack(payload, "AA", now=NOW, control_id="X2")
        return HandlerResult(accept, AckCode.CA, more_acks=[application])

    server = await start_server(both)
    async with connect(HOST, server.port) as client:
        await client.send(hl7_message("E1"))
        await client.send(hl7_message("E2"))
        answers = [read_msa(await client.read_ack()) for _ in range(4)]
    assert answers == [("CA", "E1"), ("AA", "E1"), ("CA", "E2"), ("AA", "E2")]


async def test_idle_connection_is_closed(start_server: ServerFactory) -> None:
    server = await start_server(idle_timeout=0.2)
    async with connect(HOST, server.port) as client:
        await client.send(hl7_message("I1"))
        assert read_msa(await client.read_ack()) == ("AA", "I1")
        started = time.monotonic()
        assert await client.wait_closed_by_server(timeout=5) == b""
        assert 0.15 <= time.monotonic() - started < 3


async def test_graceful_stop_answers_the_in_flight_message_then_closes(
    start_server: ServerFactory,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(payload: bytes, peer: PeerInfo) -> HandlerResult:
        entered.set()
        await release.wait()
        return await accept_all(payload, peer)

    server = await start_server(slow)
    port = server.port
    async with connect(HOST, port) as busy, connect(HOST, port) as idle:
        await busy.send(hl7_message("SLOW1"))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(server.stop(10.0))
        assert await idle.wait_closed_by_server(timeout=5) == b""  # idle: closed at once
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, port)  # no longer accepting
        assert not stopping.done()
        release.set()
        assert read_msa(await busy.read_ack()) == ("AA", "SLOW1")
        assert await busy.wait_closed_by_server(timeout=5) == b""
        await asyncio.wait_for(stopping, 5)


async def test_stop_cuts_a_handler_that_outlives_the_grace_period(
    start_server: ServerFactory,
) -> None:
    entered = asyncio.Event()

    async def stuck(payload: bytes, peer: PeerInfo) -> HandlerResult:
        entered.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    server = await start_server(stuck)
    async with connect(HOST, server.port) as client:
        await client.send(hl7_message("STUCK"))
        await asyncio.wait_for(entered.wait(), 5)
        started = time.monotonic()
        await server.stop(0.2)
        assert time.monotonic() - started < 2
        assert server.connections == 0
        with pytest.raises(EOFError):
            await client.read_ack(timeout=5)


async def test_stop_waits_for_a_frame_already_half_received(start_server: ServerFactory) -> None:
    server = await start_server()
    frame = encode_frame(hl7_message("HALF1"))
    async with connect(HOST, server.port) as client:
        await client.write_raw(frame[:40])
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop(5.0))
        await asyncio.sleep(0.05)
        await client.write_raw(frame[40:])
        assert read_msa(await client.read_ack()) == ("AA", "HALF1")
        await asyncio.wait_for(stopping, 5)


async def test_50_parallel_connections_of_20_messages_each(start_server: ServerFactory) -> None:
    server = await start_server()

    async def sender(n: int) -> list[tuple[str, str]]:
        messages = [hl7_message(f"C{n:02d}M{m:02d}") for m in range(20)]
        acks = await send_messages(HOST, server.port, messages, split_writes=n % 2 == 0, seed=n)
        return [read_msa(ack) for ack in acks]

    results = await asyncio.gather(*(sender(n) for n in range(50)))
    for n, answers in enumerate(results):
        assert answers == [("AA", f"C{n:02d}M{m:02d}") for m in range(20)]


async def test_one_log_line_per_message_with_no_phi(start_server: ServerFactory) -> None:
    server = await start_server()
    with structlog.testing.capture_logs() as logs:
        await send_messages(HOST, server.port, [hl7_message("LOG1"), hl7_message("LOG2")])
        await asyncio.sleep(0.05)  # the connection's close line
    lines = [e for e in logs if e["event"] == "mllp.message"]
    assert [(e["control_id"], e["ack_code"]) for e in lines] == [("LOG1", "AA"), ("LOG2", "AA")]
    for line in lines:
        assert line["peer"].startswith("127.0.0.1:")
        assert line["bytes"] == len(hl7_message("LOG1"))
        assert line["latency_ms"] >= 0
    text = repr(logs)
    for phi in ("SAMPLEPATIENT", "AVERY", "19610422", "E1004417", "ONDANSETRON"):
        assert phi not in text


async def test_ack_latency_is_observed(start_server: ServerFactory) -> None:
    class Histogram:
        def __init__(self) -> None:
            self.values: list[float] = []

        def observe(self, amount: float) -> None:
            self.values.append(amount)

    class Metrics:
        def __init__(self) -> None:
            self.ack_latency = Histogram()
            self.limits_hit = prometheus_client.Counter(
                "hits", "limits hit", ["listener", "limit"], registry=None
            )

    metrics = Metrics()
    server = await start_server(metrics=metrics)
    await send_messages(HOST, server.port, [hl7_message("M1"), hl7_message("M2")])
    assert len(metrics.ack_latency.values) == 2
    assert all(0 <= v < 5 for v in metrics.ack_latency.values)


async def test_connections_sharing_the_receive_buffer_each_get_exactly_their_own_bytes(
    start_server: ServerFactory,
) -> None:
    """All connections are read into one buffer (`listeners.receive.SharedBufferProtocol`): interleaved
    senders, messages larger than one read, and writes cut anywhere must still hand every
    handler call exactly the bytes its own connection sent, in order."""
    received: dict[int, list[bytes]] = {}

    async def record(payload: bytes, peer: PeerInfo) -> HandlerResult:
        received.setdefault(peer.connection, []).append(payload)
        return await accept_all(payload, peer)

    server = await start_server(record, read_bytes=4096)
    sent: dict[str, list[bytes]] = {}

    async def sender(n: int) -> None:
        messages = [
            hl7_message(f"S{n:02d}M{m}", filler=(n * 997 + m * 4093) % 30_000) for m in range(6)
        ]
        sent[f"S{n:02d}"] = messages
        acks = await send_messages(HOST, server.port, messages, split_writes=True, seed=n)
        assert [read_msa(ack) for ack in acks] == [("AA", f"S{n:02d}M{m}") for m in range(6)]

    await asyncio.gather(*(sender(n) for n in range(12)))
    by_sender = {
        read_msh(payloads[0]).loggable_control_id[:3]: payloads  # type: ignore[union-attr]
        for payloads in received.values()
    }
    assert by_sender == sent
