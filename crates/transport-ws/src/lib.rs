//! # transport-ws
//!
//! WebSocket for the `transport` workspace: a client ([`connect`], [`WsConnector`]) and a
//! server ([`WsServer`] on a `TcpListener`, or [`upgrade`] inside a hyper service), both on
//! tokio-tungstenite, both giving a [`transport_core::Connection`] that implements
//! [`transport_core::Transport`].
//!
//! ```text
//!  Connection ── bounded channels ──▶ driver task ──▶ tungstenite ──▶ TLS? ──▶ proxy? ──▶ TCP
//! ```
//!
//! What it adds over bare tokio-tungstenite:
//! * `wss://` with rustls (ring), system roots by default, custom CA, client certificates;
//! * HTTP CONNECT proxies, explicit or from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` /
//!   `NO_PROXY`, with basic credentials ([`ProxyConfig`]);
//! * keepalive pings that detect a dead peer, close handshakes with deadlines, reconnect
//!   through the core `ReconnectPolicy`;
//! * small idle connections (4 KiB read buffer instead of 128 KiB), bounded queues both ways;
//! * a server with origin allow-list, connection limit, handshake deadline and graceful
//!   shutdown that sends close frames.
//!
//! ## Example
//!
//! ```
//! use transport_core::{Message, Transport};
//! use transport_ws::{WsConfig, WsServer, WsServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), transport_core::TransportError> {
//! // Server: every accepted connection implements `Transport`.
//! let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default()).await?;
//! let url = server.url();
//! tokio::spawn(async move {
//!     while let Some((mut conn, _request)) = server.accept().await {
//!         tokio::spawn(async move {
//!             while let Ok(Some(m)) = conn.recv().await {
//!                 let _ = conn.send(m).await;
//!             }
//!         });
//!     }
//! });
//!
//! // Client: reconnects on its own through the configured ReconnectPolicy.
//! let mut config = WsConfig::default();
//! config.proxy(transport_ws::ProxyConfig::none());
//! let mut conn = transport_ws::connect(&url, config).await?;
//! conn.send(Message::text("hello")).await?;
//! assert_eq!(conn.recv().await?, Some(Message::text("hello")));
//! conn.close(1000, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! ## Cancel safety
//! [`connect`] and [`WsServer::accept`] are cancel safe; so are the connection's `send`, `recv`
//! and `close` (see `transport-core`).
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod config;
mod error;
mod link;
mod proxy;
mod raw;
mod read_buf;
mod server;
mod url;

pub use client::{WsConnector, connect};
pub use config::{
    DEFAULT_MAX_FRAME, DEFAULT_READ_BUFFER, DEFAULT_WRITE_BUFFER, WsConfig, WsServerConfig,
};
pub use proxy::{ProxyConfig, ResolvedProxy};
#[doc(hidden)]
pub use raw::RawLink;
pub use server::{
    PendingUpgrade, UpgradeResponse, WsRequest, WsServer, is_upgrade_request, upgrade,
};
pub use tokio_tungstenite::tungstenite;
pub use transport_core;
