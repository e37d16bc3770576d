"""ER7 escaping for values we write: the inverse of `adapter.hl7.er7.unescape`.

Why our own: hl7apy escapes only while it builds its validated element tree (milliseconds
per segment), and it leaves a backslash that happens to look like an escape sequence
(`\\H\\`, `\\F\\`) as it is, so a value such as `A\\F\\B` would be read back as `A|B`.
Here every delimiter and every escape character is escaped, and a line break becomes a
hex escape, so any text survives the trip through a receiver's parser unchanged.
"""

from __future__ import annotations

import functools

from adapter.hl7.er7 import DEFAULT_ENCODING, Encoding

__all__ = ["escape"]


def escape(text: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """`text` as one ER7 leaf value: delimiters become `\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`.

    CR and LF become `\\X0D\\` / `\\X0A\\`: a raw CR would end the segment. One pass
    (`str.translate`), so the sequences written here are never escaped again.
    """
    table = _DEFAULT_TABLE if encoding is DEFAULT_ENCODING else _table(encoding)
    return text.translate(table)


@functools.lru_cache(maxsize=16)
def _table(encoding: Encoding) -> dict[int, str]:
    """Character -> escape sequence, built once per encoding."""
    esc = encoding.escape
    names = (
        (encoding.escape, "E"),
        (encoding.field, "F"),
        (encoding.component, "S"),
        (encoding.subcomponent, "T"),
        (encoding.repetition, "R"),
        ("\r", "X0D"),
        ("\n", "X0A"),
    )
    return {ord(char): f"{esc}{name}{esc}" for char, name in names if char}


_DEFAULT_TABLE = _table(DEFAULT_ENCODING)
