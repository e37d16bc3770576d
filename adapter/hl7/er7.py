"""A small, fast ER7 (pipe-and-hat) tokenizer for HL7 v2.

Why not hl7apy's `parse_message`: it builds a validated tree for every field
(about 21 ms for a three-RXA RAS on our machines; `parse_segment` alone is
~3 ms per RXA), while the adapter reads a few dozen leaf values per message
and must stay under 0.2 ms. hl7apy is still used for what it does cheaply and
well: validating MSH-1/MSH-2 (`get_message_info`, ~3 µs per message). It has
no decoder for escape sequences (it re-escapes them), so `unescape` is here.

This module knows nothing about message types: it splits a file into
messages, messages into segments, and hands out decoded leaf values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from hl7apy.parser import get_message_info

from adapter.core.model import SegmentLocation

__all__ = [
    "Chunk",
    "Encoding",
    "Er7Error",
    "Message",
    "Segment",
    "implausible_header_field",
    "parse_message",
    "peek_charset",
    "peek_charsets",
    "split_messages",
    "unescape",
]

MLLP_START = "\x0b"
MLLP_END = "\x1c"
BOM = "\ufeff"
_NULL = '""'  # HL7 explicit null: read as empty
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_BATCH_ENVELOPE = frozenset({"FHS", "FTS", "BHS", "BTS"})
_TIMESTAMP = re.compile(r"\d{4,14}(?:\.\d{1,4})?(?:[+-]\d{4})?\Z")  # MSH-7.1, loosely
_MESSAGE_CODE = re.compile(r"[A-Za-z0-9]{3}\Z")  # MSH-9.1
_VERSION_SHAPE = re.compile(r"[vV]?\d+(?:\.\d+)*\Z")  # MSH-12.1
_HEX = frozenset("0123456789abcdefABCDEF")


class Er7Error(ValueError):
    """A message that cannot be read; `where` names a segment or field, never a value.

    `at` is the typed location when the fault is in a named segment (None for "segment #3",
    a line that is no segment). `msh` is the header when it was tokenized before the fault,
    so the caller can still name the message by its control id.
    """

    def __init__(
        self, where: str | SegmentLocation, reason: str, msh: Segment | None = None
    ) -> None:
        at = where if isinstance(where, SegmentLocation) else None
        text = str(where)
        super().__init__(f"{text}: {reason}" if text else reason)
        self.where = text
        self.at = at
        self.reason = reason
        self.msh = msh


@dataclass(frozen=True, slots=True)
class Encoding:
    """Delimiters from MSH-1/MSH-2 plus the charset `\\X..\\` hex escapes decode in."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""
    charset: str = "utf-8"

    def part(self, raw: str, component: int = 1, sub: int = 1) -> str:
        """One decoded leaf of a raw repetition; '' when absent (and for the HL7 null `""`)."""
        if self.component in raw:
            parts = raw.split(self.component)
            raw = parts[component - 1] if component <= len(parts) else ""
        elif component != 1:
            return ""
        return self.leaf(raw, sub)

    def leaf(self, raw: str, sub: int = 1) -> str:
        """A subcomponent of a raw component, unescaped."""
        if self.subcomponent and self.subcomponent in raw:
            subs = raw.split(self.subcomponent)
            raw = subs[sub - 1] if sub <= len(subs) else ""
        elif sub != 1:
            return ""
        if raw == _NULL:
            return ""
        return unescape(raw, self) if self.escape and self.escape in raw else raw


