"""The PostgreSQL store: production, several replicas on one database.

An asyncpg pool; every method is one transaction on one pooled connection. Replicas
share the work without talking to each other: `lease_ready` locks ready encounters with
FOR UPDATE SKIP LOCKED (a row another replica is leasing is skipped, not waited for) and
`save_codings` re-checks the revisions under the encounters' row locks. Migrations run
under an advisory lock, so replicas starting together apply each file exactly once.

All tables live in one schema (`schema`, default public), put first on the search_path
of every pooled connection; tests use a fresh schema each. Queries name their columns
(no SELECT *) so that a later migration adding a column does not break the prepared
statements a running replica has cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg  # untyped: pyproject.toml ignores its missing stubs

from adapter.store._common import (
    RowLike,
    StoreClosedError,
    load_migrations,
    pending_migrations,
)
from adapter.store.ports import StoreCounts
from adapter.store.queries import state_counts

PING_TIMEOUT_SECONDS = 5.0
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

MESSAGE_COLUMNS = (
    "id, dedup_key, format, kind, raw, received_at, patient_key, control_id, status, error,"
    " truncated, reason, error_location"
)
ENCOUNTER_COLUMNS = (
    "key, patient_key, state, last_activity, close_requested, cutoff_at, revision,"
    " outcome_detail, updated_at"
)
RESOURCE_COLUMNS = (
    "resource_type, resource_id, version, encounter_key, patient_ref, status, last_updated, body"
)
DELIVERY_COLUMNS = (
    "id, destination, resource_type, resource_id, version, attempts, next_attempt_at, last_error,"
    " rejected_at, payload"
)


class _Conn(Protocol):
    """The part of asyncpg.Connection the store uses (asyncpg has no type information)."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def executemany(self, query: str, args: Iterable[Sequence[object]]) -> None: ...

    async def fetch(self, query: str, *args: object) -> list[RowLike]: ...

    async def fetchrow(self, query: str, *args: object) -> RowLike | None: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...


CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0


class PostgresBase:
    """The pool and its transactions; migrate, ping, close, counts.

    Each port's queries are a mixin over this base (inbox.py, encounters.py, ...);
    `PostgresStore` (store.py) is all of them on one schema.
    """

    def __init__(
        self, dsn: str, *, schema: str = "public", min_size: int = 1, max_size: int = 10
    ) -> None:
        if _SCHEMA_NAME.fullmatch(schema) is None:
            raise ValueError("schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
        self._dsn = dsn
        self._schema = schema
        self._min_size, self._max_size = min_size, max_size
        self._pool: Any = None
        self._open_lock = asyncio.Lock()
        self._closed = False  # close() is final: a closed store never reconnects

    # --- plumbing ---------------------------------------------------------------------

    async def _get_pool(self) -> Any:
        """Connect on first use: the factory is synchronous, the pool is not."""
        if self._pool is not None and not self._closed:  # the common case, without the lock
            return self._pool
        async with self._open_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    # custom plans: a plan cached while the tables were empty kept scanning
                    # them as they grew (save_coding 47 ms -> 5 ms per encounter, bench drain)
                    server_settings={
                        "search_path": self._schema,
                        "plan_cache_mode": "force_custom_plan",
                    },
                    timeout=CONNECT_TIMEOUT_S,  # a stalled database answers AE, not silence
                    command_timeout=COMMAND_TIMEOUT_S,
                )
            return self._pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Conn]:
        """One read-write transaction (READ COMMITTED, row locks where a method needs them)."""
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Conn]:
        """One snapshot for every statement of a read method (a page and its total agree)."""
        pool = await self._get_pool()
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn

    # --- lifecycle --------------------------------------------------------------------

    async def migrate(self) -> None:
        migrations = load_migrations("postgres")
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(self._schema))
            known = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", self._schema
            )
            if not known:
                await conn.execute(f'CREATE SCHEMA "{self._schema}"')
            await conn.execute(f'SET LOCAL search_path TO "{self._schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            applied = [int(r["version"]) for r in await conn.fetch(_APPLIED)]
            for migration in pending_migrations(migrations, applied):
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                    migration.version,
                )

    async def close(self) -> None:
        async with self._open_lock:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def ping(self) -> bool:
        """Bounded in time: a readiness probe must answer even when the server does not."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._read() as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
        except (
            OSError,
            TimeoutError,
            StoreClosedError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ):
            return False

    async def counts(self) -> StoreCounts:
        async with self._read() as conn:
            by_state = await conn.fetch(
                "SELECT state, count(*) AS n FROM encounters GROUP BY state"
            )
            totals = await conn.fetchrow(_TOTALS)
        assert totals is not None  # an aggregate query always returns its one row
        return StoreCounts(
            encounters_by_state=state_counts((str(r["state"]), int(r["n"])) for r in by_state),
            outbox_pending=int(totals["pending"]),
            dead_letters=int(totals["dead"]),
            messages=int(totals["messages"]),
            outbox_rejected=int(totals["rejected"]),
        )


_APPLIED = "SELECT version FROM schema_migrations"

_TOTALS = """
SELECT (SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND rejected_at IS NULL) AS pending,
       (SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL) AS rejected,
       (SELECT count(*) FROM messages WHERE status = 'dead') AS dead,
       (SELECT count(*) FROM messages) AS messages
"""


def _lock_key(schema: str) -> int:
    """A stable 64-bit advisory lock id per schema (hash() is salted per process)."""
    digest = hashlib.blake2b(f"charge-adapter:migrate:{schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)
