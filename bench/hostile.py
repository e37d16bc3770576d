"""`make hostile`: a live `charge-adapter serve` probed on loopback as a hostile peer would.

Every probe is bounded in count and time (connections, bytes, a deadline per wait), and
loopback only. Two services are started:

- **memory**: caps raised so the buffer budget is what holds: `--partials` MLLP connections
  each send an unfinished frame of `--partial-bytes` (just under the 1 MiB frame limit) and
  hold it, while one normal sender sends a message every 50 ms and times its ACKs. RSS is
  sampled throughout and after every connection closed.
- **edges**: started with RLIMIT_NOFILE lowered to `--fd-limit` (the probe then needs only a
  few hundred connections) and short deadlines: a frame dripped a byte at a time, bytes
  between frames, an HTTP head and an HTTP body dribbled, then MLLP and HTTP connections
  held until the descriptors run out, and `/healthz`, `/readyz`, `/metrics` asked meanwhile.

Figures (key=value; targets from issue 15):
`hostile_rss_growth_mib_<N>_partial` (peak RSS over the start, target <= 256),
`hostile_rss_retained_mib_after_close`, `hostile_normal_ack_ms_under_load` (p95 of the
normal sender's ACKs while the partials arrive, target <= 100), `hostile_drip_closed_s`
(target <= frame deadline + 1), `hostile_idle_drip_closed_s`, `hostile_http_*_drip_closed_s`,
`hostile_rss_growth_mib_<N>_pending_bodies` (uploads announcing 10 MiB, stalled half-way),
`hostile_healthz_at_fd_limit` (1 when /healthz, /readyz and /metrics all answered 200 at the
descriptor limit, target 1), `hostile_limit_log_lines` (log lines of refusals and accept
failures during the whole fd probe: bounded, no traceback storm).

`--quick` is the CI-sized subset `tests/test_hostile_service.py` runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.load import frame
from harness.proc import Adapter, rss_kib, start_adapter
from harness.report import print_keys

HOST = "127.0.0.1"
MIB = 1024 * 1024
WRITE = 64 * 1024
TARGETS = {
    "rss_growth_mib": 256.0,
    "normal_ack_ms": 100.0,
    "healthz_at_fd_limit": 1,
}


@dataclass(frozen=True)
class Plan:
    partials: int
    partial_bytes: int
    fd_limit: int
    fd_mllp: int  # MLLP connections tried in the descriptor probe
    fd_http: int  # idle HTTP connections tried meanwhile (a scanner)
    frame_deadline: float
    idle_timeout: float  # above the frame deadline: the drip probe then meets the deadline
    http_timeout: float
    bodies: int  # uploads announcing 10 MiB, half sent, held
    settle_s: float  # how long peers are held, and how long after they went RSS is read


FULL = Plan(2000, MIB - 4096, 256, 400, 100, 3.0, 5.0, 3.0, 100, 3.0)
QUICK = Plan(300, 256 * 1024, 256, 300, 60, 1.0, 2.0, 1.0, 30, 1.5)


def message(control_id: str, filler: int = 0) -> bytes:
    segments = [
        f"MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH_BILLING|20250314161502-0400||RAS^O17^RAS_O17|"
        f"{control_id}|P|2.5.1",
        "PID|1||E1004417^^^NRH^MR||SAMPLEPATIENT^AVERY^J||19610422|F",
        "PV1|1|O|ONCINF^CHAIR12^^NRH_CANCER_CTR",
        "ORC|RE|ORD70001^EPIC|RX70001^EPICRX||CM",
        "RXA|0|1|20250314093000-0400|20250314094600-0400|00409-4755-03^ONDANSETRON^NDC|8|mg",
    ]
    if filler:
        segments.append("NTE|1||" + "x" * filler)
    return ("\r".join(segments) + "\r").encode()


async def read_ack(reader: asyncio.StreamReader, timeout: float) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\x1c\r"), timeout)


# --- memory under 2,000 unfinished frames ------------------------------------------------


@dataclass
class PartialOutcome:
    sent: int = 0  # connections whose unfinished frame was written (or refused on the way)
    held: int = 0
    answered_ar: int = 0
    closed: int = 0


async def _partial(
    port: int, n: int, size: int, gate: asyncio.Semaphore, release: asyncio.Event,
    out: PartialOutcome,
) -> None:  # fmt: skip
    """One connection: a frame's MSH and filler up to `size`, never its end; held until
    `release`. Counts whether the server answered AR, closed it, or let it be. `gate`
    bounds how many connect and write at once (not how many are held)."""
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        except (OSError, TimeoutError):
            out.sent += 1
            out.closed += 1
            return
        data = frame(message(f"PART{n:05d}", filler=size))[:size]
        try:
            for start in range(0, len(data), WRITE):
                writer.write(data[start : start + WRITE])
                await asyncio.wait_for(writer.drain(), 10)
        except (OSError, TimeoutError):
            pass
        out.sent += 1
    try:
        answer = asyncio.create_task(reader.read(4096))
        waiting = asyncio.create_task(release.wait())
        await asyncio.wait({answer, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not answer.done():
            out.held += 1
            answer.cancel()
        elif b"MSA|AR" in answer.result():
            out.answered_ar += 1
        else:
            out.closed += 1
    except OSError:
        out.closed += 1
    finally:
        writer.close()


async def _normal_sender(port: int, stop_file: Path, max_s: float) -> tuple[list[float], int]:
    """One well-behaved connection, a message every 50 ms, until `stop_file` exists; its ACK
    latencies (ms) and how many ACKs were not AA. Runs in its own process (`--normal-sender`):
    in the attacker's event loop its timing would be the attacker's, not the service's."""
    reader, writer = await asyncio.open_connection(HOST, port)
    latencies: list[float] = []
    failures = 0
    started = time.monotonic()
    try:
        while not stop_file.exists() and time.monotonic() - started < max_s:
            sent = time.perf_counter()
            writer.write(frame(message(f"NORM{len(latencies):05d}")))
            await writer.drain()
            ack = await read_ack(reader, 10)
            latencies.append((time.perf_counter() - sent) * 1000)
            failures += b"MSA|AA" not in ack
            await asyncio.sleep(0.05)
    finally:
        writer.close()
    return latencies, failures


