"""HL7 v2 reader: each field of docs/feed-conventions.md, errors with locations, robustness."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.core.catalog import Catalog
from adapter.core.mappings import Mappings
from adapter.core.model import (
    Action,
    Administration,
    AdminStatus,
    Code,
    CodeSystem,
    Coverage,
    Diagnosis,
    InboundMessage,
    IngredientRole,
    Method,
    OrderEvent,
    PatientClass,
    Quantity,
    Route,
    Visit,
    VisitStatus,
)
from adapter.readers.hl7v2 import read_hl7

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "hl7v2"
SAMPLE_DIRS = (
    ROOT / "fixtures" / "samples" / "hl7v2",
    ROOT.parent / "shared" / "samples" / "hl7v2",
)
NY = ZoneInfo("America/New_York")
EDT = timezone(timedelta(hours=-4))

MSH = "MSH|^~\\&|EPIC|NRH_ONC|CHGCAP|NRH|20250314161502||RAS^O17^RAS_O17|CTRL0001|P|2.5.1"
PID = "PID|1||E1004417^^^NRH^MR~900112233^^^SSA^SS||SAMPLEPATIENT^AVERY^J||19610422|F"
PV1 = "PV1|1|O|ONCINF^CHAIR12^^NRH_CC||||||||||||||||HAR0078^^^NRH^VN"
ORC = "ORC|RE|ORD1^EPIC|RX1^EPICRX||CM"
RXA_FIELDS: Mapping[int, str] = MappingProxyType(
    {
        1: "0",
        2: "1",
        3: "20250314093000",
        4: "20250314100000",
        5: "850214^PEMBROLIZUMAB 200 MG^ERXLOCAL^00006-3026-02^KEYTRUDA 100 MG/4 ML^NDC",
        6: "200",
        7: "mg",
        20: "CP",
        21: "A",
    }
)
RXR = "RXR|IV^Intravenous^HL70162|PORT^Implanted port^HL70163||IV^IV infusion^HL70165"
PHI = ("SAMPLEPATIENT", "AVERY", "E1004417", "19610422", "900112233")


def seg(name: str, fields: Mapping[int, str]) -> str:
    """A segment from field numbers, so tests name positions instead of counting pipes."""
    top = max(fields)
    return "|".join([name, *(fields.get(i, "") for i in range(1, top + 1))])


def rxa(**changes: str) -> str:
    """The default RXA with fields replaced, e.g. `rxa(f4="")`."""
    fields = dict(RXA_FIELDS)
    fields.update({int(k[1:]): v for k, v in changes.items()})
    return seg("RXA", fields)


def ras(*body: str, msh: str = MSH, pid: str = PID, pv1: str | None = PV1) -> str:
    head = [msh, pid] + ([pv1] if pv1 is not None else [])
    return "\r".join(head + list(body or (ORC, rxa(), RXR)))


@pytest.fixture(scope="module", name="mappings")
def _mappings() -> Mappings:
    return Mappings(
        catalog=Catalog.build([], []),
        routes=MappingProxyType(
            {"IV": Route.IV, "SC": Route.SC, "IM": Route.IM, "PO": Route.ORAL, "47625008": Route.IV}
        ),
        methods=MappingProxyType(
            {
                "IVP": Method.PUSH,
                "IVPB": Method.INFUSION,
                "IV": Method.INFUSION,
                "IVSS": Method.INFUSION,
                "PUMP": Method.PUMP,
            }
        ),
        observation_codes=MappingProxyType(
            {"WASTE": "discarded-amount", "RXWASTE": "discarded-amount"}
        ),
    )


def read(
    data: str | bytes, mappings: Mappings, origin: str = "t.hl7"
) -> tuple[InboundMessage, ...]:
    return read_hl7(data, mappings, NY, origin)


def one(data: str | bytes, mappings: Mappings) -> InboundMessage:
    (message,) = read(data, mappings)
    return message


def admins(message: InboundMessage) -> list[Administration]:
    assert message.error is None, message.error
    return [e for e in message.events if isinstance(e, Administration)]


def admin(data: str, mappings: Mappings) -> Administration:
    (found,) = admins(one(data, mappings))
    return found


def error_of(data: str | bytes, mappings: Mappings) -> tuple[str, str]:
    message = one(data, mappings)
    assert message.error is not None, message
    return message.error.location, message.error.message


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class TestHeader:
    def test_control_key_is_sender_and_control_id_and_kind_is_msh9(
        self, mappings: Mappings
    ) -> None:
        """Sender is MSH-3^MSH-4 (HD namespace ids); kind is MSH-9 components 1-2."""
        message = one(ras(), mappings)

        assert (message.control_key, message.control_id, message.kind) == (
            "hl7:EPIC^NRH_ONC:CTRL0001",
            "CTRL0001",
            "RAS^O17",
        )

    def test_dedup_key_is_the_control_key_and_a_content_digest(self, mappings: Mappings) -> None:
        message = one(ras(), mappings)

        control_key, digest = message.dedup_key.rsplit(":", 1)
        assert (control_key, len(digest)) == ("hl7:EPIC^NRH_ONC:CTRL0001", 32)

    def test_universal_id_when_no_namespace(self, mappings: Mappings) -> None:
        msh = MSH.replace("|EPIC|NRH_ONC|", "|^1.2.840.1^ISO|^1.2.840.2^ISO|")

        assert one(ras(msh=msh), mappings).control_key == "hl7:1.2.840.1^1.2.840.2:CTRL0001"

    @pytest.mark.parametrize(
        ("name", "change"),
        [
            ("LF terminators", lambda t: t.replace("\r", "\n")),
            ("CRLF terminators", lambda t: t.replace("\r", "\r\n")),
            ("a final terminator", lambda t: t + "\r"),
            ("trailing spaces on segments", lambda t: t.replace("\r", "  \r") + " \t"),
            ("a new MSH-7 (engine retry)", lambda t: t.replace("20250314161502", "20250314171502")),
            ("a blank line in the frame", lambda t: t.replace("\rORC", "\r\rORC")),
        ],
    )
    def test_resend_differing_only_in_framing_or_msh7_has_the_same_key(
        self, mappings: Mappings, name: str, change: Callable[[str], str]
    ) -> None:
        """A duplicate is the same sender, control id and content; terminators, trailing
        whitespace and MSH-7 are not content (docs/feed-conventions.md)."""
        original = ras()
        resend = read_hl7(change(original), mappings, NY, "t.hl7", frame=True)[0]

        assert resend.dedup_key == one(original, mappings).dedup_key, name

    @pytest.mark.parametrize(
        ("name", "change"),
        [
            ("another dose", lambda t: t.replace("|200|mg|", "|100|mg|")),
            ("another start time", lambda t: t.replace("20250314093000", "20250314083000")),
            ("another trigger", lambda t: t.replace("RAS^O17^RAS_O17", "RAS^O17")),
            ("a space inside a field", lambda t: t.replace("|mg|", "|mg |")),
        ],
    )
    def test_reused_control_id_with_other_content_has_another_key(
        self, mappings: Mappings, name: str, change: Callable[[str], str]
    ) -> None:
        """Senders restart counters; a test system sends one MSH-10 for everything."""
        original, reused = one(ras(), mappings), one(change(ras()), mappings)

        assert reused.control_key == original.control_key, name
        assert reused.dedup_key != original.dedup_key, name

    def test_implausible_header_carries_no_control_id(self, mappings: Mappings) -> None:
        """A slid header's MSH-10 may be a patient identifier: not a field anyone logs."""
        msh = MSH.replace("|CTRL0001|", "|E1004417^^^NRH^MR|")

        message = one(ras(msh=msh), mappings)

        assert message.error is not None
        assert (message.control_id, message.control_key) == ("", "")
        assert "E1004417" not in message.dedup_key

    def test_resend_has_same_key(self, mappings: Mappings) -> None:
        """The reader does not dedupe; a re-send (same sender and MSH-10) gets the same key."""
        first, resend, update, delete = read(fixture("ras_correction_update_delete.hl7"), mappings)

        assert first.dedup_key == resend.dedup_key
        assert first.events == resend.events
        assert len({first.dedup_key, update.dedup_key, delete.dedup_key}) == 3

    def test_missing_control_id(self, mappings: Mappings) -> None:
        msh = MSH.replace("|CTRL0001|", "||")

        location, reason = error_of(ras(msh=msh), mappings)

        assert location == "t.hl7 message 1 segment MSH #1 field MSH-10"
        assert reason == "message control id is empty"

    def test_missing_type(self, mappings: Mappings) -> None:
        msh = MSH.replace("|RAS^O17^RAS_O17|", "||")

        assert (
            (error_of(ras(msh=msh), mappings)[0])
            == "t.hl7 message 1 (MSH-10 CTRL0001) segment MSH #1 field MSH-9"
        )

    @pytest.mark.parametrize(
        "version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.2"]
    )
    def test_supported_versions(self, version: str, mappings: Mappings) -> None:
        msh = MSH.replace("|2.5.1", f"|{version}")

        assert len(admins(one(ras(msh=msh), mappings))) == 1

    @pytest.mark.parametrize("version", ["2.2", "2.9", "3.0", ""])
    def test_other_versions_skipped(self, version: str, mappings: Mappings) -> None:
        msh = MSH.replace("|2.5.1", f"|{version}")

        message = one(ras(msh=msh), mappings)

        assert (f"unsupported HL7 version {version}", (), None) == (
            message.skip_reason,
            message.events,
            message.error,
        )


