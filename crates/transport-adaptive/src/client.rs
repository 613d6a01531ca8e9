//! The adaptive client: [`connect`] races the configured transports, runs the session layer
//! over the winner, reconnects (through the core driver and its `ReconnectPolicy`), falls back
//! and upgrades, and reports what it does through [`AdaptiveStatus`] and [`AdaptiveEvent`].

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tokio::time::Sleep;
use tracing::{debug, info};
use transport_core::driver::{self, Dial, DriverIo, IoEvent, RunOutcome};
use transport_core::{
    CloseFrame, Command, Connection, ConnectionInfo, ConnectionState, ConnectionStats, Message,
    Receiver, Sender, Transport, TransportError, TrySendError,
};
use transport_ws::RawLink;

use crate::ack_timer::{AckTimer, BATCH, far_future};
use crate::config::{AdaptiveConfig, SendBufferPolicy, TransportKind};
use crate::held::{deliver_held, hand_over, hand_over_reserved};
use crate::layer::{LayerState, SessionLayer, Stop};
use crate::race::{self, AnyLink, Candidate, Need, Opened};
use crate::session::{self, Frame, RejectCode, Session, SessionId};

/// Capacity of the events channel; a receiver that lags loses the oldest events.
const EVENTS: usize = 64;

/// Which transport carries the connection now, and with which guarantees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AdaptiveStatus {
    /// The transport in use; `None` while reconnecting.
    pub transport: Option<TransportKind>,
    /// Whether the session layer is in use: every message is delivered exactly once, in order,
    /// across reconnects and transport changes. `false` against a server that does not speak
    /// the session protocol.
    pub delivery_guaranteed: bool,
    /// The session id, once the server has given one.
    pub session: Option<SessionId>,
}

/// Why the transport changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// The first connection.
    Initial,
    /// Reconnected after a drop, on the same transport.
    Reconnected,
    /// Reconnected after a drop, on a less preferred transport (the previous one failed).
    Fallback,
    /// Reconnected after a drop, on a more preferred transport.
    Recovered,
    /// A background probe found a more preferred transport working; the connection moved.
    Upgrade,
}

/// What happened to an adaptive connection, for the application's logs and UI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AdaptiveEvent {
    /// A transport now carries the connection: the first one, a fallback, a recovery or an
    /// upgrade. A reconnect to the same endpoint emits `Disconnected` then `Resumed` instead.
    TransportChanged {
        /// The previous transport (`None` for the first connection).
        from: Option<TransportKind>,
        /// The new one.
        to: TransportKind,
        /// Why.
        reason: ChangeReason,
    },
    /// The link dropped; the connection is reconnecting.
    Disconnected {
        /// The transport that dropped.
        transport: TransportKind,
        /// What happened.
        error: TransportError,
    },
    /// One attempt failed (connect, health check, or handshake).
    AttemptFailed {
        /// The transport tried.
        transport: TransportKind,
        /// Why it failed.
        error: TransportError,
    },
    /// The session resumed on a new link; `replayed` messages were sent again.
    Resumed {
        /// Messages sent again because the peer had not acknowledged them.
        replayed: usize,
    },
    /// The server does not speak the session protocol (a third-party server): messages are
    /// not guaranteed across reconnects.
    NoDeliveryGuarantee {
        /// The transport in use.
        transport: TransportKind,
    },
}

struct ClientShared {
    candidates: Vec<Candidate>,
    config: AdaptiveConfig,
    status: watch::Sender<AdaptiveStatus>,
    events: broadcast::Sender<AdaptiveEvent>,
}

impl ClientShared {
    fn emit(&self, event: AdaptiveEvent) {
        debug!(?event, "adaptive event");
        let _ = self.events.send(event);
    }
}

/// The mode decided on the first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Session,
    Raw,
}

struct AdaptiveDial {
    shared: Arc<ClientShared>,
    mode: Mode,
    session: Session,
    session_id: SessionId,
    /// The remembered winner: tried first on reconnects.
    winner: Option<usize>,
    /// The transport of the last link (kept while reconnecting, for events).
    last: Option<usize>,
    /// The server ended the session (`CLOSE`): whatever its code, there is nothing to resume.
    closed_by_server: bool,
}

