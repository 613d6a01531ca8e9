"""A WebTransport client on aioquic that ends its session in ways our client does not, for
transport-wt's server close test (server_close_aioquic.rs).

Usage: aioquic_wt_client.py HOST PORT MODE

The server certificate is not checked (the test server's is self-signed, on loopback).

Opens a session (extended CONNECT to /close) and, once it is answered 200, ends it by MODE:

* fin: a FIN on the CONNECT stream without a capsule;
* close: CLOSE_WEBTRANSPORT_SESSION with code 4004 and reason "py bye", then a FIN;
* bad-utf8: CLOSE_WEBTRANSPORT_SESSION with code 5 and a reason that is not UTF-8, then a FIN;
* wait: nothing; prints what the server sends on the CONNECT stream.

Prints "READY" once the session is up, "CAPSULE <type> <hex value>" for each capsule the server
sends, "FIN" when the server ends the CONNECT stream, and "CONNECTION_CLOSED <code> <reason>"
when the connection closes; exits then, or after 10 s.
"""

import asyncio
import ssl
import sys

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent

CLOSE_WEBTRANSPORT_SESSION = 0x2843


def say(line: str) -> None:
    print(line, flush=True)


def capsule(kind: int, value: bytes) -> bytes:
    buf = Buffer(capacity=16 + len(value))
    buf.push_uint_var(kind)
    buf.push_uint_var(len(value))
    buf.push_bytes(value)
    return buf.data


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic, enable_webtransport=True)
        self.ready = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.buffer = b""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            say(f"CONNECTION_CLOSED {event.error_code} {event.reason_phrase}")
            if not self.done.done():
                self.done.set_result(None)
        for h3_event in self.http.handle_event(event):
            self.h3_event(h3_event)

    def h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            status = dict(event.headers).get(b":status")
            if not self.ready.done():
                self.ready.set_result(status)
        elif isinstance(event, DataReceived):
            self.buffer += event.data
            while True:
                buf = Buffer(data=self.buffer)
                try:
                    kind = buf.pull_uint_var()
                    length = buf.pull_uint_var()
                    value = buf.pull_bytes(length)
                except BufferReadError:
                    break
                self.buffer = self.buffer[buf.tell() :]
                say(f"CAPSULE {kind:#x} {value.hex()}")
            if event.stream_ended:
                say("FIN")


async def main() -> None:
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    config.verify_mode = ssl.CERT_NONE
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        stream = client._quic.get_next_available_stream_id()
        client.http.send_headers(
            stream,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", f"localhost:{port}".encode()),
                (b":path", b"/close"),
                (b"origin", b"https://py.example"),
            ],
        )
        client.transmit()
        status = await asyncio.wait_for(client.ready, 10)
        if status != b"200":
            say(f"REFUSED {status!r}")
            return
        say("READY")
        if mode == "fin":
            client.http.send_data(stream, b"", end_stream=True)
        elif mode == "close":
            value = (4004).to_bytes(4, "big") + b"py bye"
            client.http.send_data(stream, capsule(CLOSE_WEBTRANSPORT_SESSION, value), end_stream=True)
        elif mode == "bad-utf8":
            value = (5).to_bytes(4, "big") + b"bad \xff\xfe"
            client.http.send_data(stream, capsule(CLOSE_WEBTRANSPORT_SESSION, value), end_stream=True)
        client.transmit()
        try:
            await asyncio.wait_for(client.done, 10)
        except asyncio.TimeoutError:
            say("TIMEOUT")


if __name__ == "__main__":
    asyncio.run(main())