class TestMessageTypes:
    @pytest.mark.parametrize(
        "kind",
        ["VXU^V04", "ORM^O01", "DFT^P03", "BAR^P01", "QBP^Q11", "ACK^A01", "ADT^A11", "ADT^A13"],
    )
    def test_unsupported_skipped(self, kind: str, mappings: Mappings) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", kind)

        message = one(ras(msh=msh), mappings)

        assert (kind, f"unsupported message type {kind}", ()) == (
            message.kind,
            message.skip_reason,
            message.events,
        )

    def test_ras_o02(self, mappings: Mappings) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", "RAS^O02").replace("|2.5.1", "|2.3")

        message = one(ras(msh=msh), mappings)

        assert message.kind == "RAS^O02"
        assert len(admins(message)) == 1

    @pytest.mark.parametrize(
        ("kind", "event_kind"),
        [
            ("RDE^O11^RDE_O11", "order"),
            ("RDE^O01", "order"),
            ("RDE^O25^RDE_O25", "order"),
            ("RDS^O13^RDS_O13", "dispense"),
            ("RDS^O01", "dispense"),
        ],
    )
    def test_orders_and_dispenses_kept(
        self, kind: str, event_kind: str, mappings: Mappings
    ) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", kind)
        body = (ORC, "RXE|^^^20250314^^R|850214^PEMBRO^ERXLOCAL|200||mg", "RXR|IV")

        message = one(ras(*body, msh=msh), mappings)

        assert (
            OrderEvent(f"hl7:RX1:{event_kind}", "NRH|E1004417", event_kind, "HAR0078"),
        ) == message.events

    def test_rde_fixture_one_event_per_order(self, mappings: Mappings) -> None:
        message = one(fixture("rde_o11_order.hl7"), mappings)

        assert [e.source_id for e in message.events if isinstance(e, OrderEvent)] == [
            "hl7:RX6601:order",
            "hl7:RX6602:order",
        ]

    def test_z_segments_ignored(self, mappings: Mappings) -> None:
        plain = one(ras(ORC, rxa(), RXR), mappings)
        with_z = one(ras("ZPI|x|y", ORC, "ZOR|1", rxa(), "ZRX|EPIC|GIVEN", RXR, "ZRX|2"), mappings)

        assert plain.events == with_z.events


