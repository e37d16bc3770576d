"""Unit conversion for doses against HCPCS billing units (D16): g/mg/mcg, L/mL, units."""

from __future__ import annotations

from decimal import Decimal

from adapter.core.model import Quantity

_FACTORS: dict[str, tuple[str, Decimal]] = {
    "g": ("mass", Decimal(1_000_000)),
    "mg": ("mass", Decimal(1000)),
    "mcg": ("mass", Decimal(1)),
    "L": ("volume", Decimal(1000)),
    "mL": ("volume", Decimal(1)),
    "units": ("units", Decimal(1)),
}


def convert(quantity: Quantity, unit: str) -> Decimal | None:
    """The quantity expressed in `unit`, or None when the dimensions differ (mg vs mL)."""
    source = _FACTORS.get(quantity.unit)
    target = _FACTORS.get(unit)
    if source is None or target is None or source[0] != target[0]:
        return None
    return quantity.value * source[1] / target[1]


def ceil_div(amount: Decimal, unit: Decimal) -> int:
    """Round the dose up to whole billing units (R34)."""
    whole = amount // unit
    return int(whole) + (1 if whole * unit < amount else 0)


def floor_div(amount: Decimal, unit: Decimal) -> int:
    """Round opened amounts down to whole billing units (R36: waste rounds down)."""
    return int(amount // unit)
