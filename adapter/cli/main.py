"""`charge-adapter`: the command line's entry point, and its one error edge.

`code` reads HL7 v2 and FHIR files in the order given as one feed, closes
every encounter at the end, and prints one FHIR R4 Bundle of Claims,
ChargeItems and review Tasks. A summary goes to stderr. Exit 0 when the
input was read (holds included), 2 when any input could not be read (the
rest is still coded and printed: one bad message never loses the others).

Every other command is dispatched to its module. Whatever `AdapterError` a command raises
(a setting, a mapping table, a start-up refusal) is translated here, once, by its
`disposition`: one line on stderr and the disposition's exit code (`refuse`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.core.explain import render
from adapter.core.mappings import SETTINGS
from adapter.core.options import CodingOptions, ZOrder
from adapter.errors import AdapterError
from adapter.mappings_loader import default_mappings_dir, load_mappings
from adapter.runtime import tune_gc
from adapter.usecases.batch import Pipeline, PipelineResult, code_files

EXIT_OK = 0
EXIT_BAD_INPUT = 2


@dataclass(frozen=True, slots=True)
class CodeArgs:
    paths: tuple[Path, ...]
    setting: str | None
    mappings: Path
    site_tz: str
    pump_g0498: bool
    z_order: ZOrder
    explain: bool = False  # the per-administration report, to stderr or `explain_to`
    explain_to: Path | None = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    try:
        return _run(parser, ns)
    except AdapterError as error:
        return refuse(error)


def refuse(error: AdapterError) -> int:
    """The CLI edge of the error tree: the error's one line on stderr, its exit code.

    Decided by the error's type (its `disposition`), never by its text; the text is the
    error's `message`, a short sentence that names the setting or the file at fault."""
    print(f"charge-adapter: {error.message}", file=sys.stderr)
    return error.disposition.exit_code


