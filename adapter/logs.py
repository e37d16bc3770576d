"""Structured logs: JSON in production, readable on a terminal, and never PHI.

Log lines carry message control ids, resource ids, encounter keys' hashes,
codes and counts. As a second line of defence, keys that could carry PHI are
dropped by a processor before rendering, whatever a caller passes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PHI_KEYS = frozenset(
    {"name", "patient_name", "mrn", "patient", "patient_id", "dob", "birth_date", "birthdate",
     "address", "phone", "ssn", "text", "note", "raw", "body", "message"}
)  # fmt: skip


def drop_phi(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Remove keys that may hold PHI; `event` (the log message itself) is kept."""
    for key in PHI_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


class RedactLibraryRecord(logging.Filter):
    """aiohttp logs request lines and exception texts that carry URLs (`?patient=...`):
    keep the level, the logger and the exception type, drop the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = f"{record.name} {record.levelname.lower()}" + (
            f": {type(exc).__name__}" if exc is not None else ""
        )
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal",
                   "aiohttp.client", "aiohttp.websocket")  # fmt: skip


def redact_library_logs() -> None:
    """Idempotent; called by the HTTP app factory, so tests and `serve` both get it."""
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactLibraryRecord) for f in logger.filters):
            logger.addFilter(RedactLibraryRecord())


def configure(
    log_format: str = "auto", level: str = "info", *, cache_loggers: bool = False
) -> None:
    """Call once at start-up. `auto` = JSON unless stderr is a terminal.

    Standard-library logging (asyncpg, aiohttp) goes through the same
    processors, so an outage's tracebacks are JSON lines too and pass `drop_phi`.
    `cache_loggers` (what `serve` uses) binds each module's logger once instead of
    on every call, ~3 µs per log call on the ingest path; it is off by default
    because a cached logger ignores a later `structlog.configure` (tests re-configure).
    """
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_phi,
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache_loggers,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.processors.format_exc_info],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))  # libraries speak only when it matters
