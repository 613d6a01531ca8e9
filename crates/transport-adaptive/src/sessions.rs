//! Server side of the session layer: the handshake on every accepted link, the bounded session
//! table, and one task per session that owns its state across links and transports.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::debug;
use transport_core::driver::{self, DriverIo, IoEvent, RunOutcome};
use transport_core::{
    CloseFrame, Command, Connection, ConnectionInfo, Message, Receiver, Sender, TransportConfig,
    TransportError, TrySendError,
};

use crate::ack_timer::{AckTimer, BATCH};
use crate::config::TransportKind;
use crate::held::{deliver_held, hand_over, hand_over_reserved};
use crate::layer::{LayerState, SessionLayer, Stop};
use crate::race::AnyLink;
use crate::session::{self, Frame, RejectCode, Session, SessionId, SessionLimits};

/// What the application learns about an accepted connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionRequest {
    /// The session id (nil for a connection without a session).
    pub session: SessionId,
    /// The transport of the first link.
    pub transport: TransportKind,
    /// The client's address, when known.
    pub peer_addr: Option<SocketAddr>,
    /// Whether the client speaks the session protocol (exactly-once delivery). A client that
    /// does not (a plain WebSocket client, say) gets a connection carried by that one link.
    pub delivery_guaranteed: bool,
}

/// A new link for a session.
struct Attach {
    conn: AnyLink,
    kind: TransportKind,
    ack: u64,
    stop: CancellationToken,
    /// Cancelled (before `stop`) by a shutdown that ends the sessions.
    end: CancellationToken,
    /// Tracks the server's session tasks (a shutdown waits for them to send `CLOSE`).
    sessions: TaskTracker,
    sever: watch::Receiver<u64>,
}

#[derive(Debug)]
struct TableInner {
    sessions: HashMap<SessionId, mpsc::Sender<Attach>>,
    max: usize,
}

/// The sessions of a server, bounded. Cheap to clone. A server bound with an existing table
/// ([`AdaptiveServer::bind_with_sessions`](crate::AdaptiveServer::bind_with_sessions)) resumes
/// its sessions, e.g. after the listeners were restarted.
#[derive(Debug, Clone)]
pub struct SessionTable {
    inner: Arc<Mutex<TableInner>>,
}

impl std::fmt::Debug for Attach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attach")
            .field("kind", &self.kind)
            .field("ack", &self.ack)
            .finish_non_exhaustive()
    }
}

impl SessionTable {
    /// An empty table holding at most `max_sessions` sessions (attached or detached).
    pub fn new(max_sessions: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(TableInner {
                sessions: HashMap::new(),
                max: max_sessions.max(1),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions alive now.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether no session is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, id: SessionId, tx: mpsc::Sender<Attach>) -> bool {
        let mut t = self.lock();
        if t.sessions.len() >= t.max {
            return false;
        }
        t.sessions.insert(id, tx);
        true
    }

    fn get(&self, id: SessionId) -> Option<mpsc::Sender<Attach>> {
        self.lock().sessions.get(&id).cloned()
    }

    fn remove(&self, id: SessionId) {
        self.lock().sessions.remove(&id);
    }
}

/// Settings the link handshake and the session tasks need.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) transport: TransportConfig,
    pub(crate) limits: SessionLimits,
    pub(crate) hello_timeout: Duration,
    pub(crate) expiry: Duration,
}

/// What the handshake of a link needs from its server.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) settings: Arc<SessionSettings>,
    pub(crate) table: SessionTable,
    pub(crate) incoming: Incoming,
    pub(crate) stop: CancellationToken,
    /// Cancelled before `stop` when the server ends its sessions (not for a restart).
    pub(crate) end: CancellationToken,
    /// Tracks the session tasks this server started.
    pub(crate) sessions: TaskTracker,
    pub(crate) sever: watch::Receiver<u64>,
}

/// Where accepted connections go.
pub(crate) type Incoming = mpsc::Sender<(Connection, SessionRequest)>;

