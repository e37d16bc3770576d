"""The SQLite store: the embedded default for one process.

One connection, driven by the stdlib `sqlite3` module on one dedicated thread. Each store
method is one synchronous function that runs a whole transaction in a single hop to that
thread; aiosqlite costs one hop per statement. Measured (add_message, 1 link, 1.5 KB raw,
2-core VM, 3 runs): 1,300-2,000/s here against 900-1,250/s through aiosqlite with
synchronous=FULL; 1,900-3,300/s against 1,000-2,000/s with NORMAL.

WAL lets readers run beside the writer. synchronous=FULL (the default) makes each commit
durable before the caller ACKs the message; NORMAL would be ~1.7x faster but may lose the
last commits on power loss, i.e. messages already acknowledged.

Writes open with BEGIN IMMEDIATE, taking the file's write lock before the first read, so a
read-then-write step (lease_ready, save_codings) is atomic even against a second connection
to the same file; a busy timeout makes the other connection wait instead of failing.
Under `ADAPTER_WORKERS=N` each write transaction first takes `writer_lock.WriterLock`, so
the workers' writers wait in the kernel, not in SQLite's sleeping busy handler.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from adapter import worker_role
from adapter.store._common import (
    Migration,
    StoreClosedError,
    iso_utc,
    load_migrations,
    pending_migrations,
)
from adapter.store.ports import StoreCounts
from adapter.store.queries import state_counts
from adapter.store.writer_lock import WriterLock

T = TypeVar("T")
Conn = sqlite3.Connection

SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


class SqliteBase:
    """The connection, its thread and its transactions; migrate, ping, close, counts.

    Each port's queries are a mixin over this base (inbox.py, encounters.py, ...);
    `SqliteStore` (store.py) is all of them on one file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}")
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._conn: Conn | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False  # close() is final: a closed store never reconnects
        self._write_lock = asyncio.Lock()
        # ADAPTER_WORKERS=N: one writer at a time across the workers, woken at the release
        self._writer_lock = WriterLock(self._path) if worker_role.current() else None

    # --- plumbing ---------------------------------------------------------------------

    async def _connection(self) -> tuple[Conn, ThreadPoolExecutor]:
        """Open on first use: the factory is synchronous, the connection is not."""
        conn, executor = self._conn, self._executor
        if conn is not None and executor is not None and not self._closed:  # no lock needed
            return conn, executor
        async with self._open_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            if self._conn is None or self._executor is None:
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
                try:
                    loop = asyncio.get_running_loop()
                    self._conn = await loop.run_in_executor(executor, self._connect)
                except BaseException:
                    executor.shutdown(wait=False)
                    raise
                self._executor = executor
            return self._conn, self._executor

    def _connect(self) -> Conn:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            _enable_wal(conn, time.monotonic() + self._busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _run(self, fn: Callable[[Conn], T], begin: str, lock: WriterLock | None = None) -> T:
        conn, executor = await self._connection()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, _transaction, conn, fn, begin, lock)

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        """A read transaction: one snapshot for every statement of the method."""
        return await self._run(fn, "BEGIN")

    async def _write(self, fn: Callable[[Conn], T]) -> T:
        async with self._write_lock:
            return await self._run(fn, "BEGIN IMMEDIATE", self._writer_lock)

    # --- lifecycle --------------------------------------------------------------------

    async def migrate(self) -> None:
        migrations = load_migrations("sqlite")
        await self._write(lambda conn: _migrate(conn, migrations))

    async def close(self) -> None:
        async with self._open_lock:
            self._closed = True
            conn, executor = self._conn, self._executor
            self._conn = self._executor = None
            if conn is not None and executor is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            if executor is not None:
                executor.shutdown(wait=True)
            if self._writer_lock is not None:
                self._writer_lock.close()

    async def ping(self) -> bool:
        try:
            return await self._read(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1)
        except (sqlite3.Error, OSError, StoreClosedError):
            return False

    async def counts(self) -> StoreCounts:
        return await self._read(_counts)


def _enable_wal(conn: Conn, deadline: float) -> None:
    """Switch the file to WAL (once per file), retrying while another connection holds it.

    SQLite answers "database is locked" here without calling the busy handler when several
    processes open a new file at once, so the busy timeout alone does not cover it.
    """
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if str(mode).lower() != "wal":
            raise RuntimeError("SQLite refused WAL mode for the store file")
        return


def _locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED ("database is locked", "database table is locked"), by the
    primary result code SQLite gives (extended codes keep it in the low byte), not its text."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


# --- transactions ---------------------------------------------------------------------------


def _transaction(
    conn: Conn, fn: Callable[[Conn], T], begin: str, lock: WriterLock | None = None
) -> T:
    """Run `fn` as one transaction on the store's thread; roll back on any failure. With a
    `lock` (the workers' writer lock) held from before BEGIN to after COMMIT/ROLLBACK."""
    if lock is not None:
        lock.acquire()
    try:
        conn.execute(begin)
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        if lock is not None:
            lock.release()


def _migrate(conn: Conn, migrations: Sequence[Migration]) -> None:
    """Under the write lock, so two processes starting together apply each file once."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied = [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")]
    for migration in pending_migrations(migrations, applied):
        for statement in _statements(migration.sql):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            (migration.version, iso_utc(datetime.now(UTC))),
        )


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit the open transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer)
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise RuntimeError("a migration ends with an incomplete SQL statement")
    return statements


def _counts(conn: Conn) -> StoreCounts:
    by_state = conn.execute("SELECT state, count(*) FROM encounters GROUP BY state").fetchall()
    return StoreCounts(
        encounters_by_state=state_counts((str(r[0]), int(r[1])) for r in by_state),
        outbox_pending=_scalar(conn, _PENDING),
        outbox_rejected=_scalar(conn, "SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL"),
        dead_letters=_scalar(conn, "SELECT count(*) FROM messages WHERE status = 'dead'"),
        messages=_scalar(conn, "SELECT count(*) FROM messages"),
    )


_PENDING = "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND rejected_at IS NULL"


def _scalar(conn: Conn, sql: str, params: Sequence[object] = ()) -> int:
    return int(conn.execute(sql, params).fetchone()[0])
