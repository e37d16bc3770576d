"""HL7 v2 (ER7) messages to events, as `docs/feed-conventions.md` describes.

One `InboundMessage` per message in the input, whatever happens: a message
that cannot be read becomes an `InputError` naming the message, its control
id, the segment and the field, never the value (it may be PHI), and the other
messages of the file are still read. The reader does not deduplicate; it
gives re-sends the same `dedup_key` so the feed layer can: sender, MSH-10 and
a digest of the content (`content_digest`), so that a sender reusing a control
id for another message is not taken for a re-send.

Where is what: `message.py` (entry, header checks, dispatch, failures), `charsets.py`
(bytes and MSH-18), `header.py` (MSH, dedup keys), `admin.py` (RAS/RXA), `orders.py`
(ORC groups, RDE/RDS), `visit.py` (PID, PV1, ADT, IN1), `diagnoses.py` (DG1, indications),
`values.py` (timestamps, numbers, units), `faults.py` (locating a fault); `hot.py` is ingest's
hot-path check of a frame (`check_hl7_frame`: keys and links, no events).
"""

from adapter.readers.hl7v2.admin import DISCARDED_AMOUNT
from adapter.readers.hl7v2.message import UNREAD_KEY_PREFIX, content_digest, read_hl7

__all__ = ["DISCARDED_AMOUNT", "UNREAD_KEY_PREFIX", "content_digest", "read_hl7"]
