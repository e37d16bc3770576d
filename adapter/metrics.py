"""Prometheus metrics, one registry per application (tests run several apps in one process).

Under `ADAPTER_WORKERS=N` every worker writes its values to prometheus-client's
multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, made by the supervisor) and `/metrics`,
whichever worker answers it, adds them up. The gauges hold store-wide values (refreshed
from the store on each scrape, or set by worker 0's delivery worker): the most recent
value is the one shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from adapter import worker_role
from adapter.labels import message_kind_label

MAX_MESSAGE_SERIES = 200  # distinct (format, type, outcome) label sets before "other"
# multiprocess mode of every gauge: store-wide values, the last one set
LAST: Literal["mostrecent"] = "mostrecent"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "adapter_messages_total",
            "Inbound messages by format, type and outcome",
            ["format", "type", "outcome"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "adapter_ack_latency_seconds",
            "Time from a complete MLLP frame to its ACK written",
            registry=self.registry,
            buckets=ACK_BUCKETS,
        )
        self.encounters = Gauge(
            "adapter_encounters",
            "Encounters by state",
            ["state"],
            registry=self.registry,
            multiprocess_mode=LAST,
        )
        self.coded = Counter(
            "adapter_encounters_coded_total",
            "Coding results by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "adapter_delivery_attempts_total",
            "Delivery attempts by destination and result (delivered, failed, waiting, rejected)",
            ["destination", "result"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "adapter_outbox_backlog",
            "Resource versions waiting for delivery",
            registry=self.registry,
            multiprocess_mode=LAST,
        )
        self.outbox_rejected = Gauge(
            "adapter_outbox_rejected",
            "Resource versions their destination refused for good (kept, not retried:"
            " GET /admin/outbox?state=rejected)",
            registry=self.registry,
            multiprocess_mode=LAST,
        )
        self.dead_letters = Gauge(
            "adapter_dead_letters",
            "Messages kept as dead letters",
            registry=self.registry,
            multiprocess_mode=LAST,
        )
        self.destination_up = Gauge(
            "adapter_destination_up",
            "1 when the last delivery to the destination succeeded",
            ["destination"],
            registry=self.registry,
            multiprocess_mode=LAST,
        )
        self.limits_hit = Counter(
            "adapter_limits_hit_total",
            "Connections refused or cut by a limit (docs/security.md), by listener and limit",
            ["listener", "limit"],
            registry=self.registry,
        )
        self.control_id_reused = Counter(
            "adapter_control_id_reused_total",
            "Messages accepted whose sender and control id (MSH-10) an earlier message with "
            "other content already carried (not a re-send: both are read)",
            ["format"],
            registry=self.registry,
        )
        self._message_series: dict[tuple[str, str, str], Any] = {}
        self.table_warnings = Counter(
            "adapter_stale_table_total",
            "Encounters coded with a CMS table past its period (D27)",
            ["table"],
            registry=self.registry,
        )
        self.mapping_reloads = Counter(
            "adapter_mapping_reloads_total",
            "Mapping table reloads (SIGHUP, POST /admin/reload-mappings) by result",
            ["result"],
            registry=self.registry,
        )

    def control_id_reuse(self, fmt: str) -> None:
        """Count one message whose control id came again with other content (kept, not a resend)."""
        self.control_id_reused.labels(format=fmt).inc()

    def message(self, fmt: str, kind: str, outcome: str) -> None:
        """Count one inbound message; `kind` comes off the wire, so it is checked and bounded.

        A kind outside its grammar and tables (see `adapter.labels`) counts as
        "other": the label is on the open /metrics and must never carry what a sender
        typed. Past `MAX_MESSAGE_SERIES` label sets, new kinds count as "other": a feed of
        garbage types must not grow the registry (and /metrics) without limit. The
        children are kept, since `labels()` costs a lock and a dict walk per message.
        """
        key = (fmt, message_kind_label(fmt, kind), outcome)
        child = self._message_series.get(key)
        if child is None:
            if len(self._message_series) >= MAX_MESSAGE_SERIES:
                key = (fmt, "other", outcome)
            child = self._message_series.get(key) or self.messages.labels(*key)
            self._message_series[key] = child
        child.inc()

    def encounter_coded(self, outcome: str, stale_tables: Iterable[str]) -> None:
        """Count one coding result and each CMS table it was coded with past its period
        (the coder's `usecases/ports.py:CodingMetrics`)."""
        self.coded.labels(outcome).inc()
        for table in stale_tables:
            self.table_warnings.labels(table).inc()

    def render(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory and worker_role.current() is not None:  # every worker's values
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=directory
            )
            return generate_latest(registry)
        return generate_latest(self.registry)