class TestIdentity:
    def test_patient_id_prefers_mr(self, mappings: Mappings) -> None:
        pid = "PID|1||900112233^^^SSA^SS~E1004417^^^NRH^MR"

        assert admin(ras(pid=pid), mappings).patient_id == "NRH|E1004417"

    def test_patient_id_first_without_mr(self, mappings: Mappings) -> None:
        pid = "PID|1||A55^^^CLINIC^PI~B66^^^SSA^SS"

        assert admin(ras(pid=pid), mappings).patient_id == "CLINIC|A55"

    def test_patient_id_authority_universal_id(self, mappings: Mappings) -> None:
        pid = "PID|1||E77^^^&2.16.840.1.113883.3.1&ISO^MR"

        assert admin(ras(pid=pid), mappings).patient_id == "2.16.840.1.113883.3.1|E77"

    def test_patient_id_without_authority(self, mappings: Mappings) -> None:
        pid = "PID|1||1234^^^^MR"

        assert admin(ras(pid=pid), mappings).patient_id == "|1234"

    def test_missing_pid(self, mappings: Mappings) -> None:
        text = "\r".join([MSH, PV1, ORC, rxa(), RXR])

        assert error_of(text, mappings) == (
            "t.hl7 message 1 (MSH-10 CTRL0001) segment PID",
            "missing",
        )

    def test_empty_pid3(self, mappings: Mappings) -> None:
        location, reason = error_of(ras(pid="PID|1||^^^NRH^MR||SAMPLEPATIENT"), mappings)

        assert location == "t.hl7 message 1 (MSH-10 CTRL0001) segment PID #1 field PID-3"
        assert reason == "patient identifier is empty"

    def test_visit_id_from_pv1_19(self, mappings: Mappings) -> None:
        assert admin(ras(), mappings).visit_id == "HAR0078"

    def test_no_pv1_no_visit(self, mappings: Mappings) -> None:
        message = one(ras(pv1=None), mappings)

        assert [a.visit_id for a in admins(message)] == [None]
        assert not [e for e in message.events if isinstance(e, Visit)]

    @pytest.mark.parametrize(
        ("orc", "expected"),
        [
            ("ORC|RE|ORD1^EPIC|RX1^EPICRX", "hl7:RX1:0:1"),
            ("ORC|RE|ORD1^EPIC|", "hl7:ORD1:0:1"),
            ("ORC|RE||", "hl7:#1:0:1"),  # not the control id: a resend keeps its ids
        ],
    )
    def test_correction_key_filler_then_placer(
        self, orc: str, expected: str, mappings: Mappings
    ) -> None:
        found = admin(ras(orc, rxa(), RXR), mappings)

        assert (found.correction_key, found.source_id) == (
            expected,
            f"{expected}:20250314T133000Z:850214",  # + start (UTC) and given code
        )

    def test_source_id_uses_rxa1_rxa2_and_group_ordinal(self, mappings: Mappings) -> None:
        body = ("ORC|RE", rxa(f1="1", f2="3"), RXR, "ORC|RE", rxa(f1="1", f2="3"), RXR)

        assert [a.correction_key for a in admins(one(ras(*body), mappings))] == [
            "hl7:#1:1:3",
            "hl7:#2:1:3",
        ]

    def test_rxa_without_orc(self, mappings: Mappings) -> None:
        assert admin(ras(rxa(), RXR), mappings).correction_key == "hl7:#0:0:1"


class TestTimes:
    def test_no_offset_is_site_time(self, mappings: Mappings) -> None:
        found = admin(ras(), mappings)

        assert datetime(2025, 3, 14, 9, 30, tzinfo=NY) == found.start
        assert found.start.utcoffset() == timedelta(hours=-4)
        assert datetime(2025, 3, 14, 10, 0, tzinfo=NY) == found.end

    def test_offset_kept(self, mappings: Mappings) -> None:
        found = admin(ras(ORC, rxa(f3="20250314133000+0000", f4="20250314100000-0400")), mappings)

        assert datetime(2025, 3, 14, 13, 30, tzinfo=UTC) == found.start
        assert datetime(2025, 3, 14, 10, 0, tzinfo=EDT) == found.end

    @pytest.mark.parametrize(
        ("ts", "expected"),
        [
            ("202503140930", datetime(2025, 3, 14, 9, 30, tzinfo=NY)),
            ("2025031409", datetime(2025, 3, 14, 9, tzinfo=NY)),
            ("20250314", datetime(2025, 3, 14, tzinfo=NY)),
            ("20250314093015.25", datetime(2025, 3, 14, 9, 30, 15, 250000, tzinfo=NY)),
            (
                "20250314093015.1234-0500",
                datetime(2025, 3, 14, 9, 30, 15, 123400, tzinfo=timezone(timedelta(hours=-5))),
            ),
            ("20250314093000^S", datetime(2025, 3, 14, 9, 30, tzinfo=NY)),  # 2.3 TS precision
        ],
    )
    def test_precisions(self, ts: str, expected: datetime, mappings: Mappings) -> None:
        assert expected == admin(ras(ORC, rxa(f3=ts, f4="")), mappings).start

    @pytest.mark.parametrize(
        "ts",
        [
            "2025031X0930",
            "20251314",
            "20250230",
            "202503140960",
            "2025-03-14",
            "20250314+2500",
            "0",
        ],
    )
    def test_malformed_start_is_an_error(self, ts: str, mappings: Mappings) -> None:
        location, _ = error_of(ras(ORC, rxa(f3=ts), RXR), mappings)

        assert location == "t.hl7 message 1 (MSH-10 CTRL0001) segment RXA #1 field RXA-3"

    def test_empty_start_is_an_error(self, mappings: Mappings) -> None:
        location, reason = error_of(ras(ORC, rxa(f3=""), RXR), mappings)

        assert location.endswith("segment RXA #1 field RXA-3")
        assert reason == "timestamp is empty"

    def test_malformed_end_names_rxa4_of_the_right_rxa(self, mappings: Mappings) -> None:
        body = (ORC, rxa(), RXR, ORC, rxa(f4="20250314 1000"), RXR)

        assert error_of(ras(*body), mappings)[0].endswith("segment RXA #2 field RXA-4")

    @pytest.mark.parametrize(
        "end", ["", '""', "20250314093000", "202503140930", "20250314093000.0"]
    )
    def test_no_stop_time(self, end: str, mappings: Mappings) -> None:
        """An empty RXA-4, or one equal to RXA-3 at any precision, means no stop time."""
        assert admin(ras(ORC, rxa(f4=end), RXR), mappings).end is None