DEFAULT_ENCODING = Encoding()


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment; `fields[n]` is field n as on the wire (for MSH, `fields[1]` is MSH-1)."""

    name: str
    ordinal: int  # 1-based among segments of the same name in the message
    fields: tuple[str, ...]
    encoding: Encoding

    def raw(self, field: int) -> str:
        """Field n undecoded (escapes and delimiters intact); '' when absent."""
        return self.fields[field] if field < len(self.fields) else ""

    def get(self, field: int, component: int = 1, sub: int = 1, rep: int = 1) -> str:
        """A decoded leaf value: field, component, subcomponent and repetition are 1-based."""
        raw = self.fields[field] if field < len(self.fields) else ""
        if not raw:
            return ""
        sep = self.encoding.repetition
        if sep in raw:
            reps = raw.split(sep)
            raw = reps[rep - 1] if rep <= len(reps) else ""
        elif rep != 1:
            return ""
        return self.encoding.part(raw, component, sub)

    def components(self, field: int, rep: int = 1) -> tuple[str, ...]:
        """Every component of a field, decoded (first subcomponent): one split for a CWE."""
        raw = self.fields[field] if field < len(self.fields) else ""
        if not raw:
            return ()
        enc = self.encoding
        if enc.repetition in raw:
            reps = raw.split(enc.repetition)
            raw = reps[rep - 1] if rep <= len(reps) else ""
        elif rep != 1:
            return ()
        return tuple(enc.leaf(c) for c in raw.split(enc.component))

    def repetitions(self, field: int) -> tuple[str, ...]:
        """Raw repetitions of a field (empty ones dropped), for `Encoding.part`."""
        raw = self.raw(field)
        if not raw:
            return ()
        return tuple(r for r in raw.split(self.encoding.repetition) if r)


@dataclass(frozen=True, slots=True)
class Message:
    """The segments of one message, MSH first."""

    segments: tuple[Segment, ...]
    encoding: Encoding

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        """The first segment of that name, if any."""
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def all(self, name: str) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.name == name)


@dataclass(frozen=True, slots=True)
class Chunk:
    """The lines of one message as found in a file, before tokenizing."""

    ordinal: int  # 1-based position of the message in the file
    lines: tuple[str, ...]


def split_messages(text: str, *, blank_line_ends: bool = True) -> list[Chunk]:
    """Cut a file into messages.

    A message starts at an MSH segment, an MLLP start byte or after a blank
    line; batch envelopes (FHS/BHS/BTS/FTS) are dropped. Lines before the first
    MSH form a chunk of their own, so the caller can report them as an error.

    `blank_line_ends=False` is for one MLLP frame or HTTP body, which holds one
    message: there a blank line is an empty segment (noise some engines emit),
    and cutting at it would leave the segments after it unread.
    """
    if text.startswith(BOM):
        text = text[1:]
    if MLLP_START in text or MLLP_END in text:
        text = text.replace(MLLP_START, "\r").replace(MLLP_END, "\r")
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    chunks: list[Chunk] = []
    current: list[str] = []
    for line in lines:
        stripped = line.lstrip(" \t\ufeff")
        if not stripped.strip():
            if blank_line_ends:
                _close(chunks, current)
            continue
        if stripped[:3] in _BATCH_ENVELOPE:
            _close(chunks, current)
            continue
        if stripped.startswith("MSH"):
            _close(chunks, current)
        current.append(stripped)
    _close(chunks, current)
    return chunks


def _close(chunks: list[Chunk], current: list[str]) -> None:
    if current:
        chunks.append(Chunk(len(chunks) + 1, tuple(current)))
        current.clear()


def implausible_header_field(msh: Segment) -> int:
    """The first MSH field whose shape is impossible (7, 9, 10 or 12), or 0 when none is.

    Why: when a segment break is lost, the next segment's fields slide into the
    header (`...|2025PID|1||MRN^^^NRH^MR||DOE^JANE`), and MSH-10 would then be a
    patient identifier that ends up in logs and keys. A real header has a
    timestamp in MSH-7, a three-character code in MSH-9.1, no components in
    MSH-10 (an ST) and a version number in MSH-12.1. Only shapes are checked, and
    empty fields pass (they are reported on their own): a header that passes may
    still lack a type or name an unsupported one.
    """
    component = msh.encoding.component
    when, code, version = (msh.raw(f).split(component, 1)[0].strip() for f in (7, 9, 12))
    if when and not _TIMESTAMP.match(when):
        return 7
    if code and not _MESSAGE_CODE.match(code):
        return 9
    if component in msh.raw(10):
        return 10
    if version and not _VERSION_SHAPE.match(version):
        return 12
    return 0


def parse_message(lines: Iterable[str], charset: str = "utf-8") -> Message:
    """Tokenize one message; raises Er7Error naming the faulty segment."""
    iterator = iter(lines)
    first = next(iterator, "")
    if not first.startswith("MSH"):
        raise Er7Error(_segment_label(first, 1), "message does not start with an MSH segment")
    encoding = _encoding(first, charset)
    fs = encoding.field
    msh = Segment("MSH", 1, ("MSH", fs, *first[4:].split(fs)), encoding)
    segments = [msh]
    counts: dict[str, int] = {"MSH": 1}
    for position, line in enumerate(iterator, start=2):
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != fs):
            raise Er7Error(f"segment #{position}", "not an HL7 segment", msh)
        if name == "MSH":
            raise Er7Error(f"segment #{position}", "second MSH segment in one message", msh)
        ordinal = counts.get(name, 0) + 1
        counts[name] = ordinal
        segments.append(Segment(name, ordinal, tuple(line.split(fs)), encoding))
    return Message(tuple(segments), encoding)


def _segment_label(line: str, position: int) -> str | SegmentLocation:
    """`segment PID #1` when the line starts like a segment, else its position (no content)."""
    name = line[:3]
    looks_like_segment = _SEGMENT_NAME.match(name) and line[3:4] in ("|", "")
    return SegmentLocation(name, 1) if looks_like_segment else f"segment #{position}"


def _encoding(msh_line: str, charset: str) -> Encoding:
    """MSH-1/MSH-2, validated by hl7apy (duplicates, count per version) plus our own checks."""
    if len(msh_line) < 4 or msh_line[3].isalnum() or msh_line[3].isspace():
        raise Er7Error(SegmentLocation("MSH", 1, 1), "invalid field separator")
    fs = msh_line[3]
    end = msh_line.find(fs, 4)
    msh2 = msh_line[4:end] if end >= 0 else msh_line[4:]
    version = None
    if len(msh2) == 5:  # hl7apy takes a 5th (truncation) character only when MSH-12 >= 2.7
        fields = msh_line.split(fs, 12)
        version = fields[11] if len(fields) > 11 else ""
    return _encoding_of(fs, msh2, version, charset)


@functools.lru_cache(maxsize=256)
def _encoding_of(fs: str, msh2: str, version: str | None, charset: str) -> Encoding:
    """The checks of `_encoding` on just what they depend on, memoized.

    Why: hl7apy's check re-split every header (~14 µs, twice per message: read
    and ACK); a feed uses one or two headers' worth of delimiters. The header
    rebuilt here holds the same MSH-1, MSH-2 and (when it matters) MSH-12.
    """
    header = f"MSH{fs}{msh2}" + ("" if version is None else f"{fs * 10}{version}")
    try:
        chars = get_message_info(header)[0]
    except Exception as exc:  # hl7apy raises several types, and IndexError on short headers
        raise Er7Error(SegmentLocation("MSH", 1, 2), "invalid encoding characters") from exc
    values = (chars["COMPONENT"], chars["REPETITION"], chars["ESCAPE"], chars["SUBCOMPONENT"])
    if any(c.isalnum() or c.isspace() for c in values):
        raise Er7Error(SegmentLocation("MSH", 1, 2), "invalid encoding characters")
    return Encoding(
        field=chars["FIELD"],
        component=chars["COMPONENT"],
        repetition=chars["REPETITION"],
        escape=chars["ESCAPE"],
        subcomponent=chars["SUBCOMPONENT"],
        truncation=chars.get("TRUNCATION", ""),
        charset=charset,
    )


def peek_charset(msh_line: str) -> str:
    """The MSH-18 character set of a header line, raw ('' when absent)."""
    return peek_charsets(msh_line)[0]


def peek_charsets(msh_line: str) -> tuple[str, ...]:
    """Every repetition of MSH-18, raw: `~ISO IR87` (Japanese feeds) is the default
    single-byte set, then JIS X 0208 switched in by ISO 2022 escapes."""
    if len(msh_line) < 4:
        return ("",)
    fs = msh_line[3]
    parts = msh_line.split(fs)
    value = parts[17] if len(parts) > 17 else ""  # parts[0] is "MSH", parts[n-1] is MSH-n
    rep = msh_line[5:6] if len(msh_line) > 5 else "~"
    if not rep or rep == fs:
        return (value.strip(),)
    return tuple(v.strip() for v in value.split(rep))


def unescape(value: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """Decode HL7 escape sequences; unknown or malformed ones are kept as they were."""
    esc = encoding.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    i = 0
    while True:
        start = value.find(esc, i)
        end = value.find(esc, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(value[i:])
            return "".join(out)
        out.append(value[i:start])
        decoded = _sequence(value[start + 1 : end], encoding)
        out.append(value[start : end + 1] if decoded is None else decoded)
        i = end + 1


@functools.lru_cache(maxsize=64)
def _simple_sequences(encoding: Encoding) -> dict[str, str]:
    """The one-letter sequences of an encoding, built once per encoding.

    Why cached: building this table on every sequence made a hostile field of
    escape characters cost ~1.7 µs per byte, seconds on the event loop for 1 MB.
    """
    table = {
        "F": encoding.field,
        "S": encoding.component,
        "T": encoding.subcomponent,
        "R": encoding.repetition,
        "E": encoding.escape,
        ".br": "\n",
        "H": "",  # highlighting on/off: no meaning for billing text
        "N": "",
    }
    if encoding.truncation:
        table["P"] = encoding.truncation
    return table


def _sequence(body: str, encoding: Encoding) -> str | None:
    """The text one escape sequence stands for, or None to keep it literally."""
    simple = _simple_sequences(encoding).get(body)
    if simple is not None:
        return simple
    if body[:1] == "X" and len(body) > 1 and len(body) % 2 == 1 and _HEX.issuperset(body[1:]):
        raw = bytes.fromhex(body[1:])
        try:
            return raw.decode(encoding.charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")
    return None
