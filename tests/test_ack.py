"""ACK building: header echo and swap, MSA, ERR, broken inbound; validated with hl7apy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message as Hl7apyMessage
from hl7apy.parser import parse_message as hl7apy_parse
from hl7apy.parser import parse_segment
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.core.model import SegmentLocation
from adapter.hl7.ack import AckError, AckIds, ack_from_header, build_ack, error_ack_code
from adapter.hl7.er7 import Message, parse_message, split_messages
from adapter.hl7.msh import MshInfo, read_msa, read_msh

NOW = datetime(2025, 3, 14, 16, 15, 2, tzinfo=timezone(timedelta(hours=-4)))
HEADER = (
    "MSH|^~\\&|EPIC^1.2.840.114350^ISO|NRH_ONC|CHGCAP|NRH_BILLING|20250314161502-0400||"
    "RAS^O17^RAS_O17|EPRAS0001|T|2.5.1|||AL|NE||UNICODE UTF-8"
)
BODY = "PID|1||E1004417^^^NRH^MR||SAMPLEPATIENT^AVERY||19610422|F\rRXA|0|1|20250314093000"
INBOUND = f"{HEADER}\r{BODY}\r".encode()
RXA_ERROR = AckError("101", "start time missing", SegmentLocation("RXA", 2, 3))


def read(ack: bytes) -> Message:
    """Tokenize an ACK with the project's reader (one message, CR separated)."""
    assert ack.endswith(b"\r") and b"\n" not in ack
    (chunk,) = split_messages(ack.decode("latin-1"))
    return parse_message(chunk.lines)


def strict(ack: bytes) -> Hl7apyMessage:
    """hl7apy's strict parse: every segment, field and datatype must fit the version."""
    message = hl7apy_parse(
        ack.decode(), find_groups=False, validation_level=VALIDATION_LEVEL.STRICT
    )
    assert message.validate()
    return message


class TestHeader:
    def test_sender_and_receiver_are_swapped_verbatim(self) -> None:
        msh = read(build_ack(INBOUND, "AA", now=NOW, control_id="ACK1")).msh
        assert msh.raw(3) == "CHGCAP" and msh.raw(4) == "NRH_BILLING"
        assert msh.raw(5) == "EPIC^1.2.840.114350^ISO" and msh.raw(6) == "NRH_ONC"

    def test_type_control_id_processing_id_and_version(self) -> None:
        msh = read(build_ack(INBOUND, "AA", now=NOW, control_id="ACK1")).msh
        assert msh.raw(9) == "ACK^O17^ACK"
        assert msh.raw(10) == "ACK1"
        assert msh.raw(11) == "T"
        assert msh.raw(12) == "2.5.1"

    def test_timestamp_carries_the_offset(self) -> None:
        msh = read(build_ack(INBOUND, "AA", now=NOW, control_id="A")).msh
        assert msh.raw(7) == "20250314161502-0400"
        utc = read(build_ack(INBOUND, "AA", now=NOW.astimezone(UTC), control_id="A")).msh
        assert utc.raw(7) == "20250314201502+0000"

    def test_ack_requests_no_acknowledgment_and_echoes_the_charset(self) -> None:
        msh = read(build_ack(INBOUND, "AA", now=NOW, control_id="A")).msh
        assert msh.raw(15) == "" and msh.raw(16) == ""
        assert msh.raw(18) == "UNICODE UTF-8"

    def test_missing_version_defaults_to_2_5_1(self) -> None:
        inbound = b"MSH|^~\\&|EPIC|NRH|CHGCAP|NRH|20250314||RAS^O17|C1|P\rPID|1\r"
        msh = read(build_ack(inbound, "AA", now=NOW, control_id="A")).msh
        assert msh.raw(12) == "2.5.1" and msh.raw(9) == "ACK^O17^ACK"

    def test_version_with_components_is_echoed(self) -> None:
        inbound = b"MSH|^~\\&|EPIC|NRH|CHGCAP|NRH|20250314||RAS^O17|C1|P|2.5.1^USA\r"
        assert read(build_ack(inbound, "AA", now=NOW, control_id="A")).msh.raw(12) == "2.5.1^USA"

    def test_inbound_delimiters_are_kept(self) -> None:
        inbound = b"MSH#$~\\&#EPIC$X#NRH#CHGCAP#NRH#20250314##RAS$O17#C9#P#2.5.1\r"
        ack = build_ack(inbound, "AE", error=RXA_ERROR, now=NOW, control_id="A#1")
        text = ack.decode()
        assert text.startswith("MSH#$~\\&#CHGCAP#NRH#EPIC$X#NRH#")
        assert "#ACK$O17$ACK#A\\F\\1#" in text  # our control id is escaped, not trusted
        message = read(ack)
        assert message.first("ERR") is not None
        assert message.first("ERR").get(2, 1) == "RXA"  # type: ignore[union-attr]

    def test_msh_2_with_a_truncation_character_is_echoed(self) -> None:
        inbound = b"MSH|^~\\&#|EPIC|NRH|CHGCAP|NRH|20250314||RAS^O17^RAS_O17|C7|P|2.7\r"
        assert build_ack(inbound, "AA", now=NOW, control_id="A").startswith(b"MSH|^~\\&#|CHGCAP|")

    def test_latin_1_bytes_are_echoed_byte_for_byte(self) -> None:
        inbound = b"MSH|^~\\&|EPIC|H\xd4PITAL|CHGCAP|NRH|20250314||RAS^O17|C1|P|2.5.1|||||8859/1\r"
        ack = build_ack(inbound, "AA", now=NOW, control_id="A")
        assert b"|CHGCAP|NRH|EPIC|H\xd4PITAL|" in ack


