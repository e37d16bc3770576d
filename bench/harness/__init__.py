"""The benchmark harness: the pieces every bench/ script is a thin scenario over.

- `load`: traffic shaped like real feeds (the scenario fixtures as templates, the fixed
  regimen) and the load generators (the MLLP sender process, the interface-engine threads
  of the crash tests, in-process ingest).
- `proc`: the adapter under test and the other processes (start on free ports, /readyz,
  CPU time and RSS from /proc, stop by pid).
- `inprocess`: the service in the bench's own process (`start_state`), workers paused, so
  the bench's own pass is the only one.
- `pg`: PostgreSQL schemas per run, a freezable proxy for partitions.
- `server_main`: the command line of the stand-in servers (baseline, peer).
- `report`: the table, `key=value` lines, medians, verdicts against targets.
- `verify`: the store read back and compared with the batch coder (crash tests).

Scripts run as `python bench/<script>.py`, so `bench/` is on `sys.path` and they import
`harness`; this package puts the repository root first so `adapter` is this checkout's.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
