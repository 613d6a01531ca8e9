"""A third-party SSE peer for the client's interop test (tests/client_interop_python.rs).

aiohttp + aiohttp-sse serve /events on 127.0.0.1 with an OS-chosen port, which is printed on
the first line of stdout. Each connection sends a few events with ids and types, reports the
Last-Event-ID header it received, asks for a 100 ms reconnection delay and ends the response,
so the client reconnects. The server exits when its stdin closes (or when it is killed).
"""

import asyncio
import sys

from aiohttp import web
from aiohttp_sse import sse_response


CONNECTIONS = [0]


async def events(request: web.Request) -> web.StreamResponse:
    CONNECTIONS[0] += 1
    count = CONNECTIONS[0]
    last = request.headers.get("Last-Event-ID", "")
    async with sse_response(request, sep="\r\n") as resp:
        await resp.send(f"hello {count}", id=f"{count}.1", retry=100)
        await resp.send("line 1\nline 2", event="multi", id=f"{count}.2")
        await resp.send("ünïcödé ✓", event="tick", id=f"{count}.3")
        await resp.send(f"last-event-id={last}", event="echo", id=f"{count}.4")
        await resp.send(request.headers.get("Accept", ""), event="accept")
    return resp


async def main() -> None:
    app = web.Application()
    app.router.add_get("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
