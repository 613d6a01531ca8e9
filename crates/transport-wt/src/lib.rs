//! # transport-wt
//!
//! WebTransport over HTTP/3 for the `transport` workspace (work in progress, issue 4):
//!
//! * [`proto`]: the HTTP/3 + WebTransport framing the client needs, sans-IO (varints, SETTINGS,
//!   HEADERS with QPACK static-table + literal coding, capsules, stream headers, datagram
//!   prefixes).
//! * [`WtServer`]: the server, h3 + h3-webtransport on quinn. [`WtServer::accept`] hands out
//!   each CONNECT request ([`WtRequest`]: path, query, headers, origin, peer) that passed the
//!   [`AcceptPolicy`](transport_core::AcceptPolicy), for the application to accept or reject
//!   with a status; [`WtServerSession`] gives raw streams and datagrams; [`echo`] echoes them.
//!   One session per QUIC connection; `max_sessions`, `handshake_timeout` and graceful
//!   [`shutdown`](WtServer::shutdown) bound what a client can hold.
//! * [`cert`]: self-signed ECDSA P-256 certificates valid under 14 days, whose SHA-256 browsers
//!   accept through `serverCertificateHashes`.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cert;
mod client;
pub mod proto;
mod server;

pub use client::{SessionClose, WtClientConfig, WtSession, connect};
pub use quinn;
pub use server::{
    H3_NO_ERROR, WtBiStream, WtIncomingSession, WtRecvStream, WtRequest, WtSendStream, WtServer,
    WtServerConfig, WtServerSession, echo,
};
