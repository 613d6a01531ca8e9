//! The driver of one message link over a WebTransport session, for both sides: the message
//! stream, unidirectional streams and datagrams in, the configured [`SendMode`] out, the close
//! handshake, RTT samples.
//!
//! The driver task reads the message stream itself, as much as has arrived each time the stream
//! wakes it; unidirectional streams and datagrams are read in two background tasks that feed
//! one bounded channel and end with the link. Writing happens in the driver task, one message
//! at a time, so the application's queue gives backpressure.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::ReusableBoxFuture;
use tracing::debug;
use transport_core::driver::{DriverIo, RunOutcome, WakeGate};
use transport_core::{
    CloseFrame, Command, ConnectionInfo, Message, TransportConfig, TransportError,
};

use super::codec::{self, Frame};
use super::config::{SendMode, StreamConfig};
use crate::proto::varint;
use crate::{H3_NO_ERROR, SessionClose, WtServerSession, WtSession};

/// The short name of this transport in [`ConnectionInfo`].
pub(crate) const TRANSPORT: &str = "wt";
/// How often quinn's RTT estimate is copied into the statistics.
const RTT_INTERVAL: Duration = Duration::from_secs(1);
/// Most time spent flushing a close frame after a protocol failure.
const FAIL_GRACE: Duration = Duration::from_secs(1);
/// Decoded frames waiting for the driver.
const EVENT_QUEUE: usize = 16;
/// Messages up to this size go out with their header in one write (one copy of the payload
/// into a frame); larger ones as header and payload, the payload not copied on the client.
const COALESCE_MAX: usize = 4 * 1024;
/// Messages up to this size are framed on the stack and written from there at once (a larger
/// buffer costs more to zero than an allocation).
const STACK_FRAME: usize = 1024;
/// Room for one read of the message stream when the next frame's length is not known yet: a
/// 16 KiB message with its longest header (9 bytes). At exactly 16 KiB, such a message's last
/// bytes needed a second read, and growing the buffer for them copied the first 16 KiB.
const READ_SIZE: usize = 16 * 1024 + 9;

pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Either side's session.
#[derive(Clone)]
pub(crate) enum Session {
    Client(Arc<WtSession>),
    Server(Arc<WtServerSession>),
}

impl Session {
    pub(crate) fn quic(&self) -> &quinn::Connection {
        match self {
            Self::Client(s) => s.quic(),
            Self::Server(s) => s.quic(),
        }
    }

    async fn accept_uni(&self) -> Result<BoxRead, TransportError> {
        Ok(match self {
            Self::Client(s) => Box::new(s.accept_uni().await?),
            Self::Server(s) => Box::new(s.accept_uni().await?),
        })
    }

    async fn open_uni(&self, priority: i32) -> Result<BoxWrite, TransportError> {
        Ok(match self {
            Self::Client(s) => {
                let send = s.open_uni().await?;
                let _ = send.set_priority(priority);
                Box::new(send)
            }
            Self::Server(s) => Box::new(s.open_uni_with_priority(priority).await?),
        })
    }

    async fn read_datagram(&self) -> Result<Bytes, TransportError> {
        match self {
            Self::Client(s) => s.read_datagram().await,
            Self::Server(s) => s.read_datagram().await,
        }
    }

    fn send_datagram(&self, payload: Bytes) -> Result<(), TransportError> {
        match self {
            Self::Client(s) => s.send_datagram(payload),
            Self::Server(s) => s.send_datagram(payload),
        }
    }

    /// The largest message that fits in one datagram now, framing included; `None` when the
    /// peer does not accept datagrams.
    pub(crate) fn datagram_message_limit(&self) -> Option<usize> {
        let size = match self {
            Self::Client(s) => s.max_datagram_size(),
            Self::Server(s) => s.max_datagram_size(),
        }?;
        Some(size.saturating_sub(1 + varint::encoded_len(size as u64)))
    }