class TestMsaAndErr:
    def test_accept(self) -> None:
        ack = build_ack(INBOUND, "AA", now=NOW, control_id="A")
        message = read(ack)
        assert [s.name for s in message.segments] == ["MSH", "MSA"]
        assert message.first("MSA").fields == ("MSA", "AA", "EPRAS0001")  # type: ignore[union-attr]

    def test_error_segment(self) -> None:
        ack = build_ack(INBOUND, "AE", error=RXA_ERROR, now=NOW, control_id="A")
        err = read(ack).first("ERR")
        assert err is not None
        assert err.raw(2) == "RXA^2^3"
        assert err.raw(3) == "101^Required field missing^HL70357"
        assert err.raw(4) == "E"
        assert err.get(8) == "start time missing"
        assert read_msa(ack) == ("AE", "EPRAS0001")

    def test_error_without_location_and_full_location(self) -> None:
        bare = read(build_ack(INBOUND, "AR", error=AckError("200"), now=NOW, control_id="A"))
        assert bare.first("ERR").fields == (  # type: ignore[union-attr]
            "ERR",
            "",
            "",
            "200^Unsupported message type^HL70357",
            "E",
        )
        deep = AckError("102", "bad date", SegmentLocation("RXA", 0, 5, repetition=1, component=4))
        full = read(build_ack(INBOUND, "AE", error=deep, now=NOW, control_id="A"))
        assert full.first("ERR").raw(2) == "RXA^1^5^1^4"  # type: ignore[union-attr]

    def test_error_text_is_escaped(self) -> None:
        error = AckError("207", "a|b^c&d~e\\f\r\ng")
        err = read(build_ack(INBOUND, "AE", error=error, now=NOW, control_id="A")).first("ERR")
        assert err is not None
        assert err.raw(8) == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f  g"
        assert err.get(8) == "a|b^c&d~e\\f  g"

    @pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
    def test_every_code_is_valid_for_hl7apy(self, code: str) -> None:
        error = None if code in ("AA", "CA") else RXA_ERROR
        ack = build_ack(INBOUND, code, error=error, now=NOW, control_id="ACK00001")
        message = strict(ack)
        assert message.msh.msh_9.to_er7() == "ACK^O17^ACK"
        assert message.msh.msh_5.to_er7() == "EPIC^1.2.840.114350^ISO"
        assert message.msa.msa_1.to_er7() == code
        assert message.msa.msa_2.to_er7() == "EPRAS0001"
        if error is not None:
            assert message.err.err_2.to_er7() == "RXA^2^3"
            assert message.err.err_3.err_3_1.to_er7() == "101"
            assert message.err.err_8.to_er7() == "start time missing"

    def test_added_text_cannot_break_the_frame_or_the_segments(self) -> None:
        error = AckError("207", "a\x0bb\x1cc\rd\ne", SegmentLocation("R\x1cXA", 0))
        ack = build_ack(INBOUND, "AE", error=error, now=NOW, control_id="X\x0b1\r")
        assert b"\x0b" not in ack and b"\x1c" not in ack
        assert [s.name for s in read(ack).segments] == ["MSH", "MSA", "ERR"]

    def test_naive_time_has_no_offset(self) -> None:
        naive = datetime(2025, 3, 14, 16, 15, 2)
        assert read(build_ack(INBOUND, "AA", now=naive, control_id="A")).msh.raw(7) == (
            "20250314161502"
        )

    def test_unknown_code_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError):
            build_ack(INBOUND, "OK", now=NOW, control_id="A")


