//! The handle side of a connection: [`Connection`], [`Sender`], [`Receiver`].
//!
//! Every transport runs one driver task per connection that owns the socket; these handles talk
//! to it over two bounded queues (commands out, messages in; [`crate::queue`]) and share its
//! state. That gives backpressure in both directions, `&self` sends from many tasks, and a
//! trivial split.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::sync::{Notify, watch};

use crate::queue::{PushError, Queue};
use crate::state::StateCell;
use crate::{CloseFrame, ConnectionState, Message, Transport, TransportError};

/// What a handle asks of the driver.
#[derive(Debug)]
pub enum Command {
    /// Send this message.
    Send(Message),
    /// Start the close handshake with this frame.
    Close(CloseFrame),
}

/// Facts about the current link, for logs and for the application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Short name of the transport carrying the connection: `"ws"`, `"sse"`, `"wt"`, `"memory"`.
    pub transport: &'static str,
    /// The remote address, when known.
    pub peer_addr: Option<SocketAddr>,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<String>,
}

impl ConnectionInfo {
    /// Info for a transport, nothing else known yet.
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            ..Self::default()
        }
    }

    /// Sets the peer address.
    #[must_use]
    pub fn with_peer_addr(mut self, addr: Option<SocketAddr>) -> Self {
        self.peer_addr = addr;
        self
    }

    /// Sets the negotiated subprotocol.
    #[must_use]
    pub fn with_subprotocol(mut self, protocol: Option<String>) -> Self {
        self.subprotocol = protocol;
        self
    }
}

/// State shared by a driver and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: StateCell,
    closing: AtomicBool,
    error: Mutex<Option<TransportError>>,
    peer_close: Mutex<Option<CloseFrame>>,
    info: Mutex<ConnectionInfo>,
    send_unsupported: Mutex<Option<String>>,
    has_send_restriction: AtomicBool,
    pub(crate) max_message_size: usize,
    pub(crate) counters: crate::stats::Counters,
    close_timeout: Duration,
    pub(crate) close_requested: Notify,
    /// Handles to driver.
    pub(crate) commands: Queue<Command>,
    /// Driver to the receiver: messages, then the error that ended the connection.
    pub(crate) inbound: Queue<Result<Message, TransportError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(
        initial: ConnectionState,
        info: ConnectionInfo,
        max_message_size: usize,
        close_timeout: Duration,
        metrics: Option<crate::metrics::MessageMetrics>,
        (send_buffer, recv_buffer): (usize, usize),
    ) -> Self {
        Self {
            state: StateCell::new(initial),
            closing: AtomicBool::new(false),
            error: Mutex::new(None),
            peer_close: Mutex::new(None),
            info: Mutex::new(info),
            send_unsupported: Mutex::new(None),
            has_send_restriction: AtomicBool::new(false),
            max_message_size,
            counters: crate::stats::Counters::new(initial == ConnectionState::Connected, metrics),
            close_timeout,
            close_requested: Notify::new(),
            commands: Queue::new(send_buffer),
            inbound: Queue::new(recv_buffer),
        }
    }

    pub(crate) fn set_error(&self, e: TransportError) {
        lock(&self.error).get_or_insert(e);
    }

    pub(crate) fn set_peer_close(&self, frame: CloseFrame) {
        *lock(&self.peer_close) = Some(frame);
    }

    pub(crate) fn set_send_unsupported(&self, reason: Option<String>) {
        self.has_send_restriction
            .store(reason.is_some(), Ordering::Release);
        *lock(&self.send_unsupported) = reason;
    }

    /// Why the current link cannot carry messages to the peer, if it cannot.
    fn send_unsupported(&self) -> Option<String> {
        if self.has_send_restriction.load(Ordering::Acquire) {
            lock(&self.send_unsupported).clone()
        } else {
            None
        }
    }

    /// Whether a message may be queued now: not closing, sending supported, within the size
    /// limit. The sending-supported check takes no lock on the common path.
    fn check_sendable(&self, message: &Message) -> Result<(), TransportError> {
        if self.is_closing() {
            return Err(TransportError::Closed);
        }
        if let Some(reason) = self.send_unsupported() {
            return Err(TransportError::Unsupported(reason));
        }
        if message.len() > self.max_message_size {
            return Err(TransportError::MessageTooLarge {
                size: message.len(),
                limit: self.max_message_size,
            });
        }
        Ok(())
    }

    pub(crate) fn set_info(&self, info: ConnectionInfo) {
        *lock(&self.info) = info;
    }

    /// The error a handle reports once the driver is gone.
    fn terminal_error(&self) -> TransportError {
        lock(&self.error).clone().unwrap_or(TransportError::Closed)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// The handles of a connection whose shared state (with its two queues) a driver serves.
pub(crate) fn handles(shared: &Arc<Shared>) -> Connection {
    Connection {
        sender: Sender {
            shared: shared.clone(),
        },
        receiver: Receiver {
            shared: shared.clone(),
        },
    }
}

/// One connection of any transport: send, receive, close, watch its state.
///
/// Implements [`Transport`]. [`split`](Self::split) gives a cloneable [`Sender`] and a
/// [`Receiver`]. Dropping every handle closes the connection gracefully (code 1000).
#[derive(Debug)]
pub struct Connection {
    sender: Sender,
    receiver: Receiver,
}

impl Connection {
    /// Splits into a cloneable sender and the receiver.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    /// A new sender for this connection (cheap).
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.receiver
    }

    /// Facts about the current link.
    pub fn info(&self) -> ConnectionInfo {
        self.sender.info()
    }

    /// Statistics of this connection (cheap: a few atomic loads).
    pub fn stats(&self) -> crate::ConnectionStats {
        self.sender.stats()
    }

    /// The close frame the peer sent, once it has sent one.
    pub fn peer_close_frame(&self) -> Option<CloseFrame> {
        self.receiver.peer_close_frame()
    }

    /// See [`Sender::try_send`].
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError> {
        self.sender.try_send(message)
    }
}

