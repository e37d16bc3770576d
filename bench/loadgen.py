"""MLLP load generator: N connections, each waiting for every ACK, as interface engines do.

Runs in its own process (the benchmarks start it with subprocess) so that the
server under test and the sender do not share an interpreter. Prints one JSON
object on stdout at the end (and, with `--progress-every`, `progress acked=N
t=S` lines before it).

Modes:
- closed loop (default): every connection sends its next message as soon as the
  previous ACK arrived; the figure is the server's capacity.
- open loop (`--rate R`): message k (over all connections) is due at
  t0 + k/R, evenly spaced, connection k % N. A connection still waiting for an
  earlier ACK sends the message late; its latency is counted from the time it
  was due (no coordinated omission), and also, separately, from the actual send.
  (A connection that was idle at its due time counts from the actual send: the
  timer's own overshoot, ~0.5-1 ms, belongs to the generator, not the server.)

Every run is bounded: `--duration` seconds of sending after `--warmup`, at most
`--max-messages` messages, a per-ACK `--ack-timeout`, and a hard deadline.
Samples sent during the warm-up are not counted.

Usage: python bench/loadgen.py --port P [--connections 8] [--duration 10] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from array import array

from harness.traffic import connection_stream

from adapter.hl7.mllp_framing import Frame, MllpDecoder

ACCEPTED = (b"MSA|AA|", b"MSA|CA|")


class Client(asyncio.Protocol):
    """One MLLP connection: write a frame, resolve `waiter` with the next ACK payload."""

    def __init__(self) -> None:
        self.decoder = MllpDecoder()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.extra_frames = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if not isinstance(item, Frame):
                continue
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(item.payload)
            else:
                self.extra_frames += 1

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("server closed the connection"))

    async def request(self, frame: bytes, timeout: float) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(frame)
        async with asyncio.timeout(timeout):
            return await self.waiter


class Stats:
    def __init__(self) -> None:
        self.latency = array("d")  # seconds, from due time (open loop) or send time
        self.service = array("d")  # seconds, from the actual send
        self.acked_in_window = 0
        self.sent = 0
        self.acked = 0
        self.rejected = 0
        self.late = 0  # open loop: sent after its due time
        self.first_error = ""
        self.per_second: dict[int, list[float]] = {}  # second since t0 -> latencies (s)


async def run(ns: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(ns.connections):
        _, client = await loop.create_connection(Client, ns.host, ns.port)
        clients.append(client)
    stats = Stats()
    t0 = time.perf_counter() + 0.05
    measure_from = t0 + ns.warmup
    end = measure_from + ns.duration
    per_connection = max(1, ns.max_messages // ns.connections)
    progress_next = ns.progress_every or 0

    async def worker(c: int, client: Client) -> None:
        nonlocal progress_next
        stream = connection_stream(c, ns.connections, ns.first_visit, ns.prefix)
        previous_ack = 0.0
        for j in range(per_connection):
            payload = next(stream)
            frame = b"\x0b" + payload + b"\x1c\r"
            if ns.rate:
                due = t0 + (j * ns.connections + c) / ns.rate
                if due >= end:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    stats.late += 1
            else:
                due = time.perf_counter()
                if due >= end:
                    return
            sent = time.perf_counter()
            # Waiting on the previous ACK past the due time is the server's doing and counts;
            # the sleep overshooting an idle connection's due time is ours and does not.
            start = due if previous_ack > due else sent
            stats.sent += 1
            ack = await client.request(frame, ns.ack_timeout)
            done = previous_ack = time.perf_counter()
            stats.acked += 1
            if not any(code in ack for code in ACCEPTED):
                stats.rejected += 1
                if not stats.first_error:
                    stats.first_error = ack.decode("latin-1")[:300].replace("\r", " | ")
            stats.per_second.setdefault(int(done - t0), []).append(done - start)
            if due >= measure_from:
                stats.latency.append(done - start)
                stats.service.append(done - sent)
            if measure_from <= done <= end:
                stats.acked_in_window += 1
            if progress_next and stats.acked >= progress_next:
                progress_next += ns.progress_every
                print(f"progress acked={stats.acked} t={done - t0:.2f}", flush=True)

    cpu0 = os.times()
    try:
        async with asyncio.timeout(ns.warmup + ns.duration + ns.ack_timeout + 30):
            await asyncio.gather(*(worker(c, cl) for c, cl in enumerate(clients)))
        error = ""
    except (TimeoutError, ConnectionError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finished = time.perf_counter()
    cpu1 = os.times()
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    window = min(finished, end) - measure_from
    lat = sorted(stats.latency)
    svc = sorted(stats.service)
    return {
        "connections": ns.connections,
        "rate_target": ns.rate,
        "sent": stats.sent,
        "acked": stats.acked,
        "rejected": stats.rejected,
        "first_rejection": stats.first_error,
        "late": stats.late,
        "error": error,
        "window_s": round(window, 3),
        "msg_per_s": round(stats.acked_in_window / window, 1) if window > 0 else 0.0,
        "samples": len(lat),
        "p50_ms": _pct(lat, 50),
        "p90_ms": _pct(lat, 90),
        "p99_ms": _pct(lat, 99),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "send_p50_ms": _pct(svc, 50),
        "send_p99_ms": _pct(svc, 99),
        "timeline": [
            [second, len(values), round(1000 * max(values), 1)]
            for second, values in sorted(stats.per_second.items())
        ],
        "loadgen_cpu_pct": round(
            100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (finished - t0), 1
        ),
    }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))
    return round(values[index] * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not counted")
    parser.add_argument("--max-messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: messages/s in all")
    parser.add_argument("--first-visit", type=int, default=0, help="offset of visit numbers")
    parser.add_argument("--prefix", default="B", help="prefix of MSH-10, MRN, visit number")
    parser.add_argument("--ack-timeout", type=float, default=30.0)
    parser.add_argument("--progress-every", type=int, default=0)
    ns = parser.parse_args()
    if ns.connections < 1 or ns.duration <= 0 or ns.max_messages < 1:
        parser.error("connections, duration and max-messages must be positive")
    print(json.dumps(asyncio.run(run(ns))), flush=True)


if __name__ == "__main__":
    main()
