"""PostgreSQL for the benchmarks: a fresh schema per run, dropped after; a freezable proxy.

Every PostgreSQL run uses its own schema (`new_schema`), which the store's migration
creates and the benchmark drops; `drop_run_schemas` sweeps what a server restart left.
`BENCH_PG_URL` names the server (default: the local one, database `test`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
import time
from typing import Any

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def new_schema(tag: str) -> str:
    """`bench_<tag>_<run>_<n>`; <run> is BENCH_RUN_ID (set by run_all.py) or the pid."""
    run = os.environ.get("BENCH_RUN_ID") or str(os.getpid())
    return f"bench_{tag}_{run}_{int(time.time() * 1000) % 10**9}"


def drop_run_schemas(run: str) -> list[str]:
    """Drop every schema of run `run` still there (a restart of the server can make a
    benchmark's own drop fail); returns their names."""
    if not run.isalnum():
        raise ValueError("a run id is alphanumeric")
    try:
        rows = pg_fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
            f"bench\\_%\\_{run}\\_%",
        )
    except Exception:
        return []
    names = [str(r["nspname"]) for r in rows]
    for name in names:
        drop_schema(name)
    return names


async def _pg(sql: str, *args: object, fetch: bool = False, url: str = "") -> Any:
    import asyncpg

    conn = await asyncio.wait_for(asyncpg.connect(url or PG_URL), 10)
    try:
        return await (conn.fetch(sql, *args) if fetch else conn.execute(sql, *args))
    finally:
        await conn.close()


def pg_available(attempts: int = 7) -> bool:
    """True when PostgreSQL at BENCH_PG_URL answers; retried for ~30 s (other sessions on
    this machine restart the shared server now and then)."""
    for attempt in range(attempts):
        try:
            asyncio.run(_pg("SELECT 1"))
            return True
        except Exception as exc:
            print(f"PostgreSQL not reachable ({type(exc).__name__}: {exc})", file=sys.stderr)
            time.sleep(1 + attempt)
    return False


def pg_fetch(sql: str, *args: object) -> list[Any]:
    return list(asyncio.run(_pg(sql, *args, fetch=True)))


def drop_schema(schema: str) -> None:
    """Drop a schema this benchmark created (from synchronous code)."""
    with contextlib.suppress(Exception):
        asyncio.run(adrop_schema(schema))


async def adrop_schema(schema: str) -> None:
    """Drop a schema this benchmark created (from a running event loop)."""
    if not schema.startswith("bench_"):
        raise ValueError("refusing to drop a schema the benchmark did not create")
    with contextlib.suppress(Exception):
        await _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_admin(database_url: str, sql: str) -> None:
    """One statement on the server itself (not in a benchmark's schema)."""
    asyncio.run(_pg(sql, url=database_url))


def drop_test_schema(database_url: str, schema: str) -> None:
    """Drop a crash test's schema; a failure is a warning (the run's verdict stands)."""
    try:
        pg_admin(database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except Exception as exc:
        print(f"warning: schema {schema} not dropped: {exc}", file=sys.stderr)


class FreezableProxy:
    """A loopback TCP proxy to PostgreSQL that can be frozen: while frozen it neither relays
    bytes nor opens upstream connections, but closes nothing, which is what a network
    partition or a stalled database host looks like to the client (no RST, no answer)."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        while self.frozen.is_set() and not self.closed.is_set():
            time.sleep(0.05)
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._sockets += [client, upstream]
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                while self.frozen.is_set() and not self.closed.is_set():
                    time.sleep(0.05)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.frozen.clear()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


# --- the load generator --------------------------------------------------------------------------
