//! Servers for the workspace's tests, benches and xtask: a WebSocket echo server and fault
//! scenarios built on bare tokio-tungstenite and raw TCP (an independent peer for our client),
//! and a harness for a real `tinyproxy`.
//!
//! Every server binds `127.0.0.1:0` and stops when its guard is dropped.

pub mod fault;
pub mod sse;
pub mod timing;
pub mod tinyproxy;
pub mod ws;
