"""Read and check a DFT receiver profile (`mappings/dft_profiles/<name>.toml`) and the
chargemaster it names, once, into a frozen `DftProfile`.

Why strictly and at load: a profile that puts modifiers in a field its HL7 version does
not have, or a chargemaster row with a typo in its code, would post wrong charges to a
billing system that pays on them. Found at load it is one message naming the file and
the key (`... generic-2.5.1.toml: ft1.modifiers: ...`) or the line (`chargemaster.csv
line 7: ...`). An unknown key is an error too: a misspelt option must not be ignored.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from adapter.core.mappings import Mappings
from adapter.hl7.dft_profile import (
    Chargemaster,
    ChargemasterItem,
    ClaimKind,
    CodeField,
    CreditQuantity,
    Department,
    DftProfile,
    HL7Version,
    MessageHeader,
    ModifierPlacement,
    OptionalField,
)
from adapter.mappings_loader import MappingError
from adapter.mappings_loader.rows import check_header, make_row, numbered_records

__all__ = ["DEFAULT_PROFILE", "PROFILES_DIR", "DftProfileError", "load_dft_profile"]

PROFILES_DIR = "dft_profiles"
DEFAULT_PROFILE = "generic-2.5.1"
CHARGEMASTER_COLUMNS = ("code", "modifiers", "transaction_code", "description")

_PROCEDURE = re.compile(r"[A-Z0-9]{5}")  # CPT (96413) or HCPCS (J9271, G0498)
_MODIFIER = re.compile(r"[A-Z0-9]{2}")  # 59, JW, JZ, XU
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HL7_TEXT = re.compile(r"[^|^~\\&\r\n]{0,64}")  # header values: no delimiters at all
_CODING_SYSTEM = re.compile(r"[A-Za-z0-9._-]{1,20}")
_TRANSACTION_CODE = re.compile(r"[^|^~\\&\r\n]{1,64}")
_SEPARATOR = re.compile(r"[-:.+ ]")

_TOP_KEYS = frozenset({"hl7_version", "encounters", "chargemaster", "msh", "ft1", "dg1"})
_TOP_KEYS |= {"departments"}
_MSH_KEYS = frozenset(
    {
        "sending_application",
        "sending_facility",
        "receiving_application",
        "receiving_facility",
        "processing_id",
    }
)
_FT1_KEYS = frozenset(
    {
        "procedure_code",
        "modifiers",
        "modifier_separator",
        "fill",
        "credit_quantity",
        "cpt_coding_system",
        "hcpcs_coding_system",
    }
)
_DG1_KEYS = frozenset({"send", "coding_system"})
E = TypeVar("E", HL7Version, ModifierPlacement, CreditQuantity)
_FT1_FILL = tuple(f.value for f in OptionalField if f is not OptionalField.DG1)


class DftProfileError(MappingError):
    """A profile or its chargemaster is wrong; the message names the file and key or line."""


class _Where:
    """Builds errors that name the file and the key path (`ft1.modifiers`)."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix

    def sub(self, table: str) -> _Where:
        return _Where(self.path, f"{self.prefix}{table}.")

    def error(self, key: str, problem: str) -> DftProfileError:
        return DftProfileError(f"{self.path}: {self.prefix}{key}: {problem}")


def load_dft_profile(
    mappings_dir: Path, name: str = DEFAULT_PROFILE, mappings: Mappings | None = None
) -> DftProfile:
    """The profile `mappings_dir/dft_profiles/<name>.toml`, checked.

    With `mappings`, every department key must be a location of `locations.csv`: a
    department for a location the feed never matches is a typo.
    """
    if not _PROFILE_NAME.fullmatch(name):
        raise DftProfileError(f"profile name {name!r} is not a file name (letters, digits, ._-)")
    path = mappings_dir / PROFILES_DIR / f"{name}.toml"
    data = _toml(path)
    where = _Where(path)
    _known(data, _TOP_KEYS, where)
    version = _choice(data, "hl7_version", HL7Version, where, HL7Version.V2_5_1.value)
    msh = _table(data, "msh", _MSH_KEYS, where)
    ft1 = _table(data, "ft1", _FT1_KEYS, where)
    dg1 = _table(data, "dg1", _DG1_KEYS, where)
    at_ft1, at_dg1 = where.sub("ft1"), where.sub("dg1")
    placement = _choice(ft1, "modifiers", ModifierPlacement, at_ft1, "FT1-26")
    code_in = _code_fields(ft1, at_ft1)
    _check_placement(version, placement, code_in, at_ft1)
    fill = _fill(ft1, dg1, version, where)
    chargemaster_file = _string(data, "chargemaster", where, "", re.compile(r"[^/\\]{0,128}"))
    return DftProfile(
        name=name,
        version=version,
        header=_header(msh, where.sub("msh")),
        encounters=_encounters(data, where),
        procedure_code_in=code_in,
        modifiers=placement,
        modifier_separator=_string(ft1, "modifier_separator", at_ft1, "-", _SEPARATOR),
        fill=fill,
        credit_quantity=_choice(ft1, "credit_quantity", CreditQuantity, at_ft1, "positive"),
        cpt_coding_system=_string(ft1, "cpt_coding_system", at_ft1, "C4", _CODING_SYSTEM),
        hcpcs_coding_system=_string(ft1, "hcpcs_coding_system", at_ft1, "HCPCS", _CODING_SYSTEM),
        diagnosis_coding_system=_string(dg1, "coding_system", at_dg1, "I10", _CODING_SYSTEM),
        chargemaster=_chargemaster(mappings_dir / chargemaster_file)
        if chargemaster_file
        else Chargemaster(),
        departments=_departments(data, where, mappings),
    )


