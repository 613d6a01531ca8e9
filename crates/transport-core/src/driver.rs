//! The driver side of a connection, for transport implementers.
//!
//! A transport supplies a [`Dial`] (how to open one link and how to run it until it ends);
//! [`connect`] turns it into a [`Connection`] with a driver task that owns the link, talks to the
//! handles over bounded channels, and reconnects through the [`ReconnectPolicy`] when the link
//! drops. Server-side links, which never reconnect, go through [`spawn_accepted`].
//!
//! ```text
//!  Sender ──Command──▶ [bounded queue] ──▶ driver task ──▶ socket
//!  Receiver ◀─Result<Message>── [bounded queue] ◀── driver task ◀── socket
//! ```
//!
//! [`ReconnectPolicy`]: crate::ReconnectPolicy

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use crate::connection::{Command, ConnectionInfo, Shared, handles};
use crate::metrics::MessageMetrics;
use crate::queue::PushError;
use crate::{CloseFrame, Connection, ConnectionState, Message, TransportConfig, TransportError};

pub use crate::wake_gate::WakeGate;

/// How one run of a link ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// This side asked to close and the close completed (or timed out waiting for the peer).
    LocalClosed,
    /// The peer closed with this frame (its close was answered).
    PeerClosed(CloseFrame),
    /// The link failed.
    Failed(TransportError),
}

/// What [`DriverIo::poll_room_or_command`] found.
#[derive(Debug)]
pub enum IoEvent {
    /// Room for one received message (see [`DriverIo::poll_reserve`]); `false` when the
    /// receiver is gone.
    Room(bool),
    /// The next command from the handles.
    Command(Command),
}

/// The driver's end of a connection's queues: it takes the commands and is the one sender of
/// received messages.
///
/// Both an async API (for `select!`-style drivers) and a poll API (for drivers written as a
/// hand-rolled `Future`, like the WebSocket one) are offered.
pub struct DriverIo {
    commands_closed: bool,
    held: Option<Command>,
    /// Room reserved in the receive queue by `poll_reserve`.
    reserved: bool,
    /// Registrations while waiting for room, and for the receiver to go.
    room_waiter: Option<u64>,
    gone_waiter: Option<u64>,
    shared: Arc<Shared>,
}

impl Drop for DriverIo {
    fn drop(&mut self) {
        let inbound = &self.shared.inbound;
        inbound.forget(&mut self.room_waiter);
        inbound.forget(&mut self.gone_waiter);
        if self.reserved {
            inbound.release();
        }
        inbound.drop_sender();
        self.shared.commands.close_receiver();
    }
}

