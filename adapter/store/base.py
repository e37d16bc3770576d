"""Where the store's interface used to live: the ports, re-exported for old imports.

The ports are in `adapter.store.ports` (one module per thing stored); new code imports
them from there and types against the small port it needs.
"""

from __future__ import annotations

from adapter.store.ports import *  # noqa: F403
from adapter.store.ports import __all__ as __all__