class TestOlderVersions:
    """v2.3/2.4 have no ERR-2..8 (ERR-1 is an ELD) and v2.3 no MSH-9.3."""

    V23 = b"MSH|^~\\&|MEDITECH|CCH|CHGCAP|CCH_BILL|20250310145501||RAS^O02|MT0310145501|P|2.3\r"

    def test_v2_3_ack(self) -> None:
        ack = build_ack(self.V23, "AE", error=RXA_ERROR, now=NOW, control_id="A1")
        message = read(ack)
        assert message.msh.raw(9) == "ACK^O02"
        assert message.first("MSA").fields == (  # type: ignore[union-attr]
            "MSA",
            "AE",
            "MT0310145501",
            "start time missing",
        )
        assert message.first("ERR").fields == (  # type: ignore[union-attr]
            "ERR",
            "RXA^2^3^101&Required field missing&HL70357",
        )

    def test_v2_3_ack_is_valid_for_hl7apy(self) -> None:
        ack = build_ack(self.V23, "AE", error=RXA_ERROR, now=NOW, control_id="A1").decode()
        # hl7apy names a two-component MSH-9 "ACK_O02", unknown in strict mode: check the
        # message tolerantly and each segment strictly.
        message = hl7apy_parse(ack, find_groups=False)
        assert message.msa.msa_2.to_er7() == "MT0310145501"
        for segment in ack.strip("\r").split("\r"):
            parsed = parse_segment(segment, version="2.3", validation_level=VALIDATION_LEVEL.STRICT)
            assert parsed.validate()

    def test_v2_4_has_a_message_structure_but_the_old_err(self) -> None:
        inbound = self.V23.replace(b"|2.3\r", b"|2.4\r")
        ack = build_ack(inbound, "AE", error=RXA_ERROR, now=NOW, control_id="A1")
        assert read(ack).msh.raw(9) == "ACK^O02^ACK"
        assert read(ack).first("ERR").raw(1).startswith("RXA^2^3^101&")  # type: ignore[union-attr]
        strict(ack)


class TestBrokenInbound:
    @pytest.mark.parametrize(
        "inbound",
        [
            b"",
            b"garbage",
            b"PID|1||E1004417\rPV1|1|O\r",
            b"MSH",
            b"MSH|",
            b"MSH|^^^^|EPIC|NRH\r",  # duplicate encoding characters
            b"MSHX^~\\&|EPIC\r",
            b"\x00\xff\xfe",
        ],
    )
    def test_unreadable_header_still_gets_a_valid_ar(self, inbound: bytes) -> None:
        assert read_msh(inbound) is None
        ack = build_ack(inbound, "AA", now=NOW, control_id="ACK9")
        # MSA-2 is required in v2.5.1 but there is no control id to echo: it stays empty, as
        # asked, and is the one thing strict validation would flag. Everything else is strict.
        message = hl7apy_parse(ack.decode(), find_groups=False)
        for segment in ack.decode().strip("\r").split("\r"):
            parsed = parse_segment(
                segment, version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT
            )
            assert segment.startswith("MSA") or parsed.validate()
        assert message.msa.msa_1.to_er7() == "AR"
        assert message.msa.msa_2.to_er7() == ""
        assert message.err.err_3.err_3_1.to_er7() == "100"
        assert message.err.err_2.to_er7() == "MSH^1"
        assert message.msh.msh_10.to_er7() == "ACK9"
        assert message.msh.msh_12.to_er7() == "2.5.1"

    def test_unreadable_header_keeps_the_callers_error_and_enhanced_codes(self) -> None:
        error = AckError("207", "internal error")
        ack = build_ack(b"garbage", "CE", error=error, now=NOW, control_id="A")
        assert read_msa(ack) == ("CR", "")
        assert read(ack).first("ERR").raw(3).startswith("207^")  # type: ignore[union-attr]

    def test_unreadable_body_with_a_readable_header_keeps_msa_2(self) -> None:
        inbound = INBOUND + b"this is not a segment\r"
        assert read_msa(build_ack(inbound, "AE", now=NOW, control_id="A")) == ("AE", "EPRAS0001")

    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.binary(max_size=400),
            st.text(max_size=300).map(lambda t: (HEADER[:40] + t).encode()),
        )
    )
    def test_any_bytes_get_a_readable_ack(self, inbound: bytes) -> None:
        for code in ("AA", "AE", "CA"):
            ack = build_ack(inbound, code, error=RXA_ERROR, now=NOW, control_id="A")
            message = read(ack)
            assert [s.name for s in message.segments] == ["MSH", "MSA", "ERR"]
            assert b"\x0b" not in ack and b"\x1c" not in ack


