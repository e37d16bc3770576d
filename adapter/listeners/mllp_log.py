"""What the MLLP server logs: a line per refused message and per closed connection, and
the periodic summary line that says what the per-message info lines used to say.

Why its own module: the server logs accepted messages at debug (their info lines, JSON
rendered and written, were ~90 of ~850 µs of CPU per message at log level info), and this
keeps the count an operator reads from the info log.
"""

from __future__ import annotations

import structlog

from adapter.hl7.mllp_framing import Item, MllpDecoder, Oversize
from adapter.labels import control_id_label
from adapter.listeners.connection import PeerInfo

__all__ = ["ACCEPTED_CODES", "SUMMARY_SECONDS", "MllpSummary", "log_closed", "log_message"]

log = structlog.get_logger()

SUMMARY_SECONDS = 60.0  # one `mllp.summary` info line per this much time with traffic
ACCEPTED_CODES = frozenset({"AA", "CA"})


class MllpSummary:
    """What the per-message lines would have said, added up between two summary lines.

    Accepted messages are logged at debug, refused ones still get their own info line, and
    this says every `SUMMARY_SECONDS` (and at stop) how many messages of each ACK code went
    out, their bytes and their latency.
    """

    __slots__ = ("bytes", "codes", "latency_max", "latency_sum", "messages", "started")

    def __init__(self, now: float) -> None:
        self.started = now
        self.messages = 0
        self.bytes = 0
        self.latency_sum = 0.0
        self.latency_max = 0.0
        self.codes: dict[str, int] = {}

    def add(self, code: str, size: int, latency: float) -> None:
        self.messages += 1
        self.bytes += size
        self.latency_sum += latency
        if latency > self.latency_max:
            self.latency_max = latency
        self.codes[code] = self.codes.get(code, 0) + 1

    def log(self, now: float, connections: int) -> None:
        if not self.messages:
            return
        log.info(
            "mllp.summary",
            seconds=round(now - self.started, 1),
            messages=self.messages,
            ack_codes=dict(sorted(self.codes.items())),
            bytes=self.bytes,
            latency_ms_mean=round(1000 * self.latency_sum / self.messages, 3),
            latency_ms_max=round(1000 * self.latency_max, 3),
            connections=connections,
        )


def log_message(
    peer: PeerInfo, item: Item, ack_code: str, control_id: str, size: int, elapsed: float
) -> None:
    """One line per message: control id, peer, size, ACK code, latency; never content.

    Info for a refused or unanswered message, debug for an accepted one (`MllpSummary`).
    """
    extra: dict[str, object] = {}
    if item.skipped:
        extra["skipped_bytes"] = item.skipped
    if item.missing_cr:
        extra["missing_cr"] = True
    if isinstance(item, Oversize):
        extra["oversize"] = True
    accepted = ack_code in ACCEPTED_CODES
    (log.debug if accepted else log.info)(
        "mllp.message",
        control_id=control_id_label(control_id),
        peer=str(peer),
        bytes=size,
        ack_code=ack_code or "-",
        latency_ms=round(elapsed * 1000, 3),
        **extra,
    )


def log_closed(peer: PeerInfo, decoder: MllpDecoder, reason: str) -> None:
    log.info(
        "mllp.closed",
        peer=str(peer),
        connection=peer.connection,
        reason=reason,
        frames=decoder.frames,
        oversize=decoder.oversize_frames,
        skipped_bytes=decoder.skipped_bytes,
        missing_cr=decoder.missing_cr,
        abandoned=decoder.abandoned,
        partial_bytes=decoder.partial_bytes,
    )
