"""Field values: timestamps in the site's zone, HL7 numbers, amounts in normalized units, rates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from adapter.core.model import Provider, Quantity
from adapter.hl7.er7 import Segment
from adapter.hl7.hl7_time import TimestampError, parse_ts
from adapter.readers.hl7v2.faults import fault
from adapter.readers.hl7v2.header import Context

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z", re.ASCII)


_RATE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*)\Z", re.ASCII | re.DOTALL)


_TIME_UNIT_CODE = re.compile(r"[SMHDWL]\d+\Z")  # RXA-12 as HL7 defines it ("H1"): not a rate


def required_ts(segment: Segment, field: int, context: Context) -> datetime:
    value = optional_ts(segment, field, context)
    if value is None:
        raise fault(segment, field, "timestamp is empty")
    return value


def optional_ts(segment: Segment, field: int, context: Context) -> datetime | None:
    text = segment.get(field).strip()
    if not text:
        return None
    try:
        return parse_ts(text, context.site_tz)
    except TimestampError as exc:
        raise fault(segment, field, str(exc)) from None


def read_decimal(segment: Segment, field: int, text: str) -> Decimal:
    """An HL7 NM: digits with an optional sign and point; amounts are never negative."""
    if not _NUMBER.match(text):
        raise fault(segment, field, "not a number")
    value = Decimal(text)
    if value < 0:
        raise fault(segment, field, "negative amount")
    return value


def read_amount(
    segment: Segment, field: int, unit_field: int, default_unit: str
) -> Quantity | None:
    """NM value plus CWE units (code, else text), normalized."""
    text = segment.get(field).strip()
    if not text:
        return None
    value = read_decimal(segment, field, text)
    unit = segment.get(unit_field).strip() or segment.get(unit_field, 2).strip()
    return to_quantity(value, unit or default_unit)


def read_rate(rxa: Segment) -> Quantity | None:
    """RXA-12 as `<number>[ <unit>]` (unit default mL/h); HL7's own `H1` codes are ignored."""
    text = rxa.get(12).strip()
    if not text or _TIME_UNIT_CODE.match(text.upper()):
        return None
    match = _RATE.match(text)
    if match is None:
        raise fault(rxa, 12, "rate is not a number")
    value = read_decimal(rxa, 12, match.group(1))
    unit = match.group(2).strip() or rxa.get(12, 2).strip() or "mL/h"
    return to_quantity(value, unit)


def to_quantity(value: Decimal, unit: str) -> Quantity:
    """Units to `mg`, `mcg`, `g`, `mL`, `units`, `mL/h`; litres become mL; others stay as sent."""
    key = unit.strip().upper()
    if key in _LITRES:
        return Quantity(value * 1000, "mL")
    return Quantity(value, _UNITS.get(key, unit.strip()))


def _unit_table(groups: Mapping[str, tuple[str, ...]]) -> Mapping[str, str]:
    return MappingProxyType(
        {variant.upper(): unit for unit, variants in groups.items() for variant in variants}
    )


_UNITS = _unit_table(
    {
        "mg": ("mg", "milligram", "milligrams"),
        "mcg": ("mcg", "ug", "µg", "μg", "microgram", "micrograms"),
        "g": ("g", "gm", "gram", "grams"),
        "mL": ("mL", "cc", "milliliter", "milliliters", "millilitre", "millilitres"),
        "units": ("U", "unit", "units", "IU", "[IU]", "[iU]", "[U]"),
        "mL/h": ("mL/h", "mL/hr", "mL/hour", "cc/h", "cc/hr"),
    }
)


_LITRES = frozenset({"L", "LITER", "LITRE", "LITERS", "LITRES"})


def read_provider(segment: Segment, field: int) -> Provider | None:
    """The first repetition of an XCN with an id or a family name, as received."""
    for rep in range(1, len(segment.repetitions(field)) + 1):
        parts = [segment.get(field, c, 1, rep).strip() for c in (1, 2, 3, 4, 5, 6, 7, 9, 13)]
        if parts[0] or parts[1]:
            return Provider(*parts)
    return None