impl Transport for Connection {
    async fn send(&self, message: Message) -> Result<(), TransportError> {
        self.sender.send(message).await
    }

    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        self.receiver.recv().await
    }

    async fn close(&self, code: u16, reason: &str) -> Result<(), TransportError> {
        self.sender.close(code, reason).await
    }

    fn state(&self) -> ConnectionState {
        self.sender.state()
    }

    fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.sender.watch_state()
    }
}

/// Why [`Sender::try_send`] did not queue a message.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TrySendError {
    /// The send queue is full; the message is handed back.
    #[error("send queue full")]
    Full(Message),
    /// The message cannot be sent at all.
    #[error(transparent)]
    Failed(#[from] TransportError),
}

/// The sending half of a connection. Cheap to clone; usable from many tasks at once.
#[derive(Debug)]
pub struct Sender {
    shared: Arc<Shared>,
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.shared.commands.add_sender();
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.commands.drop_sender();
    }
}

/// A command on its way into the queue: the caller's registration while it waits for room,
/// dropped with it.
struct Pushing<'a> {
    queue: &'a Queue<Command>,
    waiter: Option<u64>,
}

impl Pushing<'_> {
    async fn push(&mut self, command: Command) -> Result<(), crate::queue::Closed> {
        let mut item = Some(command);
        poll_fn(|cx| self.queue.poll_push(cx, &mut item, &mut self.waiter)).await
    }
}

impl Drop for Pushing<'_> {
    fn drop(&mut self) {
        self.queue.forget(&mut self.waiter);
    }
}

impl Sender {
    fn check(&self, message: &Message) -> Result<(), TransportError> {
        self.shared.check_sendable(message)
    }

    /// Queues a message; waits while the send queue is full.
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] over the configured limit, [`TransportError::Closed`]
    /// after `close`, or the error that ended the connection.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future has not queued the message.
    pub async fn send(&self, message: Message) -> Result<(), TransportError> {
        self.check(&message)?;
        let queue = &self.shared.commands;
        let command = match queue.try_push(Command::Send(message)) {
            Ok(()) => return Ok(()),
            Err(PushError::Closed(_)) => return Err(self.shared.terminal_error()),
            Err(PushError::Full(command)) => command,
        };
        Pushing {
            queue,
            waiter: None,
        }
        .push(command)
        .await
        .map_err(|_| self.shared.terminal_error())
    }

    /// Queues a message if there is room now, without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] with the message when the queue is full; otherwise as
    /// [`send`](Self::send).
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError> {
        self.check(&message)?;
        self.shared
            .commands
            .try_push(Command::Send(message))
            .map_err(|e| match e {
                PushError::Full(Command::Send(m)) => {
                    if let Some(metrics) = self.shared.counters.metrics() {
                        metrics.send_queue_full();
                    }
                    TrySendError::Full(m)
                }
                _ => TrySendError::Failed(self.shared.terminal_error()),
            })
    }

    /// Starts the close handshake and waits until the connection is closed, at most the
    /// configured close timeout (plus a small margin for the driver to finish).
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] for a code that may not be sent or a reason over 123
    /// bytes; [`TransportError::Timeout`] when the connection did not finish closing in time.
    ///
    /// # Cancel safety
    /// Cancel safe: once the close command is queued, the close goes on without this future.
    pub async fn close(&self, code: u16, reason: &str) -> Result<(), TransportError> {
        let frame = CloseFrame::new(code, reason);
        frame.validate_for_sending()?;
        let deadline = self.shared.close_timeout + Duration::from_millis(500);
        let mut state = self.watch_state();
        let first = !self.shared.closing.swap(true, Ordering::AcqRel);
        self.shared.close_requested.notify_waiters();
        if first {
            // Queued behind the messages already accepted, so they go out first. Enqueued from
            // a task of its own so the close goes on even if this future is dropped or the
            // queue stays full past the deadline. A closed channel means the driver is gone.
            let sender = self.clone();
            tokio::spawn(async move {
                let _ = Pushing {
                    queue: &sender.shared.commands,
                    waiter: None,
                }
                .push(Command::Close(frame))
                .await;
            });
        }
        let wait = async {
            let _ = state.wait_for(|s| s.is_terminal()).await;
        };
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| TransportError::Timeout {
                operation: "close",
                after: deadline,
            })
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.get()
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Facts about the current link.
    pub fn info(&self) -> ConnectionInfo {
        lock(&self.shared.info).clone()
    }

    /// Why the current link cannot carry messages to the peer (a plain SSE stream without a
    /// send URL), if it cannot; `send` then fails with [`TransportError::Unsupported`].
    pub fn send_unsupported(&self) -> Option<String> {
        self.shared.send_unsupported()
    }

    /// Statistics of this connection (cheap: a few atomic loads).
    pub fn stats(&self) -> crate::ConnectionStats {
        self.shared.counters.snapshot()
    }

    /// Room left in the send queue.
    pub fn capacity(&self) -> usize {
        self.shared.commands.room()
    }

    /// A [`Sink`] over this sender.
    pub fn into_sink(self) -> SenderSink {
        SenderSink {
            sender: self,
            reserved: false,
            waiter: None,
        }
    }
}