async def _start_normal_sender(port: int, stop_file: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--normal-sender", str(port), str(stop_file),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _sample_rss(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        await asyncio.sleep(0.1)


async def memory_probe(adapter: Adapter, plan: Plan) -> dict[str, object]:
    port = adapter.mllp_port
    for n in range(20):  # warm up: the reader, the store, the allocator
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(frame(message(f"WARM{n:03d}")))
        await read_ack(reader, 10)
        writer.close()
    await asyncio.sleep(0.5)
    before = rss_kib(adapter.pid)
    stop, release = asyncio.Event(), asyncio.Event()
    peak = [before]
    sampler = asyncio.create_task(_sample_rss(adapter.pid, stop, peak))
    stop_file = adapter.log_path.with_suffix(".stop")
    normal = await _start_normal_sender(port, stop_file)
    await asyncio.sleep(0.5)  # its connection is up before the attack starts
    outcome = PartialOutcome()
    gate = asyncio.Semaphore(100)
    started = time.monotonic()
    partials = [
        asyncio.create_task(_partial(port, n, plan.partial_bytes, gate, release, outcome))
        for n in range(plan.partials)
    ]
    while outcome.sent < plan.partials and time.monotonic() - started < 120:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # every unfinished frame is in: hold them a moment
    release.set()
    await asyncio.wait_for(asyncio.gather(*partials), 60)
    attack_s = time.monotonic() - started
    stop.set()
    stop_file.touch()
    output, _ = await normal.communicate()
    sent = json.loads(output or b"{}")
    latencies, failures = sent.get("latencies", []), sent.get("failures", -1)
    await sampler
    await asyncio.sleep(plan.settle_s)  # connections closed: what stays
    after = rss_kib(adapter.pid)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    return {
        f"hostile_rss_growth_mib_{plan.partials}_partial": round((peak[0] - before) / 1024, 1),
        "hostile_rss_retained_mib_after_close": round((after - before) / 1024, 1),
        "hostile_rss_start_mib": round(before / 1024, 1),
        "hostile_partials_answered_ar": outcome.answered_ar,
        "hostile_partials_closed": outcome.closed,
        "hostile_partials_held": outcome.held,
        "hostile_partial_attack_s": round(attack_s, 1),
        "hostile_normal_ack_ms_under_load": round(p95, 1),
        "hostile_normal_ack_ms_under_load_p50": round(latencies[len(latencies) // 2], 1)
        if latencies
        else float("nan"),
        "hostile_normal_acks": len(latencies),
        "hostile_normal_acks_not_aa": failures,
    }


async def _pending_body(port: int, size: int, sent: int, release: asyncio.Event) -> bytes:
    """A POST /hl7 announcing `size` bytes, `sent` of them written, then held: what came back."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    except (OSError, TimeoutError):
        return b""
    head = (
        f"POST /hl7 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    answer = b""
    try:
        writer.write(head)
        for _ in range(sent // WRITE):
            writer.write(b"M" * WRITE)
            await asyncio.wait_for(writer.drain(), 10)
        reading = asyncio.create_task(reader.read(200))
        waiting = asyncio.create_task(release.wait())
        await asyncio.wait({reading, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if reading.done():
            answer = reading.result()
        else:
            reading.cancel()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()
    return answer


async def body_probe(adapter: Adapter, plan: Plan) -> dict[str, object]:
    """`plan.bodies` uploads announcing 10 MiB, each sending half of it and stopping."""
    before = rss_kib(adapter.pid)
    stop, release = asyncio.Event(), asyncio.Event()
    peak = [before]
    sampler = asyncio.create_task(_sample_rss(adapter.pid, stop, peak))
    size = 10 * MIB
    uploads = [
        asyncio.create_task(_pending_body(adapter.http_port, size, size // 2, release))
        for _ in range(plan.bodies)
    ]
    await asyncio.sleep(plan.settle_s)
    release.set()
    answers = await asyncio.wait_for(asyncio.gather(*uploads), 60)
    stop.set()
    await sampler
    await asyncio.sleep(plan.settle_s)  # uploads gone: what stays (trimmed within a second)
    after = rss_kib(adapter.pid)
    return {
        f"hostile_rss_growth_mib_{plan.bodies}_pending_bodies": round((peak[0] - before) / 1024, 1),
        "hostile_bodies_answered_503": sum(a.startswith(b"HTTP/1.1 503") for a in answers),
        "hostile_bodies_rss_retained_mib": round((after - before) / 1024, 1),
    }


# --- deadlines -----------------------------------------------------------------------------


async def _time_to_close(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    drip: bytes,
    every: float,
    limit: float,
) -> float:
    """Write `drip` a byte every `every` s until the server closes (what it answered first is
    read along); seconds from the first byte to the close, or `limit` if it never came."""
    started = time.monotonic()
    until_eof = asyncio.create_task(reader.read())
    for i in range(len(drip)):
        if until_eof.done() or time.monotonic() - started > limit:
            break
        with contextlib.suppress(OSError):
            writer.write(drip[i : i + 1])
            await writer.drain()
        await asyncio.wait({until_eof}, timeout=every)
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(until_eof, max(limit - (time.monotonic() - started), 0.1))
    writer.close()
    return round(time.monotonic() - started, 2)


async def deadline_probes(adapter: Adapter, plan: Plan) -> dict[str, object]:
    limit = 3 * max(plan.frame_deadline, plan.idle_timeout, plan.http_timeout) + 5
    mllp = adapter.mllp_port, adapter.http_port
    connections = [await asyncio.open_connection(HOST, mllp[i]) for i in (0, 0, 1, 1)]
    drips = [
        b"\x0b" + message("DRIP1"),  # a frame that never ends, a byte at a time
        b"\r" * 10_000,  # bytes between frames: never a complete frame
        b"POST /hl7 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000,  # a head that trickles
    ]
    body_head = (
        b"POST /hl7 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    connections[3][1].write(body_head)
    drips.append(b"M" * 10_000)  # ... and a body that does
    results = await asyncio.gather(
        *(_time_to_close(r, w, d, 0.1, limit) for (r, w), d in zip(connections, drips, strict=True))
    )
    return {
        "hostile_frame_deadline_s": plan.frame_deadline,
        "hostile_drip_closed_s": results[0],
        "hostile_idle_timeout_s": plan.idle_timeout,
        "hostile_idle_drip_closed_s": results[1],
        "hostile_http_timeout_s": plan.http_timeout,
        "hostile_http_header_drip_closed_s": results[2],
        "hostile_http_body_drip_closed_s": results[3],
    }


# --- at the descriptor limit ---------------------------------------------------------------


def _get(port: int, path: str) -> int:
    """The status of a GET (0 when there was no HTTP answer at all)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


async def _hold(port: int, count: int, first: bytes) -> list[asyncio.StreamWriter]:
    """Open up to `count` connections (each writes `first`); returns those the server kept
    open (it neither closed nor answered them within half a second)."""
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(count):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 3)
        except (OSError, TimeoutError):
            break
        if first:
            writer.write(first)
        opened.append((reader, writer))

    async def kept(reader: asyncio.StreamReader) -> bool:
        try:
            await asyncio.wait_for(reader.read(1), 0.5)
        except TimeoutError:
            return True
        except OSError:
            return False
        return False

    flags = await asyncio.gather(*(kept(reader) for reader, _ in opened))
    held = []
    for (_, writer), open_ in zip(opened, flags, strict=True):
        if open_:
            held.append(writer)
        else:
            writer.close()
    return held


def _limit_log_lines(adapter: Adapter) -> tuple[int, int]:
    text = adapter.log_path.read_text(errors="replace")
    limits = sum(
        1 for line in text.splitlines() if "listener.refused" in line or "accept_failed" in line
    )
    return limits, text.count("Traceback")


async def fd_probe(adapter: Adapter, plan: Plan) -> dict[str, object]:
    mllp = await _hold(adapter.mllp_port, plan.fd_mllp, b"\x0bMSH|")
    http = await _hold(adapter.http_port, plan.fd_http, b"GET /healthz HTTP/1.1\r\n")
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.0)  # the held connections have been silent a while, as between probes
    codes = [
        await loop.run_in_executor(None, _get, adapter.http_port, p)
        for p in ("/healthz", "/readyz", "/metrics")
    ]
    refused = await _hold(adapter.mllp_port, 1, b"")
    for writer in mllp + http + refused:
        writer.close()
    await asyncio.sleep(1.0)
    reader, writer = await asyncio.open_connection(HOST, adapter.mllp_port)
    writer.write(frame(message("AFTER1")))
    ack = await read_ack(reader, 10)
    writer.close()
    lines, tracebacks = _limit_log_lines(adapter)
    return {
        "hostile_fd_limit": plan.fd_limit,
        "hostile_fd_mllp_held": len(mllp),
        "hostile_fd_http_held": len(http),
        "hostile_healthz_at_fd_limit": int(all(code == 200 for code in codes)),
        "hostile_probe_codes_at_fd_limit": "/".join(str(c) for c in codes),
        "hostile_mllp_refused_at_fd_limit": int(not refused),
        "hostile_mllp_aa_after_fd_limit": int(b"MSA|AA" in ack),
        "hostile_limit_log_lines": lines,
        "hostile_tracebacks": tracebacks,
    }


# --- run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def lowered_fd_limit(soft: int) -> Iterator[None]:
    """Children started inside inherit RLIMIT_NOFILE = `soft`; ours is restored after."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI-sized subset")
    parser.add_argument("--partials", type=int, help="unfinished frames in the memory probe")
    parser.add_argument(
        "--normal-sender", nargs=2, metavar=("PORT", "STOP_FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.normal_sender:
        port, stop_file = args.normal_sender
        latencies, failures = asyncio.run(_normal_sender(int(port), Path(stop_file), 300.0))
        print(json.dumps({"latencies": latencies, "failures": failures}))
        return 0
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # our writes to connections cut on purpose
    plan = QUICK if args.quick else FULL
    if args.partials:
        plan = Plan(args.partials, *list(plan.__dict__.values())[1:])
    keys: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        work = Path(tmp)
        caps = str(plan.partials + 100)
        memory = start_adapter(
            work, "memory",
            extra_env={"ADAPTER_MLLP_MAX_CONNECTIONS": caps,
                       "ADAPTER_MLLP_MAX_CONNECTIONS_PER_ADDRESS": caps,
                       "ADAPTER_MLLP_FRAME_DEADLINE_SECONDS": "120"},
        )  # fmt: skip
        try:
            keys.update(asyncio.run(memory_probe(memory, plan)))
            keys.update(asyncio.run(body_probe(memory, plan)))
        finally:
            memory.stop()
        with lowered_fd_limit(plan.fd_limit):
            edges = start_adapter(
                work, "edges", log_level="info",
                extra_env={"ADAPTER_MLLP_MAX_CONNECTIONS_PER_ADDRESS": "0",
                           "ADAPTER_MLLP_MAX_CONNECTIONS": "0",
                           "ADAPTER_MLLP_FRAME_DEADLINE_SECONDS": str(plan.frame_deadline),
                           "ADAPTER_MLLP_IDLE_TIMEOUT_SECONDS": str(plan.idle_timeout),
                           "ADAPTER_HTTP_HEADER_TIMEOUT_SECONDS": str(plan.http_timeout),
                           "ADAPTER_HTTP_BODY_TIMEOUT_SECONDS": str(plan.http_timeout)},
            )  # fmt: skip
        try:
            keys.update(asyncio.run(deadline_probes(edges, plan)))
            keys.update(asyncio.run(fd_probe(edges, plan)))
        finally:
            edges.stop()
    growth = keys[f"hostile_rss_growth_mib_{plan.partials}_partial"]
    keys["hostile_verdict"] = (
        "pass"
        if isinstance(growth, float)
        and growth <= TARGETS["rss_growth_mib"]
        and float(str(keys["hostile_normal_ack_ms_under_load"])) <= TARGETS["normal_ack_ms"]
        and float(str(keys["hostile_drip_closed_s"])) <= plan.frame_deadline + 1
        and keys["hostile_healthz_at_fd_limit"] == 1
        else "fail"
    )
    keys["hostile_load_avg_1m"] = round(os.getloadavg()[0], 2)  # a shared 2-core machine
    print_keys(keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
