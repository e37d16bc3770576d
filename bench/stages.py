"""Where one message's time goes: each step of the ingest path timed alone, in-process.

Sampling profilers are blurred on this shared 2-core machine (a thread waiting
for a CPU looks busy); timing each step by itself on the same messages gives
microseconds per message that add up. Steps, in the order the service runs
them for one MLLP frame:

  decode       MllpDecoder.feed of one frame
  read_hl7     ER7 -> events (adapter.readers.hl7v2.read_hl7)
  links        links_for + patient_key
  ack          ack_for (read MSH, build the ER7 ACK, uuid control id) + encode_frame
  metrics      messages counter + ACK latency histogram
  log_info     the two info lines per message (message.stored, mllp.message), JSON to a file
  log_warning  the same calls at warning level (filtered out)
  hop          one asyncio -> store-thread -> asyncio round trip (run_in_executor)
  sqlite_full  SqliteStore.add_message, sequential, synchronous=FULL (the default)
  sqlite_normal  the same with synchronous=NORMAL
  sqlite_tx_B  the store's group write (_add_batch) for B messages in ONE transaction (B = 1,
               8, 32; direct connection): what group commit costs per message
  pg_seq / pg_8  PostgresStore.add_message, sequential / 8 concurrent
  pg_tx_B      the store's group statement (`_ADD_MESSAGES`) for groups of B messages
  handle_hl7_* AppState.handle_hl7 end to end (no socket), sequential and 8 concurrent

Each step is repeated and the fastest repeat kept (noise only ever adds time).

Usage: python bench/stages.py [--quick] [--visits N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.pg import PG_URL, adrop_schema, new_schema, pg_available
from harness.report import print_keys, print_table
from harness.traffic import visit_messages

from adapter.config import Settings
from adapter.core.model import InboundMessage
from adapter.hl7.mllp_framing import MllpDecoder, encode_frame
from adapter.hl7_answers import ack_for
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.metrics import Metrics
from adapter.readers.hl7v2 import read_hl7
from adapter.runtime import tune_gc
from adapter.store.base import Link, NewMessage
from adapter.usecases.ingest import Hl7Result
from adapter.usecases.links import links_for, patient_key

ORIGIN = "mllp 127.0.0.1"


def best_us(fn: Callable[[], int], repeats: int) -> float:
    """Fastest of `repeats` runs of fn (which returns how many messages it handled), µs/msg."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