impl std::fmt::Debug for DriverIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverIo")
            .field("commands_closed", &self.commands_closed)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl DriverIo {
    /// Polls for the next command from the handles.
    ///
    /// When every sender has been dropped this waits until the receiver is dropped too, then
    /// yields a normal close: a connection nobody can use any more closes itself.
    pub fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        if let Some(cmd) = self.held.take() {
            // Counted when it was first taken.
            return Poll::Ready(cmd);
        }
        if !self.commands_closed {
            match self.shared.commands.poll_pop(cx) {
                Poll::Ready(Some(cmd)) => return Poll::Ready(self.count(cmd)),
                Poll::Ready(None) => self.commands_closed = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.shared
            .inbound
            .poll_closed(cx, &mut self.gone_waiter)
            .map(|()| Command::Close(CloseFrame::normal()))
    }

    /// The next command from the handles; see [`poll_command`](Self::poll_command).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next_command(&mut self) -> Command {
        poll_fn(|cx| self.poll_command(cx)).await
    }

    /// Takes the next command if one is already queued, without waiting and without
    /// registering for a wake-up: for a driver that moves a batch of commands per wake-up.
    /// `None` when nothing is queued now; the end of the handles (every sender dropped) is
    /// reported by [`poll_command`](Self::poll_command) only.
    pub fn try_command(&mut self) -> Option<Command> {
        if let Some(cmd) = self.held.take() {
            return Some(cmd);
        }
        if self.commands_closed {
            return None;
        }
        self.shared.commands.try_pop().map(|cmd| self.count(cmd))
    }

    /// Hands a received message to the application if its queue has room now, without
    /// waiting. `Ok(true)` when delivered, `Ok(false)` when the receiver is gone (the message
    /// is discarded, as [`deliver`](Self::deliver) does), `Err` with the message when the
    /// queue is full (then [`deliver`](Self::deliver) it, which waits).
    ///
    /// # Errors
    /// The message back when the application's queue is full.
    pub fn try_deliver(&mut self, message: Message) -> Result<bool, Message> {
        let len = message.len();
        match self.shared.inbound.try_push(Ok(message)) {
            Ok(()) => {
                self.shared.counters.received(len);
                Ok(true)
            }
            Err(PushError::Closed(_)) => Ok(false),
            Err(PushError::Full(item)) => match item {
                Ok(message) => Err(message),
                // Only `Ok` items are pushed here.
                Err(_) => Ok(false),
            },
        }
    }

    /// Polls for room in the application's receive queue. `Ready(false)` when the receiver is
    /// gone (received messages are then discarded). Once `Ready(true)`, the next
    /// [`send_reserved`](Self::send_reserved) cannot block.
    pub fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.reserved {
            return Poll::Ready(!self.shared.inbound.is_closed());
        }
        let poll = self.shared.inbound.poll_reserve(cx, &mut self.room_waiter);
        if poll.is_pending()
            && let Some(metrics) = self.shared.counters.metrics()
        {
            metrics.receive_queue_full();
        }
        poll.map(|r| {
            self.reserved = r.is_ok();
            self.reserved
        })
    }

    /// Whether [`poll_reserve`](Self::poll_reserve) holds a slot not yet used.
    pub fn has_reserved(&self) -> bool {
        self.reserved
    }

    /// Hands a message to the application through the slot reserved by
    /// [`poll_reserve`](Self::poll_reserve). Returns `false` (dropping the message) when no slot
    /// was reserved or the receiver is gone.
    pub fn send_reserved(&mut self, message: Message) -> bool {
        if !std::mem::take(&mut self.reserved) {
            return false;
        }
        let len = message.len();
        let sent = self.shared.inbound.push_reserved(Ok(message)).is_ok();
        if sent {
            self.shared.counters.received(len);
        }
        sent
    }

    /// For a `select!`-style driver that holds one received message while the application's
    /// queue is full: once [`poll_reserve`](Self::poll_reserve) (or
    /// [`poll_room_or_command`](Self::poll_room_or_command)) answered `room`, hands the
    /// `waiting` message over through the reserved slot. A message is taken either way: with
    /// no room (the receiver is gone) it is discarded, as nobody will read it.
    pub fn hand_over_waiting(&mut self, waiting: &mut Option<Message>, room: bool) {
        if let Some(message) = waiting.take()
            && room
        {
            self.send_reserved(message);
        }
    }

    /// For a `select!`-style driver that holds a received message while the application's
    /// queue is full and must keep taking commands meanwhile (two branches cannot both borrow
    /// the `DriverIo`): room for that message when `want_room`, or the next command when
    /// `want_command`, whichever comes first.
    pub fn poll_room_or_command(
        &mut self,
        cx: &mut Context<'_>,
        want_room: bool,
        want_command: bool,
    ) -> Poll<IoEvent> {
        if want_room && let Poll::Ready(room) = self.poll_reserve(cx) {
            return Poll::Ready(IoEvent::Room(room));
        }
        if want_command && let Poll::Ready(command) = self.poll_command(cx) {
            return Poll::Ready(IoEvent::Command(command));
        }
        Poll::Pending
    }

    /// Counts a message leaving for the link.
    fn count(&self, cmd: Command) -> Command {
        if let Command::Send(m) = &cmd {
            self.shared.counters.sent(m.len());
        }
        cmd
    }

    /// Records a keepalive round trip measured by the link (ping to pong).
    pub fn record_rtt(&self, rtt: Duration) {
        self.shared.counters.rtt(rtt);
    }

    /// Hands a received message to the application, waiting while its queue is full
    /// (backpressure: do not read the socket meanwhile). Returns `false` when the receiver has
    /// been dropped; the message is then discarded.
    ///
    /// A queue with room takes the message at once ([`try_deliver`](Self::try_deliver), no
    /// reservation); only a full one is waited on.
    ///
    /// # Cancel safety
    /// Cancel safe, but the message is lost if the future is dropped before it resolves.
    pub async fn deliver(&mut self, message: Message) -> bool {
        match self.try_deliver(message) {
            Ok(delivered) => delivered,
            Err(message) => {
                poll_fn(|cx| self.poll_reserve(cx)).await && self.send_reserved(message)
            }
        }
    }

    /// Whether the application still has a receiver.
    pub fn receiver_alive(&self) -> bool {
        !self.shared.inbound.is_closed()
    }

    /// Records the close frame the peer sent.
    pub fn set_peer_close(&self, frame: CloseFrame) {
        self.shared.set_peer_close(frame);
    }

    /// Updates the facts about the current link.
    pub fn set_info(&self, info: ConnectionInfo) {
        self.shared.set_info(info);
    }

    /// The configured maximum message size.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// Whether the application has asked to close.
    pub fn is_closing(&self) -> bool {
        self.shared.is_closing()
    }

    /// Declares that the current link cannot carry messages to the peer (a plain SSE server):
    /// `send` then fails at once with [`TransportError::Unsupported`] and this reason, instead
    /// of queueing. `None` declares sending possible again.
    pub fn set_send_unsupported(&self, reason: Option<String>) {
        self.shared.set_send_unsupported(reason);
    }

    /// Waits until the application asks to close, holding back (not losing) a `Send` that comes
    /// first. Used while no link is up.
    async fn wait_close_request(&mut self) {
        let shared = self.shared.clone();
        loop {
            let notified = shared.close_requested.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.is_closing() {
                return;
            }
            if self.held.is_some() {
                // Commands queue up behind the held one; a close is announced by the notify.
                notified.await;
                return;
            }
            tokio::select! {
                cmd = self.next_command() => match cmd {
                    Command::Close(_) => return,
                    send @ Command::Send(_) => self.held = Some(send),
                },
                () = &mut notified => return,
            }
        }
    }

    /// Records a peer close and turns an outcome into the error that ended the link, if any.
    /// A peer close with 1000 (or no code) is a clean end.
    fn outcome_error(&self, outcome: RunOutcome) -> Option<TransportError> {
        match outcome {
            RunOutcome::LocalClosed => None,
            RunOutcome::PeerClosed(frame) => {
                let error = frame.peer_error();
                self.set_peer_close(frame);
                error
            }
            RunOutcome::Failed(e) => Some(e),
        }
    }

    /// Delivers the error that ended the connection and records it for the senders.
    async fn finish_with_error(&mut self, e: TransportError) {
        self.shared.set_error(e.clone());
        if poll_fn(|cx| self.poll_reserve(cx)).await {
            self.reserved = false;
            let _ = self.shared.inbound.push_reserved(Err(e));
        }
    }
}

