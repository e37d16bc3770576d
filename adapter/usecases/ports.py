"""What the use cases need of the shell, as small ports they are given.

The store's ports are `adapter/store/ports/`; these are the other things the use cases
use: places to count what ingest received (`IngestMetrics`) and what the coder coded
(`CodingMetrics`), both satisfied by `adapter/metrics.py`'s `Metrics`, and, per billing
receiver, a queue for the Claim's DFT (`DftOutlet`, satisfied by
`adapter/outbox/dft_queue.py`'s `DftQueue`). All are structural (`Protocol`): the shell
objects do not name them, and a use case never imports the shell to get them, so the
use cases stay below the shell in the import graph (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from adapter.core.assembly import Encounter
from adapter.core.charges import CodedEncounter
from adapter.store.ports import ResourceRow

__all__ = ["CodingMetrics", "DftOutlet", "IngestMetrics"]


class IngestMetrics(Protocol):
    """Where ingest counts each message it answered."""

    def message(self, fmt: str, kind: str, outcome: str) -> None:
        """One inbound message of this format and kind: accepted, duplicate or rejected."""

    def control_id_reuse(self, fmt: str) -> None:
        """One message whose control id was seen before with other content."""


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