/// One established link.
struct Link {
    carrier: Carrier,
    index: usize,
    first: Option<Message>,
    replay: Vec<Frame>,
}

/// What carries a link's messages.
enum Carrier {
    /// A protocol connection (WebTransport, SSE) with its own driver task: messages go
    /// through its channels.
    Chan(ChanLink),
    /// A WebSocket link run by this task (see [`AdaptiveDial::serve_ws`]).
    Ws(WsLink),
}

struct ChanLink {
    tx: Sender,
    rx: Receiver,
}

struct WsLink {
    raw: Box<RawLink>,
    state: LayerState,
}

impl Link {
    fn new(conn: AnyLink, index: usize, first: Option<Message>, replay: Vec<Frame>) -> Self {
        let carrier = match conn {
            AnyLink::Conn(c) => {
                let (tx, rx) = c.split();
                Carrier::Chan(ChanLink { tx, rx })
            }
            AnyLink::Ws(raw) => Carrier::Ws(WsLink {
                raw,
                state: LayerState::default(),
            }),
        };
        Self {
            carrier,
            index,
            first,
            replay,
        }
    }

    /// Closes the link in the background (after an upgrade moved the session away).
    fn close_in_background(self, reason: &'static str) {
        tokio::spawn(async move {
            match self.carrier {
                Carrier::Chan(c) => {
                    let _ = c.tx.close(1000, reason).await;
                }
                Carrier::Ws(mut w) => w.raw.close(1000, reason).await,
            }
        });
    }
}

/// What ended a stretch of serving one link.
enum Step {
    End(End),
    /// A probe opened a more preferred link: try to move the session to it.
    Upgrade(Result<Opened, TransportError>),
}

/// How serving a link ended.
enum End {
    /// The link is gone; the session resumes on another.
    Lost(TransportError),
    /// The connection is over (or, raw, ends as the peer said).
    Outcome(RunOutcome),
}

type Probe = Pin<Box<dyn Future<Output = Result<Opened, TransportError>> + Send>>;

/// The upgrade probe of a session: every `probe_interval`, a race of the transports preferred
/// to the current one.
struct Prober {
    shared: Arc<ClientShared>,
    interval: Option<Duration>,
    timer: Pin<Box<Sleep>>,
    probe: Option<Probe>,
}

impl Prober {
    fn new(shared: Arc<ClientShared>, interval: Option<Duration>) -> Self {
        let first = interval.map_or_else(far_future, |i| tokio::time::Instant::now() + i);
        Self {
            shared,
            interval,
            timer: Box::pin(tokio::time::sleep_until(first)),
            probe: None,
        }
    }

    /// `Ready` with what a probe opened (or why it failed); the next probe starts
    /// `probe_interval` later. Pending forever without an interval, in raw mode, and on the
    /// most preferred transport (index 0).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mode: Mode,
        current: usize,
    ) -> Poll<Result<Opened, TransportError>> {
        let Some(every) = self.interval else {
            return Poll::Pending;
        };
        if self.probe.is_none() {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if mode != Mode::Session || current == 0 {
                self.timer.as_mut().reset(far_future());
                return Poll::Pending;
            }
            let shared = self.shared.clone();
            self.probe = Some(Box::pin(async move {
                let order: Vec<usize> = (0..current).collect();
                race::race(
                    &shared.candidates,
                    &order,
                    &shared.config,
                    Need::Session,
                    |_, _| {},
                )
                .await
            }));
        }
        let Some(probe) = self.probe.as_mut() else {
            return Poll::Pending;
        };
        let opened = std::task::ready!(probe.as_mut().poll(cx));
        self.probe = None;
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + every);
        // Registers the timer's waker for its new deadline.
        let _ = self.timer.as_mut().poll(cx);
        Poll::Ready(opened)
    }
}

impl AdaptiveDial {
    fn kind(&self, index: usize) -> TransportKind {
        self.shared.candidates[index].kind
    }

