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
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.load import visit_messages
from harness.proc import pause_background_coder
from harness.report import print_keys, print_table

cpu: dict[str, float] = defaultdict(float)


def wrap(module: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            cpu[label] += time.thread_time() - start

    setattr(module, name, timed)


async def run(visits: int) -> tuple[float, int]:
    from adapter.config import Settings
    from adapter.service import ingest
    from adapter.web import app
    from adapter.web.app import start_state, stop_state

    wrap(ingest, "read_hl7", "read_hl7 (parse)")
    wrap(ingest, "links_for", "links_for")
    wrap(app, "ack_for", "ack_for (ACK)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-split-"))
    settings = replace(
        Settings(),
        database_url=f"sqlite:///{workdir / 'split.db'}",
        mllp_port=0,
        http_port=0,
        close_check_seconds=3600.0,
    )
    state = await start_state(settings)
    pause_background_coder(state)
    original = state.store.add_message

    async def add_message(message: Any, links: Any) -> Any:
        start = time.thread_time()
        result = await original(message, links)
        cpu["store round trip (loop side)"] += time.thread_time() - start
        return result

    setattr(state.store, "add_message", add_message)  # noqa: B010 (this instance only)
    messages = [m for v in range(visits) for m in visit_messages(v, "L")]
    warm = len(messages) // 5
    try:
        for raw in messages[:warm]:
            await state.handle_hl7(raw, "mllp 127.0.0.1")
        cpu.clear()
        start = time.thread_time()
        for raw in messages[warm:]:
            await state.handle_hl7(raw, "mllp 127.0.0.1")
        total = time.thread_time() - start
    finally:
        await stop_state(state)
        shutil.rmtree(workdir, ignore_errors=True)
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
