"""Machine facts and noise probes, so every figure can be read in context.

- cores (`os.cpu_count`), memory (/proc/meminfo), load average;
- `probe_fsync_ms`: median of write(1.5 KB) + fdatasync on the work directory's
  disk (what a durable commit costs right now; on this shared VM it has been
  seen anywhere from 0.1 to 2.5 ms);
- `probe_cpu_ms`: a fixed pure-Python loop (best of 3) - slower than usual
  means other sessions are taking the CPU.

Usage: python bench/machine.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from harness.report import median, print_keys


def probe_fsync_ms(count: int = 200, directory: str | None = None) -> float:
    samples = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="bench-fsync-") as handle:
        fd = handle.fileno()
        payload = b"x" * 1500
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, payload)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - start)
    return round(1000 * median(samples), 3)


def probe_cpu_ms() -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - start)
    return round(1000 * best, 1)


def facts() -> dict[str, object]:
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    total_kib = int(meminfo["MemTotal"].split()[0])
    load1, load5, _ = os.getloadavg()
    return {
        "machine_cores": os.cpu_count(),
        "machine_mem_gib": round(total_kib / 1024 / 1024, 1),
        "machine_loadavg_1m": round(load1, 2),
        "machine_loadavg_5m": round(load5, 2),
        "python": sys.version.split()[0],
    }


def probes(tag: str) -> dict[str, object]:
    return {
        f"probe_fsync_ms_{tag}": probe_fsync_ms(),
        f"probe_cpu_ms_{tag}": probe_cpu_ms(),
        f"machine_loadavg_1m_{tag}": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print_keys({**facts(), **probes("now")})
