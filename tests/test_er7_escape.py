"""ER7 escaping of the values we write (adapter/hl7/er7_text.py), against three readers:
our own unescape, python-hl7's, and hl7apy's escaping for the values it handles."""

from __future__ import annotations

import hl7
import pytest
from hl7apy.base_datatypes import ST
from hypothesis import given
from hypothesis import strategies as st

from adapter.hl7.er7 import unescape
from adapter.hl7.er7_text import escape

_TEXT = st.text(alphabet=st.sampled_from("ab1 |^~&\\\r\nHFSTREX.é"), max_size=30)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("plain", "plain"),
        ("A|B", "A\\F\\B"),
        ("A^B", "A\\S\\B"),
        ("A&B", "A\\T\\B"),
        ("A~B", "A\\R\\B"),
        ("A\\B", "A\\E\\B"),
        ("A\\F\\B", "A\\E\\F\\E\\B"),  # a backslash run that looks like an escape stays text
        ("line1\rline2\n", "line1\\X0D\\line2\\X0A\\"),
    ],
)
def test_every_delimiter_and_line_break_is_escaped(text: str, written: str) -> None:
    assert escape(text) == written


@given(_TEXT)
def test_our_reader_reads_every_escaped_value_back_unchanged(text: str) -> None:
    assert unescape(escape(text)) == text


@given(_TEXT)
def test_python_hl7_reads_every_escaped_value_back_unchanged(text: str) -> None:
    message = hl7.parse(f"MSH|^~\\&|A\rZZZ|{escape(text)}|end\r")
    assert message.unescape(str(message.segment("ZZZ")[1])) == text


@given(st.text(alphabet=st.sampled_from("ab1 |^~&é"), max_size=30))
def test_without_backslashes_or_breaks_we_escape_as_hl7apy_does(text: str) -> None:
    assert escape(text) == ST(text).to_er7()
