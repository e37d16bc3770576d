"""Typed access to parsed FHIR JSON, and the FHIR datatypes every resource reader needs.

The FHIR reader walks `json.loads` output directly (no model classes: a
validated model costs far more than the handful of fields we read). These
helpers are the only place a JSON value's Python type is checked: a wrong type
raises `ReadError` carrying the JSON path, so an interface analyst can find the
fault, and never the value itself (values may be PHI).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from types import MappingProxyType

from adapter.core.model import Code, CodeSystem, Quantity
from adapter.core.time_range import RANGE_TEXT, year_in_range

JsonObject = Mapping[str, object]

# FHIR R4 primitive grammars (https://hl7.org/fhir/R4/datatypes.html), checked where read.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_CODE = re.compile(r"[^\s]+(?: [^\s]+)*")  # the spec's [^\s]+(\s[^\s]+)*, one space between
_URI = re.compile(r"\S+")
# string: no code points below 32 but tab, CR, LF; no DEL; no lone surrogate (not Unicode)
_NOT_STRING = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_DECIMAL = Decimal(10) ** 12  # no dose, volume or rate comes near; 1e300 is not an amount
MAX_INTEGER = 2**31 - 1  # FHIR integer is 32-bit signed


class ReadError(Exception):
    """A resource cannot be read: `path` says where (FHIRPath-like), `message` says why.

    Raised by the accessors and caught once per resource by `read_fhir`, which
    turns it into an `InputError`; it never leaves the readers package.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for messages that must not show the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def as_object(value: object, path: str) -> JsonObject:
    """The value as a JSON object, or a ReadError naming the path."""
    if isinstance(value, dict):
        return value
    raise ReadError(path, f"expected an object, got {_json_type(value)}")


def get_object(node: JsonObject, key: str, path: str) -> JsonObject | None:
    """An optional object-valued element."""
    value = node.get(key)
    if value is None:
        return None
    return as_object(value, f"{path}.{key}")


def get_list(node: JsonObject, key: str, path: str) -> Sequence[object]:
    """An optional array-valued element; absent is empty."""
    value = node.get(key)
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    raise ReadError(f"{path}.{key}", f"expected an array, got {_json_type(value)}")


def get_objects(node: JsonObject, key: str, path: str) -> list[tuple[str, JsonObject]]:
    """The objects of an optional array, each with its own path."""
    found: list[tuple[str, JsonObject]] = []
    for index, item in enumerate(get_list(node, key, path)):
        item_path = f"{path}.{key}[{index}]"
        if not isinstance(item, dict):
            raise ReadError(item_path, f"expected an object, got {_json_type(item)}")
        found.append((item_path, item))
    return found


def get_str(node: JsonObject, key: str, path: str) -> str | None:
    """An optional string element; blank counts as absent."""
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return check_string(value, f"{path}.{key}").strip() or None
    raise ReadError(f"{path}.{key}", f"expected a string, got {_json_type(value)}")


def check_string(value: str, path: str) -> str:
    """The value when it is a FHIR string: no control character but tab/CR/LF, no lone
    surrogate (a JSON `\\ud800` escape reads as one, and no store can hold it as text)."""
    if _NOT_STRING.search(value) is not None:
        raise ReadError(path, "not a FHIR string (a control character or a lone surrogate)")
    return value


def check_code(value: str, path: str) -> str:
    """A FHIR code: no whitespace but single spaces between words (and a FHIR string)."""
    if _CODE.fullmatch(value) is None:
        raise ReadError(path, "not a FHIR code (whitespace other than single inner spaces)")
    return check_string(value, path)


def check_uri(value: str, path: str) -> str:
    """A FHIR uri: no whitespace (and a FHIR string)."""
    if _URI.fullmatch(value) is None:
        raise ReadError(path, "not a FHIR uri (it holds whitespace)")
    return check_string(value, path)


def check_id(value: object, path: str) -> str:
    """A FHIR id, `[A-Za-z0-9\\-.]{1,64}`; the value is not shown (it may be an MRN)."""
    if isinstance(value, str) and FHIR_ID.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise ReadError(path, f"expected a string, got {_json_type(value)}")
    raise ReadError(path, "not a FHIR id (1-64 letters, digits, '-' or '.')")


def get_bool(node: JsonObject, key: str, path: str) -> bool | None:
    """An optional boolean element."""
    value = node.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ReadError(f"{path}.{key}", f"expected a boolean, got {_json_type(value)}")


def get_decimal(node: JsonObject, key: str, path: str) -> Decimal | None:
    """An optional finite number, exact (via its shortest repr, not binary float)."""
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
        if number.is_finite() and abs(number) < MAX_DECIMAL:
            return number
        if number.is_finite():
            raise ReadError(f"{path}.{key}", f"decimal out of range (at most {MAX_DECIMAL:.0e})")
    raise ReadError(f"{path}.{key}", f"expected a finite number, got {_json_type(value)}")


def get_int(node: JsonObject, key: str, path: str) -> int | None:
    """An optional integer element (positiveInt, unsignedInt...)."""
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INTEGER:
            raise ReadError(f"{path}.{key}", "integer out of range (FHIR integer is 32-bit)")
        return value
    raise ReadError(f"{path}.{key}", f"expected an integer, got {_json_type(value)}")


def json_float(text: str) -> float:
    """`json.loads(parse_float=...)`: a literal such as `1e999` would silently be infinity."""
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


# --- dateTime -----------------------------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_SHOWABLE = re.compile(r"[0-9TZ:+\-./ ]{1,40}")


