//! One session of the SSE server: its replay log, the stream attached to it, and the task that
//! waits for what the HTTP side and the clock bring.
//!
//! Messages do not pass through the session's task: the response body ([`EventStream`]) takes
//! them from the connection's send queue when hyper asks for the next chunk, encodes each into
//! one buffer and logs it for replay. The task handles the rest: resumes, POSTed messages,
//! closes from the client, keepalive comments, a client that stops reading, the grace period
//! after the stream drops, and the application's messages while no stream is attached.
//!
//! ```text
//!  Sender ──Command──▶ [send queue] ──▶ EventStream::poll_frame (hyper's task) ──▶ socket
//!                                          (encode once, log for replay)
//!  POST ──SessionEvent──▶ session task ──▶ Receiver
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use transport_core::driver::{DriverIo, RunOutcome};
use transport_core::{CloseFrame, Command, Message, TransportError};

use super::Shared;
use crate::protocol;

/// What the HTTP side tells a session's task.
pub(super) enum SessionEvent {
    /// A client resumes after event `after`: the new stream, or `None` when the events after
    /// it are gone (the session then ends).
    Attach {
        after: u64,
        accepted: oneshot::Sender<Option<EventStream>>,
    },
    /// Messages POSTed by the client; `done` once the application has taken them.
    Post {
        messages: Vec<Message>,
        done: oneshot::Sender<()>,
    },
    /// The client closed the session.
    Close(CloseFrame),
}

/// How the HTTP side reaches a session's task. Boxed events: tokio allocates a channel's first
/// block of 32 slots with the channel, in every session, and 32 boxes take 256 bytes where 32
/// events took 1.3 KiB (heaptrack, per idle stream).
pub(super) type EventSender = mpsc::Sender<Box<SessionEvent>>;
type EventReceiver = mpsc::Receiver<Box<SessionEvent>>;

/// A session's event channel: room for 16 events (POSTs wait for room).
pub(super) fn event_channel() -> (EventSender, EventReceiver) {
    mpsc::channel(16)
}

/// What a session's task and its attached stream share.
pub(super) struct SessionCore {
    state: Mutex<Core>,
    /// Wakes the session's task: the stream went away, or the body took the session's end.
    changed: Notify,
}

struct Core {
    /// The connection's driver end. The attached stream's body takes the application's
    /// commands from it; the session's task takes them while no stream is attached, and hands
    /// POSTed messages to the application through it. `None` until the task starts and after
    /// it has ended.
    io: Option<DriverIo>,
    log: Log,
    stream: Option<Slot>,
    /// Numbers the streams attached in turn, so a replaced stream's body knows it is.
    epoch: u64,
    /// When the stream went away, while none is attached.
    detached_at: Option<Instant>,
    /// How the session ends, when the body decided it (a close, an unsendable message).
    end: Option<RunOutcome>,
    /// The session's task has ended: bodies end once their queued chunks are out.
    over: bool,
}

/// The events sent so far, numbered, the latest kept for `Last-Event-ID` replay.
struct Log {
    token: String,
    replay: VecDeque<(u64, Bytes)>,
    replay_bytes: usize,
    next_seq: u64,
    max_events: usize,
    max_bytes: usize,
}

impl Log {
    /// The message as one event (`id: <token>.<seq>`) in one buffer, logged for replay.
    fn encode(&mut self, message: &Message) -> Result<Bytes, TransportError> {
        let seq = self.next_seq;
        // Room for the id, an event type and the framing; base64 grows by a third.
        let data = if message.is_text() {
            message.len()
        } else {
            message.len().div_ceil(3) * 4
        };
        let mut out = BytesMut::with_capacity(data + self.token.len() + 64);
        protocol::write_message_event(&mut out, &self.token, seq, message)?;
        self.next_seq += 1;
        let bytes = out.freeze();
        self.replay_bytes += bytes.len();
        self.replay.push_back((seq, bytes.clone()));
        while self.replay.len() > self.max_events || self.replay_bytes > self.max_bytes {
            match self.replay.pop_front() {
                Some((_, old)) => self.replay_bytes -= old.len(),
                None => break,
            }
        }
        Ok(bytes)
    }