    /// Waits until the session has ended and says how.
    ///
    /// On the client, a close of the session itself (not of the message stream) is a
    /// [`TransportError::ConnectionLost`]: the server went away without the close handshake,
    /// and the client reconnects. On the server, a client that closes the session with
    /// CLOSE_WEBTRANSPORT_SESSION (a browser's `WebTransport.close`, say) closes the
    /// connection with its code and reason, as a close frame would.
    async fn ended(&self) -> Ended {
        let without_close = |code: u32, reason: &str| {
            TransportError::lost(format!(
                "the peer ended the session (code {code:#x}{}{reason}) without a close frame",
                if reason.is_empty() { "" } else { ": " }
            ))
        };
        let close = match self {
            Self::Client(s) => s.closed().await,
            Self::Server(s) => s.session_closed().await,
        };
        Ended::Error(match (self, close) {
            (Self::Server(_), SessionClose::Peer { code, reason }) => match u16::try_from(code) {
                Ok(code) => return Ended::Peer(CloseFrame::new(code, reason)),
                Err(_) => without_close(code, &reason),
            },
            (Self::Client(_), SessionClose::Peer { code, reason }) => without_close(code, &reason),
            (_, SessionClose::Local { .. }) => TransportError::Closed,
            (_, SessionClose::Lost(e)) => e,
        })
    }

    /// Ends the session now (after the close handshake, or when the link failed).
    fn close_now(&self) {
        match self {
            Self::Client(s) => s.quic().close(quinn::VarInt::from_u32(0), b""),
            Self::Server(s) => s.close(H3_NO_ERROR, ""),
        }
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo::new(TRANSPORT).with_peer_addr(Some(self.quic().remote_address()))
    }
}

/// The sending half of the message stream. On the client it is quinn's own stream, which
/// takes a payload as it is (`write_chunk`: quinn keeps the `Bytes`, no copy into its send
/// buffer); the server's is h3's stream, which copies what it is given.
pub(crate) enum MessageSend {
    Quinn(quinn::SendStream),
    H3(BoxWrite),
}

impl MessageSend {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Quinn(send) => send.write_all(bytes).await.map_err(Into::into),
            Self::H3(send) => send.write_all(bytes).await,
        }
    }

    /// Finishes the stream.
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Self::Quinn(send) => AsyncWriteExt::shutdown(send).await,
            Self::H3(send) => send.shutdown().await,
        }
    }
}

/// One open link: the session and its message stream.
pub(crate) struct Link {
    pub(crate) session: Session,
    send: MessageSend,
    recv: BoxRead,
}

impl Link {
    pub(crate) fn new(session: Session, send: MessageSend, recv: BoxRead) -> Self {
        Self {
            session,
            send,
            recv,
        }
    }

    pub(crate) fn info(&self) -> ConnectionInfo {
        self.session.info()
    }
}

/// What a link needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct LinkOptions {
    mode: SendMode,
    priority: i32,
    close_timeout: Duration,
    /// The receive limit: the configured `max_message_size`, even when datagram mode lowered
    /// the send limit (the peer may send larger messages on streams).
    max_receive: usize,
}

impl LinkOptions {
    pub(crate) fn new(transport: &TransportConfig, stream: StreamConfig) -> Self {
        Self {
            mode: stream.mode(),
            priority: stream.priority,
            close_timeout: transport.close_timeout,
            max_receive: transport.max_message_size,
        }
    }
}

/// How a session ended, for the link.
enum Ended {
    /// The peer closed the session with a code that fits a close frame.
    Peer(CloseFrame),
    Error(TransportError),
}

enum Event {
    Frame(Frame),
    /// The peer finished the message stream.
    Fin,
    Failed(TransportError),
}

enum Phase {
    Open,
    /// We sent a close frame; waiting for the peer's answer.
    Closing,
    /// A fatal error: our close frame is on its way, then the link is dropped.
    Failing(TransportError),
}

impl Phase {
    /// The outcome when the link ends in this phase.
    fn finish(self, open: impl FnOnce() -> TransportError) -> RunOutcome {
        match self {
            Self::Open => RunOutcome::Failed(open()),
            Self::Closing => RunOutcome::LocalClosed,
            Self::Failing(e) => RunOutcome::Failed(e),
        }
    }
}

fn write_error(what: &str, e: std::io::Error) -> TransportError {
    TransportError::send_failed(format!("writing {what}"), e)
}

async fn write_close(send: &mut MessageSend, frame: &CloseFrame, within: Duration) {
    let wrote = tokio::time::timeout(within, async {
        send.write_all(&codec::encode_close(frame)).await?;
        send.shutdown().await
    })
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        debug!(?wrote, "the close frame could not be written");
    }
}

