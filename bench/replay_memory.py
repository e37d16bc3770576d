"""Replay memory: `charge-adapter replay` over a small and a large store, peak RSS of each.

The replay streams stored messages a page at a time (`Store.replay_page`), so its
memory must not grow with the number of messages stored. This fills one SQLite store
with N accepted RAS^O17 messages (each its own visit, as a months-long feed), then runs
the real command twice as a separate process, polling its RSS:

  small  `replay --no-code --since T`, T chosen so that the last `--checkpoint` messages
         are replayed (same database, same size on disk)
  large  `replay --no-code`: all N

and prints `replay_rss_growth_pct` = peak RSS large / small - 1, in percent (target
<= 20), with each run's peak and messages/s. Coding is left out (`--no-code`): the coder
leases encounters 50 at a time whatever the backlog, and `bench/memory.py` measures the
service as a whole.

Usage: python bench/replay_memory.py [--messages N] [--checkpoint K] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import ROOT
from harness.proc import rss_kib
from harness.report import print_keys

from adapter.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
RAS = (
    "MSH|^~\\&|EPIC|ONC|CHG|ONC|202601150900||RAS^O17^RAS_O17|RP{n:08d}|P|2.5.1\r"
    "PID|1||M{n:08d}^^^HOSP^MR\r"
    "PV1|1|O|ONC-OFFICE^^^MAIN||||||||||||||||V{n:08d}\r"
    "ORC|RE|O{n:08d}|F{n:08d}\r"
    "RXA|0|1|202601150900|202601150905|300108^DEXAMETHASONE 100 MG/10 ML^99RX^63323051610"
    "^dexamethasone^NDC|12|mg^mg^UCUM|||||||||||||CP|A\r"
    "RXR|IV^Intravenous^HL70162|||IVP^IV Push^HL70165\r"
)
INSERT = (
    "INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key,"
    " control_id, status, error) VALUES (?, 'hl7', 'RAS^O17', ?, ?, ?, ?, 'accepted', '')"
)


def received(n: int) -> datetime:
    return T0 + timedelta(milliseconds=n)


def fill(path: Path, count: int) -> None:
    """A migrated store with `count` accepted messages (written directly: fast)."""
    asyncio.run(_migrate(path))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        batch = 20_000
        for start in range(0, count, batch):
            rows = [
                (
                    f"hl7:EPIC^ONC:RP{n:08d}",
                    RAS.format(n=n).encode(),
                    received(n).isoformat(timespec="microseconds"),
                    f"M{n:08d}",
                    f"RP{n:08d}",
                )
                for n in range(start, min(start + batch, count))
            ]
            conn.executemany(INSERT, rows)
            conn.commit()


async def _migrate(path: Path) -> None:
    store = SqliteStore(path)
    await store.migrate()
    await store.close()


def run_replay(path: Path, since: datetime | None) -> tuple[int, float, str]:
    """(peak RSS KiB, seconds, last stderr line) of one `replay --no-code` process."""
    env = dict(os.environ, ADAPTER_DATABASE_URL=f"sqlite:///{path}", ADAPTER_LOG_LEVEL="warning")
    command = [sys.executable, "-m", "adapter.cli.main", "replay", "--no-code"]
    if since is not None:
        command += ["--since", since.isoformat()]
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, rss_kib(proc.pid))
            time.sleep(0.2)
        seconds = time.monotonic() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"replay failed ({proc.returncode}): {lines[-5:]}")
    return peak, seconds, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--checkpoint", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="50,000 and 5,000 messages")
    ns = parser.parse_args()
    total, small = (50_000, 5_000) if ns.quick else (ns.messages, ns.checkpoint)
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        path = Path(tmp) / "adapter.db"
        t0 = time.monotonic()
        fill(path, total)
        fill_seconds = time.monotonic() - t0
        small_peak, small_s, small_line = run_replay(path, received(total - small))
        large_peak, large_s, large_line = run_replay(path, None)
        size_mib = path.stat().st_size / 2**20
    print(small_line, file=sys.stderr)
    print(large_line, file=sys.stderr)
    print_keys(
        {
            "replay_messages_small": small,
            "replay_messages": total,
            "replay_store_mib": round(size_mib, 1),
            "replay_fill_seconds": round(fill_seconds, 1),
            "replay_peak_rss_mib_small": round(small_peak / 1024, 1),
            "replay_peak_rss_mib": round(large_peak / 1024, 1),
            "replay_rss_growth_pct": round(100 * (large_peak / small_peak - 1), 1),
            "replay_msg_per_s": round(total / large_s),
            "replay_msg_per_s_small": round(small / small_s),
        }
    )


if __name__ == "__main__":
    main()
