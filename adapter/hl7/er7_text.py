"""ER7 escaping for values we write: the inverse of `adapter.readers.er7.unescape`.

Why our own: hl7apy escapes only while it builds its validated element tree (milliseconds
per segment), and it leaves a backslash that happens to look like an escape sequence
(`\\H\\`, `\\F\\`) as it is, so a value such as `A\\F\\B` would be read back as `A|B`.
Here every delimiter and every escape character is escaped, and a line break becomes a
hex escape, so any text survives the trip through a receiver's parser unchanged.
"""

from __future__ import annotations

from adapter.readers.er7 import DEFAULT_ENCODING, Encoding

__all__ = ["escape"]


def escape(text: str, encoding: Encoding = DEFAULT_ENCODING) -> str:
    """`text` as one ER7 leaf value: delimiters become `\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`.

    CR and LF become `\\X0D\\` / `\\X0A\\`: a raw CR would end the segment. The escape
    character is replaced first, so the sequences written here are never escaped again.
    """
    esc = encoding.escape
    if not any(ch in text for ch in _specials(encoding)):
        return text
    out = text.replace(esc, f"{esc}E{esc}")
    for char, name in (
        (encoding.field, "F"),
        (encoding.component, "S"),
        (encoding.subcomponent, "T"),
        (encoding.repetition, "R"),
    ):
        out = out.replace(char, f"{esc}{name}{esc}")
    return out.replace("\r", f"{esc}X0D{esc}").replace("\n", f"{esc}X0A{esc}")


def _specials(encoding: Encoding) -> str:
    return (
        encoding.escape
        + encoding.field
        + encoding.component
        + encoding.subcomponent
        + encoding.repetition
        + "\r\n"
    )