def _run(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> int:
    if ns.command == "code":
        return run_code(
            CodeArgs(
                paths=tuple(Path(p) for p in ns.paths),
                setting=ns.setting,
                mappings=Path(ns.mappings) if ns.mappings else default_mappings_dir(),
                site_tz=ns.site_tz,
                pump_g0498=ns.pump_g0498,
                z_order=ZOrder(ns.z_order),
                explain=ns.explain or ns.explain_to is not None,
                explain_to=Path(ns.explain_to) if ns.explain_to else None,
            )
        )
    if ns.command == "send":
        from adapter.cli.send import SendTls
        from adapter.cli.send import run as send

        tls = SendTls(ns.ca, ns.cert, ns.key, ns.server_name) if ns.tls else None
        if not ns.tls and (ns.ca or ns.cert or ns.key or ns.server_name):
            print("charge-adapter: --ca, --cert, --key, --server-name need --tls", file=sys.stderr)
            return EXIT_BAD_INPUT
        return send(ns.host, ns.port, [Path(p) for p in ns.paths], ns.timeout, tls)
    if ns.command == "dead-letters":
        from adapter.cli import dead_letters

        return dead_letters.run(ns)
    if ns.command in ("serve", "replay", "settings", "health"):
        from adapter.cli import service

        return service.run(ns)
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


# Ids in the options below and in every Claim item's rule trace, and where a user reads them.
RULES_HELP = (
    "Rule ids (R1-R45) and decision ids (D1-D27), here and in each Claim item's coding "
    "trace, are explained in docs/coding-rules.md and docs/decisions.md."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charge-adapter", description="Oncology infusion charge capture.", epilog=RULES_HELP
    )
    sub = parser.add_subparsers(dest="command")
    code = sub.add_parser(
        "code",
        help="code HL7 v2 / FHIR files as one feed and print a FHIR Bundle",
        description="Read the files in the order given as one feed, close every encounter, "
        "and print one FHIR R4 Bundle (collection) of Claims, ChargeItems and review Tasks.",
        epilog=RULES_HELP,
    )
    code.add_argument("paths", nargs="+", metavar="PATH", help="HL7 v2 (.hl7) or FHIR JSON files")
    code.add_argument(
        "--explain",
        action="store_true",
        help="report to stderr, per input file, every administration read and what became "
        "of it: the coded line(s), the hold and its reason, or why it was skipped "
        "(stdout keeps the Bundle)",
    )
    code.add_argument(
        "--explain-to",
        metavar="FILE",
        help="write the --explain report to FILE instead of stderr (implies --explain)",
    )
    code.add_argument(
        "--setting",
        choices=SETTINGS,
        help="override the claim setting for every encounter (D1); default: location mapping",
    )
    code.add_argument("--mappings", metavar="DIR", help="mapping tables (default: bundled)")
    code.add_argument(
        "--site-tz",
        default="America/New_York",
        help="time zone for timestamps without an offset (D25; default America/New_York)",
    )
    code.add_argument(
        "--pump-g0498",
        action="store_true",
        help="bill G0498 instead of 96416 for office pump starts (R27; Medicare, off by default)",
    )
    code.add_argument(
        "--z-order",
        choices=[z.value for z in ZOrder],
        default=ZOrder.CHEMO_FIRST.value,
        help="order of Z51.11 and Z51.12 when both apply (R39; default chemo-first)",
    )
    _service_commands(sub)
    return parser


def _service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the service: MLLP and HTTP listeners, coder, delivery",
        description="Run the service until SIGTERM/SIGINT; SIGHUP reloads the mapping tables. "
        "Settings: ADAPTER_* environment variables over an optional TOML file (see README). "
        "Exit 2: a setting is wrong; 3: the environment refused (a port in use, the database "
        "down or missing); the reason is one line on stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _settings_options(serve)
    replay = sub.add_parser(
        "replay",
        help="re-read stored messages through the current mappings and re-code",
        description="Re-read accepted messages through the current mappings (all, or those "
        "received since --since, or those named with --message); encounters they touch are "
        "re-coded into new versions of the same resources, never duplicates. Dead letters "
        "(messages answered AE/AR) are never swept up: each is re-read only when named with "
        "--dead-letter, and a truncated one (an oversize frame) never. Exit 0; 1 when a named "
        "message was not replayed (said on stderr); 2 for a settings error.",
    )
    _settings_options(replay)
    replay.add_argument(
        "--since", metavar="T", help="ISO date-time (UTC without an offset): received at or after"
    )
    replay.add_argument(
        "--message",
        action="append",
        metavar="CONTROL_ID",
        help="an accepted message by the control id the feed sent: MSH-10, or a FHIR "
        "resource id (id or Type/id); repeatable",
    )
    replay.add_argument(
        "--dead-letter",
        action="append",
        type=int,
        metavar="ID",
        help="a dead letter by its stored id (as the dead-letter list shows it): re-read it, "
        "after the feed or the mappings were fixed; repeatable",
    )
    replay.add_argument(
        "--no-code", action="store_true", help="only relink; the running service codes them"
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing: print per encounter what the replay would change (Claim lines "
        "added/removed/changed, holds opened/closed) and which messages would live or die",
    )
    _send_command(sub)
    from adapter.cli.dead_letters import add_command

    add_command(sub)
    health = sub.add_parser(
        "health",
        help="probe this replica's /healthz (exit 0 when alive): for HEALTHCHECK",
        description="GET /healthz on this replica (ADAPTER_HOST, ADAPTER_HTTP_PORT) over the "
        "scheme it serves: https when ADAPTER_TLS_CERT_FILE is set, presenting "
        "ADAPTER_HEALTH_CLIENT_CERT_FILE/KEY_FILE (else the server's own certificate) under "
        "mutual TLS. Exit 0 when alive, 1 when not, 2 on a settings error. The container "
        "image's HEALTHCHECK.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _settings_options(health)
    health.add_argument("--timeout", type=float, default=4.0, help="seconds to wait")
    settings = sub.add_parser(
        "settings",
        help="print the effective settings (secrets masked)",
        description="Validate the settings as `serve` would (without opening the database or "
        "the listeners) and print the effective values as JSON, secrets masked. Exit 2 with "
        "one line naming the setting when one is wrong.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _settings_options(settings)


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (also ADAPTER_CONFIG_FILE); ADAPTER_* variables win",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="an ADAPTER_* variable that is not a setting is an error, not a warning",
    )


def _send_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser(
        "send",
        help="send HL7 v2 files to an MLLP listener and print each ACK",
        description="Send every message of the files over one MLLP connection, each after "
        "the previous ACK; print '<MSH-10> <ACK code>' per message. Exit 1 if any was not "
        "accepted, 2 if the files or the connection failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    send.add_argument("paths", nargs="+", metavar="PATH", help="HL7 v2 files, in order")
    send.add_argument("--host", default="127.0.0.1", help="MLLP listener host")
    send.add_argument("--port", type=int, default=2575, help="MLLP listener port")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each ACK")
    send.add_argument(
        "--tls",
        action="store_true",
        help="MLLP over TLS; the server certificate is verified (--ca, else the system CAs)",
    )
    send.add_argument("--ca", metavar="FILE", help="PEM CA bundle to verify the server (TLS)")
    send.add_argument(
        "--cert", metavar="FILE", help="PEM client certificate, for mutual TLS (with --key)"
    )
    send.add_argument("--key", metavar="FILE", help="PEM private key of --cert (unencrypted)")
    send.add_argument(
        "--server-name",
        metavar="NAME",
        default=None,
        # "%(default).0s" prints nothing and stops the formatter adding "(default: None)".
        help="name the server certificate must carry (default: the --host value)%(default).0s",
    )


def run_code(args: CodeArgs) -> int:
    try:
        tz = ZoneInfo(args.site_tz)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"charge-adapter: unknown time zone '{args.site_tz}'", file=sys.stderr)
        return EXIT_BAD_INPUT
    mappings = load_mappings(args.mappings)  # a MappingError: exit 2, through `refuse`
    options = CodingOptions(
        setting_override=args.setting, pump_code_g0498=args.pump_g0498, z_order=args.z_order
    )
    tune_gc()
    unreadable: list[str] = []
    pipeline, result = code_files(_read(args.paths, unreadable), mappings, options, tz)
    sys.stdout.write(result.bundle_json)
    sys.stdout.write("\n")
    if args.explain and not _explain(pipeline, result, args.explain_to):
        return EXIT_BAD_INPUT
    _report(result, unreadable)
    return EXIT_BAD_INPUT if result.errors or unreadable else EXIT_OK


def _read(paths: Sequence[Path], unreadable: list[str]) -> Iterator[tuple[str, bytes]]:
    """Each file's name and content, one at a time; one that cannot be read is noted."""
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            unreadable.append(f"{path}: cannot read file ({exc.strerror})")
            continue
        yield str(path), data


def _explain(pipeline: Pipeline, result: PipelineResult, target: Path | None) -> bool:
    """Write the explain report (stderr, or the file); False when the file cannot be written."""
    lines = render(pipeline.explain(result))
    if target is None:
        for line in lines:
            print(line, file=sys.stderr)
        return True
    try:
        with target.open("w", encoding="utf-8") as out:
            out.writelines(f"{line}\n" for line in lines)
    except OSError as exc:
        print(f"charge-adapter: cannot write {target} ({exc.strerror})", file=sys.stderr)
        return False
    return True


def _report(result: PipelineResult, unreadable: list[str]) -> None:
    """Errors first (file and segment or JSON path), then one summary line, always last."""
    for line in unreadable:
        print(f"error: {line}", file=sys.stderr)
    for error in result.errors:
        print(f"error: {error.location}: {error.message}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.summary_line(len(unreadable)), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