    fn order(&self) -> Vec<usize> {
        let n = self.shared.candidates.len();
        let first = self.winner.unwrap_or(0);
        std::iter::once(first)
            .chain((0..n).filter(|&i| i != first))
            .collect()
    }

    /// The session handshake on an opened link (`HELLO`, `WELCOME`), or nothing for a raw one.
    async fn establish(&mut self, mut opened: Opened) -> Result<Link, TransportError> {
        if self.mode == Mode::Undecided {
            self.mode = if opened.speaks_session {
                Mode::Session
            } else {
                Mode::Raw
            };
        }
        if self.mode == Mode::Raw {
            return Ok(Link::new(
                opened.conn,
                opened.index,
                opened.first,
                Vec::new(),
            ));
        }
        if !opened.speaks_session {
            return Err(TransportError::protocol(
                "the server no longer speaks the session protocol",
            ));
        }
        let hello = Frame::Hello {
            session: self.session_id,
            ack: self.session.delivered(),
        };
        opened.conn.send(session::encode(&hello)).await?;
        let timeout = self.shared.config.health_timeout;
        let answer = tokio::time::timeout(timeout, opened.conn.recv())
            .await
            .map_err(|_| TransportError::Timeout {
                operation: "session handshake",
                after: timeout,
            })??
            .ok_or_else(|| TransportError::lost("closed during the session handshake"))?;
        match session::decode(&answer)? {
            Frame::Welcome {
                session,
                resumed,
                ack,
            } => {
                if !self.session_id.is_nil() && (!resumed || session != self.session_id) {
                    return Err(session_lost("the server started a new session"));
                }
                self.session_id = session;
                let replay = self.session.resume(ack)?;
                self.session.handshake_acked();
                Ok(Link::new(opened.conn, opened.index, None, replay))
            }
            Frame::Reject {
                code: RejectCode::UnknownSession,
                reason,
            } => Err(session_lost(&reason)),
            Frame::Reject {
                code: RejectCode::Full,
                reason,
            } => Err(TransportError::ConnectionFailed {
                reason: format!("server session table full: {reason}"),
                source: None,
            }),
            other => Err(TransportError::protocol(format!(
                "unexpected answer to HELLO: {other:?}"
            ))),
        }
    }

    /// Publishes a new link: status, events, remembered winner.
    fn announce(&mut self, link: &Link, reason: Option<ChangeReason>) {
        let to = self.kind(link.index);
        let from = self.last.map(|i| self.kind(i));
        let reason = reason.unwrap_or(match self.last {
            None => ChangeReason::Initial,
            Some(i) if i == link.index => ChangeReason::Reconnected,
            Some(i) if i < link.index => ChangeReason::Fallback,
            Some(_) => ChangeReason::Recovered,
        });
        self.winner = Some(link.index);
        self.last = Some(link.index);
        let guaranteed = self.mode == Mode::Session;
        self.shared.status.send_replace(AdaptiveStatus {
            transport: Some(to),
            delivery_guaranteed: guaranteed,
            session: (!self.session_id.is_nil()).then_some(self.session_id),
        });
        info!(from = ?from, %to, ?reason, "adaptive transport in use");
        if from != Some(to) || reason != ChangeReason::Reconnected {
            self.shared
                .emit(AdaptiveEvent::TransportChanged { from, to, reason });
        }
        if !link.replay.is_empty() || (reason != ChangeReason::Initial && guaranteed) {
            self.shared.emit(AdaptiveEvent::Resumed {
                replayed: link.replay.len(),
            });
        }
        if !guaranteed && reason == ChangeReason::Initial {
            self.shared
                .emit(AdaptiveEvent::NoDeliveryGuarantee { transport: to });
        }
    }

    /// Sends `message` on the link while still reading it: when both peers' queues are full,
    /// neither may wait for the other (a dead link's driver waits for its reader, too).
    async fn push(
        &mut self,
        link: &mut ChanLink,
        message: Message,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        let sending = link.tx.send(message);
        tokio::pin!(sending);
        loop {
            tokio::select! {
                biased;
                result = &mut sending => {
                    return result.map_err(|e| End::Lost(TransportError::lost(format!("sending: {e}"))));
                }
                received = link.rx.recv(), if !self.session.held_full() => {
                    self.on_received(received, &link.rx, io).await?;
                }
            }
        }
    }

