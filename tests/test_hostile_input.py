"""Hostile input against the running service: MLLP bytes and FHIR/HTTP requests.

The reader and decoder modules have their own property tests (test_er7, test_hl7v2_reader,
test_fhir_reader, test_mllp). These go one level up: the real app (`create_app`, SQLite in
a tmp directory, MLLP on an ephemeral port, aiohttp served on another) receives what a
broken or malicious peer could send, and the service-level promises are checked:

- MLLP: every complete frame gets exactly one ACK (AA/AE/AR; this file sends original mode
  only), in order, with the frame's MSH-10; the connection is never closed without an
  answer (only the idle timeout closes it); an AE/AR message is kept as a dead letter, an
  AA one is stored; the service logs no caught crash (`mllp.handler_failed`,
  `hl7.ingest_failed`, ...) and its event loop reports no exception; and a good message
  sent afterwards on a new connection still gets AA.
- HTTP: never a 5xx; every 4xx body is an OperationOutcome with issues carrying severity
  and code; a rejected payload is kept as a dead letter, also when the HTTP contract refuses
  it before the ingestor (except a blank body, with nothing to keep, and a 413, never read
  whole); an accepted one is stored.

Why hypothesis directly and not schemathesis (installable here): schemathesis generates
from an OpenAPI/GraphQL schema, and this service describes itself with a FHIR
CapabilityStatement, which it cannot read; writing an OpenAPI twin of the FHIR API would be
a second contract to keep in step, and the interesting inputs (each element of a real
MedicationAdministration or Bundle with the wrong type) come from the fixtures, not from a
schema.

Why a service on its own event-loop thread: hypothesis runs examples synchronously, and one
service per module (rather than per example) is what makes a few hundred examples cost a
few seconds; it also checks the service stays healthy across all of them. The helpers here
(`LiveService`, the strategies, the `check_*` functions) are reused with large counts by
`tests/test_fuzz_large.py` (`make fuzz`).

Bugs these tests found are pinned by named regression tests at the end (BUG-NOCR,
BUG-ACKTYPE, PHI-MSH10, BUG-SPLIT, BUG-TIME, BUG-UNHASHABLE, BUG-SEARCH, BUG-NDJSON; see
docs/fuzzing.md). All are fixed: the properties tolerate none of them. A new finding that
cannot be fixed at once goes there as `xfail(strict=True)`, so its fix turns into an XPASS.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.hl7.mllp_framing import (
    OVERSIZE_HEAD_BYTES,
    Frame,
    Item,
    MllpDecoder,
    Oversize,
    encode_frame,
)
from adapter.hl7.msh import read_msa, read_msh
from adapter.mappings_loader import load_mappings
from adapter.readers.hl7v2 import read_hl7
from adapter.store.base import MessageStatus
from adapter.web.app import create_app
from adapter.web.state import STATE, AppState
from tests.mllp_client import hl7_message
from tests.service_fixtures import (
    FHIR_JSON,
    HL7_TYPE,
    SCENARIOS,
    Clock,
    make_settings,
    scenario_resource,
    scenario_transaction,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FHIR_FIXTURES = ROOT / "fixtures" / "fhir"
HOST = "127.0.0.1"
SMALL_FRAME_LIMIT = 8192  # random streams: some frames go over it, most do not
LARGE_FRAME_LIMIT = 16 * 1024 * 1024  # big but legal messages
NY = ZoneInfo("America/New_York")
MAPPINGS = load_mappings(ROOT / "mappings")
HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)  # examples reuse one module-scoped service on purpose: it must stay healthy across them
ACK_CODES = frozenset({"AA", "AE", "AR"})
# Events the service logs when it caught something it did not expect: never in these tests.
FAILURE_EVENTS = (
    "mllp.connection_failed",
    "mllp.handler_failed",
    "hl7.ingest_failed",
    "http.unhandled",
    "coder.error",
    "coder.encounter_failed",
    "delivery.error",
)
# Dead-letter reasons that mean a reader bug, not bad input.
DEFECT_MARKERS = ("adapter defect", "unexpected ")
FRAME_TIMEOUT = 60.0


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # hostile bodies: invalid text, deep nesting
        return {}
    return document if isinstance(document, dict) else {}


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


_IDS = itertools.count(1)


def fresh_id(prefix: str = "H") -> str:
    """A control id never used before in this process: no dedup key collides by accident."""
    return f"{prefix}{next(_IDS):07d}"


# --- the service ----------------------------------------------------------------------------


@dataclass
class Kept:
    """What the store holds for one raw payload, or one dedup key (several rows possible)."""

    statuses: set[MessageStatus] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# How far each list of log lines has been checked, shared by every service that reads it: log
# lines do not say which service wrote them, and tests use one service at a time.
_LOG_MARKS: dict[int, int] = {}


class LiveService:
    """The real app, served on ephemeral ports from an event loop in a background thread.

    `run` executes a coroutine on that loop. `refresh` reads the messages stored since its
    last call into `kept` (by SHA-256 of the raw payload) and `keys` (by dedup key). It reads
    the service's SQLite file itself, read-only, by primary key: the store's
    `list_messages(since=...)` scans the whole table (its ORDER BY id defeats the
    received_at index), which made long runs quadratic; `dead_letters()` is checked against
    what was tracked at the end of the module. `new_failures` returns the failure events
    logged since its last call, read from the session log lines that tests/conftest.py
    records (any list of lines works, e.g. an empty one outside pytest).
    """

    def __init__(self, tmp: Path, log_lines: list[str] | None = None, **overrides: Any) -> None:
        self.clock = Clock()
        # The coder loop stays idle (one pass at start-up): fuzzing piles hundreds of messages
        # on a few encounters, and re-coding one on every message would make the run
        # quadratic. `code_everything` runs the coder explicitly instead.
        overrides.setdefault("close_check_seconds", 3600.0)
        self.settings = make_settings(tmp, **overrides)
        self.database = tmp / "adapter.db"
        self.log_lines: list[str] = log_lines if log_lines is not None else []
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self.loop_errors: list[str] = []
        self.kept: dict[str, Kept] = {}  # by SHA-256 of the raw payload
        self.keys: dict[str, Kept] = {}  # by dedup key
        self.by_id: dict[tuple[str, str], Kept] = {}  # by (resourceType, id) of a stored resource
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._client: TestClient[Any, Any] | None = None
        self._last_id = 0
        _LOG_MARKS.setdefault(id(self.log_lines), len(self.log_lines))

    def __enter__(self) -> LiveService:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if self._client is not None:
                self.run(self._client.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()

    async def _start(self) -> None:
        app = create_app(self.settings, self.clock)
        self._client = TestClient(TestServer(app, host=HOST))
        await self._client.start_server()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(f"{context.get('message')}: {context.get('exception')!r}")

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def client(self) -> TestClient[Any, Any]:
        assert self._client is not None, "service not started"
        return self._client

    @property
    def state(self) -> AppState:
        state: AppState = self.client.app[STATE]
        return state

    @property
    def mllp_port(self) -> int:
        assert self.state.mllp is not None
        return self.state.mllp.port

    def refresh(self) -> None:
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT id, dedup_key, raw, status, error FROM messages WHERE id > ? ORDER BY id",
                (self._last_id,),
            ).fetchall()
        for message_id, dedup_key, raw, status, error in rows:
            kept = self.kept.setdefault(digest(bytes(raw)), Kept())
            kept.statuses.add(MessageStatus(status))
            kept.errors.append(str(error))
            self.keys.setdefault(str(dedup_key), Kept()).statuses.add(MessageStatus(status))
            self._last_id = max(self._last_id, int(message_id))
            resource = _json_object(bytes(raw))
            if isinstance(resource.get("id"), str):
                key = (str(resource.get("resourceType")), resource["id"])
                self.by_id.setdefault(key, Kept()).statuses.add(MessageStatus(status))

    def statuses_of_resource(self, rtype: str, rid: str) -> set[MessageStatus]:
        """The rows of stored single resources with this type and id (a create without an id
        is kept with the id the server assigned, so its raw differs from the request)."""
        kept = self.by_id.get((rtype, rid))
        return kept.statuses if kept else set()

    def statuses(self, raw: bytes) -> set[MessageStatus]:
        kept = self.kept.get(digest(raw))
        return kept.statuses if kept else set()

    def hl7_statuses(self, raw: bytes) -> set[MessageStatus]:
        """The payload's rows, or those of an earlier payload with the same dedup key: the
        ingestor keeps one message per key (a re-sent bad message is kept once)."""
        messages = read_hl7(raw, MAPPINGS, NY)
        by_key = self.keys.get(messages[0].dedup_key, Kept()) if messages else Kept()
        return self.statuses(raw) | by_key.statuses

    def new_failures(self) -> list[str]:
        """Failure events and stdlib errors (aiohttp's "Error handling request") logged since
        the last call on any service reading the same lines: a test that provokes one on
        purpose consumes it."""
        mark = _LOG_MARKS[id(self.log_lines)]
        lines = self.log_lines[mark:]
        _LOG_MARKS[id(self.log_lines)] = mark + len(lines)
        return [
            line
            for line in lines
            if line.startswith(("stdlib ERROR", "stdlib CRITICAL"))
            or any(f'"{event}"' in line for event in FAILURE_EVENTS)
        ]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        async def send() -> HttpAnswer:
            async with self.client.request(method, path, data=body, headers=headers) as response:
                return HttpAnswer(response.status, response.content_type, await response.read())

        return self.run(send())

    def code_everything(self) -> int:
        """Close and code every encounter the store holds (a day later); the number coded."""
        self.clock.advance(days=1)
        return self.run(self.state.coder.run_once())

    def assert_healthy(self) -> None:
        """A good message on a new connection gets AA; nothing went wrong meanwhile."""
        control_id = fresh_id("OK")
        (ack,) = self.run(exchange(self.mllp_port, [encode_frame(hl7_message(control_id))], 1))
        assert read_msa(ack) == ("AA", control_id)
        assert not self.loop_errors, self.loop_errors


async def exchange(
    port: int, chunks: Sequence[bytes], expected: int, timeout: float = FRAME_TIMEOUT
) -> list[bytes]:
    """Write chunks on one connection; read `expected` ACK payloads; then close our side
    and check the server answers nothing more before it closes (exactly one ACK each)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    decoder = MllpDecoder(1024 * 1024)
    acks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            while len(acks) < expected:
                data = await reader.read(65536)
                if not data:
                    raise AssertionError(f"closed after {len(acks)} of {expected} ACKs")
                acks += [item.payload for item in decoder.feed(data) if isinstance(item, Frame)]
            writer.write_eof()
            while data := await reader.read(65536):
                acks += [item.payload for item in decoder.feed(data) if isinstance(item, Frame)]
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    assert len(acks) == expected, f"{len(acks)} ACKs for {expected} frames"
    return acks


def reference_items(data: bytes, limit: int) -> list[Item]:
    """What the server's decoder makes of a stream: the frames that must be answered."""
    return MllpDecoder(limit).feed(data)


def err_text(ack: bytes) -> str:
    return ack.decode("latin-1")


# --- strategies: MLLP -------------------------------------------------------------------------


def _no_blocks(data: bytes) -> bytes:
    return data.replace(b"\x0b", b"").replace(b"\x1c", b"")


def _template_messages() -> list[tuple[str, tuple[bytes, ...]]]:
    """(MSH up to MSH-12 with `{id}` for MSH-10, the other segments) of real messages."""
    templates = []
    sources = [hl7_message("{id}")]
    for name in ("S01", "S03", "S09", "S20", "S25"):
        raw = (SCENARIOS / f"{name}.hl7").read_bytes()
        sources += [line.rstrip(b"\r") + b"\r" for line in raw.split(b"\n") if line.strip()]
    for raw in sources:
        segments = raw.rstrip(b"\r").split(b"\r")
        fields = segments[0].decode("latin-1").split("|")[:12]
        fields[9] = "{id}"
        templates.append(("|".join(fields), tuple(segments[1:])))
    return templates


TEMPLATES = _template_messages()
CHARSETS = ("", "UNICODE UTF-8", "8859/1", "8859/15", "8859/ZZZ", "UTF-16", "ASCII", "\\X0")
CODECS = ("utf-8", "latin-1", "utf-16", "utf-16-be", "utf-32", "cp1252", "shift_jis")
ESCAPES = (
    b"\\X0", b"\\", b"\\X", b"\\XZZ\\", b"\\X00\\", b"\\XFFFE\\", b"\\XC3\\", b"\\X0D0A\\",
    b"\\.br\\", b"\\E\\", b"\\F\\", b"\\S\\", b"\\R\\", b"\\T\\", b"\\H\\", b"\\N\\",
    b"\\Cxxyy\\", b"\\M1234\\", b"\\Z\\", b"\\P\\", b"\\\\", b"\\X" + b"41" * 500 + b"\\",
)  # fmt: skip
ODD_BYTES = (
    b"\x00", b"\x00" * 64, b"\r", b"\n", b"\r\n", b"\n\r", b"\xef\xbb\xbf", b"\xff\xfe",
    b"\xfe\xff", b"\xed\xa0\x80", b"\xc3", b"\xc3\x28", b"\xf4\x90\x80\x80", b"\x80" * 8,
    b"MSH|^~\\&|", b"\t", b" " * 100, b"\x7f",
)  # fmt: skip
FIELD_VALUES = (
    b"", b'""', b"0", b"-1", b"1e400", b"9" * 400, b"NaN", b"inf", b"-0", b"0x1F",
    b"99991231235959", b"99991231235959-1200", b"00010101000000+1400", b"00000000",
    b"20250230", b"2025", b"202503141600+9999", b"20250314093000.123456789", b"-0400",
    b"^^^^^^^^", b"~~~~", b"&&&&", b"ONCINF^CHAIR12^^NRH_CANCER_CTR~" * 50,
)  # fmt: skip
DELIMITER_RUNS = st.tuples(
    st.sampled_from([b"~", b"^", b"&", b"|", b"\\", b"~^&"]), st.integers(1, 5000)
).map(lambda t: t[0] * t[1])
INSERTS = st.one_of(
    st.binary(max_size=64).map(_no_blocks),
    st.tuples(st.text(max_size=32), st.sampled_from(CODECS)).map(
        lambda t: _no_blocks(t[0].encode(t[1], "replace"))
    ),
    st.sampled_from(ESCAPES),
    st.sampled_from(ODD_BYTES),
    DELIMITER_RUNS,
)
MUTATIONS = ("insert", "field", "truncate", "duplicate", "delete", "swap", "run")


@st.composite
def _mutated_segments(draw: st.DrawFn, segments: tuple[bytes, ...]) -> list[bytes]:
    out = list(segments)
    for kind in draw(st.lists(st.sampled_from(MUTATIONS), max_size=4)):
        if not out:
            out.append(draw(INSERTS))
            continue
        index = draw(st.integers(0, len(out) - 1))
        segment = out[index]
        if kind == "insert":
            at = draw(st.integers(0, len(segment)))
            out[index] = segment[:at] + draw(INSERTS) + segment[at:]
        elif kind in ("field", "run"):
            fields = segment.split(b"|")
            where = draw(st.integers(0, len(fields) - 1)) if len(fields) > 1 else 0
            fields[where] = draw(
                st.sampled_from(FIELD_VALUES) if kind == "field" else DELIMITER_RUNS
            )
            out[index] = b"|".join(fields)
        elif kind == "truncate":
            out = [*out[:index], segment[: draw(st.integers(0, len(segment)))]]
        elif kind == "duplicate":
            out[index:index] = [segment] * draw(st.integers(1, 50))
        elif kind == "delete":
            del out[index]
        else:
            other = draw(st.integers(0, len(out) - 1))
            out[index], out[other] = out[other], out[index]
    return out


@dataclass(frozen=True, slots=True)
class HostileMessage:
    """A real message with hostile changes; `payload` holds `{id}` until `with_id`."""

    payload: bytes
    whole_codec: str  # "" when the message is sent as bytes; else the codec it was re-encoded in
    split_at: tuple[int, ...]  # write boundaries, as fractions of the frame length (per mille)

    def with_id(self, control_id: str) -> bytes:
        payload = self.payload.replace(b"{id}", control_id.encode())
        if self.whole_codec:
            payload = _no_blocks(payload.decode("latin-1").encode(self.whole_codec))
        return payload

    def chunks(self, frame: bytes) -> list[bytes]:
        cuts = sorted({len(frame) * p // 1000 for p in self.split_at} - {0, len(frame)})
        return [frame[a:b] for a, b in itertools.pairwise([0, *cuts, len(frame)])]


@st.composite
def hostile_messages(draw: st.DrawFn) -> HostileMessage:
    msh, segments = draw(st.sampled_from(TEMPLATES))
    charset = draw(st.sampled_from(CHARSETS))
    header = (msh + ("||||||" + charset if charset else "")).encode("latin-1")
    body = draw(_mutated_segments(segments))
    separator = draw(st.sampled_from([b"\r", b"\r", b"\n", b"\r\n"]))
    payload = _no_blocks(separator.join([header, *body]) + separator)
    codec = draw(st.sampled_from(["", "", "", "", "utf-16", "utf-32", "utf-16-be"]))
    return HostileMessage(payload, codec, tuple(draw(st.lists(st.integers(1, 999), max_size=6))))


def _framed_template() -> st.SearchStrategy[bytes]:
    return hostile_messages().map(lambda m: encode_frame(m.with_id(fresh_id("S"))))


MLLP_PIECES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(b"\x0b\x1c\x0d\nAMSH|^~\\&"), max_size=60).map(bytes),
    st.binary(max_size=400).map(lambda b: encode_frame(_no_blocks(b))),
    _framed_template(),
    st.integers(SMALL_FRAME_LIMIT - 2, SMALL_FRAME_LIMIT * 3).map(
        lambda n: encode_frame(hl7_message(fresh_id("B"), filler=n))
    ),
    st.sampled_from([b"\x0b", b"\x1c", b"\x1c\r", b"\x0b\x1c\r", b"\x1c\x0b", b"\r"]),
)


@st.composite
def mllp_streams(draw: st.DrawFn) -> list[bytes]:
    """Random pieces glued together, then cut at random points into writes."""
    data = b"".join(draw(st.lists(MLLP_PIECES, max_size=10)))
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(data), 1)), max_size=8))))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)]) if b > a]


