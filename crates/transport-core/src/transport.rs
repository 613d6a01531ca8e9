//! The one interface every transport implements.

use std::future::Future;

use tokio::sync::watch;

use crate::{ConnectionState, Message, TransportError};

/// A bidirectional message connection: WebSocket, WebTransport, SSE (with its POST back
/// channel), the adaptive transport, or the in-memory pair.
///
/// `send` takes `&self` and implementations are thread-safe, so one connection can be sent to
/// from many tasks at once; `recv` takes `&mut self` (one reader). The concrete
/// [`Connection`](crate::Connection) can also be split into a cloneable
/// [`Sender`](crate::Sender) and a [`Receiver`](crate::Receiver), which implement
/// `futures::Sink` and `futures::Stream`.
///
/// Establishing a connection is the job of a [`Connector`], kept apart so the adaptive
/// transport can race several connectors and keep the winner.
pub trait Transport: Send {
    /// Queues a message for sending. Resolves once the connection has accepted it into its
    /// bounded send queue: when the queue is full it waits (backpressure).
    ///
    /// Messages sent before a connection drops may be lost; exactly-once delivery across
    /// reconnects is the adaptive transport's session layer.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it resolves, the message was not queued.
    fn send(&self, message: Message) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Receives the next message. `Ok(None)` means the connection ended cleanly (a completed
    /// close handshake); an error describes an abnormal end (including a peer close with a code
    /// other than 1000) and is followed by `Ok(None)`.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future loses no message.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Message>, TransportError>> + Send;

    /// Starts the close handshake with `code` and `reason`, and waits (bounded by the close
    /// timeout) until the connection is closed. Messages that arrive meanwhile can still be
    /// received.
    ///
    /// # Cancel safety
    /// Cancel safe: once started, the close goes on in the background if the future is dropped.
    fn close(
        &self,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The current state.
    fn state(&self) -> ConnectionState;

    /// A receiver of state changes.
    fn watch_state(&self) -> watch::Receiver<ConnectionState>;
}

/// Something that establishes connections of one transport to one endpoint.
pub trait Connector: Send + Sync {
    /// The connection type produced.
    type Transport: Transport;

    /// Connects, bounded by the configured connect timeout. Each call makes a new connection;
    /// calling again after a failure is how a `Failed` connection is replaced.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped attempt closes whatever it had opened.
    fn connect(&self) -> impl Future<Output = Result<Self::Transport, TransportError>> + Send;
}
