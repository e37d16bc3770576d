"""Queue a DFT^P03 for each coded encounter version, for one billing receiver.

After the coder saved a new Claim version, the DFT is built (adapter/hl7/dft.py, pure)
against the posting this receiver will hold once every DFT already queued for the
encounter is through, and queued with its new posting in one store transaction. The
outbox worker delivers it through the MLLP sink (adapter/outbox/dft_mllp.py); the version
number is the Claim's, so MSH-10 is the same on every resend of it.

The posting kept is the one the receiver holds once every queued DFT is through. When
the receiver refuses one (AR), `refused` takes that back in one store transaction: the
posting returns to what the receiver accepted (the last delivered DFT's), and the later
DFTs of the encounter still queued, built on the refused one, are refused unsent with it;
the catch-up then queues the current Claim version against what the receiver holds, so
no credit is ever sent for a charge the receiver never accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from adapter.core.assembly import Encounter
from adapter.core.charges import CodedEncounter
from adapter.hl7.dft import Dft, DftVisit, Posting, UnmappedCharge, build_dft
from adapter.hl7.dft_profile import DftProfile
from adapter.outbox.dft_mllp import ordering_key_of
from adapter.outbox.dft_posting import posting_json, posting_of
from adapter.store.base import Delivery, ResourceRow, Store

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
            ordering_key=ordering_key_of(claim),
        )
        return built

    async def refused(self, delivery: Delivery, reason: str, now: datetime) -> None:
        """The receiver refused this DFT for good: keep it as rejected with `reason` and
        take back the posting it would have made (see the module's docstring)."""
        row = await self.store.read_resource(
            delivery.resource_type, delivery.resource_id, delivery.version
        )
        key = row.encounter_key if row is not None else ""
        nothing = posting_json(Posting(key, 0, ()))
        later = await self.store.reject_dft(delivery.id, reason, now, key, nothing)
        log.warning(
            "dft.refused",  # the reason may quote the message: stored, not logged
            destination=self.destination,
            claim=delivery.resource_id,
            version=delivery.version,
            later_refused_unsent=later,
        )
