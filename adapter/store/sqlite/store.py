"""The SQLite store: every port on one SQLite file, the embedded default for one process."""

from __future__ import annotations

from adapter.store.sqlite.encounters import EncountersSql
from adapter.store.sqlite.inbox import InboxSql
from adapter.store.sqlite.outbox import OutboxSql
from adapter.store.sqlite.reports import ReportsSql
from adapter.store.sqlite.resources import ResourcesSql
from adapter.store.sqlite.review import ReviewSql


class SqliteStore(InboxSql, EncountersSql, ResourcesSql, OutboxSql, ReviewSql, ReportsSql):
    """The `Store` on one SQLite file (created with its directory when missing)."""