    /// Starts a link: replays, delivers a raw first message.
    async fn start_link(&mut self, link: &mut Link, io: &mut DriverIo) -> Result<(), End> {
        io.set_info(ConnectionInfo::new(self.kind(link.index).name()));
        let replay = std::mem::take(&mut link.replay);
        match &mut link.carrier {
            Carrier::Chan(chan) => {
                for frame in replay {
                    self.push(chan, session::encode(&frame), io).await?;
                }
            }
            // Bounded by the replay window; written first when the link runs.
            Carrier::Ws(ws) => ws.state.out.extend(replay.iter().map(session::encode)),
        }
        if let Some(first) = link.first.take() {
            io.deliver(first).await;
        }
        Ok(())
    }

    /// Handles what the link's receiver yielded.
    async fn on_received(
        &mut self,
        received: Result<Option<Message>, TransportError>,
        rx: &Receiver,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        let message = match received {
            Ok(Some(m)) => m,
            Ok(None) if self.mode == Mode::Raw => {
                deliver_held(&mut self.session, io).await;
                return Err(End::Outcome(RunOutcome::PeerClosed(
                    rx.peer_close_frame().unwrap_or_else(CloseFrame::normal),
                )));
            }
            Ok(None) => return Err(End::Lost(TransportError::lost("link closed"))),
            Err(e) => return Err(End::Lost(e)),
        };
        // Held, then handed over as far as the application has room: this loop never waits on
        // the application (see `Session::on_data_room`).
        if self.mode == Mode::Raw {
            self.session.hold(message);
            hand_over(&mut self.session, io);
            return Ok(());
        }
        let lost = |e: TransportError| End::Lost(TransportError::lost(e.to_string()));
        match session::decode(&message).map_err(lost)? {
            Frame::Data { seq, message } => {
                self.session.hold_data(seq, message).map_err(lost)?;
                hand_over(&mut self.session, io);
            }
            Frame::Ack { seq } => self
                .session
                .on_ack(seq)
                .map_err(|e| End::Outcome(RunOutcome::Failed(e)))?,
            Frame::Close { code, reason } => {
                self.closed_by_server = true;
                // What came before the server's close reaches the application first.
                deliver_held(&mut self.session, io).await;
                return Err(End::Outcome(RunOutcome::PeerClosed(CloseFrame::new(
                    code, reason,
                ))));
            }
            // Stray handshake frames are harmless.
            _ => {}
        }
        Ok(())
    }

    async fn run_link(&mut self, mut link: Link, io: &mut DriverIo) -> RunOutcome {
        if let Err(end) = self.start_link(&mut link, io).await {
            return self.end(&link, end);
        }
        let mut prober = Prober::new(self.shared.clone(), self.shared.config.probe_interval);
        loop {
            let step = match &mut link.carrier {
                Carrier::Chan(chan) => self.serve_chan(chan, link.index, io, &mut prober).await,
                Carrier::Ws(ws) => self.serve_ws(ws, link.index, io, &mut prober).await,
            };
            let result = match step {
                Step::End(end) => Err(end),
                Step::Upgrade(opened) => self.upgrade(opened, &mut link, io).await,
            };
            if let Err(end) = result {
                return self.end(&link, end);
            }
        }
    }

    fn end(&mut self, link: &Link, end: End) -> RunOutcome {
        match end {
            End::Outcome(o) => o,
            End::Lost(e) => self.dropped(link, e),
        }
    }