class TestReadMsh:
    def test_fields(self) -> None:
        info = read_msh(INBOUND)
        assert info is not None
        assert (info.sending_application, info.sending_facility) == ("EPIC", "NRH_ONC")
        assert (info.receiving_application, info.receiving_facility) == ("CHGCAP", "NRH_BILLING")
        assert (info.message_type, info.trigger, info.structure) == ("RAS", "O17", "RAS_O17")
        assert (info.control_id, info.processing_id, info.version) == ("EPRAS0001", "T", "2.5.1")
        assert (info.accept_ack_type, info.app_ack_type) == ("AL", "NE")
        assert info.enhanced_mode

    @pytest.mark.parametrize(
        "prefix", [b"", b"\r\n", b"\n\n", b"\xef\xbb\xbf", b"  ", b"\x0b", b"FHS|^~\\&\r"]
    )
    def test_header_after_blank_lines_bom_or_envelopes(self, prefix: bytes) -> None:
        info = read_msh(prefix + INBOUND.replace(b"\r", b"\n"))
        assert info is not None and info.control_id == "EPRAS0001"

    def test_original_mode(self) -> None:
        info = read_msh(b"MSH|^~\\&|A|B|C|D|20250314||RAS^O17|C1|P|2.5.1\r")
        assert info is not None and not info.enhanced_mode


class TestErrorAckCode:
    @staticmethod
    def header(msh15: str, msh16: str = "") -> MshInfo:
        line = f"MSH|^~\\&|A|B|C|D|20250314||RAS^O17|C1|P|2.5.1|||{msh15}|{msh16}"
        info = read_msh(line.encode())
        assert info is not None
        return info

    def test_original_mode_and_unreadable_header(self) -> None:
        assert error_ack_code(self.header(""), reject=False) == "AE"
        assert error_ack_code(self.header(""), reject=True) == "AR"
        assert error_ack_code(None, reject=True) == "AR"

    @pytest.mark.parametrize(("msh15", "expected"), [("AL", "CE"), ("ER", "CE"), ("", "CE")])
    def test_enhanced_mode_answers_commit_codes(self, msh15: str, expected: str) -> None:
        assert error_ack_code(self.header(msh15, "AL"), reject=False) == expected
        assert error_ack_code(self.header(msh15, "AL"), reject=True) == "CR"

    @pytest.mark.parametrize("msh15", ["NE", "SU"])
    def test_enhanced_mode_without_error_answers(self, msh15: str) -> None:
        assert error_ack_code(self.header(msh15), reject=False) is None

    @pytest.mark.parametrize(("msh15", "read_as"), [("al", "AL"), (" NE ", "NE"), ("XX", "AL")])
    def test_msh_15_outside_table_0155_reads_as_al_so_the_sender_gets_an_answer(
        self, msh15: str, read_as: str
    ) -> None:
        assert self.header(msh15).accept_ack_type == read_as

    def test_ack_ids_are_unique_twenty_characters_and_differ_between_processes(self) -> None:
        ids, other = AckIds(), AckIds()
        taken = [ids() for _ in range(1000)]
        assert len(set(taken)) == 1000 and all(len(i) == 20 for i in taken)
        assert other() not in taken

    def test_ack_from_a_header_read_once(self) -> None:
        info = read_msh(INBOUND)
        ack = ack_from_header(info, "CA", now=NOW, control_id="A")
        assert ack == build_ack(INBOUND, "CA", now=NOW, control_id="A")


def test_read_msa_of_something_else_is_empty() -> None:
    assert read_msa(b"") == ("", "")
    assert read_msa(INBOUND) == ("", "")
    assert read_msa(b"garbage") == ("", "")