/// Serves a freshly accepted link: answers health checks, then attaches it to a new or
/// existing session (`HELLO`), or hands it out as a connection of its own (any other first
/// message, or silence for `hello_timeout`).
pub(crate) async fn handle_link(
    mut conn: AnyLink,
    kind: TransportKind,
    peer_addr: Option<SocketAddr>,
    hub: Hub,
) {
    let Hub {
        settings,
        table,
        incoming,
        stop,
        end,
        sessions,
        sever,
    } = hub;
    let deadline = tokio::time::Instant::now() + settings.hello_timeout;
    let first = loop {
        let received = tokio::select! {
            r = tokio::time::timeout_at(deadline, conn.recv()) => r,
            () = stop.cancelled() => return,
        };
        let message = match received {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None) | Err(_)) => return,
            Err(_) => break None,
        };
        match session::decode(&message) {
            Ok(Frame::Ping) => {
                if conn.send(session::encode(&Frame::Pong)).await.is_err() {
                    return;
                }
            }
            Ok(Frame::Hello { session, ack }) => {
                let attach = Attach {
                    conn,
                    kind,
                    ack,
                    stop,
                    end,
                    sessions,
                    sever,
                };
                hello(attach, peer_addr, session, &settings, &table, &incoming).await;
                return;
            }
            _ => break Some(message),
        }
    };
    // A client without the session protocol: this link is its connection.
    let request = SessionRequest {
        session: SessionId::default(),
        transport: kind,
        peer_addr,
        delivery_guaranteed: false,
    };
    let info = ConnectionInfo::new(kind.name()).with_peer_addr(peer_addr);
    let app = driver::spawn_accepted(&settings.transport, info, move |mut io| async move {
        let outcome = relay(conn, first, &mut io, stop).await;
        (outcome, io)
    });
    let _ = incoming.send((app, request)).await;
}

async fn hello(
    attach: Attach,
    peer_addr: Option<SocketAddr>,
    id: SessionId,
    settings: &Arc<SessionSettings>,
    table: &SessionTable,
    incoming: &Incoming,
) {
    let (kind, ack) = (attach.kind, attach.ack);
    if !id.is_nil() {
        match table.get(id) {
            Some(tx) => {
                if let Err(mpsc::error::SendError(a)) = tx.send(attach).await {
                    reject(
                        a.conn,
                        RejectCode::UnknownSession,
                        "session ended",
                        settings,
                    )
                    .await;
                }
            }
            None => {
                reject(
                    attach.conn,
                    RejectCode::UnknownSession,
                    "unknown or expired session",
                    settings,
                )
                .await;
            }
        }
        return;
    }
    if ack != 0 {
        reject(
            attach.conn,
            RejectCode::Protocol,
            "a new session acknowledges nothing",
            settings,
        )
        .await;
        return;
    }
    let Ok(new_id) = SessionId::random() else {
        reject(attach.conn, RejectCode::Full, "no session id", settings).await;
        return;
    };
    let (tx, rx) = mpsc::channel(4);
    if !table.insert(new_id, tx) {
        reject(
            attach.conn,
            RejectCode::Full,
            "session table full",
            settings,
        )
        .await;
        return;
    }
    let request = SessionRequest {
        session: new_id,
        transport: kind,
        peer_addr,
        delivery_guaranteed: true,
    };
    let info = ConnectionInfo::new(kind.name()).with_peer_addr(peer_addr);
    let settings2 = settings.clone();
    let table2 = table.clone();
    let app = driver::spawn_accepted(&settings.transport, info, move |mut io| async move {
        let outcome = serve_session(new_id, attach, rx, &settings2, &mut io).await;
        table2.remove(new_id);
        (outcome, io)
    });
    let _ = incoming.send((app, request)).await;
}

/// Answers a `HELLO` with `REJECT` and closes the link, within the close timeout twice.
async fn reject(conn: AnyLink, code: RejectCode, reason: &str, settings: &SessionSettings) {
    let frame = Frame::Reject {
        code,
        reason: reason.to_owned(),
    };
    send_and_close(conn, frame, settings.transport.close_timeout).await;
}

