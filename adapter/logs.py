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


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Call once at start-up. `auto` = JSON unless stderr is a terminal.

    Standard-library logging (asyncpg, aiohttp) goes through the same
    processors, so an outage's tracebacks are JSON lines too and pass `drop_phi`.
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
        cache_logger_on_first_use=False,
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
