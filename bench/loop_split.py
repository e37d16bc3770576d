"""Event-loop thread CPU per message, split by step, for `AppState.handle_hl7` on SQLite.

In-process (`start_state`, coder paused), messages handled one after the other;
each step of the ingest path is wrapped (in this process only) with a timer on
the calling thread's CPU clock (`time.thread_time`), so waits do not count and
the store thread's work is excluded. `store round trip` is what the event-loop
thread itself spends around `add_message` (executor submit, future callbacks,
wake-ups, running the loop meanwhile).

Usage: python bench/loop_split.py [--visits 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.inprocess import paused_service
from harness.report import print_keys, print_table
from harness.traffic import visit_messages

cpu: dict[str, float] = defaultdict(float)


def wrap(function: Callable[..., Any], label: str) -> None:
    """Time `function` wherever the adapter's modules hold it (by identity, not by module
    path), so the split keeps working when a step moves to another module."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time() - start

    holders = [
        (module, name)
        for module in list(sys.modules.values())
        if getattr(module, "__name__", "").startswith("adapter.")
        for name, value in list(vars(module).items())
        if value is function
    ]
    if not holders:
        raise RuntimeError(f"{label}: no adapter module holds {function.__qualname__}")
    for module, name in holders:
        setattr(module, name, timed)


async def run(visits: int) -> tuple[float, int]:
    import adapter.web.app_ui  # noqa: F401 (every module that holds a step is loaded)
    from adapter.hl7_answers import ack_for
    from adapter.readers.hl7v2 import read_hl7
    from adapter.readers.hl7v2.hot import check_hl7_frame
    from adapter.usecases.links import links_for
    from adapter.web.app import create_app  # noqa: F401

    wrap(check_hl7_frame, "check_hl7_frame (hot-path check)")
    wrap(read_hl7, "read_hl7 (full read, not on the hot path)")
    wrap(links_for, "links_for")
    wrap(ack_for, "ack_for (ACK)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-split-"))
    try:
        async with paused_service(f"sqlite:///{workdir / 'split.db'}") as state:
            return await _timed(state, visits)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _timed(state: Any, visits: int) -> tuple[float, int]:
    """Handle the visits' messages one after the other; the loop-thread CPU of the timed 4/5."""
    original = state.store.add_message

    async def add_message(message: Any, links: Any) -> Any:
        start = time.thread_time()
        result = await original(message, links)
        cpu["store round trip (loop side)"] += time.thread_time() - start
        return result

    setattr(state.store, "add_message", add_message)  # noqa: B010 (this instance only)
    messages = [m for v in range(visits) for m in visit_messages(v, "L")]
    warm = len(messages) // 5
    for raw in messages[:warm]:
        await state.handle_hl7(raw, "mllp 127.0.0.1")
    cpu.clear()
    start = time.thread_time()
    for raw in messages[warm:]:
        await state.handle_hl7(raw, "mllp 127.0.0.1")
    total = time.thread_time() - start
    return total, len(messages) - warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=3000)
    ns = parser.parse_args()
    from adapter.logs import configure
    from adapter.runtime import tune_gc

    configure("json", "warning")
    tune_gc()
    total, n = asyncio.run(run(ns.visits))
    rows = [("event-loop thread CPU, all of handle_hl7", f"{1e6 * total / n:,.0f} µs/msg")]
    keys: dict[str, object] = {"loop_cpu_us_per_msg": round(1e6 * total / n, 1)}
    for label, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        rows.append((f"  {label}", f"{1e6 * seconds / n:,.1f} µs/msg"))
        slug = label.split(" (")[0].replace(" ", "_")
        keys[f"loop_cpu_us_{slug}"] = round(1e6 * seconds / n, 1)
    rest = total - sum(cpu.values())
    rows.append(
        ("  the rest (glue, locks, logging calls, metrics)", f"{1e6 * rest / n:,.1f} µs/msg")
    )
    keys["loop_cpu_us_rest"] = round(1e6 * rest / n, 1)
    print_table(f"event-loop CPU per message, in-process, {n:,} messages one at a time", rows)
    print_keys(keys)


if __name__ == "__main__":
    main()