# --- properties: MLLP ---------------------------------------------------------------------------


def _original_mode(item: Item) -> bool:
    msh = read_msh(item.head if isinstance(item, Oversize) else item.payload)
    return msh is None or not msh.enhanced_mode


def check_answers(service: LiveService, items: Sequence[Item], acks: Sequence[bytes]) -> None:
    """One ACK per item, in order, echoing MSH-10; AE/AR kept as dead letters, AA stored."""
    service.refresh()
    for item, ack in zip(items, acks, strict=True):
        code, control_id = read_msa(ack)
        raw = item.head if isinstance(item, Oversize) else item.payload
        payload = raw
        msh = read_msh(raw)
        if msh is not None and msh.control_id.isascii() and msh.control_id.isprintable():
            assert control_id == msh.control_id, (control_id, msh.control_id)
        if isinstance(item, Oversize):
            assert code == "AR" and "207" in err_text(ack), ack
            assert MessageStatus.DEAD in service.statuses(item.head), "oversize head not kept"
            continue
        assert code in ACK_CODES, ack
        statuses = service.hl7_statuses(payload)
        if code == "AA":
            assert MessageStatus.ACCEPTED in statuses, "acknowledged AA but not stored"
        else:
            assert MessageStatus.DEAD in statuses, f"{code} but not kept as a dead letter"
    for payload in (i.payload for i in items if isinstance(i, Frame)):
        for error in service.kept.get(digest(payload), Kept()).errors:
            assert not any(marker in error for marker in DEFECT_MARKERS), error