class TestDrug:
    def test_codes_primary_and_alternate(self, mappings: Mappings) -> None:
        (ingredient,) = admin(ras(), mappings).ingredients

        assert (
            Code(CodeSystem.LOCAL.value, "850214", "PEMBROLIZUMAB 200 MG"),
            Code(CodeSystem.NDC.value, "00006-3026-02", "KEYTRUDA 100 MG/4 ML"),
        ) == ingredient.codes
        assert (ingredient.text, ingredient.role) == ("PEMBROLIZUMAB 200 MG", IngredientRole.ACTIVE)
        assert Quantity(Decimal("200"), "mg") == ingredient.amount

    @pytest.mark.parametrize(
        ("system", "expected"),
        [
            ("NDC", CodeSystem.NDC),
            ("RXNORM", CodeSystem.RXNORM),
            ("RXN", CodeSystem.RXNORM),
            ("HCPCS", CodeSystem.HCPCS),
            ("HCPC", CodeSystem.HCPCS),
            ("CPT", CodeSystem.HCPCS),
            ("hcpcs", CodeSystem.HCPCS),
            ("ERXLOCAL", CodeSystem.LOCAL),
            ("99EPIC", CodeSystem.LOCAL),
            ("", CodeSystem.LOCAL),
        ],
    )
    def test_code_systems(self, system: str, expected: CodeSystem, mappings: Mappings) -> None:
        found = admin(ras(ORC, rxa(f5=f"J9271^pembrolizumab^{system}")), mappings)

        assert (Code(expected.value, "J9271", "pembrolizumab"),) == found.ingredients[0].codes

    def test_second_alternate_of_v27_cwe(self, mappings: Mappings) -> None:
        cwe = "850214^PEMBRO^ERXLOCAL^^^^^^^1547545^pembrolizumab^RXNORM"

        codes = admin(ras(ORC, rxa(f5=cwe)), mappings).ingredients[0].codes

        assert Code(CodeSystem.RXNORM.value, "1547545", "pembrolizumab") == codes[-1]

    @pytest.mark.parametrize(
        ("amount", "unit", "expected"),
        [
            ("200", "mg", Quantity(Decimal("200"), "mg")),
            ("200", "MG", Quantity(Decimal("200"), "mg")),
            ("200", "mg^milligram^UCUM", Quantity(Decimal("200"), "mg")),
            ("250", "ug", Quantity(Decimal("250"), "mcg")),
            ("250", "µg", Quantity(Decimal("250"), "mcg")),
            ("250", "MCG", Quantity(Decimal("250"), "mcg")),
            ("1.5", "g", Quantity(Decimal("1.5"), "g")),
            ("50", "ml", Quantity(Decimal("50"), "mL")),
            ("50", "ML", Quantity(Decimal("50"), "mL")),
            ("50", "cc", Quantity(Decimal("50"), "mL")),
            ("50", "CC", Quantity(Decimal("50"), "mL")),
            ("1", "L", Quantity(Decimal("1000"), "mL")),
            ("40000", "U", Quantity(Decimal("40000"), "units")),
            ("40000", "UNITS", Quantity(Decimal("40000"), "units")),
            ("40000", "IU", Quantity(Decimal("40000"), "units")),
            ("1", "{bag}", Quantity(Decimal("1"), "{bag}")),
            ("0.25", "", Quantity(Decimal("0.25"), "")),
            ("", "mg", None),
        ],
    )
    def test_amount_and_units(
        self, amount: str, unit: str, expected: Quantity | None, mappings: Mappings
    ) -> None:
        assert expected == admin(ras(ORC, rxa(f6=amount, f7=unit)), mappings).ingredients[0].amount

    def test_amount_from_unit_text(self, mappings: Mappings) -> None:
        found = admin(ras(ORC, rxa(f7="^milligram^UCUM")), mappings)

        assert Quantity(Decimal("200"), "mg") == found.ingredients[0].amount

    @pytest.mark.parametrize(
        ("amount", "reason"),
        [("two hundred", "not a number"), ("-5", "negative amount"), ("1e3", "not a number")],
    )
    def test_bad_amount(self, amount: str, reason: str, mappings: Mappings) -> None:
        location, message = error_of(ras(ORC, rxa(f6=amount)), mappings)

        assert location.endswith("segment RXA #1 field RXA-6")
        assert reason == message


class TestRouteAndRate:
    def test_route_method_site(self, mappings: Mappings) -> None:
        found = admin(ras(), mappings)

        assert (found.route, found.method, found.access_site) == (Route.IV, Method.INFUSION, "PORT")

    @pytest.mark.parametrize(
        ("rxr", "route", "method", "site"),
        [
            ("RXR|IV||||", Route.IV, Method.UNSPECIFIED, None),
            ("RXR|iv|^Left forearm||IVP", Route.IV, Method.PUSH, "Left forearm"),
            ("RXR|SC|LA", Route.SC, Method.UNSPECIFIED, "LA"),
            ("RXR|XYZ^Intravenous^L^47625008^Intravenous^SCT", Route.IV, Method.UNSPECIFIED, None),
            ("RXR|ZZ", Route.UNKNOWN, Method.UNSPECIFIED, None),
            ("RXR|IV|||LOCALPUSH^push^L^IVP^IV push^HL70165", Route.IV, Method.PUSH, None),
            ("RXR|IV|||PUMP^Portable pump^L", Route.IV, Method.PUMP, None),
        ],
    )
    def test_route_table(
        self, rxr: str, route: Route, method: Method, site: str | None, mappings: Mappings
    ) -> None:
        found = admin(ras(ORC, rxa(), rxr), mappings)

        assert (route, method, site) == (found.route, found.method, found.access_site)

    def test_no_rxr(self, mappings: Mappings) -> None:
        found = admin(ras(ORC, rxa()), mappings)

        assert (
            found.route,
            found.method,
            found.access_site,
        ) == (Route.UNKNOWN, Method.UNSPECIFIED, None)

    def test_order_rxr_when_rxa_has_none(self, mappings: Mappings) -> None:
        body = (ORC, "RXE|^^^20250314^^R|850214^PEMBRO^ERXLOCAL|200||mg", "RXR|SC", rxa())

        assert admin(ras(*body), mappings).route == Route.SC

    @pytest.mark.parametrize(
        ("rate", "expected"),
        [
            ("125", Quantity(Decimal("125"), "mL/h")),
            ("125 mL/hr", Quantity(Decimal("125"), "mL/h")),
            ("125ML/H", Quantity(Decimal("125"), "mL/h")),
            ("62.5 cc/hr", Quantity(Decimal("62.5"), "mL/h")),
            ("100^mL/h", Quantity(Decimal("100"), "mL/h")),
            ("2 mg/h", Quantity(Decimal("2"), "mg/h")),
            ("H1", None),
            ("", None),
        ],
    )
    def test_rate(self, rate: str, expected: Quantity | None, mappings: Mappings) -> None:
        assert expected == admin(ras(ORC, rxa(f12=rate)), mappings).rate

    def test_bad_rate(self, mappings: Mappings) -> None:
        location, reason = error_of(ras(ORC, rxa(f12="wide open")), mappings)

        assert (location.split(" segment ")[1], reason) == (
            "RXA #1 field RXA-12",
            "rate is not a number",
        )

    @pytest.mark.parametrize(
        ("volume", "unit", "expected"),
        [
            ("250", "mL", Quantity(Decimal("250"), "mL")),
            ("250", "", Quantity(Decimal("250"), "mL")),
            ("0.25", "L", Quantity(Decimal("250.00"), "mL")),
            ("", "mL", None),
        ],
    )
    def test_volume(
        self, volume: str, unit: str, expected: Quantity | None, mappings: Mappings
    ) -> None:
        assert expected == admin(ras(ORC, rxa(f23=volume, f24=unit)), mappings).volume

    @pytest.mark.parametrize(
        ("tq1", "minutes"),
        [
            ("TQ1|1||||||||||||46^h", 2760),
            ("TQ1|1||||||||||||46^h&hour&UCUM", 2760),
            ("TQ1|1||||||||||||90^min", 90),
            ("TQ1|1||||||||||||1.5^H", 90),
            ("TQ1|1||||||||||||2^d", 2880),
            ("TQ1|1||||||||||||3^mo", None),
            ("TQ1|1||||||||||||", None),
        ],
    )
    def test_expected_duration(self, tq1: str, minutes: int | None, mappings: Mappings) -> None:
        assert minutes == admin(ras(ORC, tq1, rxa(), RXR), mappings).expected_minutes

    def test_expected_duration_from_v23_quantity_timing(self, mappings: Mappings) -> None:
        assert admin(ras("ORC|RE|P1|F1||CM||^^M90", rxa(), RXR), mappings).expected_minutes == 90

    def test_expected_duration_belongs_to_its_order(self, mappings: Mappings) -> None:
        body = (ORC, "TQ1|1||||||||||||46^h", rxa(), RXR, "ORC|RE|ORD2|RX2", rxa(), RXR)

        assert [a.expected_minutes for a in admins(one(ras(*body), mappings))] == [2760, None]

    def test_bad_expected_duration(self, mappings: Mappings) -> None:
        text = ras(ORC, "TQ1|1||||||||||||long^h", rxa(), RXR)

        assert error_of(text, mappings)[0].endswith("segment TQ1 #1 field TQ1-13")


