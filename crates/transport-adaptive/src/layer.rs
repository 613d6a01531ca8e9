//! The session layer inside a WebSocket link's poll loop ([`LinkIo`]), for the client and
//! the server alike: a message then takes the hops of a plain WebSocket connection (one task
//! between the socket and the application's channels) instead of two tasks with a channel
//! between them.
//!
//! It numbers what the application sends (holding it back while the replay window is full),
//! sends the session's own frames (replays, ACKs, the close) and delivers in order, once,
//! what the peer sends. It ends the run of the link when the session breaks or ends, or when
//! its owner's `watch` reports something (an upgrade probe's link, a new link of the session,
//! a server shutdown): the link is then left as it is, for the owner to run again or close.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use transport_core::driver::{DriverIo, LinkIo, RunOutcome, WakeGate};
use transport_core::{CloseFrame, Command, Message, TransportError};

use crate::ack_timer::AckTimer;
use crate::session::{self, Frame, Received, Session};

/// Why the layer ended a run of its link.
pub(crate) enum Stop<E> {
    /// A frame that breaks the session protocol (not a session frame, a sequence gap): the
    /// link is unusable; the session resumes on another.
    Broken(TransportError),
    /// The peer acknowledged a message never sent.
    Failed(TransportError),
    /// The peer's session `CLOSE`.
    PeerClose(CloseFrame),
    /// What the owner's `watch` reported.
    Event(E),
}

/// What a link keeps between runs of the layer.
#[derive(Default)]
pub(crate) struct LayerState {
    /// The replay after a resume, sent before anything else: at most the replay window.
    pub(crate) out: VecDeque<Message>,
    /// The latest ACK not yet written: a newer one replaces it (they are cumulative), so a
    /// peer that sends without reading what we send cannot make them pile up.
    ack: Option<Message>,
    /// A `PING` to answer (once, however many came while the socket was full).
    pong: bool,
    /// The application's close, handed to the link once our session `CLOSE` is on its way.
    closing: Option<CloseFrame>,
    /// The close went to the link: it is closing, and ends the run when that is done.
    closed: bool,
    /// Where the application's messages are encoded after the first of a burst
    /// (`session::encode_data_in`): one allocation per [`session::ENCODE_CHUNK`] of a burst
    /// instead of one per message. Dropped when the application has nothing more queued.
    encode: BytesMut,
    /// A message of the current burst was encoded.
    burst: bool,
}

pub(crate) struct SessionLayer<'a, E, W> {
    io: &'a mut DriverIo,
    session: &'a mut Session,
    state: &'a mut LayerState,
    /// Whether a `PING` is answered (the server's side of the health check).
    answer_ping: bool,
    watch: W,
    /// `watch` is polled again only after one of its sources woke it. Its sources (a
    /// session's new links, a server shutdown, a probe) rarely fire, and polling them on every
    /// wake-up of the link costs a lock or two each.
    watch_gate: WakeGate,
    ack_timer: AckTimer,
    /// The ACK in `state.ack` came due (by count) while reading: it waits for one turn of
    /// the scheduler (`ack_turn`), so that what the application sends in reply to what was
    /// read goes in the same write, instead of a write for the ACK alone (and on the peer's
    /// side a read for it, which also drops its read-ahead back to small reads).
    ack_deferred: bool,
    /// The turn a deferred ACK waits for: a `yield_now`, which wakes the link's task after the
    /// tasks this read woke (and a `block_on` future) have run.
    ack_turn: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// When a deferred ACK is written whatever happens (the ACK delay after it came due): a
    /// runtime that drops the turn's wake-up (a `block_on` that returns) cannot hold it longer.
    ack_deadline: Option<Instant>,
    /// Commands were held back by a full replay window.
    blocked: bool,
    stop: Option<Stop<E>>,
}