def check_no_failures(service: LiveService) -> None:
    failures = service.new_failures()
    assert not failures, failures
    assert not service.loop_errors, service.loop_errors


def check_mllp_stream(service: LiveService, chunks: list[bytes], limit: int) -> None:
    """A hostile stream, then a good frame on the same connection: every complete frame of
    the stream is answered once, the good one AA, and the connection is still usable."""
    good_id = fresh_id("G")
    good = encode_frame(hl7_message(good_id))
    items = reference_items(b"".join(chunks) + good, limit)
    if not all(_original_mode(item) for item in items):
        return  # enhanced mode answers 0-2 ACKs per frame; test_ack covers it
    acks = service.run(exchange(service.mllp_port, [*chunks, good], len(items)))
    assert read_msa(acks[-1]) == ("AA", good_id)
    check_answers(service, items, acks)
    check_no_failures(service)
    service.assert_healthy()


def check_hostile_message(service: LiveService, message: HostileMessage) -> None:
    """One hostile message, written in pieces: one ACK, kept or stored, no crash."""
    payload = message.with_id(fresh_id("M"))
    frame = encode_frame(payload)
    items = reference_items(frame, service.settings.mllp_max_frame_bytes)
    if not all(_original_mode(item) for item in items):
        return
    acks = service.run(exchange(service.mllp_port, message.chunks(frame), len(items)))
    check_answers(service, items, acks)
    check_no_failures(service)
    service.assert_healthy()