    /// The logged events after `after`, at most `limit` of them; `None` when some were lost,
    /// the id is from the future, or there are more than `limit`.
    fn after(&self, after: u64, limit: usize) -> Option<VecDeque<Bytes>> {
        let oldest = self.replay.front().map_or(self.next_seq, |(seq, _)| *seq);
        if after + 1 < oldest || after >= self.next_seq {
            return None;
        }
        let missed: VecDeque<Bytes> = self
            .replay
            .iter()
            .filter(|(seq, _)| *seq > after)
            .map(|(_, chunk)| chunk.clone())
            .collect();
        (missed.len() <= limit).then_some(missed)
    }
}

/// The attached stream.
struct Slot {
    epoch: u64,
    /// Chunks queued ahead of the application's messages: the first event, replayed events,
    /// keepalive comments, a close event. Bounded: `stream_queue` replayed events at most,
    /// one keepalive at a time.
    queue: VecDeque<Bytes>,
    /// End the response once `queue` is out.
    ending: bool,
    /// The body's waker while it waits.
    waker: Option<Waker>,
    /// The body's last poll found nothing to send: hyper is ready for more.
    waiting: bool,
    /// When the body last handed hyper a chunk (or was attached).
    last_chunk: Instant,
}

impl Slot {
    fn new(epoch: u64, queue: VecDeque<Bytes>) -> Self {
        Self {
            epoch,
            queue,
            ending: false,
            waker: None,
            waiting: false,
            last_chunk: Instant::now(),
        }
    }

    fn sent(&mut self) {
        self.waiting = false;
        self.last_chunk = Instant::now();
    }

