"""The Lifecycle port: migrations, readiness, closing, and the gauges /metrics reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Gauges for /metrics."""

    encounters_by_state: dict[str, int]
    outbox_pending: int
    dead_letters: int
    messages: int
    outbox_rejected: int = 0  # versions their destination refused for good (kept, listed)


class Lifecycle(Protocol):
    """The store as a resource of the process: opened lazily, migrated, probed, closed."""

    async def migrate(self) -> None:
        """Apply pending versioned migrations (idempotent; safe with several replicas)."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (for /readyz)."""

    async def counts(self) -> StoreCounts: ...
