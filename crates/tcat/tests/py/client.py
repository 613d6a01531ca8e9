"""WebSocket client on Python `websockets` (an independent implementation), for tcat's interop
tests: connects to URL (first argument), checks that a text, a binary and a 1 MiB binary
message come back unchanged and with their type, closes with 1000, and prints what happened.

Prints `ok close_sent=1000 close_rcvd=1000` on success and exits 0; any failure exits non-zero
with the reason on stderr. Gives up after TIMEOUT seconds (second argument, default 20).
"""

import asyncio
import sys

from websockets.asyncio.client import connect


async def exchange(websocket, message):
    await websocket.send(message)
    reply = await websocket.recv()
    if type(reply) is not type(message) or reply != message:
        raise AssertionError(
            f"sent {type(message).__name__} of {len(message)}, "
            f"got {type(reply).__name__} of {len(reply)}: {reply[:40]!r}"
        )


async def run(url):
    async with connect(url, max_size=16 * 2**20) as websocket:
        await exchange(websocket, "hello from python ü 😀")
        await exchange(websocket, b"\x00\xff\xfebinary")
        await exchange(websocket, bytes(range(256)) * 4096)
        await websocket.close(code=1000, reason="done")
        sent = websocket.protocol.close_sent
        rcvd = websocket.protocol.close_rcvd
        return (
            sent.code if sent else None,
            rcvd.code if rcvd else None,
        )


def main():
    url = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    sent, rcvd = asyncio.run(asyncio.wait_for(run(url), timeout))
    print(f"ok close_sent={sent} close_rcvd={rcvd}", flush=True)
    if (sent, rcvd) != (1000, 1000):
        sys.exit(f"unclean close: sent {sent}, received {rcvd}")


if __name__ == "__main__":
    main()