/// What a link written as a poll loop (the WebSocket one) serves: the application's channels
/// ([`DriverIo`]) or a layer between them and the link, such as the adaptive transport's
/// session layer, which then runs inside the link's task instead of in a task of its own
/// with a channel on each side.
///
/// The link calls, on every wake-up: [`poll_end`](Self::poll_end) first (and again after
/// reading), then [`poll_command`](Self::poll_command) while the socket takes writes, then
/// [`poll_reserve`](Self::poll_reserve) / [`send_reserved`](Self::send_reserved) per message
/// read, and [`poll_command`](Self::poll_command) once more after reading when
/// [`wants_write`](Self::wants_write) says that reading made something ready to send.
pub trait LinkIo {
    /// The next command for the link. See [`DriverIo::poll_command`].
    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command>;

    /// Room for one received message. See [`DriverIo::poll_reserve`].
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<bool>;

    /// One received message, through the slot [`poll_reserve`](Self::poll_reserve) reserved.
    /// A layer may keep it to itself (its own frames) and the slot for the next one. Returns
    /// whether it was taken. See [`DriverIo::send_reserved`].
    fn send_reserved(&mut self, message: Message) -> bool;

    /// A keepalive round trip the link measured.
    fn record_rtt(&self, rtt: Duration);

    /// The close frame the peer sent.
    fn set_peer_close(&self, frame: CloseFrame);

