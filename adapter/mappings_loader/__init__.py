"""Read and check every table in `mappings/` once, at start-up, into one `Mappings` value.

Why here and strictly: a bad row found while coding a claim is a wrong bill or
a crash in the middle of a batch; found at start-up it is one clear message.
So every row is validated (types, enums, positive Decimal amounts, 11-digit
NDCs, cross-references between tables) and the first fault stops loading with
`MappingError("<file> line <n>: <problem>")`.

Rules of this package: the only code that reads `mappings/`; no table is read
twice; the result is immutable; no coding logic (that lives in the core).
Where is what: `load.py` (entry point), `tables.py` (file names, columns), `rows.py`
(CSV rows, cell checks, `MappingError`), `drugs.py` (drug catalog), `lookups.py`
(routes, methods, locations, revenue codes, holds, labels...), `prices.py` (price_*.csv).
"""

from adapter.mappings_loader.load import default_mappings_dir, load_mappings
from adapter.mappings_loader.rows import MappingError

__all__ = ["MappingError", "default_mappings_dir", "load_mappings"]
