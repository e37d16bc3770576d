"""The one place a `CodingContext` is built (the service, replay and the batch CLI alike).

The context is what the pure coder needs besides the encounter: the tables, the site's
options and time zone, and the ICD-10-CM billability check (adapter/icd10.py), which is
wired here so no caller can forget it or pass another.
"""

from __future__ import annotations

from datetime import tzinfo

from adapter.config import Settings
from adapter.core.coder import CodingContext
from adapter.core.mappings import Mappings
from adapter.core.options import CodingOptions
from adapter.icd10 import is_billable


def coding_context(mappings: Mappings, options: CodingOptions, site_tz: tzinfo) -> CodingContext:
    return CodingContext(mappings, options, site_tz, is_billable)


def service_coding_context(settings: Settings, mappings: Mappings) -> CodingContext:
    """The context the settings describe (the service, replay, dead-letter reprocessing)."""
    return coding_context(mappings, settings.coding_options(), settings.tz)
