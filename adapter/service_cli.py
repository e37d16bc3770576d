"""`charge-adapter serve | replay | settings`: the service commands of the CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from adapter.config import Settings, SettingsError, load_settings
from adapter.logs import configure

if TYPE_CHECKING:
    from adapter.service.replay import ReplaySelection

EXIT_OK = 0
EXIT_REFUSED = 1  # replay: a named message was not replayed (unknown, dead, truncated)
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
    if ns.command == "health":
        return health(settings, ns.timeout)
    configure(settings.log_format, settings.log_level, cache_loggers=True)
    if ns.command == "serve":
        return serve(settings)
    try:
        since = _since(ns.since)
    except ValueError:
        print(f"charge-adapter: --since '{ns.since}' is not an ISO date-time", file=sys.stderr)
        return EXIT_CONFIG
    from adapter.service.replay import ReplaySelection

    selection = ReplaySelection(since, tuple(ns.message or ()), tuple(ns.dead_letter or ()))
    return asyncio.run(_replay(settings, selection, not ns.no_code))


def health(settings: Settings, timeout: float) -> int:
    """Container/k8s probe: GET /healthz on this replica over the scheme it serves.

    With TLS the server's own certificate is not verified (it is localhost by
    definition); with mutual TLS the server's certificate and key are presented
    as the client certificate, so they must allow clientAuth (see docs/security.md).
    """
    import ssl
    import urllib.request

    context: ssl.SSLContext | None = None
    scheme = "http"
    if settings.tls_cert_file:
        scheme = "https"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if settings.tls_client_ca_file:
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"{scheme}://{host}:{settings.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            ok = response.status == 200
    except OSError as exc:
        print(f"charge-adapter: {url}: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK if ok else 1


def serve(settings: Settings) -> int:
    from aiohttp import web

    from adapter.cli import tune_gc
    from adapter.service.app import create_app
    from adapter.service.security import server_tls_of

    try:
        app = create_app(settings)  # loads the TLS files and tokens
    except SettingsError as exc:
        print(f"charge-adapter: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def freeze_startup_objects(_: web.Application) -> AsyncIterator[None]:
        tune_gc()  # after the app's start-up loaded the tables, so they are frozen too
        yield

    app.cleanup_ctx.append(freeze_startup_objects)
    web.run_app(
        app,
        host=settings.host,
        port=settings.http_port,
        print=None,
        shutdown_timeout=settings.shutdown_grace_seconds,
        access_log=None,
        ssl_context=server_tls_of(app),
    )
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    """ISO date-time; without an offset it is read as UTC. Raises ValueError."""
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _replay(settings: Settings, selection: ReplaySelection, code: bool) -> int:
    """Exit 0, or 1 when a named message could not be replayed (each said on stderr)."""
    from adapter.service.replay import print_refusals, replay

    summary = await replay(settings, selection, code=code)
    print_refusals(summary.refused, sys.stderr)
    print(summary, file=sys.stderr)
    return EXIT_REFUSED if summary.refused else EXIT_OK