/// Sends `frame` (waiting at most `timeout`: a peer that does not read cannot hold us), then
/// closes the link.
async fn send_and_close(mut conn: AnyLink, frame: Frame, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, conn.send(session::encode(&frame))).await;
    conn.close(1000, "").await;
}

/// Passes messages both ways between a link and the application (no session).
async fn relay(
    conn: AnyLink,
    first: Option<Message>,
    io: &mut DriverIo,
    stop: CancellationToken,
) -> RunOutcome {
    if let Some(m) = first {
        io.deliver(m).await;
    }
    let conn = match conn {
        AnyLink::Conn(c) => c,
        AnyLink::Ws(raw) => return relay_ws(*raw, io, stop).await,
    };
    let (tx, mut rx) = conn.split();
    let end = |r: Result<Option<Message>, TransportError>, rx: &Receiver| match r {
        Ok(Some(_)) => None,
        Ok(None) => Some(RunOutcome::PeerClosed(
            rx.peer_close_frame().unwrap_or_else(CloseFrame::normal),
        )),
        Err(e) => Some(RunOutcome::Failed(e)),
    };
    // A message waiting for the application's room: only reading stops meanwhile, never the
    // application's sends (an application that echoes waits on its own send while its queue
    // is full; see `held.rs`).
    let mut waiting: Option<Message> = None;
    loop {
        let want_room = waiting.is_some();
        tokio::select! {
            r = rx.recv(), if waiting.is_none() => match r {
                Ok(Some(m)) => waiting = io.try_deliver(m).err(),
                r => if let Some(outcome) = end(r, &rx) {
                    return outcome;
                },
            },
            event = poll_fn(|cx| io.poll_room_or_command(cx, want_room, true)) => match event {
                IoEvent::Room(room) => {
                    io.hand_over_waiting(&mut waiting, room);
                }
                IoEvent::Command(Command::Send(m)) => {
                    // Keep reading while the send waits (see the session's `push`).
                    let sending = tx.send(m);
                    tokio::pin!(sending);
                    loop {
                        tokio::select! {
                            biased;
                            result = &mut sending => match result {
                                Ok(()) => break,
                                Err(e) => return RunOutcome::Failed(e),
                            },
                            room = poll_fn(|cx| io.poll_reserve(cx)), if waiting.is_some() => {
                                io.hand_over_waiting(&mut waiting, room);
                            }
                            r = rx.recv(), if waiting.is_none() => match r {
                                Ok(Some(m)) => waiting = io.try_deliver(m).err(),
                                r => if let Some(outcome) = end(r, &rx) {
                                    return outcome;
                                },
                            },
                        }
                    }
                }
                IoEvent::Command(Command::Close(f)) => {
                    let _ = tx.close(f.code, &f.reason).await;
                    return RunOutcome::LocalClosed;
                }
            },
            () = stop.cancelled() => {
                let _ = tx.close(1001, "server shutting down").await;
                return RunOutcome::Failed(TransportError::ClosedByPeer {
                    code: 1001,
                    reason: "server shutting down".into(),
                });
            }
        }
    }
}

/// As [`relay`], for a WebSocket link this task runs: the link serves the application's
/// channels itself.
async fn relay_ws(
    mut raw: transport_ws::RawLink,
    io: &mut DriverIo,
    stop: CancellationToken,
) -> RunOutcome {
    tokio::select! {
        outcome = poll_fn(|cx| raw.poll_run(io, cx)) => outcome,
        () = stop.cancelled() => {
            raw.close(1001, "server shutting down").await;
            RunOutcome::Failed(TransportError::ClosedByPeer {
                code: 1001,
                reason: "server shutting down".into(),
            })
        }
    }
}