    /// `Ready` ends the run at once with this outcome: no close handshake, the link is left
    /// as it is for the caller (which may run it again, or close it). The application's
    /// channels never end a run this way.
    fn poll_end(&mut self, _cx: &mut Context<'_>) -> Poll<RunOutcome> {
        Poll::Pending
    }

    /// Whether something became ready to send while the link was reading (a layer's own
    /// frame, or a send window that opened), so that the link polls for commands again.
    fn wants_write(&self) -> bool {
        false
    }
}

impl LinkIo for DriverIo {
    #[inline]
    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        DriverIo::poll_command(self, cx)
    }

    #[inline]
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        DriverIo::poll_reserve(self, cx)
    }

    #[inline]
    fn send_reserved(&mut self, message: Message) -> bool {
        DriverIo::send_reserved(self, message)
    }

    #[inline]
    fn record_rtt(&self, rtt: Duration) {
        DriverIo::record_rtt(self, rtt);
    }

    #[inline]
    fn set_peer_close(&self, frame: CloseFrame) {
        DriverIo::set_peer_close(self, frame);
    }
}

/// How a transport opens and runs links. The generic driver does the rest: connect timeout,
/// state changes, reconnects with backoff, close requests while reconnecting.
pub trait Dial: Send + 'static {
    /// One open link (a socket with its protocol state).
    type Link: Send + 'static;

    /// Opens one link. The caller bounds it with the connect timeout.
    fn dial(&mut self) -> impl Future<Output = Result<Self::Link, TransportError>> + Send;

    /// Facts about a freshly opened link.
    fn info(&self, link: &Self::Link) -> ConnectionInfo;

    /// Runs a link until it ends, serving `io`.
    fn run(
        &mut self,
        link: Self::Link,
        io: &mut DriverIo,
    ) -> impl Future<Output = RunOutcome> + Send;

    /// Whether an error (of a dial or of a link) is worth a reconnect. Default:
    /// [`TransportError::is_retryable`]. SSE overrides it: the spec forbids reconnecting after
    /// any non-200 answer.
    fn should_retry(&self, error: &TransportError) -> bool {
        error.is_retryable()
    }

    /// Why a freshly opened link cannot carry messages to the peer, if it cannot (a plain SSE
    /// server offers no send URL). Applied before the connection is handed out or goes back to
    /// `Connected`, so `send` fails at once instead of queueing; the link may change it later
    /// with [`DriverIo::set_send_unsupported`].
    fn send_unsupported(&self, _link: &Self::Link) -> Option<String> {
        None
    }

    /// A lower bound for the next reconnect delay that the peer asked for (SSE `retry:`).
    fn min_reconnect_delay(&self) -> Option<Duration> {
        None
    }
}

fn new_io(
    config: &TransportConfig,
    info: ConnectionInfo,
    initial: ConnectionState,
    metrics: Option<MessageMetrics>,
) -> (Connection, DriverIo) {
    let shared = Arc::new(Shared::new(
        initial,
        info,
        config.max_message_size,
        config.close_timeout,
        metrics,
        (config.send_buffer, config.recv_buffer),
    ));
    (
        handles(&shared),
        DriverIo {
            commands_closed: false,
            held: None,
            reserved: false,
            room_waiter: None,
            gone_waiter: None,
            shared,
        },
    )
}