    fn wait(&mut self, cx: &Context<'_>) {
        self.waiting = true;
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl SessionCore {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk of the stream numbered `epoch`; `None` ends the response.
    fn poll_chunk(&self, epoch: u64, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut guard = self.lock();
        let core = &mut *guard;
        let Some(slot) = core.stream.as_mut().filter(|s| s.epoch == epoch) else {
            return Poll::Ready(None);
        };
        if let Some(chunk) = slot.queue.pop_front() {
            slot.sent();
            return Poll::Ready(Some(chunk));
        }
        if slot.ending || core.over {
            core.stream = None;
            return Poll::Ready(None);
        }
        let Some(io) = core.io.as_mut() else {
            // The session's task has not started yet; it wakes the body when it does.
            slot.wait(cx);
            return Poll::Pending;
        };
        match io.poll_command(cx) {
            Poll::Ready(Command::Send(message)) => match core.log.encode(&message) {
                Ok(chunk) => {
                    slot.sent();
                    Poll::Ready(Some(chunk))
                }
                Err(e) => {
                    // An application bug (an event type with a line break or the reserved
                    // prefix): fail loudly rather than drop the message.
                    warn!(error = %e, "message cannot be sent as an event; closing the session");
                    core.end = Some(RunOutcome::Failed(e));
                    slot.ending = true;
                    slot.sent();
                    self.changed.notify_one();
                    Poll::Ready(Some(close_event(&CloseFrame::new(
                        CloseFrame::INTERNAL_ERROR,
                        "unsendable event type",
                    ))))
                }
            },
            Poll::Ready(Command::Close(frame)) => {
                core.end = Some(RunOutcome::LocalClosed);
                slot.ending = true;
                slot.sent();
                self.changed.notify_one();
                Poll::Ready(Some(close_event(&frame)))
            }
            Poll::Pending => {
                slot.wait(cx);
                Poll::Pending
            }
        }
    }

    /// The body of stream `epoch` was dropped: the session waits for its client to come back.
    fn stream_gone(&self, epoch: u64) {
        let mut core = self.lock();
        if core.stream.as_ref().is_some_and(|s| s.epoch == epoch) {
            core.stream = None;
            if !core.over && core.end.is_none() {
                debug!("stream detached; waiting for the client to come back");
                core.detached_at = Some(Instant::now());
            }
            drop(core);
            self.changed.notify_one();
        }
    }
}

/// The `transport.close` event of `frame`.
fn close_event(frame: &CloseFrame) -> Bytes {
    let mut out = BytesMut::new();
    protocol::write_event(
        &mut out,
        None,
        Some(protocol::EVENT_CLOSE),
        &protocol::close_json(frame),
    );
    out.freeze()
}

/// The event stream body of one attached stream: it takes the application's messages from
/// the connection's send queue as hyper asks for chunks.
pub struct EventStream {
    core: Arc<SessionCore>,
    epoch: u64,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.core
            .poll_chunk(self.epoch, cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.core.stream_gone(self.epoch);
    }
}

/// The task side of one session.
pub(super) struct Session {
    core: Arc<SessionCore>,
    shared: Arc<Shared>,
    events: EventReceiver,
    shutdown: CancellationToken,
}

impl Drop for Session {
    fn drop(&mut self) {
        let token = std::mem::take(&mut self.core.lock().log.token);
        self.shared.sessions().remove(&token);
    }
}

/// One turn of a session's loop.
enum Step {
    Shutdown,
    Event(Option<SessionEvent>),
    Command(Command),
    CheckBlocked,
    GraceOver,
    Keepalive,
}

impl Session {
    /// A session whose first stream starts with `first`, and that stream's body.
    pub(super) fn new(
        token: String,
        shared: Arc<Shared>,
        events: EventReceiver,
        first: Bytes,
    ) -> (Self, EventStream) {
        let config = &shared.config;
        let core = Arc::new(SessionCore {
            state: Mutex::new(Core {
                io: None,
                log: Log {
                    token,
                    replay: VecDeque::new(),
                    replay_bytes: 0,
                    next_seq: 1,
                    max_events: config.replay_buffer,
                    max_bytes: config.replay_buffer_bytes,
                },
                stream: Some(Slot::new(0, VecDeque::from([first]))),
                epoch: 0,
                detached_at: None,
                end: None,
                over: false,
            }),
            changed: Notify::new(),
        });
        let stream = EventStream {
            core: core.clone(),
            epoch: 0,
        };
        let session = Self {
            core,
            shutdown: shared.shutdown.clone(),
            shared,
            events,
        };
        (session, stream)
    }

    /// Runs the session until it ends; hands the driver end back with the outcome.
    ///
    /// `io` goes into the shared core before the returned future exists, so the future (the
    /// bulk of every idle session's task) holds no room for it.
    pub(super) fn run(
        mut self,
        io: DriverIo,
    ) -> impl Future<Output = (RunOutcome, DriverIo)> + Send {
        {
            let mut core = self.core.lock();
            core.io = Some(io);
            if let Some(slot) = &mut core.stream {
                slot.wake();
            }
        }
        async move { self.finish().await }
    }

    async fn finish(&mut self) -> (RunOutcome, DriverIo) {
        let outcome = self.run_loop().await;
        let mut core = self.core.lock();
        core.over = true;
        if let Some(slot) = &mut core.stream {
            slot.wake();
        }
        // An invariant, not peer input: `io` was put in at the start of this function and only
        // this line takes it out.
        let Some(io) = core.io.take() else {
            unreachable!("the session's DriverIo is taken once, when its task ends");
        };
        drop(core);
        (outcome, io)
    }

    async fn run_loop(&mut self) -> RunOutcome {
        // Only the timings are needed here; a clone of the whole config would sit in every
        // session's task for as long as it lives.
        let config = &self.shared.config;
        let session_grace = config.session_grace;
        let dead_peer_timeout = config.transport.dead_peer_timeout;
        let stream_queue = config.stream_queue;
        let keepalive_every = config
            .transport
            .keepalive_interval
            .unwrap_or(Duration::from_secs(3600));
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
        loop {
            // One timer: the block check while a stream is attached, the end of the grace
            // period while none is (each `Sleep` is room in every idle session's task).
            let (attached, timer) = {
                let mut core = self.core.lock();
                if let Some(outcome) = core.end.take() {
                    return outcome;
                }
                let timer = match &core.stream {
                    Some(s) if s.waiting => Some((Instant::now() + dead_peer_timeout, true)),
                    Some(s) => Some((s.last_chunk + dead_peer_timeout, true)),
                    None => core.detached_at.map(|at| (at + session_grace, false)),
                };
                (core.stream.is_some(), timer)
            };
            let (deadline, block_check) = timer.unzip();
            let step = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => Step::Shutdown,
                () = self.core.changed.notified() => continue,
                event = self.events.recv() => Step::Event(event.map(|e| *e)),
                cmd = next_command(&self.core), if !attached => Step::Command(cmd),
                () = sleep_until(deadline) => if block_check == Some(true) {
                    Step::CheckBlocked
                } else {
                    Step::GraceOver
                },
                _ = keepalive.tick() => Step::Keepalive,
            };
            if let Some(outcome) = self.handle(step, dead_peer_timeout, stream_queue).await {
                return outcome;
            }
        }
    }

    /// Acts on one turn of the loop; `Some` ends the session.
    async fn handle(
        &mut self,
        step: Step,
        dead_peer_timeout: Duration,
        stream_queue: usize,
    ) -> Option<RunOutcome> {
        match step {
            Step::Shutdown => {
                self.end_stream(Some(&CloseFrame::new(
                    CloseFrame::GOING_AWAY,
                    "server shutting down",
                )));
                return Some(RunOutcome::LocalClosed);
            }
            Step::Event(None) => return Some(RunOutcome::LocalClosed),
            Step::Event(Some(SessionEvent::Attach { after, accepted })) => {
                let stream = self.attach(after, stream_queue);
                let ok = stream.is_some();
                // A stream the HTTP side no longer waits for is dropped here: detached.
                let _ = accepted.send(stream);
                if !ok {
                    // The client could not resume: this session is over for it.
                    return Some(RunOutcome::Failed(TransportError::lost(
                        "client resumed a session whose events were lost",
                    )));
                }
            }
            Step::Event(Some(SessionEvent::Post { messages, done })) => {
                for m in messages {
                    if !deliver(&self.core, m).await {
                        break;
                    }
                }
                let _ = done.send(());
            }
            Step::Event(Some(SessionEvent::Close(frame))) => {
                self.end_stream(None);
                return Some(RunOutcome::PeerClosed(frame));
            }
            Step::Command(Command::Send(message)) => {
                // No stream attached: the event waits in the replay log for the client.
                let encoded = self.core.lock().log.encode(&message);
                if let Err(e) = encoded {
                    warn!(error = %e, "message cannot be sent as an event; closing the session");
                    return Some(RunOutcome::Failed(e));
                }
            }
            Step::Command(Command::Close(frame)) => {
                self.end_stream(Some(&frame));
                return Some(RunOutcome::LocalClosed);
            }
            Step::CheckBlocked => {
                let mut core = self.core.lock();
                let blocked = core.stream.as_ref().is_some_and(|s| {
                    !s.waiting && s.last_chunk + dead_peer_timeout <= Instant::now()
                });
                if blocked {
                    debug!("client stopped reading; dropping its stream");
                    if let Some(mut slot) = core.stream.take() {
                        slot.wake();
                    }
                    core.detached_at = Some(Instant::now());
                }
            }
            Step::GraceOver => {
                return Some(RunOutcome::Failed(TransportError::lost(format!(
                    "client did not reconnect within {:?}",
                    self.shared.config.session_grace
                ))));
            }
            Step::Keepalive => {
                let mut core = self.core.lock();
                if let Some(slot) = &mut core.stream
                    && slot.queue.is_empty()
                    && !slot.ending
                {
                    slot.queue.push_back(Bytes::from_static(b":\n\n"));
                    slot.wake();
                }
            }
        }
        None
    }

    /// Attaches a resumed stream, queueing the events after `after`; `None` when they cannot
    /// be replayed. A stream attached before is ended.
    fn attach(&self, after: u64, limit: usize) -> Option<EventStream> {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let missed = core.log.after(after, limit)?;
        core.epoch += 1;
        if let Some(mut old) = core.stream.replace(Slot::new(core.epoch, missed)) {
            old.wake();
        }
        core.detached_at = None;
        Some(EventStream {
            core: self.core.clone(),
            epoch: core.epoch,
        })
    }

    /// Ends the attached stream once its queued chunks are out, after a close event for
    /// `close` if given.
    fn end_stream(&self, close: Option<&CloseFrame>) {
        let mut core = self.core.lock();
        if let Some(slot) = &mut core.stream {
            if let Some(frame) = close {
                slot.queue.push_back(close_event(frame));
            }
            slot.ending = true;
            slot.wake();
        }
    }
}

/// The next command from the application, while no stream is attached.
///
/// Cancel safe (as [`DriverIo::poll_command`]).
async fn next_command(core: &SessionCore) -> Command {
    poll_fn(|cx| match core.lock().io.as_mut() {
        Some(io) => io.poll_command(cx),
        None => Poll::Pending,
    })
    .await
}

/// Hands a POSTed message to the application, waiting for room; `false` when it is gone.
async fn deliver(core: &SessionCore, message: Message) -> bool {
    let alive = poll_fn(|cx| match core.lock().io.as_mut() {
        Some(io) => io.poll_reserve(cx),
        None => Poll::Ready(false),
    })
    .await;
    alive
        && core
            .lock()
            .io
            .as_mut()
            .is_some_and(|io| io.send_reserved(message))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_events: usize) -> Log {
        Log {
            token: "t".into(),
            replay: VecDeque::new(),
            replay_bytes: 0,
            next_seq: 1,
            max_events,
            max_bytes: 1 << 20,
        }
    }