class TestIndicationsStatusAction:
    @pytest.mark.parametrize(
        ("field", "expected"),
        [
            ("C50911^Breast^I10", (Code(CodeSystem.ICD10CM.value, "C50.911", "Breast"),)),
            ("C50.911^Breast^ICD10CM", (Code(CodeSystem.ICD10CM.value, "C50.911", "Breast"),)),
            ("Z5111^Chemo^I10", (Code(CodeSystem.ICD10CM.value, "Z51.11", "Chemo"),)),
            (
                "E86.0^Dehydration^I10~C61^Prostate^I10",
                (
                    Code(CodeSystem.ICD10CM.value, "E86.0", "Dehydration"),
                    Code(CodeSystem.ICD10CM.value, "C61", "Prostate"),
                ),
            ),
            ("34095006^Dehydration^SCT", (Code("SCT", "34095006", "Dehydration"),)),
            ("^^^E860^Dehydration^I10", (Code(CodeSystem.ICD10CM.value, "E86.0", "Dehydration"),)),
            ("", ()),
        ],
    )
    def test_indications(self, field: str, expected: tuple[Code, ...], mappings: Mappings) -> None:
        assert expected == admin(ras(ORC, rxa(f19=field)), mappings).indications

    def test_order_indication_when_rxa_has_none(self, mappings: Mappings) -> None:
        rxe = seg("RXE", {1: "^^^20250314^^R", 2: "NS^NS 1000^L", 27: "E860^Dehydration^I10"})

        found = admin(ras(ORC, rxe, rxa(), RXR), mappings)

        assert (Code(CodeSystem.ICD10CM.value, "E86.0", "Dehydration"),) == found.indications

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("CP", AdminStatus.COMPLETED),
            ("", AdminStatus.COMPLETED),
            ("PA", AdminStatus.PARTIAL),
            ("pa", AdminStatus.PARTIAL),
            ("NA", AdminStatus.NOT_DONE),
            ("RE", AdminStatus.NOT_DONE),
        ],
    )
    def test_completion_status(self, code: str, status: AdminStatus, mappings: Mappings) -> None:
        assert status == admin(ras(ORC, rxa(f20=code)), mappings).status

    @pytest.mark.parametrize(
        ("code", "action"),
        [("A", Action.ADD), ("", Action.ADD), ("U", Action.UPDATE), ("D", Action.DELETE)],
    )
    def test_action_code(self, code: str, action: Action, mappings: Mappings) -> None:
        assert action == admin(ras(ORC, rxa(f21=code)), mappings).action

    @pytest.mark.parametrize(
        ("changes", "field"), [({"f20": "XX"}, "RXA-20"), ({"f21": "Z"}, "RXA-21")]
    )
    def test_unknown_codes_are_errors(
        self, changes: dict[str, str], field: str, mappings: Mappings
    ) -> None:
        assert error_of(ras(ORC, rxa(**changes)), mappings)[0].endswith(f"field {field}")

    def test_corrections_fixture(self, mappings: Mappings) -> None:
        """U replaces and D deletes by ORC-3 + RXA-1/RXA-2: the source ids must match the add."""
        first, _, update, delete = read(fixture("ras_correction_update_delete.hl7"), mappings)
        original = {a.source_id: a for a in admins(first)}

        (updated,) = admins(update)
        (deleted,) = admins(delete)

        assert (Action.UPDATE, Quantity(Decimal("150"), "mg")) == (
            updated.action,
            updated.ingredients[0].amount,
        )
        assert original[updated.source_id].action is Action.ADD
        assert (deleted.action, deleted.source_id in original) == (Action.DELETE, True)
        assert updated.source_id != deleted.source_id


