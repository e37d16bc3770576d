"""The hot-path check's own cut of a plain frame (`_tokens`) against `split_messages` and
`parse_message` (`_parsed`): the same lines, MSH and read segments, or a refusal alike.

Frames are generated around the plain shape the fast cut takes (CR breaks, `|`, segment
names) with what makes a frame not plain: LF and CRLF, blank and indented lines, MLLP
bytes, a second MSH, batch envelopes, names that are no segment names, other delimiters.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.hl7.er7 import Er7Error
from adapter.readers.hl7v2.hot import _Doubt, _parsed, _tokens

HEADERS = st.sampled_from(["MSH|^~\\&|EPIC|NRH|CHG|NRH|20250314||RAS^O17|C1|P|2.5.1"] * 4) | (
    st.sampled_from(
        [
            "MSH|^~\\&|EPIC|NRH|CHG|NRH|20250314||ADT^A04|C2|P|2.3",
            "MSH|^~\\&#|A|B|C|D|2025||RAS^O17|C3|P|2.7",
            "MSH|^~|A",  # MSH-2 too short
            "MSH#^~\\&#A#B",  # another field separator
            " MSH|^~\\&|A",
            "MSH|",
        ]
    )
)
NAMES = st.sampled_from(["PID", "PV1", "RXA", "RXC", "TQ1", "OBX", "EVN", "DG1", "ORC", "RXR"])
ODD_NAMES = st.sampled_from(["ZX9", "MSH", "BTS", "FHS", "pid", "P!D", "1AB", "AB", "", " PID"])
FIELDS = st.text(alphabet=st.sampled_from("|^~&\\#aZ09 \t"), max_size=8)
ODD_BREAKS = st.sampled_from(["\n", "\r\n", "\r\r", "\x0b", "\x1c", "\r \r", "\r\t"])


@st.composite
def frames(draw: st.DrawFn) -> str:
    """A plain frame (CR breaks, segment names, `|`), or one with a single odd spot."""
    names = draw(st.lists(NAMES, max_size=8))
    lines = [draw(HEADERS)]
    for name in names:  # a name alone, or a name and its fields
        fields = draw(st.none() | FIELDS)
        lines.append(name if fields is None else f"{name}|{fields}")
    breaks = ["\r"] * len(lines)
    spot = draw(st.integers(1, len(lines) + 1)) if len(lines) > 1 else len(lines) + 1
    odd = draw(st.sampled_from(["none", "none", "name", "after name", "break"]))
    if spot < len(lines) and odd == "name":
        lines[spot] = draw(ODD_NAMES) + lines[spot][3:]
    elif spot < len(lines) and odd == "after name":
        lines[spot] = lines[spot][:3] + draw(st.sampled_from(["#", "x", " "])) + lines[spot][3:]
    elif spot < len(lines) and odd == "break":
        breaks[spot] = draw(ODD_BREAKS)
    text = lines[0] + "".join(b + line for b, line in zip(breaks[1:], lines[1:], strict=True))
    return text + draw(st.sampled_from(["", "\r", "\r\r", "\r", "\n", "\r \r"]))


def _outcome(cut: object, text: str) -> object:
    try:
        return cut(text)  # type: ignore[operator]
    except (_Doubt, Er7Error) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(frames())
def test_the_plain_cut_is_the_tokenizers(text: str) -> None:
    assert _outcome(_tokens, text) == _outcome(_parsed, text)