    /// Serves a link with a driver task of its own, through its channels, until it ends or a
    /// probe opens a more preferred one.
    async fn serve_chan(
        &mut self,
        link: &mut ChanLink,
        index: usize,
        io: &mut DriverIo,
        prober: &mut Prober,
    ) -> Step {
        let raw = self.mode == Mode::Raw;
        let mut ack_timer = AckTimer::new();
        loop {
            ack_timer.rearm(self.session.next_timeout());
            let can_send = raw || self.session.can_send();
            let (held, held_full) = (self.session.has_held(), self.session.held_full());
            let mut fired = false;
            let step: Result<(), End> = tokio::select! {
                received = link.rx.recv(), if !held_full => self.on_inbound(received, link, io).await,
                event = poll_fn(|cx| io.poll_room_or_command(cx, held, can_send)),
                    if held || can_send => match event {
                    IoEvent::Room(room) => {
                        hand_over_reserved(&mut self.session, io, room);
                        Ok(())
                    }
                    IoEvent::Command(command) => self.on_commands(command, link, io).await,
                },
                () = ack_timer.sleep(), if ack_timer.is_armed() => {
                    ack_timer.fired();
                    fired = true;
                    Ok(())
                }
                opened = poll_fn(|cx| prober.poll(cx, self.mode, index)) => {
                    return Step::Upgrade(opened);
                }
            };
            if let Err(end) = step {
                return Step::End(end);
            }
            // The clock is read only when an ACK may be due.
            if (fired || self.session.ack_count_due())
                && let Some(ack) = self.session.poll_ack(Instant::now())
                && let Err(end) = self.send_on(link, session::encode(&ack), io).await
            {
                return Step::End(end);
            }
        }
    }

    /// Serves a WebSocket link inside this task: the link's poll loop runs the session layer
    /// ([`SessionLayer`]) between the socket and the application's channels, so a message
    /// takes the same hops as on a plain WebSocket connection. Ends as
    /// [`serve_chan`](Self::serve_chan) does; the link is left open for an upgrade that fails.
    async fn serve_ws(
        &mut self,
        link: &mut WsLink,
        index: usize,
        io: &mut DriverIo,
        prober: &mut Prober,
    ) -> Step {
        if self.mode == Mode::Raw {
            // No session layer: the link serves the application's channels directly.
            // As through a connection's channels: a close with an error code is a drop
            // (reported, and retried if the code allows), a normal close ends the connection.
            return Step::End(match poll_fn(|cx| link.raw.poll_run(io, cx)).await {
                RunOutcome::Failed(e) => End::Lost(e),
                RunOutcome::PeerClosed(frame) => match frame.peer_error() {
                    Some(e) => End::Lost(e),
                    None => End::Outcome(RunOutcome::PeerClosed(frame)),
                },
                RunOutcome::LocalClosed => End::Outcome(RunOutcome::LocalClosed),
            });
        }
        let mode = self.mode;
        let mut layer = SessionLayer::new(io, &mut self.session, &mut link.state, false, |cx| {
            prober.poll(cx, mode, index)
        });
        let outcome = poll_fn(|cx| link.raw.poll_run(&mut layer, cx)).await;
        let stopped = layer.take_stop();
        drop(layer);
        let lost = |e: TransportError| End::Lost(TransportError::lost(e.to_string()));
        match stopped {
            Some(Stop::Event(opened)) => Step::Upgrade(opened),
            Some(Stop::Broken(e)) => Step::End(lost(e)),
            Some(Stop::Failed(e)) => Step::End(End::Outcome(RunOutcome::Failed(e))),
            Some(Stop::PeerClose(frame)) => {
                self.closed_by_server = true;
                // What came before the server's close reaches the application first.
                deliver_held(&mut self.session, io).await;
                Step::End(End::Outcome(RunOutcome::PeerClosed(frame)))
            }
            None => Step::End(match outcome {
                RunOutcome::LocalClosed => End::Outcome(RunOutcome::LocalClosed),
                RunOutcome::PeerClosed(_) => End::Lost(TransportError::lost("link closed")),
                RunOutcome::Failed(e) => End::Lost(e),
            }),
        }
    }

    /// Handles what woke the loop from the link, then what the link has already queued behind
    /// it (at most [`BATCH`] messages in all), sending the ACKs that come due on the way.
    async fn on_inbound(
        &mut self,
        received: Result<Option<Message>, TransportError>,
        link: &mut ChanLink,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        self.on_received(received, &link.rx, io).await?;
        for _ in 1..BATCH {
            self.ack_if_due(link, io).await?;
            if self.session.held_full() {
                break;
            }
            let next = match link.rx.try_recv() {
                Ok(Some(m)) => Ok(Some(m)),
                // Nothing queued now (an end is seen by the next `recv`).
                Ok(None) => break,
                Err(e) => Err(e),
            };
            self.on_received(next, &link.rx, io).await?;
        }
        Ok(())
    }

