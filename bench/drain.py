"""Processing: how fast the coder drains a backlog of closed encounters.

In-process, the way `serve` wires it: `adapter.web.app.start_state` (store,
mappings, MLLP listener on a free port, coder) with
`ADAPTER_CLOSE_CHECK_SECONDS=3600`; the background coder task is cancelled
before its first pass (`harness/inprocess.py`), otherwise that pass
would run concurrently with the backlog ingest and code part of it. A backlog
of `--encounters` visits is ingested through `AppState.handle_hl7` (A04, RAS
with 5 administrations, A03 each: every encounter is closed and ready), then
`state.coder.run_once()` is timed from its start until it returns, i.e. until
no encounter is ready.

Figure: administrations coded per second (`process_admin_per_s_<store>`;
`process_admin_per_s` is SQLite, the default store). Beside it, in the same run:
the batch pipeline (`bench_coding.run_pipeline`, read -> code -> Claim JSON
with no store) on the same number of encounters: the floor of the pure coding
work, and where the rest goes (store reads, coding, serialising, store writes,
leasing), from timers wrapped around the coder's calls.

Usage: python bench/drain.py [--quick] [--encounters N] [--store sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness.inprocess import paused_service
from harness.pg import PG_URL, adrop_schema, new_schema, pg_available
from harness.report import print_keys, print_table, ratio
from harness.traffic import ADMINS_PER_DRAIN_VISIT, ingest_backlog


class Timers:
    """Wall time spent in named calls (awaited or not), for the breakdown."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap_async(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        return timed


async def drain_store(
    store: str, encounters: int, workdir: Path, breakdown: bool = True, keep_schema: bool = False
) -> dict[str, Any]:
    from adapter.usecases import close_and_code

    schema = new_schema("drain") if store == "postgres" else ""
    url = PG_URL if schema else f"sqlite:///{workdir / 'drain.db'}"
    service = paused_service(
        url, database_schema=schema or "public", replica_id=f"bench-drain-{store}"
    )
    out: dict[str, Any] = {"store": store, "encounters": encounters}
    try:
        async with service as state:
            t0 = time.perf_counter()
            accepted = await ingest_backlog(state, encounters, f"D{store[0].upper()}")
            out["ingest_s"] = time.perf_counter() - t0
            out["accepted"] = accepted
            if accepted != 3 * encounters:
                raise RuntimeError(f"{store}: {accepted} of {3 * encounters} messages accepted")
            timers = Timers()
            coder = state.coder
            patched: list[tuple[Any, str, Any]] = []
            if breakdown:
                for name in (
                    "lease_ready",
                    "messages_for_encounters",
                    "save_codings",
                    "release_lease",
                ):
                    original = getattr(state.store, name)
                    patched.append((state.store, name, original))
                    setattr(state.store, name, timers.wrap_async(f"store.{name}", original))
                patched.append((coder, "code_messages", coder.code_messages))
                coder.code_messages = timers.wrap("code_messages", coder.code_messages)  # type: ignore[method-assign]
                module = close_and_code
                # _dumps: before the store took dicts
                for name in ("encounter_resources", "_dumps"):
                    if not hasattr(module, name):
                        continue
                    original = getattr(module, name)
                    patched.append((module, name, original))
                    setattr(module, name, timers.wrap(name, original))
                # inside save_coding, on the store's side: serialise with meta, hash, compare
                # (the module of the encounters port's adapter, which imports them by name)
                saver = type(state.store).save_codings
                store_module = sys.modules[saver.__module__]
                for name, label in (
                    ("prepare_codings", "  of which prepare_codings (serialise, hash)"),
                    ("plan_coding", "  of which plan_coding (compare, meta)"),
                ):
                    original = getattr(store_module, name)
                    patched.append((store_module, name, original))
                    setattr(store_module, name, timers.wrap(label, original))
            t0 = time.perf_counter()
            coded = await coder.run_once()
            seconds = time.perf_counter() - t0
            for obj, name, original in patched:
                if obj is coder:
                    del coder.code_messages  # back to the class attribute
                else:
                    setattr(obj, name, original)
            counts = await state.store.counts()
            out.update(
                coded=coded,
                seconds=seconds,
                admin_per_s=coded * ADMINS_PER_DRAIN_VISIT / seconds,
                encounters_per_s=coded / seconds,
                states=dict(counts.encounters_by_state),
                timers={k: (v, timers.calls[k]) for k, v in timers.seconds.items()},
            )
            ready_left = await state.store.lease_ready(
                state.clock(),
                state.clock() - coder.config.quiet_period,
                "bench-check",
                1,
                10,
            )
            out["ready_left"] = len(ready_left)
            for lease in ready_left:
                await state.store.release_lease(lease)
    finally:
        if schema and keep_schema:
            print(f"kept PostgreSQL schema {schema} (drop it when done)", file=sys.stderr)
        elif schema:
            await adrop_schema(schema)
    return out


