"""Browser sessions and the failed-login limiter: in memory, the clock passed in.

Why in memory: a session is a convenience over the bearer tokens (the token is typed once,
then a cookie stands for it); losing them on a restart only asks billers to log in again.
Several replicas behind one address need sticky sessions (docs/workbench.md).

Every visitor gets a session on the first page, before any login, so the login form itself
carries a CSRF token; logging in replaces the session id (no fixation). The number of
sessions is capped, anonymous and logged-in ones apart: past a cap, the one idle longest of
that kind is dropped, so a flood of cookie-less requests cannot log a biller out.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    """One browser: its CSRF token and, once logged in, the token's client name."""

    id: str
    csrf: str
    last_seen: datetime
    client: str | None = None
    read_only: bool = False


class Sessions:
    """Sessions by id, idle ones expired on touch; least recently seen dropped first."""

    def __init__(self, idle: timedelta, cap: int = MAX_SESSIONS) -> None:
        self.idle = idle
        self.cap = cap
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._logged_in: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._logged_in)

    def new(self, now: datetime) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now)
        self._put(session)
        return session

    def touch(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session under `session_id`, seen now; None if unknown or idle too long."""
        if not session_id:
            return None
        session = self._logged_in.get(session_id) or self._anonymous.get(session_id)
        if session is None:
            return None
        if now - session.last_seen > self.idle:
            self.drop(session_id)
            return None
        session = replace(session, last_seen=now)
        self._put(session)
        return session

    def log_in(self, old: Session | None, client: str, read_only: bool, now: datetime) -> Session:
        """A fresh id and CSRF token for the logged-in browser; the old session is gone."""
        if old is not None:
            self.drop(old.id)
        fresh = self.new(now)
        logged_in = replace(fresh, client=client, read_only=read_only)
        self._put(logged_in)
        return logged_in

    def drop(self, session_id: str) -> None:
        self._anonymous.pop(session_id, None)
        self._logged_in.pop(session_id, None)

    def _put(self, session: Session) -> None:
        kind = self._anonymous if session.client is None else self._logged_in
        kind[session.id] = session
        kind.move_to_end(session.id)
        while len(kind) > self.cap:
            kind.popitem(last=False)


class LoginLimiter:
    """At most `attempts` failed logins per address within `window`; then refused until
    the oldest failure leaves the window. Addresses are forgotten once their window passes."""

    def __init__(self, attempts: int, window: timedelta, max_addresses: int = 10_000) -> None:
        self.attempts = attempts
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def blocked(self, address: str, now: datetime) -> bool:
        failures = self._recent(address, now)
        return failures is not None and len(failures) >= self.attempts

    def failed(self, address: str, now: datetime) -> None:
        failures = self._recent(address, now)
        if failures is None:
            failures = self._failures[address] = deque()
        failures.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str, now: datetime) -> deque[datetime] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