class TestPremixAndWaste:
    def test_rxc_order_level(self, mappings: Mappings) -> None:
        first, second = admins(one(fixture("ras_rxc_premix.hl7"), mappings))

        for found in (first, second):
            assert [i.role for i in found.ingredients] == [
                IngredientRole.BASE,
                IngredientRole.ACTIVE,
            ]
            assert found.ingredients[0].codes[1].code == "00264-5802-10"
        assert Quantity(Decimal("450"), "mg") == first.ingredients[1].amount
        assert Quantity(Decimal("500"), "mL") == first.ingredients[0].amount
        assert (CodeSystem.NDC.value, "70860-0200-50") == (
            second.ingredients[1].codes[1].system,
            second.ingredients[1].codes[1].code,
        )

    def test_rxc_replaces_rxa5(self, mappings: Mappings) -> None:
        """With RXC the RXA-5 names the mix only: it is not an ingredient (R8)."""
        found = admin(
            ras(
                ORC,
                rxa(f5="990450^CARBO MIX^ERXLOCAL"),
                RXR,
                "RXC|A|J9045^carboplatin^HCPCS|450|mg",
            ),
            mappings,
        )

        assert tuple(tuple(c.code for c in i.codes) for i in found.ingredients) == (("J9045",),)

    def test_rxc_of_one_rxa_only(self, mappings: Mappings) -> None:
        body = (ORC, rxa(), RXR, "RXC|A|J9045^carboplatin^HCPCS|450|mg", rxa(f2="2"), RXR)

        first, second = admins(one(ras(*body), mappings))

        assert (
            first.ingredients[0].codes[0].code,
            second.ingredients[0].codes[0].code,
        ) == ("J9045", "850214")

    def test_bad_rxc_type(self, mappings: Mappings) -> None:
        text = ras(ORC, rxa(), RXR, "RXC|Q|J9045^carboplatin^HCPCS|450|mg")

        assert error_of(text, mappings)[0].endswith("segment RXC #1 field RXC-1")

    def test_obx_waste_fixture(self, mappings: Mappings) -> None:
        nivolumab, ondansetron, bevacizumab = admins(one(fixture("ras_obx_waste.hl7"), mappings))

        assert Quantity(Decimal("30"), "mg") == nivolumab.wasted
        assert ondansetron.wasted is None  # body weight is not waste
        assert Quantity(Decimal("50"), "mg") == bevacizumab.wasted  # mapped code; W row ignored

    def test_waste_needs_a_mapped_code(self) -> None:
        bare = Mappings(catalog=Catalog.build([], []))
        body = (ORC, rxa(), RXR, "OBX|1|NM|RXWASTE^Discarded^99EPIC||50|mg|||||F")

        assert admin(ras(*body), bare).wasted is None

    def test_waste_builtin_code_without_mapping(self) -> None:
        bare = Mappings(catalog=Catalog.build([], []))
        body = (ORC, rxa(), RXR, "OBX|1|NM|WASTE^Discarded^L||50|mg|||||F")

        assert Quantity(Decimal("50"), "mg") == admin(ras(*body), bare).wasted

    def test_waste_sums_and_structured_numeric(self, mappings: Mappings) -> None:
        body = (
            ORC,
            rxa(),
            RXR,
            "OBX|1|NM|WASTE||20|mg|||||F",
            "OBX|2|SN|WASTE||^5.5|mg|||||F",
        )

        assert Quantity(Decimal("25.5"), "mg") == admin(ras(*body), mappings).wasted

    def test_waste_unit_mismatch(self, mappings: Mappings) -> None:
        body = (ORC, rxa(), RXR, "OBX|1|NM|WASTE||20|mg", "OBX|2|NM|WASTE||2|mL")

        assert error_of(ras(*body), mappings)[0].endswith("segment OBX #2 field OBX-6")

    def test_obx_before_rxa_is_not_waste(self, mappings: Mappings) -> None:
        body = (ORC, "OBX|1|NM|WASTE||20|mg", rxa(), RXR)

        assert admin(ras(*body), mappings).wasted is None

    def test_obx_waste_belongs_to_preceding_rxa(self, mappings: Mappings) -> None:
        body = (ORC, rxa(), RXR, rxa(f2="2"), RXR, "OBX|1|NM|WASTE||20|mg")

        assert [None, Quantity(Decimal("20"), "mg")] == [
            a.wasted for a in admins(one(ras(*body), mappings))
        ]


class TestVisit:
    def test_ras_visit_context(self, mappings: Mappings) -> None:
        message = one(ras(), mappings)

        visits = [e for e in message.events if isinstance(e, Visit)]
        assert [
            Visit(
                source_id="hl7:visit:HAR0078",
                patient_id="NRH|E1004417",
                visit_id="HAR0078",
                patient_class=PatientClass.OUTPATIENT,
                status=VisitStatus.UNKNOWN,
                location="ONCINF",
                facility="NRH_CC",
            )
        ] == visits

    @pytest.mark.parametrize(
        ("pv1_2", "patient_class"),
        [
            ("I", PatientClass.INPATIENT),
            ("E", PatientClass.EMERGENCY),
            ("O", PatientClass.OUTPATIENT),
            ("R", PatientClass.OUTPATIENT),
            ("", PatientClass.UNKNOWN),
        ],
    )
    def test_patient_class(
        self, pv1_2: str, patient_class: PatientClass, mappings: Mappings
    ) -> None:
        pv1 = seg("PV1", {1: "1", 2: pv1_2, 19: "V1"})

        (visit,) = [e for e in one(ras(pv1=pv1), mappings).events if isinstance(e, Visit)]

        assert patient_class == visit.patient_class

    def test_location_pv1_then_rxa11(self, mappings: Mappings) -> None:
        with_pv1 = admin(ras(ORC, rxa(f11="CHAIR^^^CANCER_CTR")), mappings)
        without = admin(ras(ORC, rxa(f11="CHAIR^^^CANCER_CTR"), pv1=None), mappings)

        assert (with_pv1.location, without.location) == ("ONCINF", "CHAIR")

    def test_facility_from_pv1_39(self, mappings: Mappings) -> None:
        pv1 = seg("PV1", {1: "1", 2: "O", 3: "ONCINF", 19: "V1", 39: "NRH_CC"})

        (visit,) = [e for e in one(ras(pv1=pv1), mappings).events if isinstance(e, Visit)]

        assert (visit.location, visit.facility) == ("ONCINF", "NRH_CC")

    def test_adt_sequence(self, mappings: Mappings) -> None:
        a04, a08, a03 = (m.events[0] for m in read(fixture("adt_a04_a08_a03_visit.hl7"), mappings))

        assert isinstance(a04, Visit) and isinstance(a08, Visit) and isinstance(a03, Visit)
        assert (
            a04.status,
            a08.status,
            a03.status,
        ) == (VisitStatus.IN_PROGRESS, VisitStatus.IN_PROGRESS, VisitStatus.FINISHED)
        assert datetime(2025, 3, 21, 8, 5, tzinfo=NY) == a04.start
        assert datetime(2025, 3, 21, 15, 35, tzinfo=NY) == a03.end
        assert (
            Diagnosis("C79.51", 2, 1),
            Diagnosis("C50.911", 1, 2),
            Diagnosis("D63.0", None, 3),
        ) == a08.diagnoses  # the ICD-9 DG1 #4 is not billable and is left out
        assert (
            Coverage("hl7:visit:HAR00810022:IN1:1", "MEDICARE PART B", "00431", "1EG4TE5MK73"),
            Coverage(
                "hl7:visit:HAR00810022:IN1:2", "AETNA MEDICARE SUPPLEMENT", "60054", "W123456789"
            ),
        ) == a08.coverages
        assert PatientClass.OUTPATIENT == a04.patient_class == a03.patient_class

    @pytest.mark.parametrize(
        ("dg1", "expected"),
        [
            ("DG1|1||C509^Breast^I10", (Diagnosis("C50.9", None, 1),)),
            (
                seg("DG1", {1: "1", 3: "Z5111^Chemo^I10", 15: "0"}),
                (Diagnosis("Z51.11", None, 1),),
            ),
            ("DG1|3|I10|C61^Prostate", (Diagnosis("C61", None, 3),)),
            (
                seg("DG1", {1: "x", 3: "C61^Prostate^ICD10CM", 15: "1"}),
                (Diagnosis("C61", 1, 1),),
            ),
            (
                "DG1|1||422504002^Stroke^SCT^I639^Cerebral infarction^I10",
                (Diagnosis("I63.9", None, 1),),
            ),
            ("DG1|1|I9|1749^Breast NOS^I9", ()),
        ],
    )
    def test_dg1(self, dg1: str, expected: tuple[Diagnosis, ...], mappings: Mappings) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", "ADT^A08^ADT_A01")

        (visit,) = one("\r".join([msh, "EVN|A08", PID, PV1, dg1]), mappings).events

        assert isinstance(visit, Visit)
        assert expected == visit.diagnoses

    def test_adt_without_visit_number_skipped(self, mappings: Mappings) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", "ADT^A04")

        message = one("\r".join([msh, PID, "PV1|1|O|ONCINF"]), mappings)

        assert message.skip_reason == "no visit number (PV1-19)"

    def test_a08_with_discharge_time_finishes(self, mappings: Mappings) -> None:
        msh = MSH.replace("RAS^O17^RAS_O17", "ADT^A08")
        pv1 = seg("PV1", {1: "1", 2: "O", 19: "V1", 44: "20250321080500", 45: "20250321153500"})

        (visit,) = one("\r".join([msh, PID, pv1]), mappings).events

        assert isinstance(visit, Visit) and visit.status == VisitStatus.FINISHED


