"""Real databases for the store tests: a SQLite file in tmp_path, a fresh PostgreSQL schema.

`StoreFactory` opens as many stores as a test wants on ONE database (two "replicas",
or the same service restarted), and removes what it created afterwards. PostgreSQL is
the one at ADAPTER_TEST_PG_URL (default the local server, database `test`); when it
cannot be reached the PostgreSQL half of the suite is skipped with a message and a
warning that say so, never silently.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
import warnings
from pathlib import Path

import asyncpg
import pytest

from adapter.store.base import Store
from adapter.store.postgres import PostgresStore
from adapter.store.sqlite import SqliteStore

PG_URL = os.environ.get("ADAPTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")

_pg_problem: list[str] = []  # cached reason PostgreSQL is unusable ("" once it answered)


async def require_postgres() -> None:
    """Skip (loudly) when PostgreSQL is not reachable; checked once per test session."""
    if not _pg_problem:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=5)
            await conn.close()
            _pg_problem.append("")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _pg_problem.append(f"{type(exc).__name__}: {exc}")
            warnings.warn(_skip_message(), stacklevel=1)
    if _pg_problem[0]:
        pytest.skip(_skip_message())


def _skip_message() -> str:
    shown = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", PG_URL)  # no password in the log
    return (
        f"POSTGRESQL STORE TESTS DID NOT RUN: cannot connect to {shown} ({_pg_problem[0]}). "
        "Start PostgreSQL or set ADAPTER_TEST_PG_URL."
    )


class StoreFactory:
    """Stores on one database: every `open()` is a new connection (pool) to the same data."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.path = tmp_path / "store" / "adapter.db"  # "store/" does not exist yet
        self.schema = f"store_test_{uuid.uuid4().hex[:12]}"
        self._opened: list[Store] = []

    def new(self) -> Store:
        """A store object, not yet migrated."""
        store: Store
        if self.backend == "sqlite":
            store = SqliteStore(self.path)
        else:
            store = PostgresStore(PG_URL, schema=self.schema, max_size=4)
        self._opened.append(store)
        return store

    async def open(self) -> Store:
        """A migrated store."""
        store = self.new()
        await store.migrate()
        return store

    async def applied_versions(self) -> list[int]:
        """schema_migrations as the database has it, read outside the store."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
                return [int(r[0]) for r in rows]
        conn = await asyncpg.connect(PG_URL)
        try:
            sql = f'SELECT version FROM "{self.schema}".schema_migrations ORDER BY version'
            return [int(r["version"]) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def execute(self, sql: str) -> None:
        """One statement on the database, outside the store (to set up old data)."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                conn.execute(sql)
            return
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'SET search_path TO "{self.schema}"')
            await conn.execute(sql)
        finally:
            await conn.close()

    async def cleanup(self) -> None:
        for store in self._opened:
            await store.close()
        if self.backend == "postgres":
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()
