"""A receiver profile for outbound DFT^P03: what one billing system expects, as data.

Billing systems disagree on where the CPT/HCPCS goes (FT1-7 through their chargemaster,
or FT1-25), which HL7 version they read, and where modifiers travel when the version has
no FT1-26. Each receiver gets a profile file in `mappings/dft_profiles/`; the shell
(`adapter.dft_profiles_loader`) validates it once at load into the frozen values here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from adapter.core.mappings import Setting


class HL7Version(StrEnum):
    """The versions a profile can speak; FT1 ends at 25 (2.3), 26 (2.4), 31 (2.5.1)."""

    V2_3 = "2.3"
    V2_4 = "2.4"
    V2_5_1 = "2.5.1"

    @property
    def ft1_fields(self) -> int:
        return _FT1_FIELDS[self]


_FT1_FIELDS = MappingProxyType({HL7Version.V2_3: 25, HL7Version.V2_4: 26, HL7Version.V2_5_1: 31})


class CodeField(StrEnum):
    """Where the CPT/HCPCS goes: FT1-7 (the receiver posts it as the transaction code)
    and/or FT1-25 (the receiver maps FT1-7 through its chargemaster and reads FT1-25)."""

    FT1_7 = "FT1-7"
    FT1_25 = "FT1-25"


class ModifierPlacement(StrEnum):
    """Where modifiers (JW, JZ, 59, XU...) travel; a modifier is never dropped.

    `FT1-26`: the repeating procedure modifier field (2.4 and later). `chargemaster`:
    through the chargemaster item in FT1-7 only, so every modified line needs its own row
    (code + modifiers), else the version is refused. `code-suffix`: appended to the
    procedure code (`J9045-JW`), for 2.3 receivers that read them there.
    """

    FT1_26 = "FT1-26"
    CHARGEMASTER = "chargemaster"
    CODE_SUFFIX = "code-suffix"


class ClaimKind(StrEnum):
    """Professional (office) or institutional (hospital outpatient) encounters (D1)."""

    PROFESSIONAL = "professional"
    INSTITUTIONAL = "institutional"

    @staticmethod
    def of_setting(setting: str) -> ClaimKind:
        if setting == Setting.OFFICE:
            return ClaimKind.PROFESSIONAL
        return ClaimKind.INSTITUTIONAL


class OptionalField(StrEnum):
    """The optional parts a profile may fill; everything else is always sent or never."""

    DEPARTMENT = "FT1-13"
    ASSIGNED_LOCATION = "FT1-16"
    DIAGNOSIS_CODES = "FT1-19"
    PERFORMED_BY = "FT1-20"
    ORDERED_BY = "FT1-21"
    FILLER_ORDER = "FT1-23"
    NDC = "FT1-29"
    DG1 = "DG1"


class CreditQuantity(StrEnum):
    """How a CD credit states its quantity: as charged (the HL7 norm), or negated."""

    POSITIVE = "positive"
    NEGATIVE = "negative"


@dataclass(frozen=True, slots=True)
class ChargemasterItem:
    """One row of the site's chargemaster: CPT/HCPCS + modifiers -> the receiver's item."""

    code: str
    modifiers: tuple[str, ...]  # sorted: their order on a line carries no meaning
    transaction_code: str
    description: str = ""


def _no_items() -> Mapping[tuple[str, tuple[str, ...]], ChargemasterItem]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Chargemaster:
    """Items keyed by (code, sorted modifiers)."""

    items: Mapping[tuple[str, tuple[str, ...]], ChargemasterItem] = field(default_factory=_no_items)

    def exact(self, code: str, modifiers: tuple[str, ...]) -> ChargemasterItem | None:
        return self.items.get((code, tuple(sorted(modifiers))))

    def lookup(self, code: str, modifiers: tuple[str, ...]) -> ChargemasterItem | None:
        """The row for code + modifiers, else the code's row without modifiers."""
        return self.exact(code, modifiers) or self.items.get((code, ()))


@dataclass(frozen=True, slots=True)
class Department:
    """FT1-13: the receiver's department (HL7 table 0049) for a location code."""

    code: str
    text: str = ""


def _no_departments() -> Mapping[str, Department]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """MSH-3..6 and MSH-11 as the receiver's interface engine routes on them."""

    sending_application: str = "CHGADAPTER"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"


@dataclass(frozen=True, slots=True)
class DftProfile:
    """Everything that differs between receivers; validated by the loader."""

    name: str
    version: HL7Version = HL7Version.V2_5_1
    header: MessageHeader = field(default_factory=MessageHeader)
    encounters: frozenset[ClaimKind] = frozenset(ClaimKind)
    procedure_code_in: tuple[CodeField, ...] = (CodeField.FT1_25,)
    modifiers: ModifierPlacement = ModifierPlacement.FT1_26
    modifier_separator: str = "-"
    fill: frozenset[OptionalField] = frozenset(OptionalField)
    credit_quantity: CreditQuantity = CreditQuantity.POSITIVE
    cpt_coding_system: str = "C4"  # HL7 table 0396: C4 = CPT-4
    hcpcs_coding_system: str = "HCPCS"  # HL7 table 0396: HCPCS Level II
    diagnosis_coding_system: str = "I10"
    chargemaster: Chargemaster = field(default_factory=Chargemaster)
    departments: Mapping[str, Department] = field(default_factory=_no_departments)

    def __post_init__(self) -> None:
        """No profile can exist that would put a value in a field its version lacks (the
        loader says the same with file and key first)."""
        problem = profile_problem(self)
        if problem:
            raise ValueError(f"profile {self.name}: {problem}")

    def fills(self, part: OptionalField) -> bool:
        return part in self.fill


def profile_problem(profile: DftProfile) -> str:
    """Why a combination of options cannot be sent, or ''."""
    if not profile.procedure_code_in:
        return "the CPT/HCPCS must go to FT1-7 or FT1-25"
    if not profile.encounters:
        return "takes no encounters"
    if profile.modifiers is ModifierPlacement.FT1_26 and profile.version.ft1_fields < 26:
        return f"FT1-26 does not exist in HL7 {profile.version.value}"
    if profile.modifiers is ModifierPlacement.CHARGEMASTER and (
        CodeField.FT1_7 in profile.procedure_code_in
    ):
        return "modifiers through the chargemaster need FT1-7 to hold the chargemaster item"
    if profile.fills(OptionalField.NDC) and profile.version.ft1_fields < 29:
        return f"FT1-29 (NDC) does not exist in HL7 {profile.version.value}"
    return ""