/// Runs a link until it ends, then ends its session.
pub(crate) async fn run(link: Link, io: &mut DriverIo, options: &LinkOptions) -> RunOutcome {
    let session = link.session.clone();
    let outcome = drive(link, io, options).await;
    if let Session::Client(s) = &session {
        // Sent before the application learns that the connection is closed (and perhaps exits).
        s.close_connection(0, b"").await;
    } else {
        session.close_now();
    }
    outcome
}

async fn drive(link: Link, io: &mut DriverIo, options: &LinkOptions) -> RunOutcome {
    let Link {
        session,
        send,
        recv,
    } = link;
    let max = options.max_receive;
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    let mut readers = JoinSet::new();
    readers.spawn(read_uni_streams(session.clone(), max, tx.clone()));
    readers.spawn(read_datagrams(session.clone(), max, tx));
    let mut ended = pin!(session.ended());
    let mut deadline = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
    let mut rtt = tokio::time::interval(RTT_INTERVAL);
    rtt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The session's end and the RTT timer rarely fire: polled only after one of them woke us.
    let quiet = WakeGate::new();
    let mut phase = Phase::Open;
    let mut flow = Flow::new(
        Reader::new(recv, max),
        events,
        Writer::new(send, &session, options),
    );
    loop {
        let open = matches!(phase, Phase::Open);
        // Messages in and out are handled inside this poll, as many as are ready (up to a
        // budget); it returns only for what ends or changes the link.
        let step = poll_fn(|cx| {
            if let Poll::Ready(step) = flow.poll(cx, io, open) {
                return Poll::Ready(step);
            }
            let background = quiet.poll(cx, |cx| {
                if let Poll::Ready(end) = ended.as_mut().poll(cx) {
                    return Poll::Ready(Step::Ended(end));
                }
                rtt.poll_tick(cx).map(|_| Step::Rtt)
            });
            if background.is_ready() {
                return background;
            }
            if !open && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Deadline);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::PeerClose(frame) => {
                if !open {
                    return phase.finish(|| TransportError::Closed);
                }
                // Answer with the same code, then let the side that started the close end
                // the session (so our answer is not cut off), bounded by the close timeout.
                io.set_peer_close(frame.clone());
                let answer = CloseFrame::new(frame.code, "");
                flow.writer.close(&answer, options.close_timeout).await;
                let _ = tokio::time::timeout(options.close_timeout, ended.as_mut()).await;
                return RunOutcome::PeerClosed(frame);
            }
            Step::Fin => {
                return phase.finish(|| {
                    TransportError::lost(
                        "the peer finished the message stream without a close frame",
                    )
                });
            }
            Step::ReadFailed(error) => {
                if !open {
                    return phase.finish(|| error);
                }
                debug!(%error, "closing the link");
                let frame = CloseFrame::new(codec::close_code_for(&error), "");
                let grace = options.close_timeout.min(FAIL_GRACE);
                deadline.as_mut().reset(Instant::now() + grace);
                flow.writer.close(&frame, grace).await;
                phase = Phase::Failing(error);
            }
            Step::Close(frame) => {
                deadline
                    .as_mut()
                    .reset(Instant::now() + options.close_timeout);
                flow.writer.close(&frame, options.close_timeout).await;
                phase = Phase::Closing;
            }
            Step::WriteFailed(e) => return RunOutcome::Failed(e),
            Step::Rtt => io.record_rtt(session.quic().rtt()),
            Step::Ended(end) => {
                if let Some(message) = flow.waiting.take() {
                    // What arrived before the end still reaches the application, if it reads.
                    let _ = tokio::time::timeout(options.close_timeout, io.deliver(message)).await;
                }
                return match (end, open) {
                    (Ended::Peer(frame), true) => RunOutcome::PeerClosed(frame),
                    (Ended::Peer(_), false) => phase.finish(|| TransportError::Closed),
                    (Ended::Error(error), _) => phase.finish(|| error),
                };
            }
            Step::Deadline => return phase.finish(|| TransportError::Closed),
        }
    }
}

