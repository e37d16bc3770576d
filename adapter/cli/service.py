"""`charge-adapter serve | replay | settings | health`: the service commands of the CLI.

A setting that is wrong (`SettingsError`) or a start-up that is refused (`StartupError`) is
raised to the CLI's one error edge (`adapter/cli/main.py:refuse`): one line, its exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from adapter.config import CheckedSettings, Settings, load_checked, unknown_variables
from adapter.core.time_range import parse_since
from adapter.errors import EXIT_CONFIG
from adapter.logs import configure
from adapter.setting_names import SettingName
from adapter.startup import listen_error

if TYPE_CHECKING:
    from aiohttp import web

    from adapter.usecases.replay import ReplaySelection

EXIT_OK = 0
EXIT_REFUSED = 1  # replay: a named message was not replayed (unknown, dead, truncated)


def run(ns: argparse.Namespace) -> int:
    strict = bool(getattr(ns, "strict", False))
    checked = load_checked(config_file=ns.config, strict=strict)  # loads TLS files, tokens
    settings = checked.settings
    for problem in unknown_variables(os.environ):  # not strict: said, and ignored
        print(f"charge-adapter: warning: {problem}", file=sys.stderr)
    if ns.command == "settings":
        print(json.dumps(settings.masked(), indent=2, default=str))
        return EXIT_OK
    if ns.command == "health":
        return health(settings, ns.timeout)
    configure(settings.log_format, settings.log_level, cache_loggers=True)
    if ns.command == "serve":
        return serve(checked, ns.config)
    try:
        since = parse_since(ns.since) if ns.since else None
    except ValueError:
        print(f"charge-adapter: --since '{ns.since}' is not an ISO date-time", file=sys.stderr)
        return EXIT_CONFIG
    from adapter.usecases.replay import ReplaySelection

    selection = ReplaySelection(since, tuple(ns.message or ()), tuple(ns.dead_letter or ()))
    return asyncio.run(_replay(settings, selection, not ns.no_code, ns.dry_run))


def health(settings: Settings, timeout: float) -> int:
    """Container/k8s probe: GET /healthz on this replica over the scheme it serves.

    With TLS the server's own certificate is not verified (it is localhost by
    definition); with mutual TLS it presents `health_client_cert_file`/`key_file`, or
    when those are not set the server's certificate and key, which must then allow
    clientAuth and be issued by a CA of `tls_client_ca_file` (see docs/security.md).
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
            cert = settings.health_client_cert_file or settings.tls_cert_file
            key = settings.health_client_key_file or settings.tls_key_file
            try:
                context.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as exc:
                print(f"charge-adapter: health client certificate {cert}: {exc}", file=sys.stderr)
                return 1
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"{scheme}://{host}:{settings.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            ok = response.status == 200
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        print(f"charge-adapter: {url}: {reason}", file=sys.stderr)
        return 1
    return EXIT_OK if ok else 1


def serve(checked: CheckedSettings, config_file: str | None = None) -> int:
    from adapter import worker_role

    settings = checked.settings
    if settings.workers > 1 and worker_role.current() is None:  # ADAPTER_WORKERS=N
        from adapter.workers import supervise

        return supervise(settings, config_file)
    from adapter.runtime import load_runtime, tune_gc
    from adapter.web.app import create_app
    from adapter.web.security import server_tls_of
    from adapter.web.serving import run_app

    runtime = load_runtime(checked)  # the mapping tables; TLS and tokens came checked
    app = create_app(runtime)

    async def freeze_startup_objects(_: web.Application) -> AsyncIterator[None]:
        tune_gc()  # after the app's start-up loaded the tables, so they are frozen too
        yield

    app.cleanup_ctx.append(freeze_startup_objects)
    app.cleanup_ctx.append(_reload_on_sighup)
    try:
        run_app(app, settings, server_tls_of(app))  # web.run_app, with the HTTP limits
    except OSError as exc:  # the HTTP site binds last, after the MLLP listener
        port = settings.http_port
        raise listen_error(exc, "HTTP", settings.host, port, SettingName.HTTP_PORT) from exc
    return EXIT_OK


async def _reload_on_sighup(app: web.Application) -> AsyncIterator[None]:
    """SIGHUP reloads the mapping tables (the old ones stay when the new ones fail)."""
    from adapter.web.state import STATE

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[object]] = set()

    def reload() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(app[STATE].reload_mappings())
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    yield
    loop.remove_signal_handler(signal.SIGHUP)


async def _replay(settings: Settings, selection: ReplaySelection, code: bool, dry_run: bool) -> int:
    """Exit 0, or 1 when a named message could not be replayed (each said on stderr).
    A dry run prints what would change on stdout and writes nothing."""
    from adapter.cli.replay import print_refusals, replay

    summary = await replay(settings, selection, code=code, dry_run=dry_run, out=sys.stdout)
    print_refusals(summary.refused, sys.stderr)
    print(summary, file=sys.stderr)
    return EXIT_REFUSED if summary.refused else EXIT_OK