class TestTransport:
    def _text(self) -> str:
        return ras(ORC, rxa(), RXR)

    @pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
    def test_separators(self, sep: str, mappings: Mappings) -> None:
        expected = one(self._text(), mappings)

        assert expected == one(self._text().replace("\r", sep) + sep, mappings)

    def test_mllp_and_blank_lines(self, mappings: Mappings) -> None:
        text = self._text()
        data = f"\x0b{text}\r\x1c\r\n\n\x0b{text.replace('CTRL0001', 'CTRL0002')}\r\x1c\r"

        messages = read(data.encode(), mappings)

        assert [m.control_key for m in messages] == [
            "hl7:EPIC^NRH_ONC:CTRL0001",
            "hl7:EPIC^NRH_ONC:CTRL0002",
        ]
        assert all(len(admins(m)) == 1 for m in messages)

    def test_mllp_fixture(self, mappings: Mappings) -> None:
        messages = read(fixture("mllp_framed_crlf.hl7"), mappings)

        assert [
            (a.method, a.ingredients[0].codes[0].code) for m in messages for a in admins(m)
        ] == [(Method.PUSH, "00641-6282-25"), (Method.PUSH, "00641-6022-25")]

    @pytest.mark.parametrize("as_bytes", [True, False])
    def test_bom(self, as_bytes: bool, mappings: Mappings) -> None:
        text = "\ufeff" + self._text()

        message = one(text.encode("utf-8") if as_bytes else text, mappings)

        assert len(admins(message)) == 1

    def test_latin1_fallback(self, mappings: Mappings) -> None:
        """Bytes that are not UTF-8 are read as latin-1."""
        data = ras(ORC, rxa(f5="LOC1^SOLUCIÓN SALINA^L"), RXR).encode("latin-1")

        assert admin_bytes(data, mappings).ingredients[0].text == "SOLUCIÓN SALINA"

    def test_utf8(self, mappings: Mappings) -> None:
        msh = MSH + "|||AL|NE||UNICODE UTF-8"
        data = ras(ORC, rxa(f5="LOC1^SOLUCIÓN SALINA µg^L"), RXR, msh=msh).encode("utf-8")

        assert admin_bytes(data, mappings).ingredients[0].text == "SOLUCIÓN SALINA µg"

    def test_declared_8859_1_wins_over_utf8_lookalike(self, mappings: Mappings) -> None:
        """`Ã©` in latin-1 is also valid UTF-8 for `é`; MSH-18 says which it is."""
        msh = MSH + "|||AL|NE||8859/1"
        data = ras(ORC, rxa(f5="LOC1^CAFÃ©^L"), RXR, msh=msh).encode("latin-1")

        assert admin_bytes(data, mappings).ingredients[0].text == "CAFÃ©"

    def test_hex_escape_uses_message_charset(self, mappings: Mappings) -> None:
        msh = MSH + "|||AL|NE||8859/1"

        found = admin(ras(ORC, rxa(f5="LOC1^CAF\\XE9\\^L"), RXR, msh=msh), mappings)

        assert found.ingredients[0].text == "CAFé"

    def test_escapes_fixture(self, mappings: Mappings) -> None:
        message = one(fixture("ras_escapes_x0d.hl7"), mappings)

        (visit,) = [e for e in message.events if isinstance(e, Visit)]
        (found,) = admins(message)
        local, ndc = found.ingredients[0].codes
        assert local.display == "PACLITAXEL 175 MG/M2 | NS 500 ML\rPREMEDS GIVEN & CONSENT"
        assert ndc.display == "PACLITAXEL 6 MG/ML\r\n50 ML VIAL"
        assert found.access_site == "R ARM^UPPER"
        assert "ONC&HEM INF" == visit.location == found.location


def admin_bytes(data: bytes, mappings: Mappings) -> Administration:
    (found,) = admins(one(data, mappings))
    return found


