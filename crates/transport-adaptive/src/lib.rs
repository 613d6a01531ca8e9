//! # transport-adaptive
//!
//! One [`Transport`](transport_core::Transport) over WebTransport, WebSocket and Server-Sent
//! Events that keeps messages flowing through blocked UDP, broken proxies, dropped connections
//! and server restarts.
//!
//! ```text
//!  application ── AdaptiveConnection (core Connection: bounded queues, driver, reconnect)
//!                        │ session layer: seq numbers, acks, replay (sans-IO `session`)
//!             ┌──────────┼───────────┐   Happy Eyeballs race, health check (PING/PONG)
//!            wt          ws         sse   protocol connections, their own reconnect disabled
//!             └──────────┴───────────┘
//!                  AdaptiveServer: WS + SSE + negotiate on one TCP port (hyper),
//!                  WT on UDP (same port number), one accept(), a bounded session table
//! ```
//!
//! * **Client** ([`connect`]): endpoints in preference order ([`AdaptiveConfig`]) or
//!   discovered from a base URL ([`negotiate`]). The preferred transport starts first; each
//!   next one starts after a head start (250 ms) or as soon as the previous failed; the first
//!   that connects *and* answers a health check wins, the others are closed. The winner is
//!   remembered (across runs too, when the application persists it and hands it back in
//!   [`AdaptiveConfig::remembered`]); after a fallback the preferred transports are probed in the background and
//!   the connection moves back when one works. Drops reconnect through the core
//!   [`ReconnectPolicy`](transport_core::ReconnectPolicy); sends meanwhile wait in a bounded
//!   buffer ([`SendBufferPolicy`]). [`AdaptiveStatus`] and [`AdaptiveEvent`] say which
//!   transport is in use and why it changed.
//!   [`connect_lazy`] returns the connection at once, `Connecting` while the race runs.
//! * **Session layer** ([`session`], `docs/protocols/session.md`): with a server of this crate,
//!   every message is delivered exactly once and in order across reconnects, transport changes
//!   and listener restarts; replay buffers are bounded and a session that cannot be resumed is
//!   an error, never a silent loss. Against a third-party server the client still races,
//!   falls back and reconnects, and reports that delivery is not guaranteed.
//! * **Server** ([`AdaptiveServer`]): one `accept()` for all three transports.
//!   [`AdaptiveServer::shutdown`] ends the sessions (clients get code 1001 and stop
//!   reconnecting); [`AdaptiveServer::shutdown_for_restart`] keeps them for a server bound
//!   later with the same [`SessionTable`]. Sends larger than the smallest link limit a session
//!   may use fail at `send` with `MessageTooLarge`. Per-IP limits
//!   ([`AdaptiveServerConfig::ip_limits`]) hold on its TCP listener and its WebTransport server;
//!   resumes and transport switches are counted in the `transport_core::metrics`
//!   `ADAPTIVE_RESUMES` and `ADAPTIVE_FALLBACKS` counters (`docs/metrics.md`).
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use transport_adaptive::{AdaptiveConfig, AdaptiveServer, AdaptiveServerConfig};
//! use transport_core::{Message, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), transport_core::TransportError> {
//! // Server: WebSocket, SSE and negotiation on one TCP port, WebTransport on UDP.
//! let addr = "127.0.0.1:0".parse().expect("an address");
//! let server = Arc::new(AdaptiveServer::bind(addr, AdaptiveServerConfig::default()).await?);
//! let s = server.clone();
//! tokio::spawn(async move {
//!     // One handler, whatever transport carries the connection.
//!     while let Some((mut conn, _request)) = s.accept().await {
//!         tokio::spawn(async move {
//!             while let Ok(Some(m)) = conn.recv().await {
//!                 let _ = conn.send(m).await;
//!             }
//!         });
//!     }
//! });
//!
//! // Client: discover the endpoints, race them, keep the winner.
//! let mut config = AdaptiveConfig::default();
//! config.ws.proxy(transport_adaptive::transport_ws::ProxyConfig::none());
//! let config = transport_adaptive::negotiate(&server.base_url(), config).await?;
//! let mut conn = transport_adaptive::connect(config).await?;
//! println!("connected over {:?}", conn.transport());
//! assert!(conn.status().delivery_guaranteed);
//! conn.send(Message::text("hello")).await?;
//! assert_eq!(conn.recv().await?, Some(Message::text("hello")));
//! conn.close(1000, "bye").await?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Cancel safety
//! [`connect`], [`negotiate`] and [`AdaptiveServer::accept`] are cancel safe; so are the
//! connections' `send`, `recv` and `close`.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod ack_timer;
mod client;
mod config;
mod held;
mod layer;
mod negotiate;
mod race;
mod server;
pub mod session;
mod sessions;

pub use client::{
    AdaptiveConnection, AdaptiveEvent, AdaptiveStatus, ChangeReason, connect, connect_lazy,
};
pub use config::{AdaptiveConfig, Endpoint, SendBufferPolicy, SessionMode, TransportKind};
pub use negotiate::{Negotiation, negotiate};
pub use server::{AdaptiveServer, AdaptiveServerConfig};
pub use session::{SessionId, SessionLimits};
pub use sessions::{SessionRequest, SessionTable};
pub use {transport_core, transport_sse, transport_ws, transport_wt};
