"""What the use cases need of the shell, as small ports they are given.

The store's ports are `adapter/store/ports/`; these are the other two things the coder
uses: a place to count what it coded (`CodingMetrics`, satisfied by `adapter/metrics.py`'s
`Metrics`) and, per billing receiver, a queue for the Claim's DFT (`DftOutlet`, satisfied
by `adapter/outbox/dft_queue.py`'s `DftQueue`). Both are structural (`Protocol`): the shell
objects do not name them, and a use case never imports the shell to get them, so the
use cases stay below the shell in the import graph (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from adapter.core.assembly import Encounter
from adapter.core.charges import CodedEncounter
from adapter.store.ports import ResourceRow

__all__ = ["CodingMetrics", "DftOutlet"]


class CodingMetrics(Protocol):
    """Where the coder counts each coding result."""

    def encounter_coded(self, outcome: str, stale_tables: Iterable[str]) -> None:
        """One encounter coded with this outcome, and each CMS table it used past its
        period (D27)."""


class DftOutlet(Protocol):
    """One billing receiver's DFT queue: the coder hands it each new Claim version."""

    @property
    def destination(self) -> str:
        """The outbox destination, `dft:<name>`."""

    async def enqueue(
        self, coded: CodedEncounter, encounter: Encounter, claim: ResourceRow, released: bool
    ) -> object:
        """Queue the DFT of this Claim version (nothing when the version sends nothing)."""