# --- strategies: FHIR -----------------------------------------------------------------------


HUGE = "x" * 2_000_000
NASTY_STRINGS = (
    "", " ", "\x00", "\u0000\u0001", "\ufeff", "\u202e", "\U0001f600" * 100, "é" * 1000,
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0000-00-00",
    "2025-02-30", "2025-11-22T25:00:00Z", "2025-11-22T10:00:00+99:99", "2025", "T", "Z",
    "Patient/", "Patient/../../x", "#", "#missing", "urn:uuid:", "Encounter/" + "e" * 70,
    "Medication/x", "http://", "-1", "1e999", "NaN", "true", "null", "{}", "[]",
    "x" * 10_000, "\\", "\"", "%s%n", "${jndi:ldap://x}", "<script>",
)  # fmt: skip
FHIR_KEYS = (
    "resourceType", "id", "meta", "status", "subject", "context", "encounter", "reference",
    "effectiveDateTime", "effectivePeriod", "start", "end", "medicationCodeableConcept",
    "medicationReference", "contained", "dosage", "dose", "value", "unit", "code", "coding",
    "system", "route", "rateQuantity", "entry", "resource", "fullUrl", "request", "type",
    "extension", "url", "identifier", "period", "class", "diagnosis", "payor",
)  # fmt: skip
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(NASTY_STRINGS),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FHIR_KEYS) | st.text(max_size=12), children, max_size=5),
    ),
    max_leaves=24,
)
WRONG_TYPES: tuple[object, ...] = (
    None, True, 0, -1, 1.5, 2**70, "", "x", HUGE[:100_000], [], [None], {}, {"x": 1},
)  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _with_id(resource: dict[str, Any], rid: str) -> dict[str, Any]:
    return {**copy.deepcopy(resource), "id": rid}


MEDADMINS = [_load(p) for p in sorted(FHIR_FIXTURES.glob("medadmin_*.json"))]
BUNDLES = [
    _load(FHIR_FIXTURES / "bundle_transaction_chemo_visit.json"),
    _load(FHIR_FIXTURES / "subscription_notification.json"),
    scenario_transaction("S03"),
    scenario_transaction("S20", "batch"),
]
ENCOUNTERS = [_with_id(scenario_resource(name, "Encounter"), "x") for name in ("S01", "S20")]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    rtype: str | None  # the type in the URL (None: POST /fhir takes a Bundle)
    url_id: str | None
    documents: tuple[dict[str, Any], ...]


ENDPOINTS = (
    Endpoint("POST", "/fhir", None, None, tuple(BUNDLES)),
    Endpoint("POST", "/fhir/MedicationAdministration", "MedicationAdministration", None,
             tuple(MEDADMINS)),
    Endpoint("PUT", "/fhir/Encounter/x", "Encounter", "x", tuple(ENCOUNTERS)),
)  # fmt: skip


