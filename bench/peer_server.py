"""The peer: python-hl7's asyncio MLLP server, parsing each message and answering its ACK.

What a competent Python receiver with no durability does: `hl7.mllp.start_hl7_server`,
`readmessage()` (which decodes the block and runs `hl7.parse` on it), then
`create_ack()` written back, one message at a time per connection. No store, no
logging. `ingest_peer.py` reports the adapter's rate as a multiple of this one, measured
in the same run with the same client and messages (issue 14: the adapter, which commits
each message durably before its ACK, must still be the faster hop).

Prints `port=N` on stdout once listening; stops on SIGTERM/SIGINT or after
`--max-seconds`.
"""

from __future__ import annotations

import asyncio

import hl7
import hl7.mllp
from harness import server_main


async def serve(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def start(host: str, port: int) -> asyncio.Server:
    return await hl7.mllp.start_hl7_server(serve, host, port)


def main() -> None:
    server_main.main(start, __doc__ or "")


if __name__ == "__main__":
    main()