async fn dial_once<D: Dial>(dialer: &mut D, timeout: Duration) -> Result<D::Link, TransportError> {
    match tokio::time::timeout(timeout, dialer.dial()).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout {
            operation: "connect",
            after: timeout,
        }),
    }
}

/// Opens a link with `dialer` (bounded by `config.connect_timeout`) and spawns its driver.
///
/// The first attempt's failure is returned as is; once connected, drops are handled by
/// `config.reconnect`: the state goes `Connected -> Reconnecting -> Connected`, or `-> Failed`
/// when the policy gives up or the error is not retryable.
///
/// # Errors
/// The first attempt's error, or [`TransportError::InvalidConfig`].
///
/// # Cancel safety
/// Cancel safe: a dropped attempt drops what it had opened.
pub async fn connect<D: Dial>(
    mut dialer: D,
    config: &TransportConfig,
    transport: &'static str,
) -> Result<Connection, TransportError> {
    config.validate()?;
    let link = dial_once(&mut dialer, config.connect_timeout).await?;
    let info = dialer.info(&link);
    let span = tracing::debug_span!("connection", transport, peer = ?info.peer_addr);
    let (connection, io) = new_io(config, info, ConnectionState::Connected, None);
    io.set_send_unsupported(dialer.send_unsupported(&link));
    let config = config.clone();
    tokio::spawn(drive(dialer, link, io, config).instrument(span));
    Ok(connection)
}

/// As [`connect`], but returns at once, in [`ConnectionState::Connecting`], while the first
/// link is dialed in the background (bounded by `config.connect_timeout`). Sends wait in the
/// send buffer meanwhile; the state goes `Connected` when the link is up. A failed first
/// attempt ends the connection as `connect` would have: `recv` returns its error and the state
/// goes `Failed`. `close` while connecting stops the attempt.
///
/// Must be called within a Tokio runtime.
///
/// # Errors
/// [`TransportError::InvalidConfig`].
pub fn connect_lazy<D: Dial>(
    mut dialer: D,
    config: &TransportConfig,
    transport: &'static str,
) -> Result<Connection, TransportError> {
    config.validate()?;
    let (connection, mut io) = new_io(
        config,
        ConnectionInfo::new(transport),
        ConnectionState::Connecting,
        None,
    );
    let config = config.clone();
    let span = tracing::debug_span!("connection", transport);
    tokio::spawn(
        async move {
            // Boxed for the reason given in `drive`.
            let attempt = Box::pin(dial_once(&mut dialer, config.connect_timeout));
            let result = tokio::select! {
                result = attempt => result,
                () = io.wait_close_request() => {
                    let _ = io.shared.state.transition(ConnectionState::Disconnected);
                    return;
                }
            };
            match result {
                Ok(link) => {
                    io.set_info(dialer.info(&link));
                    io.set_send_unsupported(dialer.send_unsupported(&link));
                    io.shared.counters.link_up(false);
                    let _ = io.shared.state.transition(ConnectionState::Connected);
                    drive(dialer, link, io, config).await;
                }
                Err(e) => {
                    debug!(error = %e, "first connection attempt failed");
                    io.finish_with_error(e).await;
                    let _ = io.shared.state.transition(ConnectionState::Failed);
                }
            }
        }
        .instrument(span),
    );
    Ok(connection)
}

