"""`charge-adapter serve | replay | settings`: the service commands of the CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from adapter.config import Settings, SettingsError, load_settings
from adapter.logs import configure

EXIT_OK = 0
EXIT_CONFIG = 2


def run(ns: argparse.Namespace) -> int:
    try:
        settings = load_settings(config_file=ns.config)
    except SettingsError as exc:
        print(f"charge-adapter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if ns.command == "settings":
        print(json.dumps(settings.masked(), indent=2, default=str))
        return EXIT_OK
    configure(settings.log_format, settings.log_level)
    if ns.command == "serve":
        return serve(settings)
    try:
        since = _since(ns.since)
    except ValueError:
        print(f"charge-adapter: --since '{ns.since}' is not an ISO date-time", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_replay(settings, since, ns.message, not ns.no_code))


def serve(settings: Settings) -> int:
    from aiohttp import web

    from adapter.cli import tune_gc
    from adapter.service.app import create_app

    tune_gc()
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.http_port,
        print=None,
        shutdown_timeout=settings.shutdown_grace_seconds,
        access_log=None,
    )
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    """ISO date-time; without an offset it is read as UTC. Raises ValueError."""
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _replay(
    settings: Settings, since: datetime | None, message: int | None, code: bool
) -> int:
    from adapter.service.replay import replay

    summary = await replay(settings, since, message, code)
    print(summary, file=sys.stderr)
    return EXIT_OK