# ---------------------------------------------------------------- TOML


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DftProfileError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise DftProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DftProfileError(f"{path}: {exc}") from None


def _known(data: Mapping[str, Any], allowed: frozenset[str], where: _Where) -> None:
    for key in data:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise where.error(key, f"unknown key (expected one of {expected})")


def _table(
    data: Mapping[str, Any], key: str, allowed: frozenset[str], where: _Where
) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise where.error(key, "must be a table")
    _known(value, allowed, where.sub(key))
    return value


def _string(
    data: Mapping[str, Any], key: str, where: _Where, default: str, pattern: re.Pattern[str]
) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise where.error(key, "must be a string")
    if not pattern.fullmatch(value):
        raise where.error(key, f"{value!r} is not allowed here")
    return value


def _choice(data: Mapping[str, Any], key: str, enum: type[E], where: _Where, default: str) -> E:
    value = data.get(key, default)
    allowed = [member.value for member in enum]
    if not isinstance(value, str) or value not in allowed:
        raise where.error(key, f"{value!r} is not one of {', '.join(allowed)}")
    return enum(value)


def _strings(data: Mapping[str, Any], key: str, where: _Where, default: list[str]) -> list[str]:
    value = data.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error(key, "must be a list of strings")
    if len(set(value)) != len(value):
        raise where.error(key, "lists a value twice")
    return value


# ---------------------------------------------------------------- parts


def _header(msh: Mapping[str, Any], where: _Where) -> MessageHeader:
    def text(key: str, default: str) -> str:
        return _string(msh, key, where, default, _HL7_TEXT)

    processing = _string(msh, "processing_id", where, "P", re.compile(r"[DPT]"))
    return MessageHeader(
        sending_application=text("sending_application", "CHGADAPTER"),
        sending_facility=text("sending_facility", ""),
        receiving_application=text("receiving_application", ""),
        receiving_facility=text("receiving_facility", ""),
        processing_id=processing,
    )


def _encounters(data: Mapping[str, Any], where: _Where) -> frozenset[ClaimKind]:
    values = _strings(data, "encounters", where, [k.value for k in ClaimKind])
    allowed = [k.value for k in ClaimKind]
    for value in values:
        if value not in allowed:
            raise where.error("encounters", f"{value!r} is not one of {', '.join(allowed)}")
    if not values:
        raise where.error("encounters", "is empty: the profile would send nothing")
    return frozenset(ClaimKind(v) for v in values)


def _code_fields(ft1: Mapping[str, Any], where: _Where) -> tuple[CodeField, ...]:
    values = _strings(ft1, "procedure_code", where, [CodeField.FT1_25.value])
    allowed = [f.value for f in CodeField]
    for value in values:
        if value not in allowed:
            raise where.error("procedure_code", f"{value!r} is not one of {', '.join(allowed)}")
    if not values:
        raise where.error("procedure_code", "is empty: the CPT/HCPCS must go somewhere")
    return tuple(CodeField(v) for v in values)


def _check_placement(
    version: HL7Version,
    placement: ModifierPlacement,
    code_in: tuple[CodeField, ...],
    where: _Where,
) -> None:
    """Modifiers must have a place in the version the receiver reads."""
    if placement is ModifierPlacement.FT1_26 and version is HL7Version.V2_3:
        raise where.error(
            "modifiers", "FT1-26 does not exist in HL7 2.3 (FT1 ends at 25): use "
            "chargemaster or code-suffix"
        )  # fmt: skip
    if placement is ModifierPlacement.CHARGEMASTER and CodeField.FT1_7 in code_in:
        raise where.error(
            "modifiers", "chargemaster needs FT1-7 to hold the chargemaster item, but "
            "ft1.procedure_code puts the CPT/HCPCS there"
        )  # fmt: skip


