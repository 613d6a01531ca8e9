//! Messages over WebTransport: the [`Transport`](transport_core::Transport) adapter.
//!
//! ```text
//!  Connection ── driver task ──▶ message stream (bidi): type | varint length | payload, close
//!                         ├────▶ one uni stream per message   (reliable, unordered)
//!                         └────▶ one datagram per message      (unreliable)
//! ```
//!
//! The framing ([`codec`]) is symmetric: the same bytes flow both ways, so a client works
//! against a raw echo server ([`echo`](crate::echo)). `docs/protocols/wt.md` specifies it.
//!
//! ## Example
//!
//! ```
//! use transport_core::{Message, Transport, TransportConfig};
//! use transport_wt::{StreamConfig, WtConfig, WtServer, WtServerConfig, cert};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), transport_core::TransportError> {
//! // A server with a certificate that clients pin by its hash.
//! let cert = cert::generate(&[])?;
//! let addr = "127.0.0.1:0".parse().expect("an address");
//! let mut server = WtServer::bind(
//!     addr,
//!     WtServerConfig::default(),
//!     cert.cert_pem.as_bytes(),
//!     cert.key_pem.as_bytes(),
//! )?;
//! let url = server.url();
//! tokio::spawn(async move {
//!     let config = TransportConfig::default();
//!     while let Some((mut conn, _request)) =
//!         server.accept_transport(&config, StreamConfig::default()).await
//!     {
//!         tokio::spawn(async move {
//!             while let Ok(Some(m)) = conn.recv().await {
//!                 let _ = conn.send(m).await;
//!             }
//!         });
//!     }
//! });
//!
//! // A client; it reconnects on its own through the configured ReconnectPolicy.
//! let mut config = WtConfig::default();
//! config.client.cert_hash(cert.sha256);
//! let mut conn = transport_wt::connect_transport(&url, config).await?;
//! conn.send(Message::text("hello")).await?;
//! assert_eq!(conn.recv().await?, Some(Message::text("hello")));
//! conn.close(1000, "bye").await?;
//! # Ok(()) }
//! ```

mod client;
pub mod codec;
mod config;
mod link;
mod server;

pub use client::{WtConnector, connect_transport};
pub use config::{CongestionControl, Ordering, Reliability, StreamConfig, WtConfig};
