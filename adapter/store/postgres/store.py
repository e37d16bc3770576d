"""The PostgreSQL store: every port on one schema, for production with several replicas."""

from __future__ import annotations

from adapter.store.postgres.encounters import EncountersPg
from adapter.store.postgres.inbox import InboxPg
from adapter.store.postgres.outbox import OutboxPg
from adapter.store.postgres.reports import ReportsPg
from adapter.store.postgres.resources import ResourcesPg
from adapter.store.postgres.review import ReviewPg


class PostgresStore(InboxPg, EncountersPg, ResourcesPg, OutboxPg, ReviewPg, ReportsPg):
    """The `Store` on a PostgreSQL database (asyncpg DSN), in one schema."""
