"""Output of a benchmark: a human table, then one `key=value` line per figure.

The `key=value` lines are the interface (`make bench` and CI read them, `run_all.py`
collects them from each part with `parse_keys`): names stay stable across changes.
"""

from __future__ import annotations

from collections.abc import Sequence


def parse_keys(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key and key.replace("_", "").isalnum():
            out[key] = value
    return out


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def print_keys(keys: dict[str, object]) -> None:
    for key, value in keys.items():
        print(f"{key}={value}")


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ratio(value: float, baseline: float, digits: int = 3) -> float | None:
    """`value / baseline` measured in the same run, None without a baseline."""
    return round(value / baseline, digits) if baseline else None


def median_ratio(
    values: Sequence[float], baselines: Sequence[float], digits: int = 3
) -> float | None:
    """Median of the per-round ratios, each round's value over the baseline measured beside
    it (rounds rotate the order, so a noisy neighbour hits both sides alike)."""
    per_round = [v / b for v, b in zip(values, baselines, strict=False) if b]
    return round(median(per_round), digits) if per_round else None


def verdict(value: str | None, check: str) -> str:
    """`ok` / `MISS` for a target written `ge:0.5`, `le:20` or `eq:yes`; "" when unknown."""
    if not check or value in (None, "", "None", "skipped"):
        return ""
    op, _, target = check.partition(":")
    if op == "eq":
        return "ok" if value == target else "MISS"
    try:
        number = float(value or "")
    except ValueError:
        return ""
    good = number >= float(target) if op == "ge" else number <= float(target)
    return "ok" if good else "MISS"
