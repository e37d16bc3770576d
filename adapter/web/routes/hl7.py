"""`POST /hl7`: one HL7 v2 message over HTTP, taken in exactly as an MLLP frame is.

The body goes to `AppState.handle_hl7`, the same path the MLLP listener feeds (kept, then
acknowledged); only the transport differs: the ACK is the response body, and the HTTP status
says only that an ACK came.
"""

from __future__ import annotations

from aiohttp import web

from adapter.web.bodies import read_body, refusals_kept, require_content_type
from adapter.web.state import STATE

HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"
HL7_TYPES = frozenset(
    {HL7_CONTENT_TYPE, "application/hl7-v2+er7", "application/hl7-v2", "text/plain"}
)


async def post_hl7(request: web.Request) -> web.Response:
    """One HL7 v2 message over HTTP: kept like an MLLP frame, answered with its ACK (200).

    The ACK code (AA/AE/AR) is the outcome; the HTTP status says only that an ACK came.
    One request gets one answer: in enhanced mode the application acknowledgement when
    MSH-16 asks for one, else the accept acknowledgement; 204 when MSH-15/16 ask for none.
    A body refused for its Content-Type (415) is kept as a dead letter all the same.
    """
    raw = await read_body(request)
    async with refusals_kept(request.app[STATE], raw, "hl7"):
        require_content_type(request, HL7_TYPES, "POST /hl7")
    result = await request.app[STATE].handle_hl7(raw, f"http {request.remote or ''}".strip())
    acks = [ack for ack in (result.ack, *result.more_acks) if ack]
    if not acks:  # enhanced mode, and the sender asked for no acknowledgement
        return web.Response(status=204)
    return web.Response(body=acks[-1], content_type=HL7_CONTENT_TYPE)
