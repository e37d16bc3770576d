"""Bytes to text per message, as its MSH-18 says, and the message boundaries."""

from __future__ import annotations

from adapter.hl7.er7 import Chunk, peek_charsets, split_messages

_BOM_BYTES = b"\xef\xbb\xbf"


def decode(data: str | bytes, *, blank_line_ends: bool) -> list[tuple[Chunk, str]]:
    """Split into messages; bytes are decoded per message, as its MSH-18 says.

    A NUL byte (never valid HL7 text) reads as U+FFFD: PostgreSQL text cannot hold
    a NUL, so a control id or patient id carrying one could not be stored, not even
    as a dead letter, and the sender would be told to resend forever.
    """
    chunks = _decode_text(data, blank_line_ends)
    has_nul = "\x00" in data if isinstance(data, str) else b"\x00" in data
    return [(_without_nul(c), codec) for c, codec in chunks] if has_nul else chunks


def _without_nul(chunk: Chunk) -> Chunk:
    return Chunk(chunk.ordinal, tuple(line.replace("\x00", "\ufffd") for line in chunk.lines))


def _decode_text(data: str | bytes, blank_line_ends: bool) -> list[tuple[Chunk, str]]:
    if isinstance(data, str):
        chunks = split_messages(data, blank_line_ends=blank_line_ends)
        return [(c, _codec(peek_charsets(c.lines[0]))) for c in chunks]
    if data.startswith(_BOM_BYTES):
        data = data[len(_BOM_BYTES) :]
    # latin-1 maps every byte to one char, so cutting here then re-decoding is lossless
    text = data.decode("latin-1")
    return [_redecode(c) for c in split_messages(text, blank_line_ends=blank_line_ends)]


def _redecode(chunk: Chunk) -> tuple[Chunk, str]:
    codec = _codec(peek_charsets(chunk.lines[0]))
    if codec == ISO_2022_JP:  # 7-bit: every byte is ASCII, the escapes say what it means
        if not any("\x1b" in line for line in chunk.lines):
            return chunk, codec
    elif codec == "latin-1" or all(line.isascii() for line in chunk.lines):
        return chunk, codec
    try:
        lines = tuple(line.encode("latin-1").decode(codec) for line in chunk.lines)
    except (UnicodeDecodeError, LookupError):
        return chunk, "latin-1"  # not what MSH-18 claims: bytes as they are
    return Chunk(chunk.ordinal, lines), codec


ISO_2022_JP = "iso2022_jp_2"


_ISO_2022_SETS = frozenset({"ISO IR87", "ISO IR159", "ISO 2022-1994"})


def _codec(declared: tuple[str, ...]) -> str:
    """Python codec for MSH-18 (table 0211); UTF-8 when absent or ASCII.

    Japanese feeds (JAHIS, SS-MIX2) send `~ISO IR87`: ASCII, with JIS X 0208 switched
    in by ISO 2022 escapes. Its double-byte text uses bytes that look like `|` or `^`,
    so the message must be decoded before it is cut into fields.
    """
    if any(v.strip().upper() in _ISO_2022_SETS for v in declared):
        return ISO_2022_JP
    value = declared[0].strip().upper() if declared else ""
    if value.startswith("8859/"):
        number = value[5:]
        return "latin-1" if number == "1" else f"iso8859-{number}"
    return "utf-8"
