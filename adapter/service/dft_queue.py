"""Queue a DFT^P03 for each coded encounter version, for one billing receiver.

After the coder saved a new Claim version, the DFT is built (adapter/hl7/dft.py, pure)
against the posting this receiver will hold once every DFT already queued for the
encounter is through, and queued with its new posting in one store transaction. The
outbox worker delivers it through the MLLP sink (adapter/outbox/dft_mllp.py); the version
number is the Claim's, so MSH-10 is the same on every resend of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from adapter.core.assembly import Encounter
from adapter.core.charges import CodedEncounter
from adapter.hl7.dft import Dft, DftVisit, Posting, UnmappedCharge, build_dft
from adapter.hl7.dft_profile import DftProfile
from adapter.outbox.dft_posting import posting_json, posting_of
from adapter.store.base import ResourceRow, Store

log = structlog.get_logger()


class DftQueue:
    def __init__(
        self,
        store: Store,
        profile: DftProfile,
        destination: str,
        labels: Mapping[str, str],
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.profile = profile
        self.destination = destination
        self.labels = labels
        self.clock = clock

    async def enqueue(
        self, coded: CodedEncounter, encounter: Encounter, claim: ResourceRow, released: bool
    ) -> Dft | None:
        """Queue the DFT of this Claim version; None when the version sends nothing."""
        stored = await self.store.dft_posting(self.destination, coded.encounter_key)
        try:
            built = build_dft(
                coded,
                DftVisit.of(encounter),
                self.profile,
                version=claim.version,
                posted_at=self.clock(),
                previous=None if stored is None else posting_of(stored),
                released=released,
                labels=self.labels,
            )
        except UnmappedCharge as exc:  # never sent without its modifiers
            log.error(
                "dft.unmapped_charge",
                destination=self.destination,
                claim=claim.resource_id,
                code=exc.code,
                modifiers="+".join(exc.modifiers),
            )
            return None
        if not isinstance(built, Dft):
            log.info("dft.none", destination=self.destination, claim=claim.resource_id,
                     reason=built.reason.value)  # fmt: skip
            standing = stored or posting_json(Posting(coded.encounter_key, 0, ()))
            await self.store.set_dft_posting(
                self.destination, coded.encounter_key, claim.version, standing, self.clock()
            )
            return None
        await self.store.queue_message(
            self.destination,
            ("Claim", claim.resource_id, claim.version),
            built.text,
            coded.encounter_key,
            posting_json(built.posting),
            self.clock(),
        )
        return built