/// The link a session is attached to: a protocol connection with its own driver task, or a
/// WebSocket link the session task runs itself.
enum AttachedLink {
    Chan(Attached),
    Ws(AttachedWs),
}

/// A WebSocket link the session task runs (see `layer.rs`).
struct AttachedWs {
    raw: Box<transport_ws::RawLink>,
    state: LayerState,
    stop: CancellationToken,
    sever: watch::Receiver<u64>,
}

/// The first of what interrupts an attached link besides its traffic.
async fn interrupts(
    end: CancellationToken,
    stop: CancellationToken,
    mut sever: watch::Receiver<u64>,
) -> Interrupt {
    tokio::select! {
        _ = sever.changed() => Interrupt::Sever,
        () = end.cancelled() => Interrupt::End,
        () = stop.cancelled() => Interrupt::Stop,
    }
}

/// What ends a run of an attached WebSocket link besides the session itself.
enum WsEvent {
    Moved(Attach),
    Interrupt(Interrupt),
}

/// The link a session is attached to, through its channels.
struct Attached {
    tx: Sender,
    rx: Receiver,
    stop: CancellationToken,
    sever: watch::Receiver<u64>,
}

/// The reason a session ended by [`AdaptiveServer::shutdown`](crate::AdaptiveServer::shutdown)
/// carries to both ends.
pub(crate) const SHUTDOWN_REASON: &str = "server shutting down";

/// What the application's connection of a session ended by a server shutdown reports.
fn shut_down() -> RunOutcome {
    RunOutcome::Failed(TransportError::ClosedByPeer {
        code: 1001,
        reason: SHUTDOWN_REASON.into(),
    })
}

/// What interrupts an attached link besides its traffic.
enum Interrupt {
    /// [`AdaptiveServer::sever_links`](crate::AdaptiveServer::sever_links).
    Sever,
    /// The server ends its sessions.
    End,
    /// The server stops its listeners (the session stays).
    Stop,
}

/// What handling a frame or a send asks of the session loop.
enum Next {
    /// Carry on.
    Go,
    /// The link is gone: wait for the client to come back.
    Detach,
    /// The session is over.
    End(RunOutcome),
    /// A new link arrived for the session: attach it (the old one is dropped).
    Moved(Attach),
}

struct SessionTask<'a> {
    id: SessionId,
    session: Session,
    io: &'a mut DriverIo,
    attach_rx: mpsc::Receiver<Attach>,
    attach_open: bool,
    /// Cancelled when the server ends its sessions.
    end: CancellationToken,
    /// Counts this task among the sessions of the server its link came from.
    running: TaskTrackerToken,
}

