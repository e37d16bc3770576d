"""The durable store: `open_store(url)` picks the backend from the database URL.

SQLite (`sqlite:///relative/or/./path.db`, `sqlite:////absolute/path.db`, or a plain file
path) for one process; PostgreSQL (`postgresql://...` or `postgres://...`) for several
replicas. Both implement `adapter.store.base.Store`. Nothing is opened until the first
call (usually `migrate()`), so the factory stays synchronous.
"""

from __future__ import annotations

from adapter.store.base import Store

DEFAULT_DATABASE_URL = "sqlite:///./var/adapter.db"

_ACCEPTED = (
    "sqlite:///path/to/file.db, a plain file path, "
    "postgresql://user@host:port/database or postgres://..."
)


def open_store(database_url: str, *, pg_schema: str = "public") -> Store:
    """A store for `database_url`; `pg_schema` names the PostgreSQL schema to use.

    The URL may carry a password, so it never appears in an error message.
    """
    url = database_url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _sqlite(url)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"a SQLite URL needs a file path; accepted forms: {_ACCEPTED}")
        return _sqlite(rest[1:])
    if scheme in ("postgresql", "postgres"):
        from adapter.store.postgres import PostgresStore

        return PostgresStore(url, schema=pg_schema)
    raise ValueError(f"unsupported database URL scheme {scheme!r}; accepted forms: {_ACCEPTED}")


def _sqlite(path: str) -> Store:
    from adapter.store.sqlite import SqliteStore

    if not path or path == ":memory:":
        raise ValueError(f"the store needs a file, not an empty or in-memory path; {_ACCEPTED}")
    return SqliteStore(path)
