//! The driver of one event stream: a hand-written future that reads the body into the parser,
//! delivers events with backpressure, notices a silent stream, sends queued messages as
//! POSTs (one at a time, reading on meanwhile) and runs the close with a deadline.
//!
//! One task per connection, no locks: reading, delivering and sending are interleaved in one
//! `poll`. On HTTP/1.1 that task also drives the stream's hyper connection, so a chunk read
//! from the socket is parsed and handed to the application in the poll that read it.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as _, Incoming};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};
use transport_core::driver::{DriverIo, RunOutcome, WakeGate};
use transport_core::{CloseFrame, Command, Message, MessageMetadata, TransportError};

use super::Inner;
use super::conn::HttpConn;
use super::post::{Outgoing, PostFuture, Poster};
use super::stream::{self, Link};
use super::url::Target;
use crate::parser::{SseEvent, SseParser};
use crate::protocol::{
    EVENT_BINARY, EVENT_CLOSE, EVENT_SESSION, EVENT_TEXT64, RESERVED_PREFIX, decode_b64,
    parse_close_json, parse_session_json,
};

/// Items (messages delivered, body chunks read) moved in one poll before yielding.
const BUDGET: usize = 64;
/// Most messages in one POST (besides the size bound).
const MAX_BATCH: usize = 1024;

/// Why `send` fails against a server that announced no send URL.
pub(crate) const NO_SEND_URL: &str = "the server offers no send URL (a plain SSE stream): \
                           messages cannot be sent on this connection";

/// What the stream produced, in order.
#[derive(Debug)]
enum Item {
    Message(Message),
    /// The end of the link (after the messages before it are delivered).
    End(RunOutcome),
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Open,
    /// The close was POSTed (or is being POSTed); waiting for the stream to end, until the
    /// timer's deadline.
    Closing,
}

/// What the handles asked for.
enum Next {
    Post(Vec<Message>),
    Close(CloseFrame),
}

struct Run<'a> {
    inner: &'a Arc<Inner>,
    parser: &'a mut SseParser,
    retry: &'a mut Option<Duration>,
    body: Incoming,
    /// The stream's connection: kept alive with the body; HTTP/2 ones carry the POSTs too.
    conn: HttpConn,
    /// Whether an inline connection has asked to be polled, and the waker it is polled with.
    /// hyper's connection is polled only when it asked to be (see `read`).
    conn_gate: WakeGate,
    target: Target,
    pending: VecDeque<Item>,
    /// No more is read from the body (it ended, failed, or an end item is queued).
    body_done: bool,
    /// When bytes last arrived (or reading resumed after the application caught up).
    last_rx: Instant,
    /// Delivery waited for room in the application's queue since `last_rx` was set.
    deliver_blocked: bool,
    /// The dead-stream check while open; the close deadline while closing.
    timer: Pin<Box<Sleep>>,
    /// Present when a send URL is known and no POST is in flight.
    poster: Option<Poster>,
    post: Option<PostFuture>,
    /// A command taken from the queue that the next POST starts with.
    held: Option<Command>,
    phase: Phase,
}

/// Runs an event stream until it ends. The parser and the server's `retry` outlive the link.
pub(crate) async fn run(
    link: Link,
    inner: &Arc<Inner>,
    parser: &mut SseParser,
    retry: &mut Option<Duration>,
    io: &mut DriverIo,
) -> RunOutcome {
    let poster = link
        .send_url
        .map(|url| Poster::new(inner.clone(), url, &link.conn));
    io.set_send_unsupported(poster.is_none().then(|| NO_SEND_URL.to_owned()));
    let now = Instant::now();
    let mut run = Run {
        conn_gate: WakeGate::new(),
        inner,
        parser,
        retry,
        body: link.body,
        conn: link.conn,
        target: link.target,
        pending: VecDeque::new(),
        body_done: false,
        last_rx: now,
        deliver_blocked: false,
        timer: Box::pin(tokio::time::sleep_until(
            now + inner.config.transport.dead_peer_timeout,
        )),
        poster,
        post: None,
        held: None,
        phase: Phase::Open,
    };
    let outcome = poll_fn(|cx| run.poll(io, cx)).await;
    debug!(?outcome, url = %run.target, "event stream ended");
    outcome
}

