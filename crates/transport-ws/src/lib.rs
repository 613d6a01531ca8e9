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
mod server;
mod stream;
mod url;

pub use client::{WsConnector, connect};
pub use config::{
    Authorize, DEFAULT_MAX_FRAME, DEFAULT_READ_BUFFER, DEFAULT_WRITE_BUFFER, WsConfig,
    WsServerConfig,
};
pub use proxy::{ProxyConfig, ResolvedProxy};
pub use server::{
    PendingUpgrade, UpgradeResponse, WsRequest, WsServer, is_upgrade_request, upgrade,
};
pub use tokio_tungstenite::tungstenite;
pub use transport_core;
