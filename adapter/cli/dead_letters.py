"""`charge-adapter dead-letters [--since T] [--reason R] | show ID | reprocess ID`.

The worklist of refused messages for the person who runs the interface (see
adapter/usecases/dead_letters.py): the list has no PHI; `show` prints one raw as received (the
CLI runs with the store's credentials, so whoever runs it may read the store anyway);
`reprocess` reads one again after a mapping or feed fix and says what came of it.
Exit 0; 1 when `show`/`reprocess` found no such dead letter or it is still refused;
2 for a settings or argument error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from adapter.config import Settings, load_settings, unknown_variables
from adapter.core.refusals import RefusalReason
from adapter.errors import EXIT_CONFIG
from adapter.logs import configure
from adapter.store.base import Store

EXIT_OK = 0
EXIT_NOT_DONE = 1


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dead-letters",
        help="list refused messages (no PHI); show one raw; reprocess one after a fix",
        description="Without an action: the dead letters, oldest first, one line each (id, "
        "received, format, message type, control id, reason code, location of the fault). "
        "`show ID` prints one as received; `reprocess ID` reads it again through the "
        "current mappings and codes what it touches.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")
    parser.add_argument(
        "--strict", action="store_true", help="an unknown ADAPTER_* variable is an error"
    )
    parser.add_argument("--since", metavar="T", help="ISO date-time (UTC without an offset)")
    parser.add_argument(
        "--reason",
        action="append",
        choices=[r.value for r in RefusalReason],
        metavar="CODE",
        help="only this refusal code (repeatable): " + ", ".join(r.value for r in RefusalReason),
    )
    parser.add_argument("--limit", type=int, default=100, help="at most this many lines")
    parser.add_argument("--offset", type=int, default=0, help="skip this many first")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    actions = parser.add_subparsers(dest="action")
    show = actions.add_parser("show", help="print one dead letter as received")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument(
        "--bytes", action="store_true", help="exactly as stored (HL7 keeps its CR separators)"
    )
    again = actions.add_parser("reprocess", help="read one dead letter again after a fix")
    again.add_argument("id", type=int, metavar="ID")
    again.add_argument("--no-code", action="store_true", help="relink only; do not code")


def run(ns: argparse.Namespace) -> int:
    settings = load_settings(config_file=ns.config, strict=ns.strict)  # SettingsError: exit 2
    for problem in unknown_variables(os.environ):
        print(f"charge-adapter: warning: {problem}", file=sys.stderr)
    configure(settings.log_format, "warning", cache_loggers=True)
    return asyncio.run(_run(settings, ns))


async def _run(settings: Settings, ns: argparse.Namespace) -> int:
    from adapter.store import open_store

    store = open_store(settings.database_url, pg_schema=settings.database_schema)
    await store.migrate()
    try:
        if ns.action == "show":
            return await _show(store, ns.id, ns.bytes)
        if ns.action == "reprocess":
            return await _reprocess(store, settings, ns.id, not ns.no_code)
        return await _list(store, ns)
    finally:
        await store.close()


async def _list(store: Store, ns: argparse.Namespace) -> int:
    from adapter.core.time_range import parse_since
    from adapter.usecases.dead_letters import DeadLetterQuery, list_dead_letters

    try:
        since = parse_since(ns.since) if ns.since else None
    except ValueError:
        print(f"charge-adapter: --since '{ns.since}' is not an ISO date-time", file=sys.stderr)
        return EXIT_CONFIG
    reasons = tuple(RefusalReason(r) for r in ns.reason or ())
    query = DeadLetterQuery(since, reasons, ns.limit, ns.offset)
    items, total = await list_dead_letters(store, query)
    if ns.json:
        for item in items:
            print(json.dumps(item.to_json()))
    else:
        print("ID\tRECEIVED (UTC)\tFORMAT\tTYPE\tCONTROL ID\tREASON\tLOCATION")
        for item in items:
            row = item.to_json()
            print("\t".join(str(row[k]) or "-" for k in _COLUMNS))
    print(f"dead letters: {len(items)} shown of {total}", file=sys.stderr)
    return EXIT_OK


_COLUMNS = ("id", "receivedAt", "format", "messageType", "controlId", "reason", "location")


async def _show(store: Store, message_id: int, exact: bool) -> int:
    from adapter.usecases.dead_letters import dead_letter_raw

    message = await dead_letter_raw(store, message_id)
    if message is None:
        print(f"charge-adapter: no dead letter {message_id}", file=sys.stderr)
        return EXIT_NOT_DONE
    raw = message.raw
    if message.format == "hl7" and not exact:  # one segment per line on a terminal
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    sys.stdout.buffer.write(raw if raw.endswith(b"\n") else raw + b"\n")
    sys.stdout.flush()
    print(f"dead letter {message.id}: {message.error}", file=sys.stderr)
    return EXIT_OK


async def _reprocess(store: Store, settings: Settings, message_id: int, code: bool) -> int:
    from adapter.mappings_loader import load_mappings
    from adapter.metrics import Metrics
    from adapter.usecases.dead_letters import reprocess

    mappings = load_mappings(Path(settings.mappings_dir))  # a MappingError: exit 2
    result = await reprocess(store, settings, mappings, message_id, Metrics(), code=code)
    for line in result.lines():
        print(line)
    return EXIT_OK if result.accepted else EXIT_NOT_DONE
