//! The WebTransport client, written on quinn directly (h3's client cannot announce
//! `SETTINGS_ENABLE_WEBTRANSPORT`): [`connect`] opens a QUIC connection, exchanges SETTINGS,
//! sends an extended CONNECT and hands back a [`WtSession`] with raw streams and datagrams.
//!
//! ```text
//!  connect(url) ─▶ QUIC + TLS (ALPN h3) ─▶ control stream: SETTINGS ─▶ wait for the server's
//!  SETTINGS (WebTransport + datagrams) ─▶ CONNECT :protocol webtransport ─▶ 2xx ─▶ WtSession
//! ```
//!
//! One driver task per session (the server's uni and bidi streams, the CONNECT stream, the
//! connection's end) feeds bounded channels; it ends with the QUIC connection.

mod cert_hash;
mod config;
mod connect;
mod driver;
mod error;
mod handshake;
mod session;

pub use config::WtClientConfig;
pub use connect::connect;
pub(crate) use session::reason_text;
pub use session::{SessionClose, WtSession};
