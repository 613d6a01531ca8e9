"""WebSocket echo server on Python `websockets` (an independent implementation), for tcat's
interop tests.

Listens on 127.0.0.1 with an OS-chosen port, prints that port on stdout (one line, flushed),
echoes every message back with its type (text stays text, binary stays binary), and exits when
stdin reaches EOF or after TIMEOUT seconds (first argument, default 60).
"""

import asyncio
import sys
import threading

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(websocket):
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        pass


async def main():
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def watch_stdin():
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    # A daemon thread: a blocked read must not keep the interpreter alive at exit.
    threading.Thread(target=watch_stdin, daemon=True).start()
    async with serve(echo, "127.0.0.1", 0, max_size=16 * 2**20) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        try:
            await asyncio.wait_for(stdin_closed.wait(), timeout)
        except asyncio.TimeoutError:
            print(f"echo_server.py: exiting after {timeout} s", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