def paths(node: object, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every element's path in a JSON document (the root excluded)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from paths(child, (*prefix, index))


def replaced(document: dict[str, Any], path: Sequence[str | int], value: object) -> bytes:
    data = copy.deepcopy(document)
    node: Any = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return json.dumps(data).encode()


def deep(depth: int, kind: str) -> bytes:
    """Nesting built as text (json.dumps itself would hit the recursion limit)."""
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    inner = b'{"url":"u","extension":[' * depth + b"{}" + b"]}" * depth
    return b'{"resourceType":"MedicationAdministration","id":"d","extension":[' + inner + b"]}"


def _mutated_fixture(endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    def one(document: dict[str, Any]) -> st.SearchStrategy[bytes]:
        return st.tuples(
            st.sampled_from(list(paths(document))),
            st.sampled_from(WRONG_TYPES) | JSON_VALUES,
        ).map(lambda t: replaced(document, t[0], t[1]))

    return st.sampled_from(endpoint.documents).flatmap(one)


def _raw_variants(endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    def variant(t: tuple[dict[str, Any], str, int]) -> bytes:
        document, how, cut = t
        text = json.dumps(document, ensure_ascii=False)
        if how == "truncate":
            return text.encode()[: cut % (len(text) + 1)]
        if how == "nul":
            return text.encode().replace(b'"', b'"\x00', 1)
        if how == "invalid-utf8":
            return text.encode()[: cut % (len(text) + 1)] + b"\xc3\x28" + text.encode()[cut:]
        return text.encode(how, "replace")  # utf-16, utf-32, latin-1, utf-8-sig

    return st.tuples(
        st.sampled_from(endpoint.documents),
        st.sampled_from(["truncate", "nul", "invalid-utf8", "utf-16", "utf-32", "latin-1",
                         "utf-8-sig"]),
        st.integers(0, 10**6),
    ).map(variant)  # fmt: skip


def fhir_bodies(endpoint: Endpoint) -> st.SearchStrategy[bytes]:
    return st.one_of(
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(FHIR_KEYS), JSON_VALUES, max_size=6).map(
            lambda d: json.dumps(
                {**d, "resourceType": endpoint.rtype or "Bundle", "id": "x"}
            ).encode()
        ),
        _mutated_fixture(endpoint),
        _mutated_fixture(endpoint),
        _raw_variants(endpoint),
        st.tuples(st.integers(1, 100_000), st.sampled_from(["list", "object", "extension"])).map(
            lambda t: deep(t[0], t[1])
        ),
        st.binary(max_size=200),
        st.sampled_from([b"", b" ", b"\x00", b"{}", b"[]", b"null", b"NaN", b"1e999999"]),
    )


# --- properties: FHIR -----------------------------------------------------------------------


def assert_operation_outcome(answer: HttpAnswer) -> None:
    assert answer.content_type == FHIR_JSON, answer
    document = answer.json()
    assert document["resourceType"] == "OperationOutcome", document
    assert document["issue"], document
    for issue in document["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information"), issue
        assert isinstance(issue["code"], str) and issue["code"], issue
    assert "Traceback" not in answer.body.decode("utf-8", "replace")


def check_fhir_request(service: LiveService, endpoint: Endpoint, body: bytes) -> None:
    """Never 5xx; 4xx is an OperationOutcome; rejected kept as dead letter, accepted stored."""
    answer = service.request(endpoint.method, endpoint.path, body, {"Content-Type": FHIR_JSON})
    service.refresh()
    statuses = service.statuses(body)
    if answer.status >= 400:
        assert answer.status in (400, 413, 422), answer
        assert_operation_outcome(answer)
        if answer.status != 413 and body.strip():  # blank: nothing to keep; 413: never read
            assert MessageStatus.DEAD in statuses, f"{answer.status} but not kept: {answer.body!r}"
    else:
        assert answer.status in (200, 201), answer
        document = answer.json()
        if endpoint.rtype is None:
            assert document["resourceType"] == "Bundle", document
            entries = [e["response"] for e in document["entry"]]
            if any(e["status"].startswith("422") for e in entries):
                assert MessageStatus.DEAD in statuses, "an entry refused but not kept"
            if any(not e["status"].startswith("422") for e in entries) or not entries:
                assert MessageStatus.ACCEPTED in statuses or not entries, "accepted, not stored"
        else:
            # the stored resource (Prefer: return=representation, the default), or an
            # OperationOutcome when it has no id to be read back by
            assert document["resourceType"] in (endpoint.rtype, "OperationOutcome"), document
            if document["resourceType"] == endpoint.rtype:
                read = service.request("GET", f"/fhir/{endpoint.rtype}/{document['id']}")
                assert read.status == 200 and read.json() == document, "not read back"
                statuses = statuses | service.statuses_of_resource(endpoint.rtype, document["id"])
            assert MessageStatus.ACCEPTED in statuses, f"created but not stored: {body!r}"
    for error in service.kept.get(digest(body), Kept()).errors:
        assert not any(marker in error for marker in DEFECT_MARKERS), error
    check_no_failures(service)


SEARCH_NAMES = (
    "patient", "encounter", "status", "_lastUpdated", "_count", "_offset", "_format",
    "patient:exact", "_sort", "", "_id", "subject",
)  # fmt: skip
SEARCH_VALUES = (
    "", " ", ",", "a,b", "Patient/x", "https://h/fhir/Patient/x", "Encounter/x", "visit:1",
    "0", "-1", "500", "501", "99999999999999999999", "²", "١٢", "1.5", "json", "xml",
    "application/fhir+json", "2026", "2026-02", "2026-02-02", "2026-02-02T15:00:00Z",
    "ge2026-02-02", "gt2026", "le2026-02-02T10:00:00+05:00", "lt2026-02-02T10:00", "ne2026",
    "sa2026", "eb2026", "ap2026", "eq2026-13", "2026-02-30", "2026-02-02T24:00", "0000",
    "9999-12-31T23:59:59.999999", "lt0001-01-01", "2026-02-02T10:00:00+99:99", "2026 01",
    "%", "\x00", "&", "=", "é", "\U0001f600",
)  # fmt: skip


@st.composite
def search_queries(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(type, query string, lenient); short enough for aiohttp's 8190-byte request line."""
    rtype = draw(st.sampled_from(["Claim", "Claim", "ChargeItem", "Task"]))
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SEARCH_NAMES) | st.text(max_size=8),
                st.sampled_from(SEARCH_VALUES) | st.text(max_size=30),
            ),
            max_size=6,
        )
    )
    return rtype, urlencode(pairs), draw(st.booleans())


def check_search(service: LiveService, rtype: str, query: str, lenient: bool) -> None:
    headers = {"Prefer": "handling=lenient"} if lenient else {}
    answer = service.request("GET", f"/fhir/{rtype}?{query}", None, headers)
    if answer.status >= 400:
        assert answer.status == 400, answer
        assert_operation_outcome(answer)
    else:
        assert answer.status == 200, answer
        document = answer.json()
        assert document["resourceType"] == "Bundle" and document["type"] == "searchset"
    check_no_failures(service)


def check_hl7_over_http(service: LiveService, payload: bytes) -> None:
    """`POST /hl7`: an ACK (200) or an OperationOutcome, never 5xx; kept like an MLLP frame."""
    answer = service.request("POST", "/hl7", payload, {"Content-Type": HL7_TYPE})
    assert answer.status in (200, 204), answer
    if answer.status == 204:
        return
    code, _ = read_msa(answer.body)
    assert code in ACK_CODES, answer
    service.refresh()
    wanted = MessageStatus.ACCEPTED if code == "AA" else MessageStatus.DEAD
    assert wanted in service.hl7_statuses(payload), (code, payload[:200])
    check_no_failures(service)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_service(
    tmp_path_factory: pytest.TempPathFactory, session_log_lines: list[str]
) -> Iterator[LiveService]:
    """Frames over 8 KiB are oversize: random streams hit the limit now and then."""
    tmp = tmp_path_factory.mktemp("small")
    with LiveService(tmp, session_log_lines, mllp_max_frame_bytes=SMALL_FRAME_LIMIT) as service:
        yield service


@pytest.fixture(scope="module")
def large_service(
    tmp_path_factory: pytest.TempPathFactory, session_log_lines: list[str]
) -> Iterator[LiveService]:
    """A 16 MiB frame limit: big legal messages, and the HTTP API."""
    tmp = tmp_path_factory.mktemp("large")
    with LiveService(tmp, session_log_lines, mllp_max_frame_bytes=LARGE_FRAME_LIMIT) as service:
        yield service