def parse_datetime(text: str, path: str, site_tz: tzinfo) -> datetime:
    """A FHIR date, dateTime or instant as an aware datetime.

    Partial dates (`2025`, `2025-03`, `2025-03-01`) mean their first instant;
    anything without an offset is local to the site (D25). Seconds are optional
    because real feeds drop them even though FHIR requires them. Years outside
    1900-2200 are refused (why: `time_range`).
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ReadError(path, _invalid_datetime(text))
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if not year_in_range(int(year)):
        raise ReadError(path, f"dateTime out of range (year outside {RANGE_TEXT})")
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
        )
        zone = _offset(offset) if offset else site_tz
    except ValueError:
        raise ReadError(path, _invalid_datetime(text)) from None
    return moment.replace(tzinfo=zone)


def _offset(text: str) -> tzinfo:
    """A fixed UTC offset; `Z` is UTC."""
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes >= 60:
        raise ValueError(text)
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _invalid_datetime(text: str) -> str:
    """Show the bad value only when it looks like a timestamp, never free text."""
    if _SHOWABLE.fullmatch(text):
        return f"invalid dateTime '{text}'"
    return "invalid dateTime (value not shown: not date-like)"


def get_datetime(node: JsonObject, key: str, path: str, site_tz: tzinfo) -> datetime | None:
    """An optional dateTime element."""
    text = get_str(node, key, path)
    return None if text is None else parse_datetime(text, f"{path}.{key}", site_tz)


@dataclass(frozen=True, slots=True)
class Period:
    """A FHIR Period, read."""

    start: datetime | None
    end: datetime | None


def get_period(node: JsonObject, key: str, path: str, site_tz: tzinfo) -> Period | None:
    """An optional Period element."""
    period = get_object(node, key, path)
    if period is None:
        return None
    inner = f"{path}.{key}"
    return Period(
        get_datetime(period, "start", inner, site_tz), get_datetime(period, "end", inner, site_tz)
    )


# --- codes --------------------------------------------------------------------------------

_SYSTEMS: Mapping[str, str] = MappingProxyType(
    {
        "http://hl7.org/fhir/sid/ndc": CodeSystem.NDC,
        "urn:oid:2.16.840.1.113883.6.69": CodeSystem.NDC,
        "http://www.nlm.nih.gov/research/umls/rxnorm": CodeSystem.RXNORM,
        "urn:oid:2.16.840.1.113883.6.88": CodeSystem.RXNORM,
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": CodeSystem.HCPCS,
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": CodeSystem.HCPCS,
        "urn:oid:2.16.840.1.113883.6.285": CodeSystem.HCPCS,
        "http://hl7.org/fhir/sid/icd-10-cm": CodeSystem.ICD10CM,
        "urn:oid:2.16.840.1.113883.6.90": CodeSystem.ICD10CM,
    }
)


def coding_system(system: str | None) -> str:
    """Our system for a FHIR Coding.system; unknown systems stay as sent (local codes)."""
    if system is None:
        return ""
    return _SYSTEMS.get(system, system)


def concept_codes(concept: JsonObject, path: str) -> tuple[Code, ...]:
    """Every coding of a CodeableConcept that carries a code."""
    codes: list[Code] = []
    for item_path, coding in get_objects(concept, "coding", path):
        code = coding_code(coding, item_path)
        if code is not None:
            codes.append(code)
    return tuple(codes)


def coding_code(coding: JsonObject, path: str) -> Code | None:
    """One Coding as a Code, or None when it has no code."""
    value, system, display = coding.get("code"), coding.get("system"), coding.get("display")
    if not (isinstance(value, str) and isinstance(system, str) and isinstance(display, str)):
        # The slow path: absent or mistyped elements (the typed getters raise with the path).
        value = get_str(coding, "code", path)
        system = get_str(coding, "system", path)
        display = get_str(coding, "display", path) or ""
        if value is None:
            return None
    value = check_code(value.strip(), f"{path}.code")
    if not value:
        return None
    system = check_uri(system.strip(), f"{path}.system") if system and system.strip() else ""
    display = check_string(display, f"{path}.display")
    return Code(_SYSTEMS.get(system, system), value, display.strip())


def concept_text(concept: JsonObject, path: str) -> str:
    """The concept's text, else its first coding's display: a label, never a code."""
    text = get_str(concept, "text", path)
    if text:
        return text
    for item_path, coding in get_objects(concept, "coding", path):
        display = get_str(coding, "display", item_path)
        if display:
            return display
    return ""


def icd10_code(concept: JsonObject, path: str) -> str | None:
    """The first ICD-10-CM coding, in dotted form (C50911 -> C50.911)."""
    for code in concept_codes(concept, path):
        if code.system == CodeSystem.ICD10CM:
            return dotted_icd10(code.code)
    return None


def dotted_icd10(code: str) -> str:
    """ICD-10-CM with its dot after the category, as the Claim carries it."""
    bare = code.strip().upper().replace(".", "")
    return f"{bare[:3]}.{bare[3:]}" if len(bare) > 3 else bare


# --- quantities ---------------------------------------------------------------------------

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


# --- references ---------------------------------------------------------------------------


def reference_of(node: JsonObject, key: str, path: str) -> str | None:
    """The `reference` string of an optional Reference element."""
    ref = get_object(node, key, path)
    return None if ref is None else get_str(ref, "reference", f"{path}.{key}")


def split_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a relative or absolute literal reference; version suffix ignored."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None
    return parts[-2], parts[-1]
