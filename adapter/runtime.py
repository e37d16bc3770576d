"""Process-wide tuning done once at start-up, shared by every entry point.

Why its own module: both the batch command (`adapter.cli`) and the service commands
(`adapter.service_cli`, which `adapter.cli` dispatches to) call it; living in either one made
them import each other.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc() -> None:
    """Move start-up objects (ICD-10-CM tree, catalog) out of the collector's reach.

    A batch allocates many short-lived dicts; with the default thresholds the
    collector keeps re-walking the ~1M long-lived objects loaded at start-up.
    Measured on the bench (2,000 encounters): read+code+output 2.66 s → 2.06 s.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
