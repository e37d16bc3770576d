"""Coding defaults a site may change (decisions.md): each field names its decision."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from adapter.core.mappings import Setting


class MidnightDating(StrEnum):
    """Ambiguity 5: how add-on hours that cross midnight are dated."""

    PER_BLOCK = "per-block"  # D9: each unit on the date its block began
    START_DATE = "start-date"  # HCPro-MN: every unit on the administration's start date


class ZOrder(StrEnum):
    """R39 tie-break when both Z51.11 and Z51.12 apply."""

    CHEMO_FIRST = "chemo-first"
    IMMUNO_FIRST = "immuno-first"


@dataclass(frozen=True, slots=True)
class CodingOptions:
    default_setting: str = Setting.HOSPITAL_OUTPATIENT  # D1
    setting_override: str | None = None  # D1: --setting on the CLI
    pump_code_g0498: bool = False  # D13 / R27: Medicare office, practice-owned pump
    second_access_modifier: str = "59"  # R16 / ambiguity 8
    concurrent_overlap_minutes: int = 16  # D6
    midnight_dating: MidnightDating = MidnightDating.PER_BLOCK  # D9
    z_order: ZOrder = ZOrder.CHEMO_FIRST  # D19 / R39
    max_infusion_minutes: int = 24 * 60  # D10: longer without a pump route = invalid times
