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

import argparse
import asyncio
import contextlib
import signal

import hl7
import hl7.mllp


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


async def main_async(host: str, port: int, max_seconds: float) -> None:
    server = await hl7.mllp.start_hl7_server(serve, host, port)
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    ns = parser.parse_args()
    asyncio.run(main_async(ns.host, ns.port, ns.max_seconds))


if __name__ == "__main__":
    main()