impl<'a, E, W> SessionLayer<'a, E, W>
where
    W: FnMut(&mut Context<'_>) -> Poll<E>,
{
    pub(crate) fn new(
        io: &'a mut DriverIo,
        session: &'a mut Session,
        state: &'a mut LayerState,
        answer_ping: bool,
        watch: W,
    ) -> Self {
        Self {
            io,
            session,
            state,
            answer_ping,
            watch,
            watch_gate: WakeGate::new(),
            ack_timer: AckTimer::new(),
            ack_deferred: false,
            ack_turn: None,
            ack_deadline: None,
            blocked: false,
            stop: None,
        }
    }

    /// Why the layer ended the run; `None` when the link ended by itself.
    pub(crate) fn take_stop(&mut self) -> Option<Stop<E>> {
        self.stop.take()
    }

    fn stop(&mut self, stop: Stop<E>) {
        if self.stop.is_none() {
            self.stop = Some(stop);
        }
    }

    /// Queues an ACK when one is due (`ack_every` deliveries owed, or its timer fired). A
    /// `deferred` one waits for the next poll of the link (see `ack_deferred`).
    fn ack(&mut self, now: Instant, deferred: bool) {
        if let Some(ack) = self.session.poll_ack(now) {
            self.state.ack = Some(session::encode(&ack));
            self.ack_deferred = deferred;
            if deferred {
                // The first deferral's deadline holds for the ACKs that replace it.
                self.ack_deadline
                    .get_or_insert_with(|| now + self.session.ack_delay());
            }
        }
    }
}

impl<E, W> LinkIo for SessionLayer<'_, E, W>
where
    W: FnMut(&mut Context<'_>) -> Poll<E>,
{
    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        if let Some(frame) = self.state.out.pop_front() {
            return Poll::Ready(Command::Send(frame));
        }
        if let Some(ack) = self.state.ack.take() {
            self.ack_deferred = false;
            self.ack_turn = None;
            self.ack_deadline = None;
            return Poll::Ready(Command::Send(ack));
        }
        if std::mem::take(&mut self.state.pong) {
            return Poll::Ready(Command::Send(session::encode(&Frame::Pong)));
        }
        if let Some(close) = self.state.closing.take() {
            self.state.closed = true;
            return Poll::Ready(Command::Close(close));
        }
        if self.stop.is_some() || self.state.closed {
            return Poll::Pending;
        }
        if !self.session.can_send() {
            // An ACK read from the link opens the window again (see `wants_write`).
            self.blocked = true;
            return Poll::Pending;
        }
        self.blocked = false;
        match self.io.poll_command(cx) {
            Poll::Ready(Command::Send(m)) => {
                let frame = self.session.send(m);
                Poll::Ready(Command::Send(match frame {
                    // The second message of a burst on: from the shared room.
                    Frame::Data { seq, message } if self.state.burst => {
                        session::encode_data_in(&mut self.state.encode, seq, &message)
                    }
                    // A message alone (a round trip) costs one allocation of its size, as before.
                    frame => {
                        self.state.burst = true;
                        session::encode(&frame)
                    }
                }))
            }
            Poll::Ready(Command::Close(frame)) => {
                let close = session::encode(&Frame::Close {
                    code: frame.code,
                    reason: frame.reason.clone(),
                });
                self.state.closing = Some(frame);
                Poll::Ready(Command::Send(close))
            }
            Poll::Pending => {
                // Idle: a connection that waits holds no encoding room.
                if self.state.burst {
                    self.state.burst = false;
                    self.state.encode = BytesMut::new();
                }
                Poll::Pending
            }
        }
    }

    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.stop.is_some() {
            // The run ends right after this read (`poll_end`): nothing more is read.
            return Poll::Pending;
        }
        // Held messages first, as far as the application has room.
        while self.session.has_held() {
            match self.io.poll_reserve(cx) {
                Poll::Ready(room) => {
                    crate::held::hand_over_reserved(self.session, self.io, room);
                    if self.session.ack_count_due() {
                        self.ack(Instant::now(), true);
                    }
                }
                Poll::Pending => break,
            }
        }
        if self.session.held_full() {
            // As much held as the peer's window allows: wait for the application.
            return Poll::Pending;
        }
        // Read whether or not the application has room: the peer's ACKs must get through
        // (they open our window, which an application waiting on its own send needs); DATA
        // the application has no room for is held. An application that no longer reads
        // has its data discarded, as `DriverIo::deliver` does.
        if !self.session.has_held() {
            // Registers for the application's room when it has none.
            let _ = self.io.poll_reserve(cx);
        }
        Poll::Ready(true)
    }

    fn send_reserved(&mut self, message: Message) -> bool {
        if self.stop.is_some() {
            return false;
        }
        match session::decode(&message) {
            Err(e) => self.stop(Stop::Broken(e)),
            Ok(Frame::Data { seq, message }) => {
                let room = self.io.has_reserved();
                match self.session.on_data_room(seq, message, room, Instant::now) {
                    Ok(Received::Deliver(m)) => {
                        let taken = self.io.send_reserved(m);
                        // The clock is read only when an ACK is due by count.
                        if self.session.ack_count_due() {
                            self.ack(Instant::now(), true);
                        }
                        return taken;
                    }
                    Ok(Received::Held | Received::Duplicate) => {}
                    Err(e) => self.stop(Stop::Broken(e)),
                }
            }
            Ok(Frame::Ack { seq }) => {
                if let Err(e) = self.session.on_ack(seq) {
                    self.stop(Stop::Failed(e));
                }
            }
            Ok(Frame::Close { code, reason }) => {
                self.stop(Stop::PeerClose(CloseFrame::new(code, reason)));
            }
            Ok(Frame::Ping) if self.answer_ping => self.state.pong = true,
            // Stray handshake frames are harmless.
            Ok(_) => {}
        }
        false
    }

    fn record_rtt(&self, rtt: Duration) {
        self.io.record_rtt(rtt);
    }

    fn set_peer_close(&self, _frame: CloseFrame) {
        // The link's close frame is not the session's: a link that closes is resumed on the
        // next one. A session `CLOSE` ends the connection (`send_reserved`).
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        if self.stop.is_some() {
            // The owner reads `take_stop`; this outcome is not used.
            return Poll::Ready(RunOutcome::LocalClosed);
        }
        // The ACK timer (an owed ACK's delay, or a deferred ACK's deadline); polled once more
        // after it fired, to register its next deadline.
        for _ in 0..2 {
            let next = match (self.session.next_timeout(), self.ack_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.ack_timer.rearm(next);
            if !self.ack_timer.is_armed() || self.ack_timer.sleep().as_mut().poll(cx).is_pending() {
                break;
            }
            self.ack_timer.fired();
            let now = Instant::now();
            if self.ack_deadline.is_some_and(|d| now >= d) {
                // Written by this poll, turn or not.
                self.ack_deferred = false;
                self.ack_deadline = None;
            }
            self.ack(now, false);
        }
        if self.ack_deferred {
            let turn = self
                .ack_turn
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            if turn.as_mut().poll(cx).is_ready() {
                // Its turn came: written by this poll, with what was queued meanwhile.
                self.ack_deferred = false;
                self.ack_turn = None;
            }
        }
        // A closing link finishes its close first.
        if self.state.closed || self.state.closing.is_some() {
            return Poll::Pending;
        }
        let watch = &mut self.watch;
        if let Poll::Ready(event) = self.watch_gate.poll(cx, |cx| watch(cx)) {
            self.stop(Stop::Event(event));
            return Poll::Ready(RunOutcome::LocalClosed);
        }
        Poll::Pending
    }

    fn wants_write(&self) -> bool {
        !self.state.out.is_empty()
            || (self.state.ack.is_some() && !self.ack_deferred)
            || self.state.pong
            || self.state.closing.is_some()
            || (self.blocked && self.session.can_send())
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use transport_core::driver::{self, LinkIo, RunOutcome};
    use transport_core::{Command, ConnectionInfo, Transport, TransportConfig};

    use super::{LayerState, SessionLayer};
    use crate::session::{self, Frame, Session, SessionLimits};

    /// Polls once, with a waker that does nothing (the test polls again itself).
    fn now<T>(poll: impl FnOnce(&mut Context<'_>) -> T) -> T {
        let waker = futures_util::task::noop_waker();
        poll(&mut Context::from_waker(&waker))
    }

    /// Reads DATA frames 1 to `count` into `layer` as the link would, each once the layer
    /// takes a read (bounded: the application behind it reads everything).
    async fn read_data<E, W>(layer: &mut SessionLayer<'_, E, W>, count: u64)
    where
        W: FnMut(&mut Context<'_>) -> Poll<E>,
    {
        for seq in 1..=count {
            for _ in 0..10_000 {
                if now(|cx| layer.poll_reserve(cx)).is_ready() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let message = transport_core::Message::binary(vec![1u8; 8]);
            layer.send_reserved(session::encode(&Frame::Data { seq, message }));
        }
    }

    /// What the layer hands the link after reading `data` DATA frames and `pings` PINGs while
    /// nothing was written: the frames of its own it would send, in order.
    async fn own_frames_after(data: u64, pings: usize) -> Vec<Frame> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut app = driver::spawn_accepted(
            &TransportConfig::default(),
            ConnectionInfo::new("ws"),
            move |mut io| async move {
                let mut session = Session::new(SessionLimits::default());
                let mut state = LayerState::default();
                let mut layer = SessionLayer::new(&mut io, &mut session, &mut state, true, |_| {
                    Poll::<()>::Pending
                });
                read_data(&mut layer, data).await;
                for _ in 0..pings {
                    layer.send_reserved(session::encode(&Frame::Ping));
                }
                // What the application had no room for yet was held: hand it over (bounded:
                // the application below reads everything).
                for _ in 0..100_000 {
                    if !layer.session.has_held() {
                        break;
                    }
                    let _ = now(|cx| layer.poll_reserve(cx));
                    tokio::task::yield_now().await;
                }
                let mut frames = Vec::new();
                // At most as many as could be queued, plus one to see the end.
                let bound = usize::try_from(data)
                    .unwrap_or(usize::MAX)
                    .saturating_add(pings + 1);
                for _ in 0..=bound {
                    match now(|cx| layer.poll_command(cx)) {
                        Poll::Ready(Command::Send(m)) => {
                            frames.push(session::decode(&m).expect("a session frame"));
                        }
                        Poll::Ready(Command::Close(_)) | Poll::Pending => break,
                    }
                }
                let _ = tx.send(frames);
                drop(layer);
                (RunOutcome::LocalClosed, io)
            },
        );
        for _ in 0..data {
            app.recv().await.expect("recv").expect("a message");
        }
        rx.await.expect("the layer's frames")
    }

    #[tokio::test]
    async fn acks_and_pongs_do_not_pile_up_while_nothing_is_written() {
        // 1,000 deliveries owe 31 ACKs (every 32); 100 PINGs owe answers: one cumulative ACK
        // and one PONG are all that wait.
        // (Messages the application had no room for were held and handed over in a batch, so
        // the one ACK may acknowledge up to all 1,000.)
        let frames = own_frames_after(1_000, 100).await;
        assert!(
            matches!(
                frames.as_slice(),
                [Frame::Ack { seq: 992..=1_000 }, Frame::Pong]
            ),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn nothing_is_owed_below_the_ack_count() {
        assert_eq!(own_frames_after(31, 0).await, Vec::<Frame>::new());
    }

    /// Counts its wake-ups.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn an_ack_due_while_reading_waits_one_turn_then_goes_out_without_data() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut app = driver::spawn_accepted(
            &TransportConfig::default(),
            ConnectionInfo::new("ws"),
            move |mut io| async move {
                let limits = SessionLimits::default();
                let (every, delay) = (limits.ack_every, limits.ack_delay);
                let mut session = Session::new(limits);
                let mut state = LayerState::default();
                let mut layer = SessionLayer::new(&mut io, &mut session, &mut state, true, |_| {
                    Poll::<()>::Pending
                });
                read_data(&mut layer, every).await;
                let read_at = std::time::Instant::now();
                // Due, but not written by the poll that read it (no second pass for commands).
                let held = !layer.wants_write();
                let counter = std::sync::Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
                let waker = std::task::Waker::from(counter.clone());
                let first = layer
                    .poll_end(&mut Context::from_waker(&waker))
                    .is_pending();
                // Its fallback: written by the ACK delay even if the turn's wake-up is lost.
                let deadline_ok = layer
                    .ack_timer
                    .armed_at()
                    .is_some_and(|at| at <= read_at + delay);
                // The turn: the link's task is woken once the other tasks have run, although
                // the application sent nothing.
                for _ in 0..100 {
                    if counter.0.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let woken = counter.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
                let second = layer
                    .poll_end(&mut Context::from_waker(&waker))
                    .is_pending();
                let due = layer.wants_write();
                let frame = match now(|cx| layer.poll_command(cx)) {
                    Poll::Ready(Command::Send(m)) => session::decode(&m).ok(),
                    _ => None,
                };
                let _ = tx.send((held, first, deadline_ok, woken, second, due, frame));
                drop(layer);
                (RunOutcome::LocalClosed, io)
            },
        );
        for _ in 0..32 {
            app.recv().await.expect("recv").expect("a message");
        }
        let (held, first, deadline_ok, woken, second, due, frame) =
            rx.await.expect("the layer's answers");
        assert!(held, "written in the read's own poll");
        assert!(first && second, "the run ended");
        assert!(deadline_ok, "no fallback deadline within the ACK delay");
        assert!(woken, "the link was not woken for the deferred ACK");
        assert!(due, "not due after its turn");
        assert_eq!(frame, Some(Frame::Ack { seq: 32 }));
    }
}
