//! The driver of one WebSocket link: a hand-written future that owns the socket and serves a
//! [`DriverIo`] — writes queued messages in batches, reads with backpressure, answers and sends
//! pings, detects a dead peer, and runs the close handshake with a deadline.
//!
//! One task per connection, no locks: reading and writing are interleaved in one `poll`.
//!
//! Reading runs ahead of the application by up to `recv_buffer` messages. A consequence worth
//! knowing: when the peer sends messages and then a close frame, the close may be read (and
//! answered, as RFC 6455 asks) before the application has taken the earlier messages, so replies
//! to them can no longer be sent. Python `websockets` behaves the same; a peer that wants the
//! replies waits for them before closing (as `tcat connect` does with `--linger`).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message as WsMessage, Utf8Bytes};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use transport_core::driver::{LinkIo, RunOutcome, WakeGate};
use transport_core::{CloseFrame, Command, Message, TransportConfig, TransportError};

use crate::error::{ReadFailure, classify};

/// Most messages moved per direction in one poll before yielding to other tasks.
const BATCH: usize = 64;

/// Timing of one link.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    pub(crate) keepalive: Option<Duration>,
    pub(crate) dead_peer_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown: Option<CancellationToken>,
}

impl LinkOptions {
    pub(crate) fn new(config: &TransportConfig, shutdown: Option<CancellationToken>) -> Self {
        Self {
            keepalive: config.keepalive_interval,
            dead_peer_timeout: config.dead_peer_timeout,
            close_timeout: config.close_timeout,
            shutdown,
        }
    }
}

enum Phase {
    Open,
    /// We sent a close frame; waiting for the peer's.
    Closing,
    /// The peer sent a close frame; tungstenite answers it, we wait for the end of the stream.
    PeerClosing(CloseFrame),
    /// A fatal error: our close frame (if any) is being flushed, then the link is dropped.
    Failing(TransportError),
}

pub(crate) struct Link<S> {
    ws: WebSocketStream<S>,
    phase: Phase,
    needs_flush: bool,
    last_rx: Instant,
    next_ping: Option<Instant>,
    /// When our latest keepalive ping went out, until its pong comes back (for the RTT).
    ping_sent: Option<Instant>,
    /// Deadline of the current closing phase.
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The timer and the server's shutdown rarely fire: they are polled only after one of
    /// them woke the task, not on every poll (a message takes a few).
    quiet: WakeGate,
    options: LinkOptions,
}

/// Runs a WebSocket link until it ends.
pub(crate) async fn run<S, I>(
    ws: WebSocketStream<S>,
    io: &mut I,
    options: LinkOptions,
) -> RunOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    I: LinkIo,
{
    let mut link = Link::new(ws, options);
    poll_fn(|cx| link.poll(io, cx)).await
}

pub(crate) fn to_ws(message: Message) -> Option<WsMessage> {
    if message.is_text() {
        // Already valid UTF-8 (checked when the message was made); tungstenite re-checks.
        Utf8Bytes::try_from(message.into_payload())
            .ok()
            .map(WsMessage::Text)
    } else {
        Some(WsMessage::Binary(message.into_payload()))
    }
}

fn ws_close(frame: &CloseFrame) -> WsMessage {
    WsMessage::Close(Some(WsCloseFrame {
        code: CloseCode::from(frame.code),
        reason: Utf8Bytes::from(frame.reason.as_str()),
    }))
}

fn from_ws_close(frame: Option<&WsCloseFrame>) -> CloseFrame {
    frame.map_or_else(
        || CloseFrame::new(CloseFrame::NO_STATUS, ""),
        |f| CloseFrame::new(u16::from(f.code), f.reason.as_str()),
    )
}

