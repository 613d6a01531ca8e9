//! # transport-wt
//!
//! WebTransport over HTTP/3 for the `transport` workspace (work in progress, issue 4):
//!
//! * [`proto`]: the HTTP/3 + WebTransport framing the client needs, sans-IO (varints, SETTINGS,
//!   HEADERS with QPACK static-table + literal coding, capsules, stream headers, datagram
//!   prefixes).
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