def _fill(
    ft1: Mapping[str, Any], dg1: Mapping[str, Any], version: HL7Version, where: _Where
) -> frozenset[OptionalField]:
    at_ft1 = where.sub("ft1")
    values = _strings(ft1, "fill", at_ft1, list(_FT1_FILL))
    for value in values:
        if value not in _FT1_FILL:
            raise at_ft1.error("fill", f"{value!r} is not one of {', '.join(_FT1_FILL)}")
    if OptionalField.NDC.value in values and version is not HL7Version.V2_5_1:
        raise at_ft1.error("fill", f"FT1-29 (NDC) does not exist in HL7 {version.value}")
    fields = {OptionalField(v) for v in values}
    send = dg1.get("send", True)
    if not isinstance(send, bool):
        raise where.sub("dg1").error("send", "must be true or false")
    if send:
        fields.add(OptionalField.DG1)
    return frozenset(fields)


def _departments(
    data: Mapping[str, Any], where: _Where, mappings: Mappings | None
) -> Mapping[str, Department]:
    table = data.get("departments", {})
    if not isinstance(table, dict):
        raise where.error("departments", "must be a table of location = department")
    found: dict[str, Department] = {}
    at = where.sub("departments")
    for location, value in table.items():
        code = location.strip().upper()
        if mappings is not None and code not in mappings.locations:
            raise at.error(location, "is not a location code of locations.csv")
        if code in found:
            raise at.error(location, "is given twice (codes are matched case-insensitively)")
        found[code] = _department(value, location, at)
    return MappingProxyType(found)


def _department(value: Any, key: str, where: _Where) -> Department:
    if isinstance(value, str):
        value = {"code": value}
    if not isinstance(value, dict):
        raise where.error(key, 'must be a code or { code = "...", text = "..." }')
    at = where.sub(key)
    _known(value, frozenset({"code", "text"}), at)
    code = _string(value, "code", at, "", _TRANSACTION_CODE)
    text = _string(value, "text", at, "", re.compile(r"[^\r\n|^~\\&]{0,128}"))
    return Department(code, text)


# ---------------------------------------------------------------- chargemaster


def _chargemaster(path: Path) -> Chargemaster:
    """`code,modifiers,transaction_code,description`; modifiers space-separated, any order.

    Rows are read with the mappings loader's CSV rules (header by name and order, cells
    trimmed, blank lines skipped, a spreadsheet's byte-order mark accepted).
    """
    try:
        return _chargemaster_rows(path)
    except DftProfileError:
        raise
    except MappingError as exc:  # the shared CSV helpers' errors, same message
        raise DftProfileError(str(exc)) from None


def _chargemaster_rows(path: Path) -> Chargemaster:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DftProfileError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise DftProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = numbered_records(text, path)
    check_header(next(lines, (1, []))[1], path, CHARGEMASTER_COLUMNS)
    items: dict[tuple[str, tuple[str, ...]], ChargemasterItem] = {}
    for line, cells in lines:
        if not any(cells):
            continue
        row = make_row(path, line, cells, CHARGEMASTER_COLUMNS)
        code = row["code"].upper()
        if not _PROCEDURE.fullmatch(code):
            raise row.error(f"code {code!r} is not a 5-character CPT/HCPCS code")
        modifiers = tuple(sorted(m.upper() for m in row["modifiers"].split()))
        for modifier in modifiers:
            if not _MODIFIER.fullmatch(modifier):
                raise row.error(f"modifier {modifier!r} is not a 2-character modifier")
        if len(set(modifiers)) != len(modifiers):
            raise row.error("a modifier is given twice")
        transaction = row["transaction_code"]
        if not _TRANSACTION_CODE.fullmatch(transaction):
            raise row.error(
                "transaction_code must be 1-64 characters without HL7 delimiters (| ^ ~ \\ &)"
            )
        if (code, modifiers) in items:
            shown = f"{code} {' '.join(modifiers)}".strip()
            raise row.error(f"{shown} is already given on an earlier line")
        items[(code, modifiers)] = ChargemasterItem(
            code, modifiers, transaction, row["description"]
        )
    return Chargemaster(MappingProxyType(items))