    /// Sends an ACK when `ack_every` deliveries are owed (no clock read).
    async fn ack_if_due(&mut self, link: &mut ChanLink, io: &mut DriverIo) -> Result<(), End> {
        if self.mode == Mode::Session
            && self.session.ack_count_due()
            && let Some(ack) = self.session.poll_ack(Instant::now())
        {
            self.send_on(link, session::encode(&ack), io).await?;
        }
        Ok(())
    }

    /// Handles the command that woke the loop, then the commands already queued behind it (at
    /// most [`BATCH`] in all, and no further than the session's window allows).
    async fn on_commands(
        &mut self,
        first: Command,
        link: &mut ChanLink,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        let raw = self.mode == Mode::Raw;
        let mut command = first;
        for n in 1..=BATCH {
            match command {
                Command::Send(m) => {
                    let m = if raw {
                        m
                    } else {
                        session::encode(&self.session.send(m))
                    };
                    self.send_on(link, m, io).await?;
                }
                Command::Close(frame) => {
                    if !raw {
                        let close = Frame::Close {
                            code: frame.code,
                            reason: frame.reason.clone(),
                        };
                        let _ = tokio::time::timeout(
                            self.shared.config.transport.close_timeout,
                            link.tx.send(session::encode(&close)),
                        )
                        .await;
                    }
                    let _ = link.tx.close(frame.code, &frame.reason).await;
                    return Err(End::Outcome(RunOutcome::LocalClosed));
                }
            }
            if n == BATCH || !(raw || self.session.can_send()) {
                break;
            }
            match io.try_command() {
                Some(next) => command = next,
                None => break,
            }
        }
        Ok(())
    }

    /// Queues `message` on the link: at once when it has room, else through
    /// [`push`](Self::push), which keeps reading while it waits.
    async fn send_on(
        &mut self,
        link: &mut ChanLink,
        message: Message,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        // `capacity` first: a full queue is not an event worth the queue-full metric here.
        if link.tx.capacity() > 0 {
            match link.tx.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(m)) => return self.push(link, m, io).await,
                Err(TrySendError::Failed(e)) => {
                    return Err(End::Lost(TransportError::lost(format!("sending: {e}"))));
                }
            }
        }
        self.push(link, message, io).await
    }

    /// Moves the session to a link a probe opened, when its handshake succeeds.
    async fn upgrade(
        &mut self,
        opened: Result<Opened, TransportError>,
        link: &mut Link,
        io: &mut DriverIo,
    ) -> Result<(), End> {
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                debug!(error = %e, "upgrade probe failed");
                return Ok(());
            }
        };
        match self.establish(opened).await {
            Ok(new_link) => {
                std::mem::replace(link, new_link).close_in_background("upgraded");
                self.announce(link, Some(ChangeReason::Upgrade));
                self.start_link(link, io).await
            }
            Err(e) if is_session_lost(&e) => Err(End::Outcome(RunOutcome::Failed(e))),
            Err(e) => {
                debug!(error = %e, "upgrade handshake failed");
                Ok(())
            }
        }
    }

    fn dropped(&mut self, link: &Link, error: TransportError) -> RunOutcome {
        let transport = self.kind(link.index);
        self.shared.status.send_modify(|s| s.transport = None);
        self.shared.emit(AdaptiveEvent::Disconnected {
            transport,
            error: error.clone(),
        });
        if self.mode == Mode::Session {
            // Whatever the protocol said, the session resumes on a new link.
            RunOutcome::Failed(TransportError::lost(error.to_string()))
        } else {
            RunOutcome::Failed(error)
        }
    }
}

const SESSION_LOST: &str = "session lost";

fn session_lost(reason: &str) -> TransportError {
    TransportError::protocol(format!(
        "{SESSION_LOST} (messages in flight cannot be delivered): {reason}"
    ))
}

