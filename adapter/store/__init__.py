"""The durable store: `open_store(url)` picks the backend from the database URL.

SQLite (`sqlite:///relative/or/./path.db`, `sqlite:////absolute/path.db`, or a plain file
path) for one process; PostgreSQL (`postgresql://...` or `postgres://...`) for several
replicas. Both implement every port of `adapter.store.ports` (their union is `Store`).
Nothing is opened until the first call (usually `migrate()`), so the factory stays
synchronous.
"""

from __future__ import annotations

from adapter.store.ports import Store

DEFAULT_DATABASE_URL = "sqlite:///./var/adapter.db"

_ACCEPTED = (
    "sqlite:///path/to/file.db, a plain file path, "
    "postgresql://user@host:port/database or postgres://..."
)


def open_store(database_url: str, *, pg_schema: str = "public") -> Store:
    """A store for `database_url`; `pg_schema` names the PostgreSQL schema to use.

    The URL may carry a password, so it never appears in an error message.
    """
    problem = database_url_problem(database_url)
    if problem:
        raise ValueError(problem)
    url = database_url.strip()
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        from adapter.store.postgres import PostgresStore

        return PostgresStore(url, schema=pg_schema)
    from adapter.store.sqlite import SqliteStore

    return SqliteStore(rest[1:] if sep else url)


def database_url_problem(database_url: str) -> str | None:
    """Why `open_store` would refuse this URL (without opening anything), or None.

    The settings check calls it, so `charge-adapter settings` fails on `mysql://` as
    `serve` would. The URL may carry a password: it is never quoted.
    """
    url = database_url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        path = url
    elif scheme.lower() == "sqlite":
        if not rest.startswith("/") or rest == "/":
            return f"a SQLite URL needs a file path; accepted forms: {_ACCEPTED}"
        path = rest[1:]
    elif scheme.lower() in ("postgresql", "postgres"):
        return None
    else:
        shown = scheme.lower() if scheme.isalnum() and len(scheme) <= 20 else "(invalid)"
        return f"unsupported database URL scheme {shown!r}; accepted forms: {_ACCEPTED}"
    if not path or path == ":memory:":
        return f"the store needs a file, not an empty or in-memory path; {_ACCEPTED}"
    return None
