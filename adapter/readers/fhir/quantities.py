"""FHIR Quantity as the model's `Quantity`, its unit in the model's spelling."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapter.core.model import Quantity
from adapter.readers.fhir.elements import JsonObject, get_decimal, get_object, get_str

_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "mg": "mg",
        "g": "g",
        "gm": "g",
        "mcg": "mcg",
        "ug": "mcg",
        "µg": "mcg",
        "μg": "mcg",
        "ml": "mL",
        "cc": "mL",
        "l": "L",
        "u": "units",
        "unit": "units",
        "units": "units",
        "[iu]": "units",
        "iu": "units",
        "[u]": "units",
    }
)


def normalize_unit(unit: str) -> str:
    """The model's unit spelling (mg, mcg, g, mL, L, units); others stay as sent."""
    return _UNITS.get(unit.strip().lower(), unit.strip())


def get_quantity(node: JsonObject, key: str, path: str) -> Quantity | None:
    """An optional Quantity element with a value; the UCUM code wins over the label."""
    quantity = get_object(node, key, path)
    return None if quantity is None else read_quantity(quantity, f"{path}.{key}")


def read_quantity(quantity: JsonObject, path: str) -> Quantity | None:
    """A Quantity value, or None when it has no number."""
    value = get_decimal(quantity, "value", path)
    if value is None:
        return None
    unit = get_str(quantity, "code", path) or get_str(quantity, "unit", path) or ""
    return Quantity(value, normalize_unit(unit))
