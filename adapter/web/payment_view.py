"""Expected payment on the encounter page: the Claim's lines priced in its own setting and in
the other one, side by side (`adapter.core.pricing`), with every figure's label.

The lines priced are the stored Claim's (what is billed, or would be), read back into
`ChargeLine`s: code, units, modifiers and service date are all pricing looks at. The other
setting prices the same codes and units (the two settings code JW/JZ and waste lines a
little differently; the page says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from adapter.core.charges import ChargeLine, LineKind
from adapter.core.mappings import Setting
from adapter.core.periods import PeriodStatus
from adapter.core.price_tables import PriceTables
from adapter.core.pricing import (
    LABEL_SCOPE,
    NoRate,
    PricedLine,
    SettingPrice,
    TableUse,
    compare_sites,
)
from adapter.web.claim_view import setting_code

CLAIM_SETTING = {"professional": Setting.OFFICE, "institutional": Setting.HOSPITAL_OUTPATIENT}
SETTING_WORDS: dict[str, str] = {
    Setting.OFFICE: "office",
    Setting.HOSPITAL_OUTPATIENT: "hospital outpatient",
}
TABLE_WORDS = {"pfs": "PFS", "asp": "ASP", "opps": "OPPS"}
ADMINISTRATION_CODES = ("G0498",)


def expected_payment(claim: Mapping[str, Any], tables: PriceTables) -> dict[str, Any] | None:
    """Both settings' figures for the page, or None when the Claim has no setting or lines."""
    setting = CLAIM_SETTING.get(setting_code(claim))
    lines = charge_lines(claim.get("item", ()))
    if setting is None or not lines:
        return None
    comparison = compare_sites(lines, setting, tables)
    difference = comparison.difference
    return {
        "scope": LABEL_SCOPE,
        "own": _setting(comparison.own),
        "other": _setting(comparison.other),
        "difference": _money(difference) if difference is not None else "",
    }


def charge_lines(items: Sequence[Mapping[str, Any]]) -> list[ChargeLine]:
    """The Claim's items as the lines pricing needs; an item it cannot read is left out."""
    lines = []
    for item in items:
        line = _charge_line(item)
        if line is not None:
            lines.append(line)
    return lines


def _charge_line(item: Mapping[str, Any]) -> ChargeLine | None:
    codings = item.get("productOrService", {}).get("coding", ())
    code = str(codings[0].get("code", "")) if codings else ""
    modifiers = tuple(
        str(c.get("code", "")) for m in item.get("modifier", ()) for c in m.get("coding", ())[:1]
    )
    try:
        units = int(Decimal(str(item.get("quantity", {}).get("value", ""))))
        served = date.fromisoformat(str(item.get("servicedDate", ""))[:10])
    except (InvalidOperation, ValueError):
        return None
    if not code:
        return None
    if code[:1].isdigit() or code in ADMINISTRATION_CODES:
        kind = LineKind.ADMINISTRATION
    else:
        kind = LineKind.WASTE if "JW" in modifiers else LineKind.DRUG
    return ChargeLine(kind, code, units, served, (), (), modifiers)


def _setting(price: SettingPrice) -> dict[str, Any]:
    return {
        "name": SETTING_WORDS.get(price.setting, price.setting),
        "lines": [_line(p) for p in price.lines],
        "total": _money(price.total),
        "complete": price.complete,
        "tables": [_table(t) for t in price.label.tables],
        "stale": [_table(t) for t in price.label.stale],
    }


def _line(price: PricedLine | NoRate) -> dict[str, Any]:
    line = price.line
    mods = f"-{'-'.join(line.modifiers)}" if line.modifiers else ""
    base = {"code": f"{line.code}{mods}", "units": line.units}
    if isinstance(price, NoRate):
        status = f" (status {price.status})" if price.status else ""
        return base | {"amount": "", "how": f"no rate: {price.reason.value}{status}"}
    how = price.basis.value
    if price.packaged_into:
        how += f" into {price.packaged_into}"
    return base | {"amount": _money(price.amount), "how": how}


def _table(use: TableUse) -> dict[str, str]:
    version = use.version
    status = {
        PeriodStatus.PAST_PERIOD: "past its period for this service date (D27): the newest loaded",
        PeriodStatus.BEFORE_PERIOD: "before its period for this service date",
    }.get(use.period_status, "")
    flag = {
        PeriodStatus.PAST_PERIOD: "past its period",
        PeriodStatus.BEFORE_PERIOD: "before its period",
    }.get(use.period_status, "")
    return {
        "flag": flag,
        "name": TABLE_WORDS.get(use.table.value, use.table.value),
        "period": f"{version.effective_start.isoformat()} to {version.effective_end.isoformat()}",
        "file": use.source_file,
        "status": status,
    }


def _money(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"
