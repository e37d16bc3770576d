"""The SQLite store (see connection.py for how it drives the file): one module per port.

`SqliteStore` (store.py) is every port's mixin over `SqliteBase` (connection.py).
"""

from __future__ import annotations

from adapter.store.sqlite.connection import SYNCHRONOUS_MODES
from adapter.store.sqlite.store import SqliteStore

__all__ = ["SYNCHRONOUS_MODES", "SqliteStore"]
