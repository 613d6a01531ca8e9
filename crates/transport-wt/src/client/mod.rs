//! The WebTransport client, written on quinn directly (h3's client cannot announce
//! `SETTINGS_ENABLE_WEBTRANSPORT`): [`connect`] opens a QUIC connection, exchanges SETTINGS,
//! sends an extended CONNECT and hands back a [`WtSession`] with raw streams and datagrams.
//!
//! ```text
//!  connect(url) ─▶ QUIC + TLS (ALPN h3) ─▶ control stream: SETTINGS ─▶ wait for the server's
//!  SETTINGS (WebTransport + datagrams) ─▶ CONNECT :protocol webtransport ─▶ 2xx ─▶ WtSession
//! ```
//!
//! One background task per concern (the server's uni streams, its bidi streams, the CONNECT
//! stream) feeds bounded channels; all of them end with the QUIC connection.

mod cert_hash;
mod config;
mod connect;
mod error;
mod handshake;
mod session;
mod tasks;

pub use config::WtClientConfig;
pub use connect::connect;
pub(crate) use session::reason_text;
pub use session::{SessionClose, WtSession};
