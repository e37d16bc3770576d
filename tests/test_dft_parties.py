"""Who is behind a charge, passed on as the feed named them: PV1-7 attending, FT1-20
performed by (RXA-10), FT1-21 ordered by (ORC-12), FT1-23 filler order number (ORC-3).

The expected values are read from the fixture itself with python-hl7 (not through our
reader); the DFT is parsed by hl7apy in strict validation and read back by python-hl7.
"""

from __future__ import annotations

import hl7
import pytest

from adapter.core.assembly import assemble_noted
from adapter.core.coder import CodingContext, code_encounter
from adapter.core.feed import collect
from adapter.core.options import CodingOptions
from adapter.hl7.dft import Dft, DftVisit, build_dft
from adapter.icd10 import is_billable
from adapter.outbox.dft_posting import posting_json, posting_of
from adapter.usecases.batch import Pipeline
from tests.dft_support import NY, POSTED_AT, field, ft1s, mappings, profile
from tests.scenarios.expectations import FIXTURE_DIR
from tests.test_dft import strict
from tests.test_service_e2e import hl7_messages


def dft_of(text: str, profile_name: str = "generic-2.5.1") -> Dft:
    pipeline = Pipeline(mappings(), CodingOptions(), NY)
    pipeline.feed_file(text.encode(), "feed.hl7")
    feed = collect(pipeline.messages)
    assert not feed.errors, feed.errors
    [encounter], _ = assemble_noted(feed.events, NY)
    coded = code_encounter(encounter, CodingContext(mappings(), CodingOptions(), NY, is_billable))
    built = build_dft(coded, DftVisit.of(encounter), profile(profile_name), version=1,
                      posted_at=POSTED_AT, released=True, labels=mappings().code_labels)  # fmt: skip
    assert isinstance(built, Dft)
    return built


def feed_values(name: str) -> tuple[str, set[str], set[str], set[str]]:
    """(PV1-7, RXA-10s, ORC-12s, ORC-3 ids) as python-hl7 reads the feed."""
    attending, performers, orderers, fillers = "", set(), set(), set()
    for raw in hl7_messages(name):
        for segment in hl7.parse(raw.decode()):
            kind = str(segment[0])
            if kind == "PV1" and len(segment) > 7 and str(segment[7]):
                attending = str(segment[7])
            if kind == "RXA" and len(segment) > 10:
                performers.add(str(segment[10]))
            if kind == "ORC":
                orderers.add(str(segment[12]))
                fillers.add(str(segment[3]).split("^")[0])
    return attending, performers, orderers, fillers


S17 = (FIXTURE_DIR / "S17.hl7").read_text(encoding="utf-8")


def test_the_attending_performer_orderer_and_filler_order_are_sent_as_the_feed_named_them() -> None:
    built = dft_of(S17)
    strict(built.text, "2.5.1")
    message = hl7.parse(built.text)
    attending, performers, orderers, fillers = feed_values("S17.hl7")
    assert str(message.segment("PV1")[7]) == attending != ""
    for segment in ft1s(message):
        assert str(segment[20]) in performers
        assert str(segment[21]) in orderers
        assert field(segment, 23) in fillers


def test_an_npi_stays_marked_as_an_npi_in_ft1_21() -> None:
    orc12 = "1689904321^Vandermeer^Paul^^^^MD"
    assert orc12 in S17
    npi = S17.replace(orc12, "1689904321^Vandermeer^Paul^^^^MD^^CMS^^^^NPI")
    built = dft_of(npi)
    strict(built.text, "2.5.1")
    [first, *_] = ft1s(hl7.parse(built.text))
    assert field(first, 21, 1) == "1689904321"
    assert field(first, 21, 9) == "CMS" and field(first, 21, 13) == "NPI"
    assert built.debits[0].ordered_by is not None and built.debits[0].ordered_by.is_npi


@pytest.mark.parametrize("profile_name", ["generic-2.5.1", "cpt-in-ft1-7-2.3"])
def test_a_posting_keeps_the_parties_so_an_unchanged_line_is_not_credited(
    profile_name: str,
) -> None:
    s16 = (FIXTURE_DIR / "S16.hl7").read_text(encoding="utf-8")
    built = dft_of(s16, profile_name)
    assert posting_of(posting_json(built.posting)) == built.posting
    sent = ft1s(hl7.parse(built.text))
    assert all(field(s, 20) for s in sent)  # both profiles fill FT1-20
    if profile_name == "cpt-in-ft1-7-2.3":
        assert not any(field(s, 23) for s in sent)  # not in its fill list