impl SessionTask<'_> {
    /// Handles what the link yielded.
    async fn on_received(
        &mut self,
        received: Result<Option<Message>, TransportError>,
        l: &Attached,
    ) -> Next {
        let Ok(Some(m)) = received else {
            return Next::Detach;
        };
        match session::decode(&m) {
            Ok(Frame::Data { seq, message }) => {
                // Held, then handed over as far as the application has room: this loop never
                // waits on the application (see `held.rs`).
                match self.session.hold_data(seq, message) {
                    Ok(()) => {
                        hand_over(&mut self.session, self.io);
                        Next::Go
                    }
                    Err(_) => Next::Detach,
                }
            }
            Ok(Frame::Ack { seq }) => match self.session.on_ack(seq) {
                Ok(()) => Next::Go,
                Err(e) => Next::End(RunOutcome::Failed(e)),
            },
            Ok(Frame::Close { code, reason }) => {
                // What came before the client's close reaches the application first.
                deliver_held(&mut self.session, self.io).await;
                let _ = l.tx.close(1000, "").await;
                Next::End(RunOutcome::PeerClosed(CloseFrame::new(code, reason)))
            }
            Ok(Frame::Ping) => {
                // Answered without waiting: a full queue means the client is busy anyway.
                let _ = l.tx.try_send(session::encode(&Frame::Pong));
                Next::Go
            }
            Ok(_) => Next::Go,
            Err(_) => Next::Detach,
        }
    }

    /// Handles what woke the loop from the link, then what the link has already queued behind
    /// it (at most [`BATCH`] messages in all), sending the ACKs that come due on the way.
    async fn on_inbound(
        &mut self,
        received: Result<Option<Message>, TransportError>,
        l: &mut Attached,
    ) -> Next {
        let mut next = self.on_received(received, l).await;
        for _ in 1..BATCH {
            if !matches!(next, Next::Go) {
                return next;
            }
            next = self.ack_if_due(l).await;
            if !matches!(next, Next::Go) || self.session.held_full() {
                return next;
            }
            let received = match l.rx.try_recv() {
                Ok(Some(m)) => Ok(Some(m)),
                // Nothing queued now (an end is seen by the next `recv`).
                Ok(None) => break,
                Err(e) => Err(e),
            };
            next = self.on_received(received, l).await;
        }
        next
    }

    /// Sends an ACK when `ack_every` deliveries are owed (no clock read).
    async fn ack_if_due(&mut self, l: &mut Attached) -> Next {
        if self.session.ack_count_due()
            && let Some(ack) = self.session.poll_ack(Instant::now())
        {
            return self.send_on(l, session::encode(&ack)).await;
        }
        Next::Go
    }

    /// Handles the command that woke the loop, then the commands already queued behind it (at
    /// most [`BATCH`] in all, and no further than the session's window allows).
    async fn on_commands(
        &mut self,
        first: Command,
        l: &mut Attached,
        settings: &SessionSettings,
    ) -> Next {
        let mut command = first;
        for n in 1..=BATCH {
            match command {
                Command::Send(m) => {
                    let frame = self.session.send(m);
                    match self.send_on(l, session::encode(&frame)).await {
                        Next::Go => {}
                        other => return other,
                    }
                }
                Command::Close(f) => {
                    let close = Frame::Close {
                        code: f.code,
                        reason: f.reason.clone(),
                    };
                    let _ = tokio::time::timeout(
                        settings.transport.close_timeout,
                        l.tx.send(session::encode(&close)),
                    )
                    .await;
                    let _ = l.tx.close(f.code, &f.reason).await;
                    return Next::End(RunOutcome::LocalClosed);
                }
            }
            if n == BATCH || !self.session.can_send() {
                break;
            }
            match self.io.try_command() {
                Some(next) => command = next,
                None => break,
            }
        }
        Next::Go
    }

    /// Queues `message` on the link: at once when it has room, else through
    /// [`push`](Self::push), which keeps reading while it waits.
    async fn send_on(&mut self, l: &mut Attached, message: Message) -> Next {
        // `capacity` first: a full queue is not an event worth the queue-full metric here.
        if l.tx.capacity() > 0 {
            match l.tx.try_send(message) {
                Ok(()) => return Next::Go,
                Err(TrySendError::Full(m)) => return self.push(l, m).await,
                Err(TrySendError::Failed(_)) => return Next::Detach,
            }
        }
        self.push(l, message).await
    }

    /// Sends on the link while still reading it (see the client's `push`).
    async fn push(&mut self, l: &mut Attached, message: Message) -> Next {
        let sending = l.tx.send(message);
        tokio::pin!(sending);
        loop {
            tokio::select! {
                biased;
                result = &mut sending => return if result.is_ok() { Next::Go } else { Next::Detach },
                received = l.rx.recv(), if !self.session.held_full() => match self.on_received(received, l).await {
                    Next::Go => {}
                    other => return other,
                },
                // A client that moved to another link stops reading this one: do not wait.
                a = self.attach_rx.recv(), if self.attach_open => match a {
                    Some(a) => return Next::Moved(a),
                    None => self.attach_open = false,
                },
            }
        }
    }

    /// Attaches a link: `WELCOME` with our acknowledgement, then the replay of what the
    /// client missed.
    async fn attach(
        &mut self,
        a: Attach,
        resumed: bool,
        settings: &SessionSettings,
    ) -> (Option<AttachedLink>, Next) {
        let welcome = Frame::Welcome {
            session: self.id,
            resumed,
            ack: self.session.delivered(),
        };
        let replay = match self.session.resume(a.ack) {
            Ok(r) => r,
            Err(e) => {
                let reject = Frame::Reject {
                    code: RejectCode::UnknownSession,
                    reason: e.to_string(),
                };
                match a.conn {
                    AnyLink::Conn(c) => {
                        let _ = c.try_send(session::encode(&reject));
                    }
                    ws @ AnyLink::Ws(_) => {
                        // Not waited for: this task serves the session.
                        let timeout = settings.transport.close_timeout;
                        tokio::spawn(send_and_close(ws, reject, timeout));
                    }
                }
                return (None, Next::Go);
            }
        };
        self.io
            .set_info(ConnectionInfo::new(a.kind.name()).with_peer_addr(a.conn.peer_addr()));
        self.end = a.end;
        self.running = a.sessions.token();
        let conn = match a.conn {
            AnyLink::Conn(c) => c,
            AnyLink::Ws(mut raw) => {
                let sent = tokio::time::timeout(
                    settings.transport.close_timeout,
                    raw.send(session::encode(&welcome)),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return (None, Next::Go);
                }
                self.session.handshake_acked();
                let mut state = LayerState::default();
                state.out.extend(replay.iter().map(session::encode));
                let l = AttachedWs {
                    raw,
                    state,
                    stop: a.stop,
                    sever: a.sever,
                };
                return (Some(AttachedLink::Ws(l)), Next::Go);
            }
        };
        let (tx, rx) = conn.split();
        let mut l = Attached {
            tx,
            rx,
            stop: a.stop,
            sever: a.sever,
        };
        if l.tx.send(session::encode(&welcome)).await.is_err() {
            return (None, Next::Go);
        }
        self.session.handshake_acked();
        for frame in replay {
            match self.push(&mut l, session::encode(&frame)).await {
                Next::Go => {}
                Next::Detach => return (None, Next::Go),
                other => return (None, other),
            }
        }
        (Some(AttachedLink::Chan(l)), Next::Go)
    }
}