    /// The session's future is the bulk of every idle session's task.
    #[tokio::test]
    async fn a_session_task_stays_small() {
        let (endpoint, _incoming) =
            super::super::SseEndpoint::new(super::super::SseServerConfig::default()).unwrap();
        let shared = endpoint.shared.clone();
        let (_events, rx) = event_channel();
        let (session, _stream) = Session::new("t".into(), shared.clone(), rx, Bytes::new());
        let (size_tx, size_rx) = oneshot::channel();
        let info = transport_core::ConnectionInfo::new("sse");
        let _conn =
            transport_core::driver::spawn_accepted(&shared.config.transport, info, move |io| {
                let run = session.run(io);
                let _ = size_tx.send(std::mem::size_of_val(&run));
                run
            });
        let size = size_rx.await.unwrap();
        println!("session future: {size} bytes");
        assert!(size <= 640, "session future of {size} bytes");
        shared.shutdown.cancel();
    }

    #[test]
    fn the_event_channel_carries_pointers() {
        fn item<T>(_: &mpsc::Sender<T>) -> usize {
            std::mem::size_of::<T>()
        }
        let (tx, _rx) = event_channel();
        assert_eq!(item(&tx), std::mem::size_of::<usize>());
    }

    #[test]
    fn replay_after_an_id() {
        let mut log = log(3);
        for i in 0..5 {
            log.encode(&Message::text(format!("m{i}"))).unwrap();
        }
        // Kept: 3, 4, 5.
        assert!(log.after(1, 10).is_none(), "event 2 is gone");
        assert_eq!(log.after(2, 10).unwrap().len(), 3);
        assert_eq!(log.after(4, 10).unwrap().len(), 1);
        assert_eq!(log.after(5, 10).unwrap().len(), 0);
        assert!(log.after(6, 10).is_none(), "from the future");
        assert!(log.after(2, 2).is_none(), "more than the limit");
        let first = log.after(4, 10).unwrap().pop_front().unwrap();
        assert_eq!(&first[..], b"id: t.5\ndata: m4\n\n");
    }
}
