"""The workbench's third tab: what a billing system refused for good (AR), in its own words.

The whole service runs against python-hl7's MLLP server answering AR (tests/test_dft_sink.py);
the page is read over HTTP from the real aiohttp app, as a browser would get it.
"""

from __future__ import annotations

from pathlib import Path

from tests.service_fixtures import Clock, running_client, state_of
from tests.test_dft_delivery import DEST
from tests.test_dft_refusal_and_order import code_and_drain, settings_for
from tests.test_dft_sink import Receiver, receiving
from tests.test_service_e2e import hl7_messages


async def test_a_dft_refused_with_ar_is_on_the_refused_tab_with_the_receivers_text(
    tmp_path: Path,
) -> None:
    receiver = Receiver(lambda _m, _n: "AR", err_text="Account 0111 not open")
    async for port in receiving(receiver):
        clock = Clock()
        async with running_client(settings_for(tmp_path, port), clock) as client:
            await code_and_drain(state_of(client), clock, hl7_messages("S11.hl7"))
            listed = await (await client.get("/admin/outbox?state=rejected")).json()
            response = await client.get("/ui/refused")
            html = await response.text()
    [item] = listed["items"]
    claim = item["resource"].removeprefix("Claim/")
    assert response.status == 200
    assert "Account 0111 not open" in html
    assert f'href="/ui/encounters/{claim}"' in html
    assert DEST.partition(":")[2] in html and "billing system (DFT^P03)" in html
    assert "1 refused, page 1 of 1" in html


async def test_with_nothing_refused_the_tab_says_so(tmp_path: Path) -> None:
    receiver = Receiver(lambda _m, _n: "AA")
    async for port in receiving(receiver):
        clock = Clock()
        async with running_client(settings_for(tmp_path, port), clock) as client:
            await code_and_drain(state_of(client), clock, hl7_messages("S11.hl7"))
            html = await (await client.get("/ui/refused")).text()
    assert "Nothing refused" in html
    assert 'aria-current="page">Refused by a receiver' in html
