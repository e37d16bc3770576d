"""The command line every stand-in server of the benchmarks shares (baseline_server.py,
peer_server.py): listen, print `port=N` for the harness (`proc.baseline_server` reads it),
serve until SIGTERM/SIGINT or `--max-seconds`, so a forgotten process cannot outlive a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

StartServer = Callable[[str, int], Awaitable[asyncio.Server]]


async def serve_until_stopped(start: StartServer, host: str, port: int, seconds: float) -> None:
    server = await start(host, port)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    server.close()


def main(start: StartServer, doc: str) -> None:
    """Parse `--host`, `--port` (0: a free one), `--max-seconds`; serve with `start`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    ns = parser.parse_args()
    asyncio.run(serve_until_stopped(start, ns.host, ns.port, ns.max_seconds))
