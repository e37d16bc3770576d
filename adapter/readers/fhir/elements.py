"""Typed access to parsed FHIR JSON: objects, arrays and the FHIR primitives, checked.

The FHIR reader walks `json.loads` output directly (no model classes: a
validated model costs far more than the handful of fields we read). These
helpers are the only place a JSON value's Python type is checked: a wrong type
raises `ReadError` carrying the JSON path, so an interface analyst can find the
fault, and never the value itself (values may be PHI). The datatypes built on
them are beside: `datetimes.py` (dateTime, Period), `codes.py` (Coding,
CodeableConcept), `quantities.py` (Quantity, units).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal

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