async def abest_us(fn: Callable[[int], Any], repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        count = await fn(r)
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


def prepared(raws: Sequence[bytes], mappings: Any, tz: Any) -> list[tuple[NewMessage, list[Link]]]:
    out = []
    now = datetime.now(UTC)
    for raw in raws:
        message: InboundMessage = read_hl7(raw, mappings, tz, ORIGIN)[0]
        links = links_for(message.events, tz, None)
        control = message.control_id
        new = NewMessage(
            message.dedup_key,
            "hl7",
            message.kind,
            raw,
            now,
            patient_key(message.events),
            control,
            control_key=message.control_key,  # as ingest passes it: the commit checks reuse
        )
        out.append((new, links))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--visits", type=int, default=None, help="visits per sample (x3 messages)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    ns = parser.parse_args()
    visits = ns.visits or (300 if ns.quick else 1000)
    repeats = ns.repeats or (2 if ns.quick else 3)
    use_pg = not ns.no_postgres and pg_available()
    asyncio.run(run(visits, repeats, use_pg))


async def run(visits: int, repeats: int, use_pg: bool) -> None:
    settings = Settings()
    mappings = load_mappings(default_mappings_dir())
    tz = settings.tz
    tune_gc()  # as `serve` does
    raws = [m for v in range(visits) for m in visit_messages(v, "S")]
    n = len(raws)
    us: dict[str, float] = {}
    frames = [encode_frame(r) for r in raws]

    def decode() -> int:
        decoder = MllpDecoder()
        for frame in frames:
            decoder.feed(frame)
        return n

    us["decode"] = best_us(decode, repeats)
    us["read_hl7"] = best_us(
        lambda: len([read_hl7(r, mappings, tz, ORIGIN) for r in raws]), repeats
    )
    parsed = [read_hl7(r, mappings, tz, ORIGIN)[0] for r in raws]
    us["links"] = best_us(
        lambda: len([(links_for(m.events, tz, None), patient_key(m.events)) for m in parsed]),
        repeats,
    )
    now = datetime.now(UTC)
    results = [Hl7Result(m.control_id, False) for m in parsed]

    def ack() -> int:
        for raw, result in zip(raws, results, strict=True):
            handler_result = ack_for(raw, result, now)
            assert handler_result.ack is not None
            encode_frame(handler_result.ack)
        return n

    us["ack"] = best_us(ack, repeats)
    metrics = Metrics()

    def observe() -> int:
        for m in parsed:
            metrics.message("hl7", m.kind, "accepted")
            metrics.ack_latency.observe(0.001)
        return n

    us["metrics"] = best_us(observe, repeats)
    us["log_info"], us["log_warning"], log_bytes = logging_cost(parsed, repeats)
    workdir = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    try:
        us["hop"] = await hop_cost(n, repeats)
        batches = prepared(raws, mappings, tz)
        for sync in ("FULL", "NORMAL"):
            us[f"sqlite_{sync.lower()}"] = await sqlite_store_cost(workdir, sync, batches, repeats)
        for size in (1, 8, 32):
            us[f"sqlite_tx_{size}"] = sqlite_batch_cost(workdir, batches, size, repeats)
        if use_pg:
            try:
                us.update(await pg_costs(batches, repeats))
            except Exception as exc:  # e.g. the shared server was restarted under us
                print(f"PostgreSQL steps skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
                use_pg = False
        us.update(await end_to_end(workdir, raws, repeats, settings))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(us, n, log_bytes, use_pg)


def logging_cost(parsed: Sequence[InboundMessage], repeats: int) -> tuple[float, float, float]:
    """The two info lines the service writes per message, rendered as JSON into a file."""
    import structlog

    from adapter.logs import configure

    log = structlog.get_logger()
    results: list[float] = []
    log_bytes = 0.0

    def emit() -> int:
        for i, m in enumerate(parsed):
            control = m.control_id
            log.info(
                "message.stored",
                format="hl7",
                kind=m.kind,
                control_id=control,
                message_id=i,
                duplicate=False,
                encounters=1,
            )
            log.info(
                "mllp.message",
                control_id=control,
                peer="127.0.0.1:40000#3",
                bytes=900,
                ack_code="AA",
                latency_ms=1.234,
            )
        return len(parsed)

    with tempfile.TemporaryFile(mode="w+") as sink:
        for level in ("info", "warning"):
            saved = sys.stderr
            sys.stderr = sink  # configure() binds the logger factory to sys.stderr
            try:
                configure("json", level)
            finally:
                sys.stderr = saved
            before = sink.tell()
            results.append(best_us(emit, repeats))
            if level == "info":
                log_bytes = (sink.tell() - before) / (repeats * len(parsed))
        configure("json", "warning")
    return results[0], results[1], log_bytes


async def hop_cost(n: int, repeats: int) -> float:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)

    async def hops(_r: int) -> int:
        for _ in range(n):
            await loop.run_in_executor(executor, int)
        return n

    try:
        return await abest_us(hops, repeats)
    finally:
        executor.shutdown()


def _renamed(batches: Sequence[tuple[NewMessage, list[Link]]], tag: str) -> list[Any]:
    """The same messages under fresh dedup keys and visit keys (each repeat inserts anew)."""
    from dataclasses import replace

    out = []
    for new, links in batches:
        fresh_links = [replace(link, encounter_key=f"{link.encounter_key}#{tag}") for link in links]
        fresh = replace(
            new, dedup_key=f"{new.dedup_key}#{tag}", control_key=f"{new.control_key}#{tag}"
        )
        out.append((fresh, fresh_links))
    return out


async def sqlite_store_cost(
    workdir: Path, sync: str, batches: Sequence[tuple[NewMessage, list[Link]]], repeats: int
) -> float:
    from adapter.store.sqlite import SqliteStore

    store = SqliteStore(workdir / f"store-{sync}.db", synchronous=sync)
    await store.migrate()

    async def insert(r: int) -> int:
        for new, links in _renamed(batches, f"{sync}{r}"):
            await store.add_message(new, links)
        return len(batches)

    try:
        return await abest_us(insert, repeats)
    finally:
        await store.close()


def sqlite_batch_cost(
    workdir: Path, batches: Sequence[tuple[NewMessage, list[Link]]], size: int, repeats: int
) -> float:
    """The store's group write (`_add_batch`: inserts, links, encounter upserts, the reused
    control id check), `size` messages per transaction (FULL)."""
    from adapter.store._common import load_migrations
    from adapter.store.sqlite import connection as sq
    from adapter.store.sqlite import inbox as sq_inbox

    path = workdir / f"batch-{size}.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    migrations = load_migrations("sqlite")

    def migrate(c: sqlite3.Connection) -> None:
        sq._migrate(c, migrations)

    sq._transaction(conn, migrate, "BEGIN IMMEDIATE")
    counter = iter(range(10**9))

    def insert() -> int:
        work = _renamed(batches, f"b{size}-{next(counter)}")
        for start in range(0, len(work), size):
            chunk = work[start : start + size]

            def add(c: sqlite3.Connection, ch: list[Any] = chunk) -> list[Any]:
                return sq_inbox._add_batch(c, batch=[(m, tuple(lk), None) for m, lk in ch])

            sq._transaction(conn, add, "BEGIN IMMEDIATE")
        return len(work)

    try:
        return best_us(insert, repeats)
    finally:
        conn.close()


async def pg_costs(
    batches: Sequence[tuple[NewMessage, list[Link]]], repeats: int
) -> dict[str, float]:
    from adapter.store import postgres as pgmod

    schema = new_schema("stages")
    store = pgmod.PostgresStore(PG_URL, schema=schema)
    out: dict[str, float] = {}
    try:
        await store.migrate()

        async def sequential(r: int) -> int:
            for new, links in _renamed(batches, f"s{r}"):
                await store.add_message(new, links)
            return len(batches)

        async def concurrent(r: int) -> int:
            work = _renamed(batches, f"c{r}")
            queue = iter(work)

            async def worker() -> None:
                for new, links in queue:
                    await store.add_message(new, links)

            await asyncio.gather(*(worker() for _ in range(8)))
            return len(work)

        out["pg_seq"] = await abest_us(sequential, repeats)
        out["pg_8"] = await abest_us(concurrent, repeats)

        for size in (1, 8, 32):

            async def batched(r: int, size: int = size) -> int:
                work = _renamed(batches, f"t{size}-{r}")
                for start in range(0, len(work), size):
                    group = [(m, tuple(lk), None) for m, lk in work[start : start + size]]
                    await store._add_group(group)  # type: ignore[arg-type]
                return len(work)

            out[f"pg_tx_{size}"] = await abest_us(batched, repeats)
    finally:
        await store.close()
        await adrop_schema(schema)
    return out


async def end_to_end(
    workdir: Path, raws: Sequence[bytes], repeats: int, base: Settings
) -> dict[str, float]:
    from dataclasses import replace

    from adapter.logs import configure
    from adapter.web.app import start_state, stop_state

    configure("json", "warning")
    settings = replace(
        base,
        database_url=f"sqlite:///{workdir / 'e2e.db'}",
        mllp_port=0,
        http_port=0,
        close_check_seconds=3600.0,
        replica_id="bench-stages",
    )
    state = await start_state(settings)
    out: dict[str, float] = {}
    try:
        for concurrency in (1, 8):

            async def handle(r: int, c: int = concurrency) -> int:
                prefix = f"E{c}{r}"
                visits = len(raws) // 3

                async def worker(i: int) -> None:
                    for v in range(i, visits, c):
                        for raw in visit_messages(v, prefix):
                            await state.handle_hl7(raw, ORIGIN)

                await asyncio.gather(*(worker(i) for i in range(c)))
                return visits * 3

            cpu0 = time.thread_time()
            out[f"handle_hl7_{concurrency}"] = await abest_us(handle, repeats)
            # main-thread CPU (parse, links, ack, asyncio, hop), all repeats
            messages = repeats * (len(raws) // 3) * 3
            out[f"handle_hl7_{concurrency}_main_cpu"] = 1e6 * (time.thread_time() - cpu0) / messages
    finally:
        with contextlib.suppress(Exception):
            await stop_state(state)
    return out


def report(us: dict[str, float], n: int, log_bytes: float, use_pg: bool) -> None:
    cpu_path = ["decode", "read_hl7", "links", "ack", "metrics"]
    rows = [(f"{k} (µs/msg)", f"{us[k]:,.1f}") for k in us]
    parse_total = sum(us[k] for k in cpu_path)
    rows.append(("sum decode+read+links+ack+metrics (µs/msg)", f"{parse_total:,.1f}"))
    rows.append(("info logging adds (µs/msg)", f"{us['log_info'] - us['log_warning']:,.1f}"))
    rows.append(("info log bytes per message", f"{log_bytes:,.0f}"))
    rows.append(
        (
            "SQLite group commit: per-message cost at 8 / 32 per tx vs 1",
            f"{us['sqlite_tx_8'] / us['sqlite_tx_1']:.2f}x"
            f" / {us['sqlite_tx_32'] / us['sqlite_tx_1']:.2f}x",
        )
    )
    if use_pg:
        rows.append(
            (
                "PostgreSQL batching: per-message cost at 8 / 32 per tx vs 1",
                f"{us['pg_tx_8'] / us['pg_tx_1']:.2f}x / {us['pg_tx_32'] / us['pg_tx_1']:.2f}x",
            )
        )
    print_table(f"ingest steps, in-process, {n} messages per sample (fastest repeat)", rows)
    keys: dict[str, object] = {f"stage_us_{k}": round(v, 1) for k, v in us.items()}
    keys["stage_us_cpu_path_sum"] = round(parse_total, 1)
    keys["stage_us_log_info_extra"] = round(us["log_info"] - us["log_warning"], 1)
    keys["stage_messages"] = n
    print_keys(keys)


if __name__ == "__main__":
    main()
