//! # transport-core
//!
//! The shapes every transport of the `transport` workspace shares: [`Message`],
//! [`ConnectionState`], [`TransportError`], [`TransportConfig`], [`ReconnectPolicy`], the
//! [`Transport`] and [`Connector`] traits, the [`Connection`] handle with its [`Sender`] and
//! [`Receiver`], the generic [`driver`] that transports plug into, and an in-memory transport
//! ([`memory`]) for your own tests. No protocol code lives here, and the only socket code is
//! [`bind_listener`].
//!
//! Servers share three more pieces: the [`metrics`] names every transport records under, the
//! per-remote-IP limits ([`IpLimits`], enforced by an [`IpLimiter`]), and [`bind_listener`],
//! which binds TCP listeners with a listen backlog ([`DEFAULT_LISTEN_BACKLOG`]) that a burst
//! of connects does not overflow.
//!
//! ```text
//!            application
//!   Sender (Clone, Sink) │ ▲ Receiver (Stream)
//!           ┌────────────▼─┴───────────┐
//!           │ bounded channels (core)   │
//!           └────────────┬─▲───────────┘
//!              driver task (one per connection, owns the socket,
//!              reconnects through ReconnectPolicy)
//!            ws │ wt │ sse │ memory
//! ```
//!
//! ## Feature flags
//! * `tls` (default): [`tls`] builds rustls configurations from [`TlsOptions`] with the ring
//!   provider, the one crypto provider of the workspace.
//!
//! ## Cancel safety
//! Every public async fn documents it; in short, `send`, `recv` and `close` are cancel safe:
//! a dropped `send` has not queued its message, a dropped `recv` loses nothing, and a started
//! close goes on in the background.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod accept;
mod config;
mod connection;
pub mod driver;
mod error;
mod ip_limit;
mod listen;
pub mod memory;
mod message;
pub mod metrics;
mod queue;
mod reconnect;
mod state;
mod stats;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod wake_gate;

pub use accept::{AcceptPolicy, Authorize, request_head};
pub use bytes::Bytes;
pub use bytestring::ByteString;
pub use config::{TlsOptions, TransportConfig};
pub use connection::{
    Command, Connection, ConnectionInfo, Receiver, Sender, SenderSink, TrySendError,
};
pub use error::{SharedIoError, TransportError, close_code_is_retryable};
pub use ip_limit::{IpLimiter, IpLimits, IpPermit, IpRefusal, IpTable, RefusalLog};
pub use listen::{DEFAULT_LISTEN_BACKLOG, bind_listener};
pub use message::{CloseFrame, Message, MessageMetadata, MessageType};
pub use reconnect::{Backoff, ReconnectPolicy};
pub use state::{ConnectionState, IllegalTransition, StateCell};
pub use stats::ConnectionStats;
pub use transport::{Connector, Transport};
