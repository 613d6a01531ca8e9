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

mod client;
pub mod codec;
mod config;
mod link;
mod server;

pub use client::{WtConnector, connect_transport};
pub use config::{CongestionControl, Ordering, Reliability, StreamConfig, WtConfig};
