"""A WebTransport echo server on aioquic, for transport-wt's interop test (interop_aioquic.rs).

Usage: aioquic_wt_server.py CERT_PEM KEY_PEM [HOST]

Binds HOST (default 127.0.0.1) on a port the OS picks, prints "PORT <n>" on stdout once ready,
and serves until stdin closes (so it dies with the test that started it) or 60 s pass. For each
WebTransport session (extended CONNECT with :protocol webtransport, answered 200):

* bidirectional streams: the bytes back on the same stream, FIN when the client sends FIN;
* unidirectional streams: the bytes back on a new unidirectional stream, FIN likewise;
* datagrams: each back as a datagram.

Some paths change that:

* /forbidden: the CONNECT is answered 403;
* /server-streams: the server opens a bidirectional stream with "server bidi" and a
  unidirectional one with "server uni" (both finished) as soon as the session is up;
* /close-on-stream: the first stream data of the client makes the server close the session with
  a CLOSE_WEBTRANSPORT_SESSION capsule (code 42, reason "bye") and a FIN on the CONNECT stream.

A session closed by the client is reported on stdout as "CLOSED <code> <reason>" when the
client sent a CLOSE_WEBTRANSPORT_SESSION capsule, "ENDED [other capsule types]" when the
CONNECT stream ended without one; a QUIC CONNECTION_CLOSE as "CONNECTION_CLOSED <code> <reason>".

Based on the logic of aioquic's examples/http3_server.py, reduced to WebTransport.
"""

import asyncio
import os
import sys
import threading

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import stream_is_unidirectional
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent

CLOSE_WEBTRANSPORT_SESSION = 0x2843
LIFETIME = 60.0


def say(line: str) -> None:
    print(line, flush=True)


class WebTransportEcho(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None
        self._sessions: set[int] = set()
        # Incoming unidirectional stream -> the stream its echo goes out on.
        self._uni_echo: dict[int, int] = {}
        # Bytes of each CONNECT stream, for the close capsule.
        self._capsules: dict[int, bytes] = {}
        # The path of each session.
        self._paths: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            reason = event.reason_phrase or ""
            say(f"CONNECTION_CLOSED {event.error_code} {reason}")
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        assert self._http is not None
        if isinstance(event, HeadersReceived):
            headers = dict(event.headers)
            path = headers.get(b":path", b"/")
            if (
                headers.get(b":method") == b"CONNECT"
                and headers.get(b":protocol") == b"webtransport"
                and path == b"/forbidden"
            ):
                self._http.send_headers(
                    event.stream_id, [(b":status", b"403")], end_stream=True
                )
            elif (
                headers.get(b":method") == b"CONNECT"
                and headers.get(b":protocol") == b"webtransport"
            ):
                self._sessions.add(event.stream_id)
                self._capsules[event.stream_id] = b""
                self._paths[event.stream_id] = path
                self._http.send_headers(
                    event.stream_id,
                    [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
                )
                if path == b"/server-streams":
                    self._server_streams(event.stream_id)
            else:
                self._http.send_headers(
                    event.stream_id, [(b":status", b"404")], end_stream=True
                )
        elif isinstance(event, DataReceived) and event.stream_id in self._sessions:
            self._capsules[event.stream_id] += event.data
            if event.stream_ended:
                self._session_ended(event.stream_id)
        elif isinstance(event, WebTransportStreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, DatagramReceived):
            if event.stream_id in self._sessions:
                self._http.send_datagram(event.stream_id, event.data)
        self.transmit()

    def _server_streams(self, session_id: int) -> None:
        assert self._http is not None
        # Only finished streams: aioquic does not route what the client would send back on a
        # bidirectional stream the server opened (it parses it as HTTP/3 frames).
        bidi = self._http.create_webtransport_stream(session_id)
        self._quic.send_stream_data(bidi, b"server bidi", end_stream=True)
        uni = self._http.create_webtransport_stream(session_id, is_unidirectional=True)
        self._quic.send_stream_data(uni, b"server uni", end_stream=True)

    def _close_session(self, session_id: int, code: int, reason: bytes) -> None:
        assert self._http is not None
        payload = code.to_bytes(4, "big") + reason
        capsule = Buffer(capacity=16 + len(payload))
        capsule.push_uint_var(CLOSE_WEBTRANSPORT_SESSION)
        capsule.push_uint_var(len(payload))
        capsule.push_bytes(payload)
        self._sessions.discard(session_id)
        self._http.send_data(session_id, capsule.data, end_stream=True)

    def _stream_data(self, event: WebTransportStreamDataReceived) -> None:
        assert self._http is not None
        if event.session_id not in self._sessions:
            return
        if self._paths.get(event.session_id) == b"/close-on-stream":
            self._close_session(event.session_id, 42, b"bye")
            return
        if stream_is_unidirectional(event.stream_id):
            out = self._uni_echo.get(event.stream_id)
            if out is None:
                out = self._http.create_webtransport_stream(
                    event.session_id, is_unidirectional=True
                )
                self._uni_echo[event.stream_id] = out
            self._quic.send_stream_data(out, event.data, end_stream=event.stream_ended)
            if event.stream_ended:
                del self._uni_echo[event.stream_id]
        else:
            self._quic.send_stream_data(
                event.stream_id, event.data, end_stream=event.stream_ended
            )

    def _session_ended(self, session_id: int) -> None:
        data = self._capsules.pop(session_id, b"")
        self._sessions.discard(session_id)
        buf = Buffer(data=data)
        seen = []
        closed = None
        while closed is None and not buf.eof():
            try:
                capsule_type = buf.pull_uint_var()
                payload = buf.pull_bytes(buf.pull_uint_var())
            except BufferReadError:
                seen.append("truncated")
                break
            if capsule_type == CLOSE_WEBTRANSPORT_SESSION and len(payload) >= 4:
                code = int.from_bytes(payload[:4], "big")
                closed = f"CLOSED {code} {payload[4:].decode('utf-8', 'replace')}"
            else:
                seen.append(hex(capsule_type))
        say(closed or " ".join(["ENDED", *seen]))
        # End our side of the CONNECT stream too, as the draft asks.
        self._quic.send_stream_data(session_id, b"", end_stream=True)


async def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(f"usage: {sys.argv[0]} CERT_PEM KEY_PEM [HOST]")
    host = sys.argv[3] if len(sys.argv) == 4 else "127.0.0.1"
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN,
        is_client=False,
        max_datagram_frame_size=65536,
    )
    configuration.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await serve(
        host, 0, configuration=configuration, create_protocol=WebTransportEcho
    )
    port = server._transport.get_extra_info("sockname")[1]
    say(f"PORT {port}")

    # Serve until stdin closes (the test ended, or died) or the lifetime runs out.
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        await asyncio.wait_for(stdin_closed.wait(), LIFETIME)
    except asyncio.TimeoutError:
        say("LIFETIME")
    server.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    # The stdin thread may still block; leave without waiting for it.
    os._exit(0)