/// Runs one session until the application closes it, the client closes it, or it stays
/// detached past the expiry.
async fn serve_session(
    id: SessionId,
    first: Attach,
    attach_rx: mpsc::Receiver<Attach>,
    settings: &SessionSettings,
    io: &mut DriverIo,
) -> RunOutcome {
    let mut task = SessionTask {
        id,
        session: Session::new(settings.limits.clone()),
        io,
        attach_rx,
        attach_open: true,
        end: first.end.clone(),
        running: first.sessions.token(),
    };
    let mut link = None;
    let mut next = Next::Moved(first);
    let mut resumed = false;
    // The transport of the last link attached, for the resume and fallback metrics.
    let mut previous: Option<TransportKind> = None;
    loop {
        // Settle what the last step asked for.
        loop {
            match next {
                Next::Go => break,
                Next::Detach => {
                    debug!(%id, "session detached");
                    link = None;
                    break;
                }
                Next::End(outcome) => return outcome,
                Next::Moved(a) => {
                    // The client moved (reconnect, fallback, upgrade); the old link is dropped.
                    drop(link.take());
                    let kind = a.kind;
                    let (l, n) = task.attach(a, resumed, settings).await;
                    if l.is_some() {
                        if let Some(from) = previous.filter(|_| resumed) {
                            record_resume(from, kind);
                        }
                        previous = Some(kind);
                    }
                    resumed = true;
                    link = l;
                    next = n;
                }
            }
        }
        next = match link.as_mut() {
            None => task.detached(settings).await,
            Some(AttachedLink::Chan(l)) => task.attached(l, settings).await,
            Some(AttachedLink::Ws(l)) => task.attached_ws(l, settings).await,
        };
    }
}

