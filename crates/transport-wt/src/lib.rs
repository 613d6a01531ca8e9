//! # transport-wt
//!
//! WebTransport over HTTP/3 for the `transport` workspace (work in progress, issue 4):
//!
//! * [`proto`]: the HTTP/3 + WebTransport framing the client needs, sans-IO (varints, SETTINGS,
//!   HEADERS with QPACK static-table + literal coding, capsules, stream headers, datagram
//!   prefixes).
//! * [`connect`] → [`WtSession`]: the client, written on quinn directly (h3's client cannot
//!   announce WebTransport). Raw bidirectional and unidirectional streams (quinn's
//!   [`SendStream`](quinn::SendStream) / [`RecvStream`](quinn::RecvStream)), datagrams,
//!   `close(code, reason)` with CLOSE_WEBTRANSPORT_SESSION, [`closed`](WtSession::closed) with
//!   the peer's code ([`SessionClose`]). [`WtClientConfig`] trusts the CA roots of
//!   `transport.tls` or, like a browser's `serverCertificateHashes`, pinned SHA-256 hashes of
//!   short-lived ECDSA P-256 certificates.
//! * [`WtServer`]: the server, h3 on quinn with our own WebTransport session layer on h3's
//!   public API. [`WtServer::accept`] hands out each CONNECT request ([`WtRequest`]: path,
//!   query, headers, origin, peer) that passed the [`AcceptPolicy`](transport_core::AcceptPolicy),
//!   for the application to accept or reject with a status; [`WtServerSession`] gives raw
//!   streams and datagrams; [`echo`] echoes them. One session per QUIC connection;
//!   `max_sessions`, `handshake_timeout` and graceful [`shutdown`](WtServer::shutdown) bound
//!   what a client can hold.
//! * Session close, both sides (`docs/protocols/wt.md` §4.1): CLOSE_WEBTRANSPORT_SESSION
//!   (code, reason up to 1024 bytes) and a FIN on the CONNECT stream. A driver task per
//!   server session owns the CONNECT stream: the client's capsule or FIN ends the session with
//!   the client's code and reason ([`WtServerSession::session_closed`] →
//!   [`SessionClose::Peer`]); [`WtServerSession::close`], dropping the session and
//!   [`WtServer::shutdown`] send the capsule; [`WtServerSession::drain`] sends
//!   DRAIN_WEBTRANSPORT_SESSION.
//!
//! ```text
//!  WtServerSession ──(SessionState: close cell, wake)── driver task ── CONNECT stream
//!   accept/open streams (h3)                              capsules in ─► Peer { code, reason }
//!   close(code, reason) / drop / shutdown ──────────────► CLOSE capsule, FIN ─► QUIC close
//! ```
//! * [`transport`]: messages as a [`transport_core::Connection`] ([`connect_transport`],
//!   [`WtConnector`], [`WtServerSession::into_connection`], [`WtServer::accept_transport`]):
//!   a framed message stream, or a unidirectional stream or datagram per message
//!   ([`StreamConfig`]), close handshake, reconnect.
//! * [`cert`]: self-signed ECDSA P-256 certificates valid under 14 days, whose SHA-256 browsers
//!   accept through `serverCertificateHashes`.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cert;
mod client;
pub mod proto;
mod server;
pub mod transport;

pub use client::{SessionClose, WtClientConfig, WtSession, connect};
pub use quinn;
pub use server::{
    DEFAULT_UDP_RECV_BUFFER, H3_NO_ERROR, WtBiStream, WtIncomingSession, WtRecvStream, WtRequest,
    WtSendStream, WtServer, WtServerConfig, WtServerSession, bind_udp, echo, echo_session,
};
pub use transport::{
    CongestionControl, Ordering, Reliability, StreamConfig, WtConfig, WtConnector,
    connect_transport,
};
