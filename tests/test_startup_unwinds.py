"""A start-up that fails half-way unwinds what it had started: the store is closed again.

Real parts only: a real socket holds the MLLP port, the real app starts (`create_app` under
aiohttp's runner as `serve` runs it, or `start_state` as the tests and benches do), a real
SQLite file and a real PostgreSQL schema. "Closed" is observed from outside the store: no
file descriptor of this process still points at the SQLite file, and PostgreSQL counts no
connection under the store's application name.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from adapter.config import Settings
from adapter.errors import EXIT_STARTUP, StartupError
from adapter.web.app import create_app, start_state, stop_state
from tests.service_fixtures import Clock, make_settings
from tests.store_fixtures import PG_URL, require_postgres
from tests.test_operating import adapter, assert_one_line_error, service_env


@contextmanager
def occupied_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def open_descriptors_on(path: Path) -> list[str]:
    """This process's file descriptors that point at `path` or its -wal/-shm files."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while listing (the listing's own descriptor)
        if target.startswith(str(path)):
            found.append(target)
    return found


async def start_with_the_app(settings: Settings) -> None:
    """As `charge-adapter serve` does (`serving._serve`): setup, and cleanup in any case."""
    runner = web.AppRunner(create_app(settings, Clock()))
    try:
        await runner.setup()
    finally:
        await runner.cleanup()


async def start_alone(settings: Settings) -> None:
    state = await start_state(settings, Clock())
    await stop_state(state)  # not reached: the port is taken


STARTS: dict[str, Callable[[Settings], Awaitable[None]]] = {
    "app": start_with_the_app,
    "start_state": start_alone,
}


@pytest.mark.parametrize("start", sorted(STARTS))
async def test_a_busy_mllp_port_closes_the_sqlite_store_it_had_opened(
    tmp_path: Path, start: str
) -> None:
    database = tmp_path / "adapter.db"
    with occupied_port() as port:
        settings = make_settings(tmp_path, mllp_port=port)
        with pytest.raises(StartupError) as refused:
            await STARTS[start](settings)
    assert str(refused.value) == (
        f"cannot start: MLLP port {port} on 127.0.0.1 is already in use (ADAPTER_MLLP_PORT)"
    )
    assert database.is_file()  # the store was opened and migrated before the listener
    assert open_descriptors_on(database) == []


@pytest.mark.parametrize("start", sorted(STARTS))
async def test_a_busy_mllp_port_gives_back_the_postgresql_connections(
    tmp_path: Path, start: str
) -> None:
    await require_postgres()
    name = f"unwind_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in PG_URL else "?"
    settings = replace(
        make_settings(tmp_path),
        database_url=f"{PG_URL}{separator}application_name={name}",
        database_schema=name,
    )
    watcher = await asyncpg.connect(PG_URL)
    try:
        with occupied_port() as port, pytest.raises(StartupError, match="already in use"):
            await STARTS[start](replace(settings, mllp_port=port))
        migrated = await watcher.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", name
        )
        connections = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
        )
    finally:
        await watcher.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await watcher.close()
    assert migrated > 0  # the store had connected and migrated before the listener failed
    assert connections == 0


def test_serve_on_a_port_another_program_holds_exits_3_with_one_line(tmp_path: Path) -> None:
    with occupied_port() as port:
        done = adapter("serve", env=service_env(tmp_path, ADAPTER_MLLP_PORT=str(port)))
    assert_one_line_error(
        done, EXIT_STARTUP, f"MLLP port {port} on 127.0.0.1 is already in use (ADAPTER_MLLP_PORT)"
    )
    assert (tmp_path / "adapter.db").is_file()  # it got as far as the store
