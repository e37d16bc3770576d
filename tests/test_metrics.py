"""Prometheus metrics: label values that come off the wire must not grow the registry."""

from __future__ import annotations

import itertools

from adapter.labels import TABLE_0076
from adapter.metrics import MAX_MESSAGE_SERIES, Metrics


def _series(metrics: Metrics) -> list[str]:
    text = metrics.render().decode()
    return [line for line in text.splitlines() if line.startswith("adapter_messages_total{")]


def test_message_counts_are_per_format_type_and_outcome() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.message("hl7", "RAS^O17", "accepted")
    metrics.message("hl7", "RAS^O17", "duplicate")
    lines = _series(metrics)
    assert 'adapter_messages_total{format="hl7",outcome="accepted",type="RAS^O17"} 3.0' in lines
    assert len(lines) == 2


def test_a_feed_of_table_message_types_is_counted_as_other_past_the_series_cap() -> None:
    """Grammar-valid kinds (tables 0076 x 0003) can still be many: the cap holds for them."""
    metrics = Metrics()
    events = ("A01", "A08", "O17", "R01", "P03")
    kinds = [f"{code}^{event}" for code, event in itertools.product(sorted(TABLE_0076), events)]
    assert len(kinds) >= MAX_MESSAGE_SERIES + 500
    for kind in kinds[: MAX_MESSAGE_SERIES + 500]:
        metrics.message("hl7", kind, "rejected")
    lines = _series(metrics)
    assert len(lines) == MAX_MESSAGE_SERIES + 1
    other = [line for line in lines if 'type="other"' in line]
    assert other == ['adapter_messages_total{format="hl7",outcome="rejected",type="other"} 500.0']