def batch_floor(encounters: int) -> float:
    """The batch pipeline on the same regimen: administrations per second (no store)."""
    from bench.bench_coding import hl7_feed, run_pipeline

    data = hl7_feed(encounters)
    start = time.perf_counter()
    run_pipeline(data, "bench.hl7")
    return encounters * ADMINS_PER_DRAIN_VISIT / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--encounters", type=int, default=None)
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--keep-schema", action="store_true", help="keep the PostgreSQL schema")
    ns = parser.parse_args()
    encounters = ns.encounters or (300 if ns.quick else 2000)
    stores = ["sqlite", "postgres"] if ns.store == "both" else [ns.store]
    if "postgres" in stores and not pg_available():
        print("PostgreSQL not reachable: skipped", file=sys.stderr)
        stores.remove("postgres")
    from adapter.logs import configure
    from adapter.runtime import tune_gc

    configure("json", "warning")
    tune_gc()  # as `serve` does, before start-up
    keys: dict[str, object] = {}
    rows: list[tuple[str, str]] = []
    floor = batch_floor(encounters)
    keys["batch_pipeline_admin_per_s"] = round(floor)
    rows.append(("batch pipeline, same regimen (no store)", f"{floor:,.0f} admin/s"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-drain-"))
    try:
        for store in stores:
            res = asyncio.run(
                drain_store(store, encounters, workdir, not ns.no_breakdown, ns.keep_schema)
            )
            _report(res, floor, keys, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "sqlite" in stores:
        keys["process_admin_per_s"] = keys["process_admin_per_s_sqlite"]
    keys["drain_encounters"] = encounters
    print_table(
        f"processing: coder.run_once over {encounters} closed encounters x "
        f"{ADMINS_PER_DRAIN_VISIT} administrations (in-process, start_state)",
        rows,
    )
    print_keys(keys)


def _report(
    res: dict[str, Any], floor: float, keys: dict[str, object], rows: list[tuple[str, str]]
) -> None:
    store = res["store"]
    rate = res["admin_per_s"]
    keys[f"process_admin_per_s_{store}"] = round(rate)
    keys[f"process_encounters_per_s_{store}"] = round(res["encounters_per_s"], 1)
    keys[f"drain_vs_batch_{store}"] = ratio(rate, floor)
    keys[f"drain_coded_{store}"] = res["coded"]
    keys[f"drain_ready_left_{store}"] = res["ready_left"]
    ok = res["coded"] == res["encounters"] and res["ready_left"] == 0
    rows.append(
        (
            f"process_admin_per_s_{store} (target >= 1,000)",
            f"{rate:,.0f} admin/s ({res['encounters_per_s']:,.1f} encounters/s;"
            f" {rate / floor:.2f}x the batch pipeline); coded {res['coded']}/{res['encounters']}"
            f"{'' if ok else ' INCOMPLETE'}; states {res['states']}",
        )
    )
    rows.append((f"  backlog ingest ({store}, in-process)", f"{res['ingest_s']:.1f} s"))
    coded = max(1, res["coded"])
    timers = res["timers"]
    accounted = 0.0
    for name in (
        "store.lease_ready",
        "store.messages_for_encounters",
        "code_messages",
        "encounter_resources",
        "_dumps",
        "store.save_codings",
        "  of which prepare_codings (serialise, hash)",
        "  of which plan_coding (compare, meta)",
        "store.release_lease",
    ):
        if name not in timers:
            continue
        seconds, _calls = timers[name]
        if not name.startswith(" "):
            accounted += seconds
        per = 1000 * seconds / coded
        short = name.replace("store.", "").replace("  of which ", "").split(" (")[0]
        keys[f"drain_ms_per_encounter_{store}_{short.lstrip('_')}"] = round(per, 3)
        rows.append(
            (f"  {name}", f"{per:.3f} ms/encounter ({100 * seconds / res['seconds']:.0f}%)")
        )
    if timers:
        other = res["seconds"] - accounted
        rows.append(
            (
                "  other (loop, sleep(0) between encounters)",
                f"{1000 * other / coded:.3f} ms/encounter ({100 * other / res['seconds']:.0f}%)",
            )
        )


if __name__ == "__main__":
    main()