async fn drive<D: Dial>(
    mut dialer: D,
    mut link: D::Link,
    mut io: DriverIo,
    config: TransportConfig,
) {
    let mut backoff = config.reconnect.backoff();
    loop {
        backoff.connected(Instant::now().into_std());
        let outcome = dialer.run(link, &mut io).await;
        io.shared.counters.link_down();
        let error = io.outcome_error(outcome);
        let Some(error) = error else {
            let _ = io.shared.state.transition(ConnectionState::Disconnected);
            return;
        };
        if io.is_closing() || !config.reconnect.enabled || !dialer.should_retry(&error) {
            debug!(%error, "connection ended");
            io.finish_with_error(error).await;
            let _ = io.shared.state.transition(ConnectionState::Disconnected);
            return;
        }
        info!(%error, "connection dropped; reconnecting");
        let _ = io.shared.state.transition(ConnectionState::Reconnecting);
        backoff.disconnected(Instant::now().into_std());
        // Boxed: the dial future (a TLS and HTTP handshake) would otherwise make every
        // driver task as large as the handshake's state, and a task is copied whole when
        // spawned and when it completes, reconnecting or not.
        match Box::pin(reconnect(
            &mut dialer,
            &mut io,
            &mut backoff,
            &config,
            error,
        ))
        .await
        {
            Reconnected::Link(new_link) => {
                io.set_info(dialer.info(&new_link));
                io.set_send_unsupported(dialer.send_unsupported(&new_link));
                io.shared.counters.link_up(true);
                let _ = io.shared.state.transition(ConnectionState::Connected);
                link = new_link;
            }
            Reconnected::Closed => {
                let _ = io.shared.state.transition(ConnectionState::Disconnected);
                return;
            }
            Reconnected::GaveUp(e) => {
                warn!(error = %e, "reconnect gave up");
                io.finish_with_error(e).await;
                let _ = io.shared.state.transition(ConnectionState::Failed);
                return;
            }
        }
    }
}

enum Reconnected<L> {
    Link(L),
    Closed,
    GaveUp(TransportError),
}

async fn reconnect<D: Dial>(
    dialer: &mut D,
    io: &mut DriverIo,
    backoff: &mut crate::Backoff,
    config: &TransportConfig,
    mut last: TransportError,
) -> Reconnected<D::Link> {
    loop {
        let Some(delay) = backoff.next_delay(Instant::now().into_std()) else {
            return Reconnected::GaveUp(last);
        };
        let delay = dialer
            .min_reconnect_delay()
            .map_or(delay, |min| delay.max(min));
        debug!(?delay, attempt = backoff.attempts(), "reconnect scheduled");
        let attempt = async {
            tokio::time::sleep(delay).await;
            dial_once(dialer, config.connect_timeout).await
        };
        let result = tokio::select! {
            result = attempt => result,
            () = io.wait_close_request() => return Reconnected::Closed,
        };
        match result {
            Ok(link) => return Reconnected::Link(link),
            Err(e) if dialer.should_retry(&e) => {
                debug!(error = %e, "reconnect attempt failed");
                last = e;
            }
            Err(e) => return Reconnected::GaveUp(e),
        }
    }
}

/// Spawns the driver of an accepted (server-side) link: no dialing, no reconnect. `run` serves
/// the link and hands the [`DriverIo`] back with the outcome.
///
/// Its messages and bytes are counted in the shared [`metrics`](crate::metrics)
/// (`transport_messages_*`, `transport_bytes_*`, `transport_queue_full_total`), and an error
/// that ends it in `transport_errors_total`, all labelled with `info.transport`.
pub fn spawn_accepted<F, Fut>(config: &TransportConfig, info: ConnectionInfo, run: F) -> Connection
where
    F: FnOnce(DriverIo) -> Fut + Send + 'static,
    Fut: Future<Output = (RunOutcome, DriverIo)> + Send + 'static,
{
    let metrics = MessageMetrics::new(info.transport);
    let (connection, accepted) = accept(config, info, metrics);
    tokio::spawn(accepted.serve(run));
    connection
}

/// As [`spawn_accepted`] without spawning: the server runs [`Accepted::serve`] in a task it
/// already has (the one that ran the handshake, say), which saves a task per connection.
/// `metrics` are the connection's counters, e.g. from a server's
/// [`ServerMetrics`](crate::metrics::ServerMetrics).
pub fn accept(
    config: &TransportConfig,
    info: ConnectionInfo,
    metrics: MessageMetrics,
) -> (Connection, Accepted) {
    let transport = info.transport;
    let (connection, io) = new_io(config, info, ConnectionState::Connected, Some(metrics));
    (connection, Accepted { io, transport })
}