/// A [`Sink<Message>`](Sink) over a [`Sender`] (from [`Sender::into_sink`]).
#[derive(Debug)]
pub struct SenderSink {
    sender: Sender,
    /// Room reserved by `poll_ready` for the next `start_send`.
    reserved: bool,
    waiter: Option<u64>,
}

impl Drop for SenderSink {
    fn drop(&mut self) {
        let queue = &self.sender.shared.commands;
        queue.forget(&mut self.waiter);
        if self.reserved {
            queue.release();
        }
    }
}

impl Sink<Message> for SenderSink {
    type Error = TransportError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        let this = &mut *self;
        if this.reserved {
            return Poll::Ready(Ok(()));
        }
        let shared = &this.sender.shared;
        let ready = std::task::ready!(shared.commands.poll_reserve(cx, &mut this.waiter));
        this.reserved = ready.is_ok();
        Poll::Ready(ready.map_err(|_| shared.terminal_error()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), TransportError> {
        let this = &mut *self;
        let shared = &this.sender.shared;
        shared.check_sendable(&item)?;
        if !std::mem::take(&mut this.reserved) {
            // The Sink contract asks for `poll_ready` first; without it, only room now will do.
            return shared
                .commands
                .try_push(Command::Send(item))
                .map_err(|e| match e {
                    PushError::Full(_) => TransportError::Unsupported(
                        "SenderSink::start_send without poll_ready while the send queue is full"
                            .into(),
                    ),
                    PushError::Closed(_) => shared.terminal_error(),
                });
        }
        shared
            .commands
            .push_reserved(Command::Send(item))
            .map_err(|_| shared.terminal_error())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        // Messages are handed to the driver on `start_send`; the driver writes them promptly.
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        // Gives up the reservation; the sender itself goes when the sink is dropped.
        let this = &mut *self;
        if std::mem::take(&mut this.reserved) {
            this.sender.shared.commands.release();
        }
        Poll::Ready(Ok(()))
    }
}

/// The receiving half of a connection. Implements [`Stream`].
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.inbound.close_receiver();
    }
}

impl Receiver {
    /// Receives the next message; `Ok(None)` once the connection has ended.
    ///
    /// # Errors
    /// The error that ended the connection (delivered once, then `Ok(None)`).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future loses no message.
    pub async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        poll_fn(|cx| self.shared.inbound.poll_pop(cx))
            .await
            .transpose()
    }

    /// Takes a message if one is waiting, without waiting.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<Message>, TransportError> {
        self.shared.inbound.try_pop().transpose()
    }

    /// The close frame the peer sent, once it has sent one.
    pub fn peer_close_frame(&self) -> Option<CloseFrame> {
        lock(&self.shared.peer_close).clone()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.get()
    }
}

impl Stream for Receiver {
    type Item = Result<Message, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.inbound.poll_pop(cx)
    }
}

impl CloseFrame {
    /// Checks that this frame may be sent: code 1000-1003, 1007-1014 or 3000-4999, and a reason
    /// of at most 123 bytes (RFC 6455 section 5.5.1 and 7.4).
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] saying which rule was broken.
    pub fn validate_for_sending(&self) -> Result<(), TransportError> {
        let code_ok = matches!(self.code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !code_ok {
            return Err(TransportError::InvalidConfig(format!(
                "close code {} may not be sent",
                self.code
            )));
        }
        if self.reason.len() > 123 {
            return Err(TransportError::InvalidConfig(format!(
                "close reason is {} bytes; at most 123 fit in a close frame",
                self.reason.len()
            )));
        }
        Ok(())
    }
}