/// The link's message flow: the message stream in and out, the other readers' channel, and a
/// received message waiting for room.
struct Flow<'a> {
    reader: Reader,
    /// The unidirectional-stream and datagram readers' channel.
    events: mpsc::Receiver<Event>,
    others_open: bool,
    gates: Gates,
    /// A received message waiting for room in the application's queue. Only reading stops
    /// meanwhile: sends go on, or an application that echoes (waiting on its own send while
    /// its queue is full) would wait forever on this loop, and this loop on it.
    waiting: Option<Message>,
    /// A message being written stays in the writer across polls. Reading goes on meanwhile: a
    /// write waiting on the peer's flow control must not stop us from reading, or two peers
    /// pumping at each other (each application reading only what its own sends let through)
    /// would wait on each other's windows for ever.
    writer: Writer<'a>,
}

impl<'a> Flow<'a> {
    fn new(reader: Reader, events: mpsc::Receiver<Event>, writer: Writer<'a>) -> Self {
        Self {
            reader,
            events,
            others_open: true,
            gates: Gates {
                reading: WakeGate::new(),
                commands: WakeGate::new(),
                others: WakeGate::new(),
            },
            waiting: None,
            writer,
        }
    }

    /// Moves messages in and out, as many as are ready (up to a budget each way), and returns
    /// only for what ends or changes the link: a close frame, the stream's end, a failure, the
    /// application's close.
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut DriverIo, open: bool) -> Poll<Step> {
        if let Poll::Ready(Err(e)) = self.writer.poll_write(cx) {
            return Poll::Ready(Step::WriteFailed(e));
        }
        // Separate budgets, so that neither direction's flood holds up the other.
        let (mut budget_in, mut budget_out) = (MESSAGES_PER_POLL, MESSAGES_PER_POLL);
        // In: deliver while the application's queue has room.
        while budget_in > 0 {
            if self.waiting.is_some() {
                match io.poll_reserve(cx) {
                    // Discarded when the application dropped its receiver.
                    Poll::Ready(room) => io.hand_over_waiting(&mut self.waiting, room),
                    Poll::Pending => break,
                }
            }
            let event = match self.gates.reading.poll(cx, |cx| self.reader.poll_event(cx)) {
                Poll::Ready(event) => event,
                Poll::Pending if self.others_open => {
                    match self.gates.others.poll(cx, |cx| self.events.poll_recv(cx)) {
                        Poll::Ready(Some(event)) => event,
                        // Those readers ended with the session, whose end comes by itself.
                        Poll::Ready(None) => {
                            self.others_open = false;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                Poll::Pending => break,
            };
            match event {
                // Discarded when the application dropped its receiver.
                Event::Frame(Frame::Message(message)) => {
                    self.waiting = io.try_deliver(message).err();
                }
                Event::Frame(Frame::Close(frame)) => return Poll::Ready(Step::PeerClose(frame)),
                Event::Fin => return Poll::Ready(Step::Fin),
                Event::Failed(error) => return Poll::Ready(Step::ReadFailed(error)),
            }
            budget_in -= 1;
        }
        // Out: the application's commands, while no write waits.
        while budget_out > 0 && open && self.writer.idle() {
            match self.gates.commands.poll(cx, |cx| io.poll_command(cx)) {
                Poll::Ready(Command::Send(message)) => {
                    if let Poll::Ready(Err(e)) = self.writer.begin(message, cx) {
                        return Poll::Ready(Step::WriteFailed(e));
                    }
                }
                Poll::Ready(Command::Close(frame)) => return Poll::Ready(Step::Close(frame)),
                Poll::Pending => break,
            }
            budget_out -= 1;
        }
        if budget_in == 0 || budget_out == 0 {
            // More may be ready: let other tasks run, then go on.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// What the link's poll returns to its loop: what ends or changes the link.
enum Step {
    /// The peer's close frame.
    PeerClose(CloseFrame),
    /// The peer finished the message stream.
    Fin,
    /// Reading failed (a bad frame, a broken stream).
    ReadFailed(TransportError),
    /// The application asked to close.
    Close(CloseFrame),
    WriteFailed(TransportError),
    /// Time to copy quinn's RTT estimate.
    Rtt,
    Ended(Ended),
    /// The close (or failure) grace ran out.
    Deadline,
}

/// The link's wake gates, one per source.
struct Gates {
    /// The message stream.
    reading: WakeGate,
    /// The application's commands.
    commands: WakeGate,
    /// The unidirectional-stream and datagram readers' channel.
    others: WakeGate,
}

/// The message stream's writer: at most one message in flight, kept across the link's loop so
/// that the loop goes on reading while a write waits (on the peer's flow control, say).
///
/// A message-stream write needs no future: the frame waits in [`pending`](Self::pending) and
/// is written by polling the stream directly (quinn's `write_chunks` is cancel safe: built,
/// polled once and dropped, it either wrote or wrote nothing), so the common case, a write
/// that does not wait, allocates nothing and goes through no boxed future. Only a write on a
/// new unidirectional stream (the `UniStream` mode) is a future, kept in one reused box.
struct Writer<'a> {
    send: MessageSend,
    /// What remains of the message-stream frame in flight (header and payload, or the whole
    /// frame and an empty chunk); all empty when none is.
    pending: [Bytes; 2],
    /// A message being written on its own unidirectional stream, when `uni_busy`.
    uni: ReusableBoxFuture<'a, Result<(), TransportError>>,
    uni_busy: bool,
    session: &'a Session,
    options: &'a LinkOptions,
}

impl<'a> Writer<'a> {
    fn new(send: MessageSend, session: &'a Session, options: &'a LinkOptions) -> Self {
        Self {
            send,
            pending: [Bytes::new(), Bytes::new()],
            uni: ReusableBoxFuture::new(std::future::pending()),
            uni_busy: false,
            session,
            options,
        }
    }

    /// Whether no write is in flight.
    fn idle(&self) -> bool {
        !self.uni_busy && self.pending.iter().all(Bytes::is_empty)
    }

    /// Starts writing `message` and tries it once: most writes finish at once. `Pending` when
    /// it waits; then [`poll_write`](Self::poll_write) completes it.
    fn begin(
        &mut self,
        message: Message,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), TransportError>> {
        if !self.idle() {
            return Poll::Ready(Err(TransportError::Closed));
        }
        match self.options.mode {
            SendMode::MessageStream => {
                let mut header = [0u8; 9];
                let header = {
                    let mut rest = &mut header[..];
                    codec::message_header(&message, &mut rest);
                    let len = 9 - rest.len();
                    &header[..len]
                };
                let payload = message.as_bytes();
                if payload.len() <= STACK_FRAME {
                    // Header and a small payload together on the stack: the stream copies what
                    // it takes, and only what it does not take now is kept (copied) for later.
                    let mut frame = [0u8; 9 + STACK_FRAME];
                    let frame = &mut frame[..header.len() + payload.len()];
                    frame[..header.len()].copy_from_slice(header);
                    frame[header.len()..].copy_from_slice(payload);
                    let written = match poll_write_slice(&mut self.send, cx, frame) {
                        Poll::Ready(Ok(written)) => written,
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(write_error("the message stream", e)));
                        }
                        Poll::Pending => 0,
                    };
                    if written == frame.len() {
                        return Poll::Ready(Ok(()));
                    }
                    self.pending = [Bytes::copy_from_slice(&frame[written..]), Bytes::new()];
                } else if payload.len() <= COALESCE_MAX {
                    let mut frame = BytesMut::with_capacity(header.len() + payload.len());
                    frame.extend_from_slice(header);
                    frame.extend_from_slice(payload);
                    self.pending = [frame.freeze(), Bytes::new()];
                } else {
                    // Larger payloads go as they are (quinn keeps the `Bytes`, no copy).
                    let header = Bytes::copy_from_slice(header);
                    self.pending = [header, message.into_payload()];
                }
            }
            SendMode::UniStream => {
                let (session, options) = (self.session, self.options);
                self.uni
                    .set(async move { send_uni(session, &message, options).await });
                self.uni_busy = true;
            }
            SendMode::Datagram => return Poll::Ready(send_datagram(self.session, &message)),
        }
        self.poll_write(cx)
    }

    /// Completes the write in flight (cancel safe: dropped, it stays in flight).
    async fn finished(&mut self) -> Result<(), TransportError> {
        poll_fn(|cx| self.poll_write(cx)).await
    }

    /// Writes on what is in flight; `Ready` once it is all written (at once when nothing is).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        if self.uni_busy {
            let result = std::task::ready!(self.uni.poll(cx));
            self.uni_busy = false;
            return Poll::Ready(result);
        }
        let failed = |e| Poll::Ready(Err(write_error("the message stream", e)));
        while let Some(first) = self.pending.iter().position(|chunk| !chunk.is_empty()) {
            match &mut self.send {
                MessageSend::Quinn(send) => {
                    // Cancel safe: Pending means nothing was written (and the waker is kept).
                    let written = pin!(send.write_chunks(&mut self.pending[first..])).poll(cx);
                    if let Err(e) = std::task::ready!(written) {
                        self.pending = [Bytes::new(), Bytes::new()];
                        return failed(e.into());
                    }
                }
                MessageSend::H3(_) => {
                    let chunk = &mut self.pending[first];
                    match std::task::ready!(poll_write_slice(&mut self.send, cx, chunk)) {
                        Ok(n) => chunk.advance(n),
                        Err(e) => {
                            self.pending = [Bytes::new(), Bytes::new()];
                            return failed(e);
                        }
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes a close frame after the write in flight, both within `within`; gives up on the
    /// close frame when the write in flight does not finish in time.
    async fn close(&mut self, frame: &CloseFrame, within: Duration) {
        let started = Instant::now();
        if !self.idle() && tokio::time::timeout(within, self.finished()).await.is_err() {
            return;
        }
        write_close(
            &mut self.send,
            frame,
            within.saturating_sub(started.elapsed()),
        )
        .await;
    }
}

/// Writes what the stream takes of `buf` now (quinn's `write` is cancel safe: `Pending`
/// means nothing was written); a write of nothing is an error.
fn poll_write_slice(
    send: &mut MessageSend,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<std::io::Result<usize>> {
    let written = match send {
        MessageSend::Quinn(send) => {
            std::task::ready!(pin!(send.write(buf)).poll(cx)).map_err(std::io::Error::from)
        }
        MessageSend::H3(send) => std::task::ready!(Pin::new(&mut **send).poll_write(cx, buf)),
    };
    Poll::Ready(match written {
        Ok(0) if !buf.is_empty() => Err(std::io::ErrorKind::WriteZero.into()),
        other => other,
    })
}

async fn send_uni(
    session: &Session,
    message: &Message,
    options: &LinkOptions,
) -> Result<(), TransportError> {
    let mut stream = session.open_uni(options.priority).await?;
    stream
        .write_all(&codec::encode_message(message))
        .await
        .map_err(|e| write_error("a message stream", e))?;
    stream
        .shutdown()
        .await
        .map_err(|e| write_error("a message stream", e))
}

fn send_datagram(session: &Session, message: &Message) -> Result<(), TransportError> {
    match session.send_datagram(codec::encode_message(message)) {
        Ok(()) => Ok(()),
        // The path's datagram size shrank below the limit checked by `send`: datagrams are
        // unreliable, this one is lost.
        Err(TransportError::MessageTooLarge { size, limit }) => {
            debug!(size, limit, "dropping a message too large for a datagram");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// How much room to reserve before the next read of the message stream, with `buffered`
/// bytes buffered and `missing` bytes still lacking from the frame at their front (when its
/// length is known): the rest of the frame, up to as much as is buffered (or a read's worth).
/// So frames up to about twice a read get one allocation (growing read by read would copy what
/// is buffered each time), longer ones grow in step with what has arrived, and a header alone,
/// announcing a large message, does not allocate for it.
fn read_room(buffered: usize, missing: Option<usize>) -> usize {
    missing.map_or(READ_SIZE, |missing| missing.min(buffered.max(READ_SIZE)))
}

/// Most reads of the message stream in one poll of the link before it lets its other work run
/// (and polls again): a peer that keeps the stream full does not hold the loop.
const READS_PER_POLL: usize = 32;
/// Most messages received and commands taken in one poll of the link before it lets other
/// tasks run (and polls again).
const MESSAGES_PER_POLL: usize = 64;

/// The message stream's reading half, read inside the link's loop (no task and channel of its
/// own): each poll reads until a frame is complete or the stream has nothing more now.
struct Reader {
    recv: BoxRead,
    buf: BytesMut,
    max: usize,
    state: ReadState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Frames,
    /// A frame could not be parsed; the rest is read and discarded, so that the peer's answer,
    /// the end of its stream, ends the link without a wait.
    Discarding,
    /// The stream ended or failed; nothing more comes from it.
    Done,
}

impl Reader {
    fn new(recv: BoxRead, max: usize) -> Self {
        Self {
            recv,
            buf: BytesMut::with_capacity(8 * 1024),
            max,
            state: ReadState::Frames,
        }
    }

    /// The next frame (or the stream's end or failure), reading in a loop until one is
    /// complete; `Pending` once the stream has nothing more now (or the read budget is spent:
    /// then the task is woken to go on).
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        for _ in 0..READS_PER_POLL {
            match self.state {
                ReadState::Done => return Poll::Pending,
                ReadState::Frames => match codec::decode(&mut self.buf, self.max) {
                    Ok(Some(frame)) => return Poll::Ready(Event::Frame(frame)),
                    Ok(None) => {
                        let room = read_room(self.buf.len(), codec::missing(&self.buf, self.max));
                        self.buf.reserve(room);
                    }
                    Err(e) => {
                        self.state = ReadState::Discarding;
                        return Poll::Ready(Event::Failed(e));
                    }
                },
                ReadState::Discarding => {
                    self.buf.clear();
                    self.buf.reserve(READ_SIZE);
                }
            }
            // Cancel safe: `Pending` means nothing was read (and the waker is kept).
            let read = std::task::ready!(pin!(self.recv.read_buf(&mut self.buf)).poll(cx));
            let event = match read {
                Ok(0) if self.buf.is_empty() || self.state == ReadState::Discarding => Event::Fin,
                Ok(0) => Event::Failed(TransportError::protocol(
                    "the message stream ended inside a frame",
                )),
                Ok(_) => continue,
                Err(_) if self.state == ReadState::Discarding => {
                    self.state = ReadState::Done;
                    return Poll::Pending;
                }
                Err(e) => Event::Failed(TransportError::lost(format!(
                    "reading the message stream: {e}"
                ))),
            };
            self.state = ReadState::Done;
            return Poll::Ready(event);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

async fn read_uni_streams(session: Session, max: usize, tx: mpsc::Sender<Event>) {
    let mut streams = JoinSet::new();
    // Ends when the session does; the driver learns why from the session itself.
    while let Ok(recv) = session.accept_uni().await {
        while streams.try_join_next().is_some() {}
        let tx = tx.clone();
        streams.spawn(async move {
            // Header (at most 9 bytes) and payload; one byte more shows an over-long stream.
            let cap = max.saturating_add(10);
            let mut data = Vec::new();
            let read = recv
                .take(u64::try_from(cap).unwrap_or(u64::MAX))
                .read_to_end(&mut data)
                .await;
            let event = match read {
                Ok(_) => match codec::decode_single(&data, max) {
                    Ok(message) => Event::Frame(Frame::Message(message)),
                    Err(e) => Event::Failed(e),
                },
                Err(e) => {
                    debug!(error = %e, "a message stream broke; its message is lost");
                    return;
                }
            };
            let _ = tx.send(event).await;
        });
    }
}

async fn read_datagrams(session: Session, max: usize, tx: mpsc::Sender<Event>) {
    while let Ok(datagram) = session.read_datagram().await {
        let event = match codec::decode_single(&datagram, max) {
            Ok(message) => Event::Frame(Frame::Message(message)),
            Err(e) => Event::Failed(e),
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_room_is_bounded_by_what_has_arrived() {
        // Nothing known: a read's worth.
        assert_eq!(read_room(0, None), READ_SIZE);
        // A 16 KiB message after its first packet: the rest, at once.
        assert_eq!(read_room(1_200, Some(15_189)), 15_189);
        // A header announcing 16 MiB: no more than a read's worth.
        assert_eq!(read_room(5, Some(16 << 20)), READ_SIZE);
        // Half of a 1 MiB message buffered: as much again, not the whole rest.
        assert_eq!(read_room(256 << 10, Some(768 << 10)), 256 << 10);
        assert_eq!(read_room(600 << 10, Some(424 << 10)), 424 << 10);
    }
}
