"""Coverage-guided fuzzing of the input paths with atheris (libFuzzer), for long runs.

Why, next to the hypothesis runs (`make fuzz`): hypothesis draws from strategies we wrote;
libFuzzer mutates bytes towards new branches of our code, so it finds inputs nobody thought
of. It needs no service: each target calls the pure function a peer's bytes reach first.

atheris is not a project dependency (wheels exist for CPython 3.11 on x86-64 Linux). Install
it in the venv, or in a venv of its own and point PYTHONPATH at this checkout and the
project's site-packages:

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz_atheris.py hl7 -max_total_time=600 corpus/hl7

Targets (first argument; the rest goes to libFuzzer, e.g. -runs=N, -max_len=N, a corpus
directory, -dict=...):

- `mllp`: MllpDecoder over the input cut in two at every position, against its bounds.
- `hl7`: read_hl7, then the encounter links and the ACK of what it read.
- `fhir`: read_fhir, then the encounter links of what it read.
- `search`: the FHIR search parser on the input as a query string.

A crash is an exception that escapes (the readers promise never to raise) or a reader
defect marker. The bugs these targets found (BUG-TIME, BUG-SEARCH; docs/fuzzing.md) are
fixed, so nothing is tolerated any more.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from multidict import MultiDict

    from adapter.hl7.ack import build_ack
    from adapter.hl7.mllp_framing import Frame, MllpDecoder
    from adapter.mappings_loader import load_mappings
    from adapter.readers.fhir import read_fhir
    from adapter.readers.hl7v2 import read_hl7
    from adapter.usecases.links import links_for
    from adapter.web.outcome import ApiError
    from adapter.web.routes.fhir_search import parse_search

ROOT = Path(__file__).resolve().parent.parent
NY = ZoneInfo("America/New_York")
MAPPINGS = load_mappings(ROOT / "mappings")
NOW = datetime(2026, 2, 2, 15, 0, tzinfo=UTC)
DEFECTS = ("adapter defect", "unexpected ")


def _links(events: list[object]) -> None:
    links_for(events, NY, None)  # type: ignore[arg-type]


def fuzz_mllp(data: bytes) -> None:
    limit = 1 + (data[0] if data else 0)
    for cut in range(len(data) + 1):
        decoder = MllpDecoder(limit)
        items = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert decoder.buffered <= limit
        for item in items:
            if isinstance(item, Frame):
                assert len(item.payload) <= limit
                assert b"\x0b" not in item.payload and b"\x1c" not in item.payload
            else:
                assert len(item.head) <= limit < item.size


def fuzz_hl7(data: bytes) -> None:
    messages = read_hl7(data, MAPPINGS, NY, "fuzz") + read_hl7(data, MAPPINGS, NY, frame=True)
    for message in messages:
        assert message.dedup_key
        if message.error is not None:
            assert not any(d in message.error.message for d in DEFECTS), message.error
        _links(list(message.events))
    build_ack(data, "AE", now=NOW, control_id="FUZZ")


def fuzz_fhir(data: bytes) -> None:
    for message in read_fhir(data, MAPPINGS, NY, "fuzz"):
        if message.error is not None:
            assert not any(d in message.error.message for d in DEFECTS), message.error
        _links(list(message.events))


def fuzz_search(data: bytes) -> None:
    query = data.decode("utf-8", "replace")
    params = MultiDict(parse_qsl(query, keep_blank_values=True))
    with contextlib.suppress(ApiError):
        parse_search("Claim", params, NY, lenient=bool(data[:1] == b"L"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mllp": fuzz_mllp,
    "hl7": fuzz_hl7,
    "fhir": fuzz_fhir,
    "search": fuzz_search,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options] [corpus]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