fn is_session_lost(e: &TransportError) -> bool {
    matches!(e, TransportError::ProtocolViolation { reason } if reason.starts_with(SESSION_LOST))
}

impl Dial for AdaptiveDial {
    type Link = Link;

    async fn dial(&mut self) -> Result<Link, TransportError> {
        let order = self.order();
        let need = if self.mode == Mode::Session {
            Need::Session
        } else {
            Need::Any
        };
        let shared = self.shared.clone();
        let opened = race::race(&shared.candidates, &order, &shared.config, need, |i, e| {
            shared.emit(AdaptiveEvent::AttemptFailed {
                transport: shared.candidates[i].kind,
                error: e.clone(),
            });
        })
        .await?;
        let link = self.establish(opened).await?;
        self.announce(&link, None);
        Ok(link)
    }

    fn info(&self, link: &Link) -> ConnectionInfo {
        ConnectionInfo::new(self.kind(link.index).name())
    }

    async fn run(&mut self, link: Link, io: &mut DriverIo) -> RunOutcome {
        self.run_link(link, io).await
    }

    fn should_retry(&self, error: &TransportError) -> bool {
        !self.closed_by_server && error.is_retryable()
    }
}

/// An adaptive connection: implements [`Transport`]; tells which transport carries it.
///
/// Dropping it closes the connection (code 1000).
#[derive(Debug)]
pub struct AdaptiveConnection {
    inner: Connection,
    policy: SendBufferPolicy,
    status: watch::Receiver<AdaptiveStatus>,
    events: broadcast::Sender<AdaptiveEvent>,
    /// Subscribed before the first attempt: the first `events()` call gets it.
    first_events: std::sync::Mutex<Option<broadcast::Receiver<AdaptiveEvent>>>,
}

/// Connects with `config`: races the endpoints (Happy Eyeballs), health-checks the winner,
/// opens (or, with a server of this crate, resumes) a session, and returns the connection.
/// From then on it reconnects by itself through `config.transport.reconnect`.
///
/// # Errors
/// [`TransportError::InvalidConfig`] / [`TransportError::InvalidUrl`]; when every transport
/// failed, the one error of a single endpoint or a combined one ([`TransportError::ConnectionFailed`]
/// when any failure may pass).
///
/// # Cancel safety
/// Cancel safe: dropped attempts close what they had opened.
pub async fn connect(config: AdaptiveConfig) -> Result<AdaptiveConnection, TransportError> {
    let (dial, transport, parts) = prepare(config)?;
    let inner = driver::connect(dial, &transport, "adaptive").await?;
    Ok(parts.with(inner))
}

/// As [`connect`], but returns at once: the connection reports
/// [`ConnectionState::Connecting`](transport_core::ConnectionState::Connecting) while the race
/// runs in the background (bounded by `config.transport.connect_timeout`), then `Connected`.
/// Sends meanwhile wait in the send buffer. When every transport fails, `recv` returns the
/// error [`connect`] would have returned and the state goes `Failed`. Must be called within a
/// Tokio runtime.
///
/// # Errors
/// [`TransportError::InvalidConfig`] / [`TransportError::InvalidUrl`], at once.
pub fn connect_lazy(config: AdaptiveConfig) -> Result<AdaptiveConnection, TransportError> {
    let (dial, transport, parts) = prepare(config)?;
    let inner = driver::connect_lazy(dial, &transport, "adaptive")?;
    Ok(parts.with(inner))
}

/// What an [`AdaptiveConnection`] holds besides its core connection.
struct Parts {
    policy: SendBufferPolicy,
    status: watch::Receiver<AdaptiveStatus>,
    events: broadcast::Sender<AdaptiveEvent>,
    first_events: broadcast::Receiver<AdaptiveEvent>,
}

impl Parts {
    fn with(self, inner: Connection) -> AdaptiveConnection {
        AdaptiveConnection {
            inner,
            policy: self.policy,
            status: self.status,
            events: self.events,
            first_events: std::sync::Mutex::new(Some(self.first_events)),
        }
    }
}

