"""The PostgreSQL store (see connection.py for the pool and replicas): one module per port.

`PostgresStore` (store.py) is every port's mixin over `PostgresBase` (connection.py).
"""

from __future__ import annotations

from adapter.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