class TestErrors:
    def test_bad_messages_fixture(self, mappings: Mappings) -> None:
        """The good message is read; the other two are errors with exact locations."""
        good, broken, headless = read(fixture("bad_messages.hl7"), mappings, "bad_messages.hl7")

        assert len(admins(good)) == 1
        assert broken.error is not None and headless.error is not None
        assert (
            broken.error.location
            == "bad_messages.hl7 message 2 (MSH-10 BAD0002) segment RXA #1 field RXA-3"
        )
        assert (broken.control_key, broken.kind) == ("hl7:EPIC^NRH_ONC:BAD0002", "RAS^O17")
        assert headless.error.location == "bad_messages.hl7 message 3 segment PID #1"
        assert headless.error.message == "message does not start with an MSH segment"
        assert headless.dedup_key.startswith("hl7:unread:")
        assert (broken.events, headless.events) == ((), ())

    def test_location_without_origin(self, mappings: Mappings) -> None:
        (message,) = read_hl7(ras(ORC, rxa(f3="x"), RXR), mappings, NY)

        assert message.error is not None
        assert message.error.location == "message 1 (MSH-10 CTRL0001) segment RXA #1 field RXA-3"

    def test_same_bad_message_same_key(self, mappings: Mappings) -> None:
        text = "PID|1||E1\rRXA|0|1"
        first, second = read(text + "\n\n" + text, mappings)

        assert first.dedup_key == second.dedup_key
        assert first.error is not None and second.error is not None
        assert (
            first.error.location,
            second.error.location,
        ) == ("t.hl7 message 1 segment PID #1", "t.hl7 message 2 segment PID #1")

    def test_error_does_not_stop_the_file(self, mappings: Mappings) -> None:
        bad = ras(ORC, rxa(f3="x"), RXR).replace("CTRL0001", "CTRL0003")
        last = ras().replace("CTRL0001", "CTRL0004")
        data = "\n".join([ras(), "", "GARBAGE LINE", "", bad, last])

        results = read(data, mappings)

        assert [m.error.location if m.error else None for m in results] == [
            None,
            "t.hl7 message 2 segment #1",
            "t.hl7 message 3 (MSH-10 CTRL0003) segment RXA #1 field RXA-3",
            None,
        ]
        assert [len(admins(m)) if m.error is None else 0 for m in results] == [1, 0, 0, 1]

    def test_stray_line_inside_a_message(self, mappings: Mappings) -> None:
        data = ras(ORC, rxa(), "free text note", RXR)

        assert (error_of(data, mappings)) == (
            "t.hl7 message 1 (MSH-10 CTRL0001) segment #6",
            "not an HL7 segment",
        )

    @pytest.mark.parametrize(
        "text",
        [
            ras(ORC, rxa(f3="SAMPLEPATIENT"), RXR),
            ras(ORC, rxa(f6="E1004417"), RXR),
            ras(ORC, rxa(f20="19610422"), RXR),
            ras(ORC, rxa(), RXR, "AVERY went home"),
            ras(pid="PID|1||^^^NRH^MR||SAMPLEPATIENT^AVERY||19610422"),
            "\r".join([PID, ORC, rxa()]),
        ],
    )
    def test_no_phi_in_errors(self, text: str, mappings: Mappings) -> None:
        message = one(text, mappings)

        assert message.error is not None
        rendered = f"{message.error.location} {message.error.message} {message.kind}"
        assert not [p for p in PHI if p in rendered]


class TestEveryFile:
    @pytest.mark.parametrize(
        "path",
        sorted(
            {p for d in SAMPLE_DIRS if d.is_dir() for p in d.glob("*.hl7")}
            | set(FIXTURES.glob("*.hl7"))
        ),
        ids=lambda p: f"{p.parent.name}/{p.name}",
    )
    def test_reads_without_raising(self, path: Path, mappings: Mappings) -> None:
        """Events, a skip or an error for each message, never an exception."""
        messages = read(path.read_bytes(), mappings, path.name)

        assert messages
        for message in messages:
            outcomes = [bool(message.events), bool(message.skip_reason), message.error is not None]
            assert sum(outcomes) <= 1
            assert message.dedup_key.startswith("hl7:")

    def test_samples_copied_unchanged(self) -> None:
        shared, copy = SAMPLE_DIRS[1], SAMPLE_DIRS[0]
        if not shared.is_dir():
            pytest.skip(
                f"{shared} (the team's reference) is not beside the checkout: "
                "no original to compare the copies with"
            )
        assert {p.name: p.read_bytes() for p in shared.glob("*.hl7")} == {
            p.name: p.read_bytes() for p in copy.glob("*.hl7")
        }


@pytest.fixture(scope="module", name="shipped")
def _shipped() -> Mappings:
    """The real `mappings/` tables, when the loader can read them."""
    from adapter.mappings_loader import MappingError, default_mappings_dir, load_mappings

    try:
        return load_mappings(default_mappings_dir())
    except (MappingError, OSError) as exc:
        pytest.skip(f"mappings/ not loadable: {exc}")


class TestWithShippedMappings:
    """The fixtures against the shipped tables: their NDCs, routes and methods are real."""

    @pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.hl7")), ids=lambda p: p.name)
    def test_every_fixture_drug_is_in_the_catalog(self, path: Path, shipped: Mappings) -> None:
        found = [a for m in read(path.read_bytes(), shipped) if m.error is None for a in admins(m)]

        unmatched = [
            i.text for a in found for i in a.ingredients if shipped.catalog.match(i.codes) is None
        ]
        assert unmatched == []

    def test_epic_fixture_routes_and_methods(self, shipped: Mappings) -> None:
        found = admins(one(fixture("ras_o17_epic_repeated_rxa.hl7"), shipped))

        assert [(a.route, a.method) for a in found] == [
            (Route.IV, Method.INFUSION),
            (Route.IV, Method.INFUSION),
            (Route.IV, Method.PUSH),
            (Route.IV, Method.PUSH),
        ]
        assert [shipped.catalog.match(a.ingredients[0].codes) is not None for a in found] == [
            True
        ] * 4


SEGMENT_NAMES = (
    "MSH",
    "PID",
    "PV1",
    "ORC",
    "RXA",
    "RXR",
    "RXC",
    "OBX",
    "TQ1",
    "DG1",
    "IN1",
    "ZZZ",
    "XX",
)
FIELD_TEXT = st.text(alphabet=st.sampled_from("0123456789ACDMPUX^~\\&.+-/ "), max_size=20)


@st.composite
def segment_soup(draw: st.DrawFn) -> str:
    """Messages made of plausible segments with random fields, sometimes headed by a real MSH."""
    lines = []
    if draw(st.booleans()):
        kind = draw(
            st.sampled_from(
                ["RAS^O17", "RAS^O02", "ADT^A08", "ADT^A03", "RDE^O11", "RDS^O13", "VXU^V04"]
            )
        )
        lines.append(MSH.replace("RAS^O17^RAS_O17", kind))
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(SEGMENT_NAMES))
        fields = draw(st.lists(FIELD_TEXT, max_size=26))
        lines.append("|".join([name, *fields]))
    return draw(st.sampled_from(["\r", "\n", "\r\n"])).join(lines)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes, mappings: Mappings) -> None:
    for message in read(data, mappings):
        assert isinstance(message, InboundMessage)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=segment_soup())
def test_segment_soup_never_raises(text: str, mappings: Mappings) -> None:
    for message in read(text, mappings):
        assert (
            sum([bool(message.events), bool(message.skip_reason), message.error is not None]) <= 1
        )


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_fixtures_never_raise(data: st.DataObject, mappings: Mappings) -> None:
    """Real messages with a few characters changed: the closest thing to a broken interface."""
    name = data.draw(st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.hl7"))))
    raw = bytearray(fixture(name))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.sampled_from(b"|^~\\&\r\nX09 \x0b\x1c\xff"))
    for message in read(bytes(raw), mappings):
        assert isinstance(message, InboundMessage)
