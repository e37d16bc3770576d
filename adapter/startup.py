"""Start-up failures as one sentence naming the cause and the setting to look at.

An operator whose port is taken or whose database is not there needs one line
("MLLP port 2575 on 127.0.0.1 is already in use (ADAPTER_MLLP_PORT)"), not the
60-line traceback of asyncio or asyncpg: these build that `StartupError` (adapter/errors.py)
from the OSError or the driver's error; the CLI prints it and exits with its code. Nothing
here logs the database URL itself: it may carry a password.
"""

from __future__ import annotations

import errno
import socket
import sqlite3

from adapter.errors import StartupError
from adapter.setting_names import SettingName


def listen_error(
    exc: OSError, listener: str, host: str, port: int, setting: SettingName
) -> StartupError:
    """A bind that failed: in use, not an address of this host, or not allowed."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"{listener} port {port} on {host} is already in use", setting)
    reason = exc.strerror or str(exc) or type(exc).__name__
    cause = f"cannot listen on {host}:{port} for {listener}: {reason}"
    not_here = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or exc.errno is None
    if not_here or isinstance(exc, socket.gaierror):  # not an address (or name) of this host
        return StartupError(cause, SettingName.HOST)
    return StartupError(cause, setting)


def database_error(exc: BaseException, database_url: str) -> StartupError:
    """The store would not open or migrate: which database, and what it said."""
    where = _where(database_url)
    setting = SettingName.DATABASE_URL
    if isinstance(exc, ConnectionRefusedError):
        return StartupError(f"database {where} refused the connection (is it running?)", setting)
    if isinstance(exc, TimeoutError):
        return StartupError(f"database {where} did not answer in time", setting)
    if isinstance(exc, sqlite3.Error):
        return StartupError(f"SQLite database {where}: {exc}", setting)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return StartupError(f"database {where}: {reason}", setting)
    # asyncpg's server errors say it plainly: 'database "x" does not exist',
    # 'password authentication failed for user "y"', 'schema ... permission denied'
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StartupError(f"database {where}: {text}", setting)


def _where(database_url: str) -> str:
    """host:port/database of a PostgreSQL URL, or the SQLite path; never the credentials."""
    scheme, sep, rest = database_url.strip().partition("://")
    if not sep:
        return database_url.strip()
    if scheme.lower() == "sqlite":
        return rest[1:]
    return rest.rpartition("@")[2].partition("?")[0]