impl<S> Link<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A link over an open WebSocket, its timers started now.
    pub(crate) fn new(ws: WebSocketStream<S>, options: LinkOptions) -> Self {
        let now = Instant::now();
        let next_ping = options.keepalive.map(|k| now + k);
        let mut link = Self {
            ws,
            phase: Phase::Open,
            needs_flush: false,
            last_rx: now,
            next_ping,
            ping_sent: None,
            deadline: None,
            timer: Box::pin(tokio::time::sleep_until(now + options.dead_peer_timeout)),
            shutdown: options
                .shutdown
                .clone()
                .map(|t| Box::pin(t.cancelled_owned())),
            quiet: WakeGate::new(),
            options,
        };
        link.arm_timer();
        link
    }

    /// The socket, for a message exchange before the link runs (a handshake of the layer
    /// above it) or a close after it ran.
    pub(crate) fn ws(&mut self) -> &mut WebSocketStream<S> {
        &mut self.ws
    }

    /// The configured close timeout.
    pub(crate) fn close_timeout(&self) -> Duration {
        self.options.close_timeout
    }

    fn arm_timer(&mut self) {
        let when = match (&self.phase, self.deadline) {
            (Phase::Open, _) => {
                let Some(ping) = self.next_ping else {
                    return;
                };
                ping.min(self.last_rx + self.options.dead_peer_timeout)
            }
            (_, Some(deadline)) => deadline,
            (_, None) => return,
        };
        if self.timer.deadline() != when {
            self.timer.as_mut().reset(when);
        }
    }

    fn start_closing(&mut self, phase: Phase, frame: Option<&CloseFrame>) {
        if let Some(frame) = frame
            && Pin::new(&mut self.ws).start_send(ws_close(frame)).is_ok()
        {
            self.needs_flush = true;
        }
        self.phase = phase;
        self.deadline = Some(Instant::now() + self.options.close_timeout);
        self.arm_timer();
    }

    /// The outcome when the stream ends (or the deadline passes) in the current phase.
    fn finish(&mut self) -> RunOutcome {
        match std::mem::replace(&mut self.phase, Phase::Closing) {
            Phase::Open => RunOutcome::Failed(TransportError::lost(
                "connection closed without a close frame",
            )),
            Phase::Closing => RunOutcome::LocalClosed,
            Phase::PeerClosing(frame) => RunOutcome::PeerClosed(frame),
            Phase::Failing(e) => RunOutcome::Failed(e),
        }
    }

    fn fail(&mut self, error: TransportError, close_code: Option<u16>) {
        let frame = close_code.map(|code| CloseFrame::new(code, ""));
        self.start_closing(Phase::Failing(error), frame.as_ref());
        // A protocol failure is not worth the full close timeout: flush briefly, then drop.
        self.deadline =
            Some(Instant::now() + self.options.close_timeout.min(Duration::from_secs(1)));
        self.arm_timer();
    }

    /// Serves `io` until the link ends, or `io` ends the run ([`LinkIo::poll_end`]): the link
    /// is then left as it is and may be polled again.
    pub(crate) fn poll<I: LinkIo>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        if let Poll::Ready(end) = io.poll_end(cx) {
            return Poll::Ready(end);
        }
        self.quiet.register(cx);
        if self.quiet.take_open() {
            // Polled with the gate's waker: their wake-ups open it. What fires and is reset
            // is polled again at once (and re-registers) inside `poll_timer`.
            let waker = self.quiet.waker().clone();
            let mut quiet = Context::from_waker(&waker);
            if let Some(done) = self.poll_timer(&mut quiet) {
                return Poll::Ready(done);
            }
            if let Some(shutdown) = self.shutdown.as_mut()
                && shutdown.as_mut().poll(&mut quiet).is_ready()
            {
                self.shutdown = None;
                if matches!(self.phase, Phase::Open) {
                    let frame = CloseFrame::new(CloseFrame::GOING_AWAY, "server shutting down");
                    self.start_closing(Phase::Closing, Some(&frame));
                }
            }
        }
        let mut busy = self.poll_commands(io, cx);
        match self.poll_read(io, cx) {
            Ok(more) => busy |= more,
            Err(done) => return Poll::Ready(done),
        }
        if let Poll::Ready(end) = io.poll_end(cx) {
            return Poll::Ready(end);
        }
        if io.wants_write() {
            busy |= self.poll_commands(io, cx);
        }
        if self.needs_flush {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => {
                    if matches!(self.phase, Phase::Open) {
                        return Poll::Ready(RunOutcome::Failed(classify_write(e)));
                    }
                    return Poll::Ready(self.finish());
                }
                Poll::Pending => {}
            }
        }
        if let Phase::Failing(_) = self.phase
            && !self.needs_flush
        {
            return Poll::Ready(self.finish());
        }
        if busy {
            // A batch limit was hit: let other tasks run, then continue.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Keepalive pings, dead-peer detection and closing deadlines.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Option<RunOutcome> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        if !matches!(self.phase, Phase::Open) {
            if self.deadline.is_some_and(|d| now >= d) {
                return Some(self.finish());
            }
            self.arm_timer();
            self.poll_reset_timer(cx);
            return None;
        }
        if now >= self.last_rx + self.options.dead_peer_timeout {
            return Some(RunOutcome::Failed(TransportError::lost(format!(
                "peer sent nothing for {:?} (keepalive)",
                self.options.dead_peer_timeout
            ))));
        }
        if let (Some(ping), Some(interval)) = (self.next_ping, self.options.keepalive)
            && now >= ping
        {
            if Pin::new(&mut self.ws)
                .start_send(WsMessage::Ping(Bytes::new()))
                .is_ok()
            {
                self.needs_flush = true;
                self.ping_sent = Some(now);
            }
            self.next_ping = Some(now + interval);
        }
        self.arm_timer();
        self.poll_reset_timer(cx);
        None
    }

    /// Polls the timer just reset once, to register the waker (the one that fired was taken).
    fn poll_reset_timer(&mut self, cx: &mut Context<'_>) {
        if self.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    /// Moves queued application messages into the socket. Returns whether the batch limit was
    /// hit (more may be waiting).
    fn poll_commands<I: LinkIo>(&mut self, io: &mut I, cx: &mut Context<'_>) -> bool {
        for _ in 0..BATCH {
            if !matches!(self.phase, Phase::Open) {
                return false;
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.fail(classify_write(e), None);
                    return false;
                }
                Poll::Pending => return false,
            }
            match io.poll_command(cx) {
                Poll::Ready(Command::Send(message)) => {
                    let Some(message) = to_ws(message) else {
                        continue;
                    };
                    if let Err(e) = Pin::new(&mut self.ws).start_send(message) {
                        self.fail(classify_write(e), None);
                        return false;
                    }
                    self.needs_flush = true;
                }
                Poll::Ready(Command::Close(frame)) => {
                    self.start_closing(Phase::Closing, Some(&frame));
                    return false;
                }
                Poll::Pending => return false,
            }
        }
        true
    }

    /// Reads messages while the application has room for them. `Ok(busy)` to go on, `Err` with
    /// the outcome when the link is over.
    fn poll_read<I: LinkIo>(
        &mut self,
        io: &mut I,
        cx: &mut Context<'_>,
    ) -> Result<bool, RunOutcome> {
        if let Phase::Failing(_) = self.phase {
            return Ok(false);
        }
        for _ in 0..BATCH {
            // Reserve room first: while the application is not reading, neither are we, and the
            // peer feels TCP backpressure. Time spent blocked on the application does not count
            // against the peer's keepalive.
            let has_room = match io.poll_reserve(cx) {
                Poll::Ready(alive) => alive,
                Poll::Pending => {
                    self.last_rx = Instant::now();
                    return Ok(false);
                }
            };
            let item = match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Pending => return Ok(false),
                Poll::Ready(None) => return Err(self.finish()),
                Poll::Ready(Some(item)) => item,
            };
            self.last_rx = Instant::now();
            match item {
                Ok(WsMessage::Text(text)) => match Message::text_from_bytes(Bytes::from(text)) {
                    Ok(m) if has_room => {
                        io.send_reserved(m);
                    }
                    Ok(_) => {}
                    Err(e) => self.fail(e, Some(CloseFrame::INVALID_PAYLOAD)),
                },
                Ok(WsMessage::Binary(data)) => {
                    if has_room {
                        io.send_reserved(Message::binary(data));
                    }
                }
                Ok(WsMessage::Ping(_)) => self.needs_flush = true, // tungstenite queued the pong
                Ok(WsMessage::Pong(_)) => {
                    if let Some(sent) = self.ping_sent.take() {
                        io.record_rtt(self.last_rx.saturating_duration_since(sent));
                    }
                }
                Ok(WsMessage::Frame(_)) => {}
                Ok(WsMessage::Close(frame)) => {
                    let frame = from_ws_close(frame.as_ref());
                    io.set_peer_close(frame.clone());
                    if matches!(self.phase, Phase::Open) {
                        // tungstenite queued the echo of the peer's close frame.
                        self.start_closing(Phase::PeerClosing(frame), None);
                    }
                    self.needs_flush = true;
                }
                Err(e) => match classify(e) {
                    ReadFailure::Closed => return Err(self.finish()),
                    ReadFailure::Lost(e) => {
                        return Err(match self.phase {
                            Phase::Open => RunOutcome::Failed(e),
                            _ => self.finish(),
                        });
                    }
                    ReadFailure::Violation(e, code) => {
                        self.fail(e, Some(code));
                        return Ok(false);
                    }
                },
            }
        }
        Ok(true)
    }
}

pub(crate) fn classify_write(e: WsError) -> TransportError {
    match e {
        WsError::Io(io) => TransportError::send_failed("writing to the socket", io),
        other => TransportError::SendFailed {
            reason: other.to_string(),
            source: None,
        },
    }
}