/// Validates `config` and builds the dialer and the adaptive connection's settings.
fn prepare(
    config: AdaptiveConfig,
) -> Result<(AdaptiveDial, transport_core::TransportConfig, Parts), TransportError> {
    config.validate()?;
    let candidates = race::candidates(&config)?;
    let (status, status_rx) = watch::channel(AdaptiveStatus::default());
    let (events, first_events) = broadcast::channel(EVENTS);
    let mut transport = config.transport.clone();
    // Room for the session header inside every protocol's message limit.
    let protocol_limit = config
        .ws
        .transport
        .max_message_size
        .min(config.sse.transport.max_message_size)
        .min(config.wt.client.transport.max_message_size);
    // An SSE server sends binary as base64 in one event, which the parser bounds.
    let sse_limit = if config
        .endpoints
        .iter()
        .any(|e| e.kind == TransportKind::Sse)
    {
        let p = config.sse.parser;
        p.max_event_size.min(p.max_line_length) / 4 * 3
    } else {
        usize::MAX
    };
    transport.max_message_size = transport.max_message_size.min(
        protocol_limit
            .min(sse_limit)
            .saturating_sub(session::DATA_OVERHEAD)
            .max(1),
    );
    let policy = config.send_buffer_policy;
    let shared = Arc::new(ClientShared {
        candidates,
        config,
        status,
        events: events.clone(),
    });
    // A winner remembered from an earlier run is tried first, like this client's own.
    let winner = shared.config.remembered.and_then(|kind| {
        shared
            .candidates
            .iter()
            .position(|candidate| candidate.kind == kind)
    });
    let dial = AdaptiveDial {
        session: Session::new(shared.config.session.clone()),
        shared,
        mode: Mode::Undecided,
        session_id: SessionId::default(),
        winner,
        last: None,
        closed_by_server: false,
    };
    Ok((
        dial,
        transport,
        Parts {
            policy,
            status: status_rx,
            events,
            first_events,
        },
    ))
}

impl AdaptiveConnection {
    /// Which transport carries the connection now, and whether delivery is guaranteed.
    pub fn status(&self) -> AdaptiveStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<AdaptiveStatus> {
        self.status.clone()
    }

    /// The transport in use now (`None` while reconnecting).
    pub fn transport(&self) -> Option<TransportKind> {
        self.status.borrow().transport
    }

    /// A receiver of [`AdaptiveEvent`]s. The first call's receiver starts with the events of
    /// [`connect`] itself (failed attempts, the initial `TransportChanged`); later calls'
    /// start from now. Bounded: a receiver more than 64 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<AdaptiveEvent> {
        self.first_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Statistics of the adaptive connection.
    pub fn stats(&self) -> ConnectionStats {
        self.inner.stats()
    }

    /// Facts about the current link (`transport` is `"wt"`, `"ws"` or `"sse"`).
    pub fn info(&self) -> ConnectionInfo {
        self.inner.info()
    }

    /// The underlying core connection, e.g. to [`split`](Connection::split) it. Its sender
    /// always waits when full (the [`SendBufferPolicy`] applies to [`Transport::send`] on this
    /// type only).
    pub fn into_inner(self) -> Connection {
        self.inner
    }
}

impl Transport for AdaptiveConnection {
    /// Queues a message. While connected, waits for room (backpressure). While reconnecting,
    /// the message joins the send buffer; when it is full, [`SendBufferPolicy::Wait`] waits and
    /// [`SendBufferPolicy::Error`] fails with [`TransportError::NotConnected`].
    async fn send(&self, message: Message) -> Result<(), TransportError> {
        if self.policy == SendBufferPolicy::Error
            && self.inner.state() != ConnectionState::Connected
        {
            return match self.inner.try_send(message) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(TransportError::NotConnected),
                Err(TrySendError::Failed(e)) => Err(e),
            };
        }
        self.inner.send(message).await
    }

    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        self.inner.recv().await
    }

    async fn close(&self, code: u16, reason: &str) -> Result<(), TransportError> {
        self.inner.close(code, reason).await
    }

    fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.watch_state()
    }
}