/// Counts a session resumed on a new link of `to` ([`ADAPTIVE_RESUMES`]), and a switch of
/// transport when its last link was of another ([`ADAPTIVE_FALLBACKS`]: a fallback, or an
/// upgrade back to a preferred transport).
///
/// [`ADAPTIVE_RESUMES`]: transport_core::metrics::ADAPTIVE_RESUMES
/// [`ADAPTIVE_FALLBACKS`]: transport_core::metrics::ADAPTIVE_FALLBACKS
fn record_resume(from: TransportKind, to: TransportKind) {
    use transport_core::metrics::{ADAPTIVE_FALLBACKS, ADAPTIVE_RESUMES, LABEL_TRANSPORT};
    metrics::counter!(ADAPTIVE_RESUMES, LABEL_TRANSPORT => to.name()).increment(1);
    if from != to {
        metrics::counter!(ADAPTIVE_FALLBACKS, "from" => from.name(), "to" => to.name())
            .increment(1);
    }
}

impl SessionTask<'_> {
    /// One step without a link: buffer sends (bounded by the session window), wait for one.
    async fn detached(&mut self, settings: &SessionSettings) -> Next {
        let expiry = tokio::time::sleep(settings.expiry);
        let can_send = self.session.can_send();
        let held = self.session.has_held();
        tokio::select! {
            a = self.attach_rx.recv(), if self.attach_open => match a {
                Some(a) => Next::Moved(a),
                None => Next::End(RunOutcome::Failed(TransportError::lost("session table gone"))),
            },
            event = poll_fn(|cx| self.io.poll_room_or_command(cx, held, can_send)),
                if held || can_send => match event {
                IoEvent::Room(room) => {
                    hand_over_reserved(&mut self.session, self.io, room);
                    Next::Go
                }
                IoEvent::Command(Command::Send(m)) => {
                    self.session.send(m);
                    Next::Go
                }
                IoEvent::Command(Command::Close(_)) => Next::End(RunOutcome::LocalClosed),
            },
            () = self.end.cancelled() => Next::End(shut_down()),
            () = expiry => {
                debug!(id = %self.id, "detached session expired");
                Next::End(RunOutcome::Failed(TransportError::lost("session expired while detached")))
            }
        }
    }

    /// Serves the attached link until something other than a message happens (a detach, a
    /// move, the end).
    ///
    /// The futures that rarely complete (the ACK timer, a severed link, a shutdown) live across
    /// iterations: building them for every message costs a timer-wheel insertion and a lock per
    /// `Notify` registration, then as much again to drop them.
    async fn attached(&mut self, l: &mut Attached, settings: &SessionSettings) -> Next {
        let interrupt = interrupts(self.end.clone(), l.stop.clone(), l.sever.clone());
        tokio::pin!(interrupt);
        let mut ack_timer = AckTimer::new();
        loop {
            ack_timer.rearm(self.session.next_timeout());
            let can_send = self.session.can_send();
            let (held, held_full) = (self.session.has_held(), self.session.held_full());
            let mut fired = false;
            let next = tokio::select! {
                r = l.rx.recv(), if !held_full => self.on_inbound(r, l).await,
                event = poll_fn(|cx| self.io.poll_room_or_command(cx, held, can_send)),
                    if held || can_send => match event {
                    IoEvent::Room(room) => {
                        hand_over_reserved(&mut self.session, self.io, room);
                        Next::Go
                    }
                    IoEvent::Command(cmd) => self.on_commands(cmd, l, settings).await,
                },
                a = self.attach_rx.recv(), if self.attach_open => if let Some(a) = a {
                    Next::Moved(a)
                } else {
                    self.attach_open = false;
                    Next::Go
                },
                () = ack_timer.sleep(), if ack_timer.is_armed() => {
                    ack_timer.fired();
                    fired = true;
                    Next::Go
                }
                i = &mut interrupt => match i {
                    Interrupt::Sever => {
                        debug!(id = %self.id, "link severed");
                        return Next::Detach;
                    }
                    Interrupt::End => {
                        // The server ends its sessions (before it closes the links): tell the
                        // client, which then stops reconnecting and reports the code and reason.
                        let close = Frame::Close { code: 1001, reason: SHUTDOWN_REASON.into() };
                        let _ = tokio::time::timeout(
                            settings.transport.close_timeout,
                            l.tx.send(session::encode(&close)),
                        ).await;
                        let _ = l.tx.close(1001, SHUTDOWN_REASON).await;
                        return Next::End(shut_down());
                    }
                    Interrupt::Stop => {
                        let _ = l.tx.close(1001, SHUTDOWN_REASON).await;
                        return Next::Detach;
                    }
                },
            };
            let next = match next {
                // The clock is read only when an ACK may be due.
                Next::Go if fired || self.session.ack_count_due() => {
                    match self.session.poll_ack(Instant::now()) {
                        Some(ack) => self.send_on(l, session::encode(&ack)).await,
                        None => Next::Go,
                    }
                }
                other => other,
            };
            if !matches!(next, Next::Go) {
                return next;
            }
        }
    }

    /// As [`attached`](Self::attached), for a WebSocket link this task runs: the session layer
    /// sits inside the link's poll loop ([`SessionLayer`]), and the run ends on what would end
    /// a step of `attached` other than a message.
    async fn attached_ws(&mut self, l: &mut AttachedWs, settings: &SessionSettings) -> Next {
        let interrupt = interrupts(self.end.clone(), l.stop.clone(), l.sever.clone());
        tokio::pin!(interrupt);
        let attach_rx = &mut self.attach_rx;
        let attach_open = &mut self.attach_open;
        let watch = |cx: &mut Context<'_>| {
            if *attach_open {
                match attach_rx.poll_recv(cx) {
                    Poll::Ready(Some(a)) => return Poll::Ready(WsEvent::Moved(a)),
                    Poll::Ready(None) => *attach_open = false,
                    Poll::Pending => {}
                }
            }
            interrupt.as_mut().poll(cx).map(WsEvent::Interrupt)
        };
        let mut layer =
            SessionLayer::new(&mut *self.io, &mut self.session, &mut l.state, true, watch);
        let outcome = poll_fn(|cx| l.raw.poll_run(&mut layer, cx)).await;
        let stopped = layer.take_stop();
        drop(layer);
        match stopped {
            Some(Stop::Event(WsEvent::Moved(a))) => Next::Moved(a),
            Some(Stop::Event(WsEvent::Interrupt(Interrupt::Sever))) => {
                debug!(id = %self.id, "link severed");
                Next::Detach
            }
            Some(Stop::Event(WsEvent::Interrupt(Interrupt::End))) => {
                // As `attached`: tell the client, which then stops reconnecting.
                let close = Frame::Close {
                    code: 1001,
                    reason: SHUTDOWN_REASON.into(),
                };
                let _ = tokio::time::timeout(
                    settings.transport.close_timeout,
                    l.raw.send(session::encode(&close)),
                )
                .await;
                l.raw.close(1001, SHUTDOWN_REASON).await;
                Next::End(shut_down())
            }
            Some(Stop::Event(WsEvent::Interrupt(Interrupt::Stop))) => {
                l.raw.close(1001, SHUTDOWN_REASON).await;
                Next::Detach
            }
            Some(Stop::Broken(_)) => Next::Detach,
            Some(Stop::Failed(e)) => Next::End(RunOutcome::Failed(e)),
            Some(Stop::PeerClose(frame)) => {
                // What came before the client's close reaches the application first.
                deliver_held(&mut self.session, self.io).await;
                l.raw.close(1000, "").await;
                Next::End(RunOutcome::PeerClosed(frame))
            }
            // The application's close ran its course; anything else dropped the link.
            None => match outcome {
                RunOutcome::LocalClosed => Next::End(RunOutcome::LocalClosed),
                RunOutcome::PeerClosed(_) | RunOutcome::Failed(_) => Next::Detach,
            },
        }
    }
}