# --- MLLP: properties -------------------------------------------------------------------------


@settings(HYPOTHESIS, max_examples=120)
@given(chunks=mllp_streams())
def test_random_streams_get_one_ack_per_complete_frame(
    small_service: LiveService, chunks: list[bytes]
) -> None:
    check_mllp_stream(small_service, chunks, SMALL_FRAME_LIMIT)


@settings(HYPOTHESIS, max_examples=150)
@given(message=hostile_messages())
def test_hostile_messages_are_answered_and_kept(
    large_service: LiveService, message: HostileMessage
) -> None:
    check_hostile_message(large_service, message)


@settings(HYPOTHESIS, max_examples=40)
@given(message=hostile_messages())
def test_hostile_messages_over_http_are_answered_and_kept(
    large_service: LiveService, message: HostileMessage
) -> None:
    check_hl7_over_http(large_service, message.with_id(fresh_id("P")))


# --- MLLP: the cases named in the requirement ------------------------------------------------


def _one(service: LiveService, payload: bytes, pieces: int = 1) -> bytes:
    """Send one message (in `pieces` writes) and check everything `check_answers` checks."""
    frame = encode_frame(payload)
    step = max(len(frame) // pieces, 1)
    chunks = [frame[i : i + step] for i in range(0, len(frame), step)]
    (ack,) = service.run(exchange(service.mllp_port, chunks, 1))
    check_answers(service, reference_items(frame, service.settings.mllp_max_frame_bytes), [ack])
    check_no_failures(service)
    service.assert_healthy()
    return ack


def test_truncated_frames_get_no_answer_and_the_connection_closes_cleanly(
    small_service: LiveService,
) -> None:
    """A frame cut anywhere before its end block, then EOF: nothing to answer (it never
    completed), nothing kept. (Cut after the end block, only the CR is missing: the frame
    is complete and answered, see `test_a_frame_without_its_trailing_cr_is_answered_at_once`.)"""
    frame = encode_frame(hl7_message(fresh_id("TR")))
    for cut in (1, 2, 10, len(frame) // 2, len(frame) - 2):
        assert small_service.run(exchange(small_service.mllp_port, [frame[:cut]], 0)) == []
    small_service.refresh()
    assert not small_service.statuses(frame[1:-2])
    check_no_failures(small_service)
    small_service.assert_healthy()


def test_frames_over_the_limit_are_refused_ar_and_the_connection_goes_on(
    small_service: LiveService,
) -> None:
    control_id = fresh_id("BIG")
    big = encode_frame(hl7_message(control_id, filler=SMALL_FRAME_LIMIT * 4))
    good_id = fresh_id("AFTER")
    good = encode_frame(hl7_message(good_id))
    acks = small_service.run(exchange(small_service.mllp_port, [big, good, big[:3000]], 2))
    assert read_msa(acks[0]) == ("AR", control_id)
    assert "207" in err_text(acks[0]) and "limit" in err_text(acks[0])
    assert read_msa(acks[1]) == ("AA", good_id)
    small_service.refresh()  # the refused frame's head is kept, saying why and how large
    head = big[1 : 1 + min(SMALL_FRAME_LIMIT, OVERSIZE_HEAD_BYTES)]
    assert small_service.statuses(head) == {MessageStatus.DEAD}
    (reason,) = small_service.kept[digest(head)].errors
    assert f"{len(big) - 3} bytes over the {SMALL_FRAME_LIMIT}-byte limit" in reason
    at_limit = hl7_message(fresh_id("EDGE"))
    at_limit += b"Z" * (SMALL_FRAME_LIMIT - len(at_limit))
    assert read_msa(_one(small_service, at_limit))[0] in ACK_CODES
    assert read_msa(_one(small_service, at_limit + b"Z"))[0] == "AR"


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("unbalanced \\X0", lambda m: m.replace(b"AVERY", b"AV\\X0")),
        ("lone escape", lambda m: m.replace(b"ONDANSETRON", b"ONDAN\\")),
        ("escape at field end", lambda m: m.replace(b"|8|mg", b"|8\\|mg")),
        ("odd hex", lambda m: m.replace(b"AVERY", b"\\X4\\\\XZZ\\\\X\\")),
        ("latin-1 text", lambda m: m.replace(b"AVERY", "AVÉRY Ñ".encode("latin-1"))),
        (
            "latin-1 under a UTF-8 MSH-18",
            lambda m: m.replace(b"|P|2.5.1", b"|P|2.5.1||||||UNICODE UTF-8").replace(
                b"AVERY", b"AV\xc9RY"
            ),
        ),
        (
            "UTF-8 under an 8859/1 MSH-18",
            lambda m: m.replace(b"|P|2.5.1", b"|P|2.5.1||||||8859/1").replace(
                b"AVERY", "AVÉRY".encode()
            ),
        ),
        ("unknown MSH-18", lambda m: m.replace(b"|P|2.5.1", b"|P|2.5.1||||||8859/99")),
        ("invalid UTF-8", lambda m: m.replace(b"AVERY", b"AV\xc3\x28\xed\xa0\x80\xff")),
        ("NUL bytes", lambda m: m.replace(b"AVERY", b"AV\x00\x00ERY").replace(b"|mg", b"|m\x00g")),
        ("NUL in MSH", lambda m: m.replace(b"|EPIC|", b"|EP\x00IC|")),
        ("whole message UTF-16", lambda m: m.decode().encode("utf-16")),
        ("whole message UTF-32", lambda m: m.decode().encode("utf-32")),
        ("BOM", lambda m: b"\xef\xbb\xbf" + m),
        ("empty payload", lambda m: b""),
        ("only separators", lambda m: b"\r\n" * 100),
    ],
)
def test_escape_and_encoding_abuse_is_answered_and_kept(
    large_service: LiveService, what: str, change: Callable[[bytes], bytes]
) -> None:
    ack = _one(large_service, change(hl7_message(fresh_id("E"))), pieces=3)
    assert read_msa(ack)[0] in ACK_CODES, what


def test_a_10_mb_field_under_a_16_mb_limit_is_accepted(large_service: LiveService) -> None:
    control_id = fresh_id("F10")
    ack = _one(large_service, hl7_message(control_id, filler=10 * 1024 * 1024), pieces=7)
    assert read_msa(ack) == ("AA", control_id)


def test_200_segments_of_50_kb_are_accepted(large_service: LiveService) -> None:
    control_id = fresh_id("S200")
    message = (
        hl7_message(control_id)
        + b"\r".join(b"NTE|%d||" % n + b"y" * 50_000 for n in range(200))
        + b"\r"
    )
    assert read_msa(_one(large_service, message, pieces=13)) == ("AA", control_id)


