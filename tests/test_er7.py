"""The ER7 tokenizer: message boundaries, delimiters from MSH-1/MSH-2, escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.hl7.er7 import (
    Encoding,
    Er7Error,
    Segment,
    implausible_header_field,
    parse_message,
    peek_charset,
    split_messages,
    unescape,
)

MSH = "MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH|20250314161502||RAS^O17^RAS_O17|CTRL0001|P|2.5.1"
PID = "PID|1||E1004417^^^NRH^MR~900112233^^^SSA^SS||SAMPLE^AVERY"


class TestSplitMessages:
    @pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
    def test_segment_separators(self, sep: str) -> None:
        """CR, LF and CRLF all end a segment; trailing separators leave no empty segment."""
        chunks = split_messages(sep.join([MSH, PID, "PV1|1|O"]) + sep)

        assert [tuple(line[:3] for line in c.lines) for c in chunks] == [("MSH", "PID", "PV1")]

    def test_each_msh_starts_a_message(self) -> None:
        """Back-to-back messages need no blank line between them."""
        chunks = split_messages("\r".join([MSH, PID, MSH, PID]))

        assert [c.ordinal for c in chunks] == [1, 2]
        assert [len(c.lines) for c in chunks] == [2, 2]

    def test_blank_lines_separate_and_are_dropped(self) -> None:
        """Blank or whitespace-only lines close a message; a headless block stays its own chunk."""
        chunks = split_messages(f"\n\n{MSH}\n{PID}\n \n\n{PID}\nPV1|1\n\n")

        assert [tuple(line[:3] for line in c.lines) for c in chunks] == [
            ("MSH", "PID"),
            ("PID", "PV1"),
        ]

    def test_mllp_frame_bytes(self) -> None:
        """0x0B and 0x1C 0x0D frame bytes are boundaries, never content."""
        framed = f"\x0b{MSH}\r{PID}\r\x1c\r\x0b{MSH}\r\x1c\r"

        chunks = split_messages(framed)

        assert len(chunks) == 2
        assert chunks[0].lines[0] == MSH
        assert all("\x0b" not in line and "\x1c" not in line for c in chunks for line in c.lines)

    def test_bom_at_start(self) -> None:
        chunks = split_messages("\ufeff" + MSH + "\r" + PID)

        assert chunks[0].lines[0].startswith("MSH|")

    def test_batch_envelope_dropped(self) -> None:
        """FHS/BHS/BTS/FTS wrap batches; they are not messages."""
        text = "\r".join(["FHS|^~\\&|X", "BHS|^~\\&|X", MSH, PID, "BTS|1", "FTS|1"])

        chunks = split_messages(text)

        assert [tuple(line[:3] for line in c.lines) for c in chunks] == [("MSH", "PID")]


class TestParseMessage:
    def test_msh_field_numbering(self) -> None:
        """MSH-1 is the field separator itself, so MSH-n sits at fields[n] like other segments."""
        message = parse_message([MSH, PID])

        msh = message.msh
        assert (msh.raw(1), msh.raw(2), msh.raw(3)) == ("|", "^~\\&", "EPIC")
        assert (msh.get(9, 1), msh.get(9, 2), msh.get(10)) == ("RAS", "O17", "CTRL0001")
        assert message.segments[1].get(3) == "E1004417"

    def test_custom_encoding_characters(self) -> None:
        """Delimiters come from MSH-1/MSH-2, not from convention."""
        msh = "MSH*#!/@*EPIC*NRH*X*Y*20250101**RAS#O17*C1*P*2.5"
        pid = "PID*1**A1#####MR!B2#####SS**NAME#ONE*X/F/Y"

        message = parse_message([msh, pid])

        pid_segment = message.segments[1]
        assert Encoding("*", "#", "!", "/", "@") == message.encoding
        assert (message.msh.get(9, 1), message.msh.get(9, 2)) == ("RAS", "O17")
        assert (
            pid_segment.get(3),
            pid_segment.get(3, 6),
            pid_segment.get(3, rep=2),
        ) == ("A1", "MR", "B2")
        assert pid_segment.get(6) == "X*Y"

    def test_truncation_character_in_v27(self) -> None:
        message = parse_message(["MSH|^~\\&#|A|B|C|D|20250101||RAS^O17|C1|P|2.7"])

        assert message.encoding.truncation == "#"

    @pytest.mark.parametrize(
        "msh",
        [
            "MSH|^^\\&|A|B|C|D|2025||RAS^O17|C1|P|2.5",  # duplicate
            "MSH|^~|A|B|C|D|2025||RAS^O17|C1|P|2.5",  # missing
            "MSH|",  # nothing
            "MSH|^~\\&#|A",  # five characters before 2.7 (and a short header)
            "MSH|a~\\&|A|B|C|D|2025||RAS^O17|C1|P|2.5",  # alphanumeric
        ],
    )
    def test_bad_encoding_characters(self, msh: str) -> None:
        with pytest.raises(Er7Error) as info:
            parse_message([msh])

        assert info.value.where == "segment MSH #1 field MSH-2"

    @pytest.mark.parametrize("msh", ["MSHA^~\\&A", "MSH", "MSH ^~\\& "])
    def test_bad_field_separator(self, msh: str) -> None:
        with pytest.raises(Er7Error) as info:
            parse_message([msh])

        assert info.value.where == "segment MSH #1 field MSH-1"

    def test_missing_msh_names_first_segment(self) -> None:
        with pytest.raises(Er7Error) as info:
            parse_message([PID])

        assert (
            info.value.where,
            info.value.reason,
        ) == ("segment PID #1", "message does not start with an MSH segment")

    def test_not_a_segment_names_position_only(self) -> None:
        """The line may be free text (PHI): only its position is reported."""
        with pytest.raises(Er7Error) as info:
            parse_message([MSH, PID, "Patient said: call me at home"])

        assert info.value.where == "segment #3"
        assert "Patient" not in str(info.value)

    def test_segment_ordinals_count_per_name(self) -> None:
        message = parse_message([MSH, "RXA|0|1", "RXR|IV", "RXA|0|2", "RXR|IV", "ZRX|x"])

        assert [(s.name, s.ordinal) for s in message.segments[1:]] == [
            ("RXA", 1),
            ("RXR", 1),
            ("RXA", 2),
            ("RXR", 2),
            ("ZRX", 1),
        ]


class TestAccess:
    @pytest.fixture(name="rxa")
    def _rxa(self) -> Segment:
        segment = 'RXA|0|1|20250101|||A^B&b2^C~D^E|""|x\\S\\y^z'
        return parse_message([MSH, segment]).segments[1]

    def test_get_positions(self, rxa: Segment) -> None:
        assert (
            rxa.get(6),
            rxa.get(6, 2),
            rxa.get(6, 2, 2),
            rxa.get(6, 3),
        ) == ("A", "B", "b2", "C")
        assert (rxa.get(6, 1, rep=2), rxa.get(6, 2, rep=2)) == ("D", "E")

    def test_absent_is_empty(self, rxa: Segment) -> None:
        assert (
            rxa.get(4),
            rxa.get(40),
            rxa.get(6, 9),
            rxa.get(6, 1, 5),
            rxa.get(6, rep=3),
        ) == ("", "", "", "", "")

    def test_hl7_null_reads_empty(self, rxa: Segment) -> None:
        assert rxa.get(7) == ""

    def test_escaped_delimiter_does_not_split(self, rxa: Segment) -> None:
        """Escapes are decoded after splitting: `\\S\\` is a literal `^` inside component 1."""
        assert (rxa.get(8), rxa.get(8, 2)) == ("x^y", "z")
        assert rxa.components(8) == ("x^y", "z")

    def test_repetitions_drop_empty(self) -> None:
        pid = parse_message([MSH, "PID|1||A^^^X^MR~~B^^^Y^SS"]).segments[1]

        assert pid.repetitions(3) == ("A^^^X^MR", "B^^^Y^SS")


class TestUnescape:
    @pytest.mark.parametrize(
        ("escaped", "plain"),
        [
            ("A\\F\\B", "A|B"),
            ("A\\S\\B", "A^B"),
            ("A\\T\\B", "A&B"),
            ("A\\R\\B", "A~B"),
            ("A\\E\\B", "A\\B"),
            ("line1\\X0D\\line2", "line1\rline2"),
            ("line1\\X0D0A\\line2", "line1\r\nline2"),
            ("line1\\.br\\line2", "line1\nline2"),
            ("\\H\\bold\\N\\", "bold"),
            ("caf\\XC3A9\\", "café"),
            ("no escapes", "no escapes"),
        ],
    )
    def test_known_sequences(self, escaped: str, plain: str) -> None:
        assert plain == unescape(escaped)

    @pytest.mark.parametrize(
        "kept",
        [
            "\\Zsite\\",  # locally defined
            "\\.sp2\\",  # formatting we do not render
            "\\X0\\",  # odd hex
            "\\XZZ\\",  # not hex
            "\\Cxxyy\\",  # character set switch
            "C:\\temp",  # lone escape character
            "\\P\\",  # truncation without a truncation character
            "a\\\\b",  # empty sequence
        ],
    )
    def test_unknown_or_malformed_kept(self, kept: str) -> None:
        assert kept == unescape(kept)

    def test_hex_in_latin1_message(self) -> None:
        """`\\X..\\` bytes are text in the message's character set (MSH-18)."""
        assert unescape("\\XE9\\", Encoding(charset="latin-1")) == "é"

    def test_invalid_utf8_hex_falls_back_to_latin1(self) -> None:
        assert unescape("\\XE9\\", Encoding(charset="utf-8")) == "é"

    def test_custom_escape_character(self) -> None:
        encoding = Encoding("*", "#", "!", "/", "@")

        assert unescape("a/F/b/S/c", encoding) == "a*b#c"

    def test_truncation_escape(self) -> None:
        assert unescape("\\P\\", Encoding(truncation="#")) == "#"

    @given(st.text())
    def test_never_raises(self, text: str) -> None:
        unescape(text)