impl Run<'_> {
    fn poll(&mut self, io: &mut DriverIo, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        // Before `woken` is looked at: a wake-up after this reaches this poll's waker.
        self.conn_gate.register(cx);
        let mut budget = BUDGET;
        // The command queue answered `Pending` in this poll (so it holds this task's waker):
        // asking again before a POST ends would only repeat the answer.
        let mut commands_idle = false;
        loop {
            match self.step(io, cx, &mut budget, &mut commands_idle) {
                Ok(true) => {}
                Ok(false) => return Poll::Pending,
                Err(end) => return end,
            }
        }
    }

    /// One round over everything that can move; whether another round is needed.
    ///
    /// The order lets each part see what the parts before it did in the same round:
    /// delivering makes room for reading, a finished POST lets the next one start. So another
    /// round is needed only when a part moved something a part *before* it waits on: a chunk
    /// read (its events are to be delivered), a POST started (its future is to be polled), the
    /// timer fired. A round that only delivered or finished a POST has already polled
    /// everything after that (callgrind: a round less per event, whose hyper connection poll
    /// alone was ~1,200 instructions).
    fn step(
        &mut self,
        io: &mut DriverIo,
        cx: &mut Context<'_>,
        budget: &mut usize,
        commands_idle: &mut bool,
    ) -> Step {
        self.deliver(io, cx, budget)?;
        if self.poll_post(cx)? {
            *commands_idle = false;
        }
        let mut again = false;
        if self.post.is_none() && matches!(self.phase, Phase::Open) && !*commands_idle {
            let started = self.start_commands(io, cx)?;
            *commands_idle = !started;
            again |= started;
        }
        again |= self.read(io, cx, budget)?;
        if !again {
            again = self.poll_timer(cx)?;
        }
        Ok(again)
    }

    /// Hands what was read to the application, in order, as its queue has room.
    fn deliver(
        &mut self,
        io: &mut DriverIo,
        cx: &mut Context<'_>,
        budget: &mut usize,
    ) -> Result<(), Poll<RunOutcome>> {
        while let Some(front) = self.pending.front() {
            if matches!(front, Item::End(_)) {
                if let Some(Item::End(outcome)) = self.pending.pop_front() {
                    return Err(Poll::Ready(self.end(outcome)));
                }
                continue;
            }
            let Poll::Ready(alive) = io.poll_reserve(cx) else {
                self.deliver_blocked = true;
                break;
            };
            if let Some(Item::Message(message)) = self.pending.pop_front()
                && alive
            {
                io.send_reserved(message);
            }
            if self.pending.is_empty() && mem::take(&mut self.deliver_blocked) {
                // Reading resumes: time spent waiting for the application is not silence.
                // (Not blocked, the delivery follows the read that set `last_rx` in the same
                // poll: no second clock read.)
                self.last_rx = Instant::now();
            }
            spend(cx, budget)?;
        }
        Ok(())
    }

    /// Polls the POST in flight.
    fn poll_post(&mut self, cx: &mut Context<'_>) -> Step {
        let Some(post) = &mut self.post else {
            return Ok(false);
        };
        let Poll::Ready((poster, result)) = post.as_mut().poll(cx) else {
            return Ok(false);
        };
        self.post = None;
        self.poster = Some(poster);
        match (self.phase, result) {
            (Phase::Open, Err(e)) => Err(Poll::Ready(RunOutcome::Failed(e))),
            // The close could not be delivered: nothing more to wait for.
            (Phase::Closing, Err(e)) => {
                debug!(error = %e, "close POST failed");
                Err(Poll::Ready(RunOutcome::LocalClosed))
            }
            (_, Ok(())) => Ok(true),
        }
    }

    /// Takes the application's commands and starts the POST they need.
    fn start_commands(&mut self, io: &mut DriverIo, cx: &mut Context<'_>) -> Step {
        match self.poll_commands(io, cx) {
            Some(Next::Post(batch)) => {
                if let Some(poster) = self.poster.take() {
                    let out = Outgoing::messages(batch, io.max_message_size());
                    debug!(messages = out.count, url = %poster.url(), "POST");
                    self.post = Some(poster.start(out));
                }
                Ok(true)
            }
            Some(Next::Close(frame)) => {
                let Some(poster) = self.poster.take() else {
                    return Err(Poll::Ready(RunOutcome::LocalClosed));
                };
                self.post = Some(poster.start(Outgoing::close(&frame)));
                self.phase = Phase::Closing;
                let deadline = Instant::now() + self.inner.config.transport.close_timeout;
                self.timer.as_mut().reset(deadline);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads the body, while everything read before has been handed over.
    fn read(&mut self, io: &DriverIo, cx: &mut Context<'_>, budget: &mut usize) -> Step {
        if !self.pending.is_empty() || self.body_done {
            return Ok(false);
        }
        // An HTTP/1.1 stream's connection runs here, not in a task of its own: what it reads
        // is parsed and delivered in this same poll. Once it ends, the body reports how. It is
        // polled only when it asked to be, through `conn_gate`.
        //
        // The task is woken for other reasons too (the application's commands and queue, the
        // timer, the body), and polling hyper's connection is the costliest part of a poll
        // (callgrind: ~1,300 instructions when it finds nothing to do). Per event, the
        // connection is polled once to read the chunk, and once more after the chunk is taken
        // from the body (taking it makes room in the body's one-chunk channel, which the
        // connection waits on, so it wakes the task): that second poll reads on when more has
        // arrived. Without the gate the wake-up it caused came back as one more task poll,
        // which polled the connection a third time for nothing.
        if self.conn_gate.take_open() {
            let _ = self
                .conn
                .poll_driver(&mut Context::from_waker(self.conn_gate.waker()));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.last_rx = Instant::now();
                    self.on_data(&data, io);
                }
                spend(cx, budget)?;
            }
            Poll::Ready(Some(Err(e))) => {
                self.stream_ended(format!("the event stream broke: {e}"));
            }
            Poll::Ready(None) => self.stream_ended("the event stream ended".to_owned()),
            Poll::Pending => return Ok(false),
        }
        Ok(true)
    }

    /// The timer, once nothing else moves: the dead-stream check while open, the close
    /// deadline while closing.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Step {
        match self.phase {
            Phase::Open if self.pending.is_empty() && !self.body_done => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    self.check_silence();
                    return Ok(true);
                }
            }
            Phase::Open => {}
            Phase::Closing => {
                if self.timer.as_mut().poll(cx).is_ready() {
                    debug!("close timed out waiting for the stream to end");
                    return Err(Poll::Ready(RunOutcome::LocalClosed));
                }
            }
        }
        Ok(false)
    }

    /// The outcome of an end item: while closing, any end completes the close.
    fn end(&self, outcome: RunOutcome) -> RunOutcome {
        match self.phase {
            Phase::Open => outcome,
            Phase::Closing => RunOutcome::LocalClosed,
        }
    }

    /// Takes queued commands: everything queued now (within the size bound) as one batch, or
    /// a close once the messages before it have gone.
    fn poll_commands(&mut self, io: &mut DriverIo, cx: &mut Context<'_>) -> Option<Next> {
        let limit = io.max_message_size().saturating_mul(4);
        let mut batch = Vec::new();
        let mut size = 0usize;
        loop {
            let command = match self.held.take() {
                Some(command) => command,
                None => match io.poll_command(cx) {
                    Poll::Ready(command) => command,
                    Poll::Pending => break,
                },
            };
            match command {
                Command::Send(message) => {
                    if self.poster.is_none() {
                        // Queued before this link declared sending unsupported.
                        warn!(len = message.len(), "dropping a message: {NO_SEND_URL}");
                        continue;
                    }
                    let cost = 5 + message.len();
                    if !batch.is_empty()
                        && (size.saturating_add(cost) > limit || batch.len() >= MAX_BATCH)
                    {
                        self.held = Some(Command::Send(message));
                        break;
                    }
                    size = size.saturating_add(cost);
                    batch.push(message);
                }
                Command::Close(frame) => {
                    if batch.is_empty() {
                        return Some(Next::Close(frame));
                    }
                    self.held = Some(Command::Close(frame));
                    break;
                }
            }
        }
        (!batch.is_empty()).then_some(Next::Post(batch))
    }

    /// Feeds a chunk to the parser and queues what it completes.
    fn on_data(&mut self, data: &[u8], io: &DriverIo) {
        self.parser.feed(data);
        if let Some(retry) = self.parser.take_retry() {
            *self.retry = Some(retry);
        }
        while let Some(event) = self.parser.next_event() {
            let item = match event {
                Ok(event) => self.on_event(event, io),
                Err(e) => Some(Item::End(RunOutcome::Failed(e.into()))),
            };
            if let Some(item) = item {
                let end = matches!(item, Item::End(_));
                self.pending.push_back(item);
                if end {
                    // Whatever follows an end is never looked at.
                    self.body_done = true;
                    self.parser.finish();
                    while self.parser.next_event().is_some() {}
                    return;
                }
            }
        }
    }

    /// What one event becomes, if anything.
    fn on_event(&mut self, event: SseEvent, io: &DriverIo) -> Option<Item> {
        let fail = |e| Some(Item::End(RunOutcome::Failed(e)));
        match event.event_type() {
            EVENT_SESSION => match self.on_session(&event.data, io) {
                Ok(()) => None,
                Err(e) => fail(e),
            },
            EVENT_CLOSE => Some(Item::End(match parse_close_json(event.data.as_bytes()) {
                Ok(frame) => RunOutcome::PeerClosed(frame),
                Err(e) => RunOutcome::Failed(e),
            })),
            kind @ (EVENT_BINARY | EVENT_TEXT64) => {
                if !self.subscribed("message") {
                    return None;
                }
                match decode_b64(&event.data, kind == EVENT_TEXT64) {
                    Ok(message) => Some(sized(message, io)),
                    Err(e) => fail(e),
                }
            }
            kind if kind.starts_with(RESERVED_PREFIX) => {
                debug!(kind, "ignoring an unknown reserved event type");
                None
            }
            kind => {
                if !self.subscribed(kind) {
                    return None;
                }
                let id = (!event.id.is_empty()).then_some(event.id);
                let message =
                    Message::text(event.data).with_metadata(MessageMetadata::new(event.event, id));
                Some(sized(message, io))
            }
        }
    }

    fn subscribed(&self, kind: &str) -> bool {
        self.inner
            .config
            .subscribed_events
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e == kind))
    }

    /// The session event: its send URL counts unless the response header gave one.
    fn on_session(&mut self, data: &str, io: &DriverIo) -> Result<(), TransportError> {
        let (token, send) = parse_session_json(data)?;
        // The link's span (opened by the dialer) names its session from now on.
        tracing::Span::current().record("session", token.as_str());
        if self.poster.is_some() || self.post.is_some() {
            return Ok(());
        }
        let url = stream::send_url(&self.target, &send)?;
        debug!(send = %url, "send URL from the session event");
        self.poster = Some(Poster::new(self.inner.clone(), url, &self.conn));
        io.set_send_unsupported(None);
        Ok(())
    }

    fn stream_ended(&mut self, reason: String) {
        self.parser.finish();
        self.body_done = true;
        self.pending
            .push_back(Item::End(RunOutcome::Failed(TransportError::lost(reason))));
    }

    /// The dead-stream timer fired: the stream is lost if nothing arrived since it was set,
    /// else it is set again from the latest arrival.
    fn check_silence(&mut self) {
        let timeout = self.inner.config.transport.dead_peer_timeout;
        let due = self.last_rx + timeout;
        if Instant::now() >= due {
            self.stream_ended(format!("nothing received for {timeout:?}"));
        } else {
            self.timer.as_mut().reset(due);
        }
    }
}

/// The message, or the end of the link when it exceeds `max_message_size`.
fn sized(message: Message, io: &DriverIo) -> Item {
    let limit = io.max_message_size();
    if message.len() > limit {
        Item::End(RunOutcome::Failed(TransportError::MessageTooLarge {
            size: message.len(),
            limit,
        }))
    } else {
        Item::Message(message)
    }
}

/// The result of one step of a poll: whether it moved anything, or how the poll ends.
type Step = Result<bool, Poll<RunOutcome>>;

/// Counts one unit of work; once the budget is spent, the poll yields to other tasks.
fn spend(cx: &mut Context<'_>, budget: &mut usize) -> Result<(), Poll<RunOutcome>> {
    *budget = budget.saturating_sub(1);
    if *budget == 0 {
        cx.waker().wake_by_ref();
        return Err(Poll::Pending);
    }
    Ok(())
}
