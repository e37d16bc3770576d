"""Helpers for tests of the running service: settings on a tmp SQLite file, a clock, the app.

The app under test is the real one (`create_app`): real store on a file in tmp_path,
real MLLP listener on an ephemeral port, real coder loop. Only time is controlled: the
clock is fixed until a test moves it, so quiet periods and lastUpdated are predictable.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from adapter.config import Settings
from adapter.web.app import create_app
from adapter.web.state import STATE, AppState
from tests.store_fixtures import PG_URL, require_postgres

SCENARIOS = Path(__file__).resolve().parent.parent / "fixtures" / "scenarios"
FHIR_JSON = "application/fhir+json"
HL7_TYPE = "x-application/hl7-v2+er7"
START = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)


class Clock:
    """A clock that stands still until `advance` (or `set`) moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, value: datetime) -> None:
        self.now = value


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one test: its own database file, ephemeral ports, a fast close check."""
    base = Settings(
        host="127.0.0.1",
        mllp_port=0,
        http_port=0,
        database_url=f"sqlite:///{tmp_path}/adapter.db",
        close_check_seconds=0.05,
        shutdown_grace_seconds=2.0,
        replica_id="test-replica",
        log_format="console",
    )
    return replace(base, **overrides)


@asynccontextmanager
async def running_client(
    settings: Settings, clock: Clock | None = None
) -> AsyncIterator[TestClient[Any, Any]]:
    """The real app behind a real HTTP server on an ephemeral port, started and stopped."""
    app = create_app(settings, clock or Clock())
    async with TestClient(TestServer(app, host=settings.host)) as client:
        yield client


@asynccontextmanager
async def client_on_backend(
    backend: str, tmp_path: Path, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    """`running_client` on SQLite (a file in tmp_path) or PostgreSQL (a fresh schema, dropped after).

    For the service tests that must hold on both stores; `backend` is "sqlite" or "postgresql".
    """
    settings = make_settings(tmp_path, **overrides)
    if backend == "postgresql":
        await require_postgres()
        schema = f"t_{uuid.uuid4().hex[:10]}"
        settings = replace(settings, database_url=PG_URL, database_schema=schema)
    try:
        async with running_client(settings, clock or Clock()) as client:
            yield client
    finally:
        if backend == "postgresql":
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
            finally:
                await conn.close()


def state_of(client: TestClient[Any, Any]) -> AppState:
    """The running app's state: its store, coder and clock, for arranging and checking."""
    state: AppState = client.app[STATE]
    return state


def scenario(name: str) -> dict[str, Any]:
    """A scenario's FHIR fixture as written (a `collection` Bundle)."""
    data: dict[str, Any] = json.loads((SCENARIOS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def as_transaction(bundle: dict[str, Any], bundle_type: str = "transaction") -> dict[str, Any]:
    """The same resources as a transaction (or batch): each entry a PUT of Type/id."""
    out = copy.deepcopy(bundle)
    out["type"] = bundle_type
    for entry in out["entry"]:
        resource = entry["resource"]
        url = f"{resource['resourceType']}/{resource['id']}"
        entry["request"] = {"method": "PUT", "url": url}
    return out


def scenario_transaction(name: str, bundle_type: str = "transaction") -> dict[str, Any]:
    return as_transaction(scenario(name), bundle_type)


def scenario_resource(name: str, resource_type: str) -> dict[str, Any]:
    """The first resource of a type in a scenario's Bundle."""
    for entry in scenario(name)["entry"]:
        if entry["resource"]["resourceType"] == resource_type:
            resource: dict[str, Any] = entry["resource"]
            return copy.deepcopy(resource)
    raise LookupError(f"{name} has no {resource_type}")


def hl7_messages(name: str) -> list[bytes]:
    """A scenario's HL7 v2 messages, one per line (segments inside are CR-separated)."""
    raw = (SCENARIOS / f"{name}.hl7").read_bytes()
    return [line.rstrip(b"\r") + b"\r" for line in raw.split(b"\n") if line.strip()]


def fhir_body(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")