@pytest.mark.parametrize("run", [b"~", b"^", b"&", b"~^&", b"\\"])
def test_deeply_repeated_delimiters_are_answered(large_service: LiveService, run: bytes) -> None:
    control_id = fresh_id("R")
    base = hl7_message(control_id)
    for target in (b"ONDANSETRON", b"E1004417", b"ONCINF", b"20250314093000-0400"):
        ack = _one(large_service, base.replace(target, run * (300_000 // len(run))))
        assert read_msa(ack)[0] in ACK_CODES
        control_id = fresh_id("R")
        base = hl7_message(control_id)


def test_only_the_idle_timeout_closes_a_connection_without_an_answer(tmp_path: Path) -> None:
    with LiveService(tmp_path, mllp_idle_timeout_seconds=0.3) as service:
        frame = encode_frame(hl7_message(fresh_id("IDLE")))
        reader_writer = service.run(asyncio.open_connection(HOST, service.mllp_port))
        reader, writer = reader_writer

        async def half_then_wait() -> bytes:
            writer.write(frame[:20])
            await writer.drain()
            async with asyncio.timeout(10):
                received = await reader.read()
            writer.close()
            return received

        assert service.run(half_then_wait()) == b""  # closed by the server, nothing sent
        service.assert_healthy()


# --- FHIR -----------------------------------------------------------------------------------


@settings(HYPOTHESIS, max_examples=150)
@given(data=st.data())
def test_hostile_fhir_bodies_never_5xx_and_rejections_are_kept(
    large_service: LiveService, data: st.DataObject
) -> None:
    endpoint = data.draw(st.sampled_from(ENDPOINTS))
    check_fhir_request(large_service, endpoint, data.draw(fhir_bodies(endpoint)))


def _type_swap(value: object) -> object:
    """A value of another JSON type than `value`."""
    if isinstance(value, dict):
        return "x"
    if isinstance(value, list):
        return {"x": 1}
    if isinstance(value, str):
        return 12
    if value is None:
        return []
    return "1"


def sweep(
    service: LiveService,
    endpoint: Endpoint,
    values: Callable[[object], Sequence[object]],
    max_depth: int = 99,
) -> int:
    """Every element (down to `max_depth`) of every fixture of an endpoint, replaced by each
    of `values(original)`, checked by `check_fhir_request`; returns the number of requests."""
    sent = 0
    for document in endpoint.documents:
        for path in paths(document):
            if len(path) > max_depth:
                continue
            node: Any = document
            for step in path:
                node = node[step]
            for value in values(node):
                check_fhir_request(service, endpoint, replaced(document, path, value))
                sent += 1
    return sent


# The Bundle's own structure (entries, requests, resources as wholes) here; every element of
# every resource in it runs in `make fuzz`, and the MedicationAdministration's and the
# Encounter's elements are each covered by their endpoint.
SWEEP_DEPTH = {"/fhir": 3}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_every_element_of_the_fixtures_with_the_wrong_type(
    large_service: LiveService, endpoint: Endpoint
) -> None:
    """Each element of the first fixture of each endpoint, swapped for another JSON type."""
    first = Endpoint(
        endpoint.method, endpoint.path, endpoint.rtype, endpoint.url_id, endpoint.documents[:1]
    )
    depth = SWEEP_DEPTH.get(endpoint.path, 99)
    assert sweep(large_service, first, lambda value: [_type_swap(value)], depth) > 30


@settings(HYPOTHESIS, max_examples=150)
@given(search=search_queries())
def test_random_search_queries_never_5xx(
    large_service: LiveService, search: tuple[str, str, bool]
) -> None:
    check_search(large_service, *search)


def test_a_body_over_the_http_limit_is_a_413_operation_outcome(tmp_path: Path) -> None:
    with LiveService(tmp_path, http_max_body_bytes=4096) as service:
        body = json.dumps({**MEDADMINS[0], "note": [{"text": "x" * 10_000}]}).encode()
        answer = service.request(
            "POST", "/fhir/MedicationAdministration", body, {"Content-Type": FHIR_JSON}
        )
        assert answer.status == 413
        assert_operation_outcome(answer)
        check_no_failures(service)


def test_the_coder_codes_everything_the_fuzzing_stored(
    small_service: LiveService, large_service: LiveService
) -> None:
    """Last of the properties: what was accepted above can be coded without a crash."""
    for service in (small_service, large_service):
        assert service.code_everything() >= 0
        check_no_failures(service)
        service.assert_healthy()
        service.refresh()  # the store's own list of dead letters is the one tracked above
        dead = service.run(service.state.store.dead_letters(limit=10**9))
        tracked = {h for h, kept in service.kept.items() if MessageStatus.DEAD in kept.statuses}
        assert {digest(letter.raw) for letter in dead} == tracked


# --- bugs found, now fixed: their regression tests (see the module docstring) ---------------


def test_a_frame_without_its_trailing_cr_is_answered_at_once(small_service: LiveService) -> None:
    control_id = fresh_id("NOCR")
    frame = encode_frame(hl7_message(control_id))[:-1]  # 0x0B payload 0x1C, no CR

    async def send_and_wait() -> bytes:
        reader, writer = await asyncio.open_connection(HOST, small_service.mllp_port)
        try:
            writer.write(frame)
            await writer.drain()
            async with asyncio.timeout(2):
                return await reader.readuntil(b"\x1c")
        finally:
            writer.close()

    ack = small_service.run(send_and_wait())
    assert read_msa(ack.strip(b"\x0b\x1c")) == ("AA", control_id)


@pytest.mark.parametrize("accept", ["XX", "al", " AL"])
def test_an_accept_ack_type_outside_table_0155_is_read_as_al_and_answered(
    small_service: LiveService, accept: str
) -> None:
    control_id = fresh_id("ACKT")
    message = hl7_message(control_id).replace(b"|P|2.5.1", f"|P|2.5.1|||{accept}".encode())
    acks = small_service.run(exchange(small_service.mllp_port, [encode_frame(message)], 1, 2.0))
    assert read_msa(acks[0])[1] == control_id


def test_a_garbled_header_does_not_put_patient_data_in_the_logs(
    small_service: LiveService, session_log_lines: list[str]
) -> None:
    mrn = "ZZMRN" + fresh_id("")  # not fixture PHI: the session-wide PHI check stays clean
    message = (
        f"MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH_BILLING|2025PID|1||{mrn}^^^NRH^MR||DOE^JANE||"
        "19700101\rPV1|1|O|ONCINF\r"
    ).encode()
    start = len(session_log_lines)
    (ack,) = small_service.run(exchange(small_service.mllp_port, [encode_frame(message)], 1))
    assert read_msa(ack)[0] == "AE"
    assert not any(mrn in line for line in session_log_lines[start:])


def test_a_corrected_resend_with_the_same_control_id_is_stored(large_service: LiveService) -> None:
    control_id = fresh_id("FIX")
    good = hl7_message(control_id)
    bad = good.replace(b"|8|mg", b"|-8|mg")
    (nak,) = large_service.run(exchange(large_service.mllp_port, [encode_frame(bad)], 1))
    assert read_msa(nak)[0] == "AE"
    (ack,) = large_service.run(exchange(large_service.mllp_port, [encode_frame(good)], 1))
    assert read_msa(ack) == ("AA", control_id)
    large_service.refresh()
    assert MessageStatus.ACCEPTED in large_service.statuses(good)


def test_an_empty_segment_inside_a_frame_is_noise_and_the_segments_after_it_are_read(
    large_service: LiveService,
) -> None:
    control_id = fresh_id("SPL")
    message = hl7_message(control_id)
    payload = message.replace(b"\rORC|", b"\r\rORC|")
    (ack,) = large_service.run(exchange(large_service.mllp_port, [encode_frame(payload)], 1))
    assert read_msa(ack) == ("AA", control_id)
    (read,) = read_hl7(payload, MAPPINGS, NY, frame=True)
    (whole,) = read_hl7(message, MAPPINGS, NY)
    assert read.events == whole.events and any(read.events)


def test_two_messages_in_one_frame_are_refused_whole_and_kept(large_service: LiveService) -> None:
    first, second = fresh_id("SPL"), fresh_id("SPL")
    payload = hl7_message(first) + hl7_message(second).replace(b"RX70001", b"RX70002")
    (ack,) = large_service.run(exchange(large_service.mllp_port, [encode_frame(payload)], 1))
    assert read_msa(ack) == ("AR", first)
    assert "ERR|" in err_text(ack) and "MSH^2" in err_text(ack)
    large_service.refresh()
    assert large_service.statuses(payload) == {MessageStatus.DEAD}


@pytest.mark.parametrize("when", ["99991231235959-1200", "00010101000000+1400"])
def test_an_overflowing_administration_time_is_refused_and_kept(
    large_service: LiveService, when: str
) -> None:
    payload = hl7_message(fresh_id("TIME")).replace(
        b"20250314093000-0400|20250314094600-0400", f"{when}|{when}".encode()
    )
    (ack,) = large_service.run(exchange(large_service.mllp_port, [encode_frame(payload)], 1))
    large_service.new_failures()
    large_service.refresh()
    assert MessageStatus.DEAD in large_service.statuses(payload), read_msa(ack)


def test_an_overflowing_effective_time_over_http_is_a_4xx(large_service: LiveService) -> None:
    resource = {**MEDADMINS[0], "id": "overflow1"}
    resource.pop("context", None)
    resource["effectivePeriod"] = {"start": "9999-12-31T23:59:59-12:00"}
    answer = large_service.request(
        "POST", "/fhir/MedicationAdministration", json.dumps(resource).encode(),
        {"Content-Type": FHIR_JSON},
    )  # fmt: skip
    large_service.new_failures()
    assert answer.status < 500


@pytest.mark.parametrize("value", [[], {"a": 1}])
def test_a_batch_entry_with_a_non_string_resource_type_is_answered_4xx(
    large_service: LiveService, value: object
) -> None:
    bundle = scenario_transaction("S20", "batch")
    bundle["entry"][0]["resource"]["resourceType"] = value
    bundle["id"] = fresh_id("unhashable")
    body = json.dumps(bundle).encode()
    answer = large_service.request("POST", "/fhir", body, {"Content-Type": FHIR_JSON})
    large_service.new_failures()
    assert answer.status < 500


@pytest.mark.parametrize(
    "query",
    [
        "_offset=99999999999999999999",
        "_offset=%C2%B2",
        "_count=%C2%B2",
        "_lastUpdated=9999",
        "_lastUpdated=9999-12-31T23:59:59.999999",
        "_lastUpdated=lt0001-01-01",
        "_lastUpdated=2026-01-01T00:00%2B99:99",
    ],
)
def test_out_of_range_search_parameters_are_a_400(large_service: LiveService, query: str) -> None:
    answer = large_service.request("GET", f"/fhir/Claim?{query}")
    large_service.new_failures()
    assert answer.status == 400


@pytest.mark.parametrize("path", ["/fhir", "/fhir/MedicationAdministration"])
def test_a_body_answered_400_is_not_accepted(large_service: LiveService, path: str) -> None:
    first = {**MEDADMINS[0], "id": fresh_id("nd")}
    second = {**MEDADMINS[0], "id": fresh_id("nd")}
    body = f"{json.dumps(first)}\n{json.dumps(second)}\n".encode()
    answer = large_service.request("POST", path, body, {"Content-Type": FHIR_JSON})
    assert answer.status == 400
    large_service.refresh()
    assert MessageStatus.ACCEPTED not in large_service.statuses(body)


def test_an_over_long_request_line_is_not_logged(
    large_service: LiveService, session_log_lines: list[str]
) -> None:
    marker = "ZZPROBE" + fresh_id("")  # not fixture PHI: the session-wide PHI check stays clean
    answer = large_service.request("GET", f"/fhir/Claim?patient={marker}&status={'x' * 9000}")
    assert answer.status == 400
    large_service.new_failures()  # aiohttp's ERROR line is what this test is about
    assert not any(marker in line for line in session_log_lines)


def test_a_huge_message_is_read_off_the_event_loop_so_other_senders_are_answered_meanwhile(
    large_service: LiveService,
) -> None:
    """A 4 MB field of escape sequences takes about a second to read: a small message sent
    on another connection meanwhile must be answered first, not after it (the gap in
    docs/fuzzing.md before the read moved to a worker thread for large payloads)."""
    big_id, small_id = fresh_id("HUGE"), fresh_id("SMALL")
    huge = hl7_message(big_id).replace(b"|8|mg", b"|8|mg" + b"\\F\\" * 1_400_000)
    order: list[str] = []

    async def send(name: str, payload: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        await exchange(large_service.mllp_port, [encode_frame(payload)], 1, 60.0)
        order.append(name)

    async def both() -> None:
        await asyncio.gather(send("huge", huge, 0.0), send("small", hl7_message(small_id), 0.2))

    large_service.run(both())
    assert order == ["small", "huge"]
