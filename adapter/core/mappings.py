"""The site-editable tables, as one immutable value handed to readers and the coder.

The shell (`adapter.mappings_loader`) reads `mappings/` once at start-up,
validates every row and builds this; nothing in the core reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from adapter.core.catalog import Catalog
from adapter.core.model import Method, Route
from adapter.core.periods import TableVersion
from adapter.core.price_tables import PriceTables

__all__ = ["HoldReasonText", "LocationRule", "Mappings", "Setting", "TableVersion", "table_key"]


class Setting(StrEnum):
    """Claim setting values (D1): a closed set. A `StrEnum`, so a member equals the text
    the tables and the settings name it by (`location_map.csv`, ADAPTER_DEFAULT_SETTING)."""

    OFFICE = "office"
    HOSPITAL_OUTPATIENT = "hospital-outpatient"


SETTINGS: tuple[str, ...] = tuple(Setting)  # the values a table or a setting may name


def table_key(code: str) -> str:
    """How a code or text is looked up in a vocabulary table: upper-case, runs of
    white space as one space, so `IV  push` and `iv push` find the row `IV PUSH`."""
    return " ".join(code.split()).upper()


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LocationRule:
    """A location (PV1-3 point of care, facility or FHIR Location id) and what it implies."""

    code: str
    setting: str  # Setting.OFFICE / Setting.HOSPITAL_OUTPATIENT
    place_of_service: str = ""  # professional claims: POS 11 office, 19/22 hospital


@dataclass(frozen=True, slots=True)
class HoldReasonText:
    """A hold reason code (D22) and the sentence a biller can act on."""

    code: str
    sentence: str


@dataclass(frozen=True)
class Mappings:
    """Everything `mappings/` holds, validated."""

    catalog: Catalog
    opps_status: Mapping[str, str] = field(default_factory=_empty)  # HCPCS -> SI
    routes: Mapping[str, Route] = field(default_factory=lambda: MappingProxyType({}))
    methods: Mapping[str, Method] = field(default_factory=lambda: MappingProxyType({}))
    locations: Mapping[str, LocationRule] = field(default_factory=lambda: MappingProxyType({}))
    revenue_codes: Mapping[str, str] = field(default_factory=_empty)  # CPT/HCPCS or family -> rev
    hold_reasons: Mapping[str, HoldReasonText] = field(default_factory=lambda: MappingProxyType({}))
    code_labels: Mapping[str, str] = field(default_factory=_empty)  # our own short labels
    observation_codes: Mapping[str, str] = field(default_factory=_empty)  # OBX-3 -> meaning
    table_versions: tuple[TableVersion, ...] = ()
    prices: PriceTables = field(default_factory=PriceTables)  # national rates (pricing)

    def route(self, code: str) -> Route:
        """Map a route code from any table (HL7 0162, SNOMED, free abbreviations)."""
        return self.routes.get(table_key(code), Route.UNKNOWN)

    def method(self, code: str) -> Method:
        """Map an administration method code (HL7 0165, SNOMED) to push/infusion/pump."""
        return self.methods.get(table_key(code), Method.UNSPECIFIED)

    def location(self, *codes: str | None) -> LocationRule | None:
        """The first location rule matching any of the given codes, most specific first."""
        for code in codes:
            if code and code.strip().upper() in self.locations:
                return self.locations[code.strip().upper()]
        return None

    def revenue_code(self, code: str) -> str:
        """Revenue code for a line (R44): exact code first, then its family prefix."""
        if code in self.revenue_codes:
            return self.revenue_codes[code]
        for prefix_len in (4, 3, 2, 1):
            family = code[:prefix_len] + "*"
            if family in self.revenue_codes:
                return self.revenue_codes[family]
        return ""