class TestPeekCharset:
    @pytest.mark.parametrize(
        ("msh", "charset"),
        [
            ("MSH|^~\\&|A|B|C|D|2025||RAS^O17|C1|P|2.5|||AL|NE||8859/1", "8859/1"),
            (
                "MSH|^~\\&|A|B|C|D|2025||RAS^O17|C1|P|2.5|||AL|NE||UNICODE UTF-8~8859/1",
                "UNICODE UTF-8",
            ),
            ("MSH|^~\\&|A|B|C|D|2025||RAS^O17|C1|P|2.5", ""),
            ("MSH", ""),
        ],
    )
    def test_msh18(self, msh: str, charset: str) -> None:
        assert charset == peek_charset(msh)


@given(st.text(alphabet=st.sampled_from("MSHPIDRXA|^~\\&\r\n\x0b\x1c 0123")))
def test_tokenizer_fails_only_with_er7_error(text: str) -> None:
    """Random soup either tokenizes or raises Er7Error, never anything else."""
    for chunk in split_messages(text):
        with contextlib.suppress(Er7Error):
            parse_message(chunk.lines)


class TestOneFrame:
    def test_a_blank_line_inside_a_frame_is_an_empty_segment_not_a_message_break(self) -> None:
        """A file uses blank lines between messages; an MLLP frame holds one message."""
        text = f"{MSH}\r\r{PID}\r"
        assert len(split_messages(text)) == 2
        (chunk,) = split_messages(text, blank_line_ends=False)
        assert chunk.lines == (MSH, PID)

    def test_a_second_msh_still_starts_a_message_inside_a_frame(self) -> None:
        assert len(split_messages(f"{MSH}\r{PID}\r{MSH}\r", blank_line_ends=False)) == 2


class TestHeaderShape:
    """A lost segment break slides patient fields into the header (PHI in MSH-10)."""

    @pytest.mark.parametrize(
        ("header", "field"),
        [
            (MSH, 0),
            ("MSH|^~\\&|A|B|C|D|201305330||VXU^V04|X1|P|2.5.1", 0),  # odd-length MSH-7: seen
            ("MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|", 0),  # empty fields are reported elsewhere
            ("MSH|^~\\&|EPIC|ONC|CHG|BILL|2025PID|1||MRN1^^^NRH^MR||DOE^JANE", 7),
            ("MSH|^~\\&|A|B|C|D|20250314||PATIENT^A01|X1|P|2.5.1", 9),
            ("MSH|^~\\&|A|B|C|D|20250314||ADT^A01|MRN1^^^NRH^MR|P|2.5.1", 10),
            ("MSH|^~\\&|A|B|C|D|20250314||ADT^A01|X1|P|DOE^JANE", 12),
        ],
    )
    def test_the_first_field_with_an_impossible_shape_is_named(
        self, header: str, field: int
    ) -> None:
        assert implausible_header_field(parse_message([header]).msh) == field