/// The driver side of an accepted link that [`accept`] made: [`serve`](Self::serve) it.
pub struct Accepted {
    io: DriverIo,
    transport: &'static str,
}

impl Accepted {
    /// Serves the link with `run` (which hands the [`DriverIo`] back with the outcome), then
    /// ends the connection as [`spawn_accepted`]'s task does: the error that ended it is
    /// counted and given to the application, and the state goes `Disconnected`.
    pub async fn serve<F, Fut>(self, run: F)
    where
        F: FnOnce(DriverIo) -> Fut,
        Fut: Future<Output = (RunOutcome, DriverIo)>,
    {
        let (outcome, mut io) = run(self.io).await;
        io.shared.counters.link_down();
        let error = io.outcome_error(outcome);
        if let Some(e) = error {
            crate::metrics::connection_error(self.transport, &e);
            io.finish_with_error(e).await;
        }
        let _ = io.shared.state.transition(ConnectionState::Disconnected);
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn io(recv_buffer: usize) -> (Connection, DriverIo) {
        let config = TransportConfig {
            recv_buffer,
            ..TransportConfig::default()
        };
        new_io(
            &config,
            ConnectionInfo::new("test"),
            ConnectionState::Connected,
            None,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_waiting_on_a_full_queue_all_get_through_in_their_own_order() {
        let config = TransportConfig {
            send_buffer: 1,
            ..TransportConfig::default()
        };
        let (conn, mut io) = new_io(
            &config,
            ConnectionInfo::new("test"),
            ConnectionState::Connected,
            None,
        );
        let (tasks, each) = (8_u8, 500_u32);
        for task in 0..tasks {
            let sender = conn.sender();
            tokio::spawn(async move {
                for i in 0..each {
                    let mut payload = vec![task];
                    payload.extend_from_slice(&i.to_be_bytes());
                    sender.send(Message::binary(payload)).await.unwrap();
                }
            });
        }
        let mut next = vec![0_u32; usize::from(tasks)];
        let all = async {
            for _ in 0..u32::from(tasks) * each {
                let Command::Send(m) = io.next_command().await else {
                    panic!("unexpected close");
                };
                let data = m.as_bytes();
                let task = usize::from(data[0]);
                let i = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
                assert_eq!(i, next[task], "task {task} out of order");
                next[task] += 1;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("every send got through");
        assert!(io.try_command().is_none());
        assert_eq!(conn.sender().capacity(), 1);
    }

    #[tokio::test]
    async fn try_command_takes_only_what_is_queued() {
        let (conn, mut io) = io(4);
        assert!(io.try_command().is_none());
        conn.try_send(Message::text("a")).unwrap();
        conn.try_send(Message::text("b")).unwrap();
        for expected in ["a", "b"] {
            match io.try_command() {
                Some(Command::Send(m)) => assert_eq!(m, Message::text(expected)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(io.try_command().is_none());
        assert_eq!(conn.stats().messages_sent, 2);
    }

    #[tokio::test]
    async fn try_deliver_hands_back_when_full_and_discards_when_gone() {
        let (mut conn, mut io) = io(2);
        assert_eq!(io.try_deliver(Message::text("1")), Ok(true));
        assert_eq!(io.try_deliver(Message::text("2")), Ok(true));
        // Full: handed back, not queued.
        assert_eq!(io.try_deliver(Message::text("3")), Err(Message::text("3")));
        assert_eq!(conn.recv().await.unwrap(), Some(Message::text("1")));
        assert_eq!(io.try_deliver(Message::text("3")), Ok(true));
        assert_eq!(conn.recv().await.unwrap(), Some(Message::text("2")));
        assert_eq!(conn.recv().await.unwrap(), Some(Message::text("3")));
        assert_eq!(conn.stats().messages_received, 3);
        drop(conn);
        assert_eq!(io.try_deliver(Message::text("4")), Ok(false));
    }
}
