"""The baseline: a bare asyncio MLLP server that answers every frame with a canned AA.

Same I/O stack as the adapter's listener (asyncio streams, `MllpDecoder`,
`encode_frame`, one message at a time per connection, write + drain), but no
parsing beyond MSH-10 (echoed in MSA-2 so the sender can check it), no store,
no logging: what Python can do on this machine for this traffic. The adapter's
throughput is reported as a ratio of this one, measured in the same run.

Prints `port=N` on stdout once listening; stops on SIGTERM/SIGINT or after
`--max-seconds`.
"""

from __future__ import annotations

import asyncio

from harness import server_main  # this checkout first on sys.path

from adapter.hl7.mllp_framing import Frame, MllpDecoder, encode_frame

ACK_HEAD = b"MSH|^~\\&|BENCH|BENCH|EHR|EHR|20260101000000||ACK|BENCHACK|P|2.5.1\rMSA|AA|"


def control_id(payload: bytes) -> bytes:
    fields = payload.split(b"\r", 1)[0].split(b"|")
    return fields[9] if len(fields) > 9 else b""


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    decoder = MllpDecoder()
    try:
        while data := await reader.read(64 * 1024):
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    writer.write(encode_frame(ACK_HEAD + control_id(item.payload) + b"\r"))
                    await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def start(host: str, port: int) -> asyncio.Server:
    return await asyncio.start_server(serve, host, port)


def main() -> None:
    server_main.main(start, __doc__ or "")


if __name__ == "__main__":
    main()
