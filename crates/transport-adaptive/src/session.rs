//! The session layer, sans-IO: frames ([`Frame`], [`encode`], [`decode`]) and the state of one
//! direction pair ([`Session`]): sequence numbers, cumulative acknowledgements, a bounded replay
//! buffer, and duplicate suppression. No I/O and no clock reads: time is passed in.
//!
//! The wire format is specified in `docs/protocols/session.md`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use transport_core::{Message, TransportError};

/// Magic bytes after the type byte of every handshake frame.
pub const MAGIC: &[u8; 4] = b"tses";
/// The protocol version spoken.
pub const VERSION: u8 = 1;
/// Bytes a `DATA` frame adds to a message.
pub const DATA_OVERHEAD: usize = 10;

const T_PING: u8 = 0x01;
const T_PONG: u8 = 0x02;
const T_HELLO: u8 = 0x03;
const T_WELCOME: u8 = 0x04;
const T_REJECT: u8 = 0x05;
const T_DATA: u8 = 0x10;
const T_ACK: u8 = 0x11;
const T_CLOSE: u8 = 0x12;

/// A session identifier: 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random id from the OS random source.
    ///
    /// # Errors
    /// [`TransportError::ConnectionFailed`] when the OS random source fails.
    pub fn random() -> Result<Self, TransportError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| TransportError::ConnectionFailed {
            reason: format!("OS random source: {e}"),
            source: None,
        })?;
        if id == [0; 16] {
            id[0] = 1;
        }
        Ok(Self(id))
    }

    /// Whether this is the all-zero id ("no session yet" in a `HELLO`).
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// Why a server refused a `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// The session is unknown: it expired, or the server lost its state (restart). What was
    /// in flight is lost; the client reports an error.
    UnknownSession,
    /// The server's session table is full. Retryable.
    Full,
    /// Another version or a malformed handshake.
    Protocol,
    /// A code this version does not know.
    Other(u16),
}

impl RejectCode {
    fn to_u16(self) -> u16 {
        match self {
            Self::UnknownSession => 1,
            Self::Full => 2,
            Self::Protocol => 3,
            Self::Other(c) => c,
        }
    }

    fn from_u16(c: u16) -> Self {
        match c {
            1 => Self::UnknownSession,
            2 => Self::Full,
            3 => Self::Protocol,
            c => Self::Other(c),
        }
    }
}

/// One session frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Health check (client to server), answered by [`Frame::Pong`]; attaches nothing.
    Ping,
    /// Answer to [`Frame::Ping`].
    Pong,
    /// Opens (nil id) or resumes a session; `ack` is the last sequence number the client
    /// received in order.
    Hello {
        /// The session to resume, or nil for a new one.
        session: SessionId,
        /// Cumulative acknowledgement of the server's messages.
        ack: u64,
    },
    /// The server's answer to [`Frame::Hello`].
    Welcome {
        /// The session id (new or resumed).
        session: SessionId,
        /// Whether an existing session was resumed.
        resumed: bool,
        /// Cumulative acknowledgement of the client's messages.
        ack: u64,
    },
    /// The server refused a [`Frame::Hello`].
    Reject {
        /// Why.
        code: RejectCode,
        /// Details, in words.
        reason: String,
    },
    /// An application message with its sequence number.
    Data {
        /// Sequence number, from 1, per direction.
        seq: u64,
        /// The message.
        message: Message,
    },
    /// Cumulative acknowledgement: every message up to `seq` was delivered.
    Ack {
        /// The last sequence number delivered in order.
        seq: u64,
    },
    /// The session ends (the application closed it).
    Close {
        /// Close code (WebSocket numbering).
        code: u16,
        /// Reason.
        reason: String,
    },
}

fn put_magic(buf: &mut BytesMut, t: u8) {
    buf.put_u8(t);
    buf.put_slice(MAGIC);
    buf.put_u8(VERSION);
}

/// Encodes a frame as one binary message.
pub fn encode(frame: &Frame) -> Message {
    // One allocation of the right size: a DATA frame (the hot path) copies its payload once,
    // behind the header.
    let capacity = match frame {
        Frame::Data { message, .. } => message.len() + DATA_OVERHEAD,
        Frame::Reject { reason, .. } | Frame::Close { reason, .. } => 8 + reason.len(),
        _ => 32,
    };
    let mut buf = BytesMut::with_capacity(capacity);
    match frame {
        Frame::Ping => put_magic(&mut buf, T_PING),
        Frame::Pong => put_magic(&mut buf, T_PONG),
        Frame::Hello { session, ack } => {
            put_magic(&mut buf, T_HELLO);
            buf.put_slice(&session.0);
            buf.put_u64(*ack);
        }
        Frame::Welcome {
            session,
            resumed,
            ack,
        } => {
            put_magic(&mut buf, T_WELCOME);
            buf.put_slice(&session.0);
            buf.put_u8(u8::from(*resumed));
            buf.put_u64(*ack);
        }
        Frame::Reject { code, reason } => {
            put_magic(&mut buf, T_REJECT);
            buf.put_u16(code.to_u16());
            buf.put_slice(reason.as_bytes());
        }
        Frame::Data { seq, message } => put_data(&mut buf, *seq, message),
        Frame::Ack { seq } => {
            buf.put_u8(T_ACK);
            buf.put_u64(*seq);
        }
        Frame::Close { code, reason } => {
            buf.put_u8(T_CLOSE);
            buf.put_u16(*code);
            buf.put_slice(reason.as_bytes());
        }
    }
    Message::binary(buf.freeze())
}

fn put_data(buf: &mut BytesMut, seq: u64, message: &Message) {
    buf.put_u8(T_DATA);
    buf.put_u64(seq);
    buf.put_u8(u8::from(message.is_binary()));
    buf.put_slice(message.as_bytes());
}

/// Room a DATA frame encoder takes at a time ([`encode_data_in`]).
pub(crate) const ENCODE_CHUNK: usize = 16 * 1024;

/// As [`encode`] for a DATA frame, its bytes cut from `chunk` instead of an allocation of their
/// own: `chunk` takes [`ENCODE_CHUNK`] bytes (or the frame's size, if larger) when it runs
/// out, and takes its space back once the frames cut from it are gone (a link drops each one as
/// soon as it is copied into the socket's write buffer). The owner drops `chunk` when idle.
pub(crate) fn encode_data_in(chunk: &mut BytesMut, seq: u64, message: &Message) -> Message {
    let need = message.len() + DATA_OVERHEAD;
    if chunk.capacity() < need {
        chunk.reserve(need.max(ENCODE_CHUNK));
    }
    put_data(chunk, seq, message);
    Message::binary(chunk.split().freeze())
}

fn bad(what: &str) -> TransportError {
    TransportError::protocol(format!("session frame: {what}"))
}

fn text(bytes: &[u8]) -> Result<String, TransportError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("reason is not UTF-8"))
}

/// Decodes one message as a frame. A text message, an unknown type or a truncated frame is an
/// error (a peer that does not speak the session protocol).
///
/// # Errors
/// [`TransportError::ProtocolViolation`] describing what is wrong.
pub fn decode(message: &Message) -> Result<Frame, TransportError> {
    if !message.is_binary() {
        return Err(bad("not a binary message"));
    }
    let mut b = message.payload();
    if b.is_empty() {
        return Err(bad("empty"));
    }
    let t = b.get_u8();
    let need = |b: &Bytes, n: usize| {
        if b.remaining() < n {
            Err(bad("truncated"))
        } else {
            Ok(())
        }
    };
    if matches!(t, T_PING | T_PONG | T_HELLO | T_WELCOME | T_REJECT) {
        need(&b, 5)?;
        if &b[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        if b[4] != VERSION {
            return Err(bad("unsupported version"));
        }
        b.advance(5);
    }
    let read_id = |b: &mut Bytes| {
        let mut id = [0u8; 16];
        b.copy_to_slice(&mut id);
        SessionId(id)
    };
    let frame = match t {
        T_PING => Frame::Ping,
        T_PONG => Frame::Pong,
        T_HELLO => {
            need(&b, 24)?;
            let session = read_id(&mut b);
            Frame::Hello {
                session,
                ack: b.get_u64(),
            }
        }
        T_WELCOME => {
            need(&b, 25)?;
            let session = read_id(&mut b);
            let resumed = b.get_u8() != 0;
            Frame::Welcome {
                session,
                resumed,
                ack: b.get_u64(),
            }
        }
        T_REJECT => {
            need(&b, 2)?;
            let code = RejectCode::from_u16(b.get_u16());
            Frame::Reject {
                code,
                reason: text(&b)?,
            }
        }
        T_DATA => {
            need(&b, 9)?;
            let seq = b.get_u64();
            let message = match b.get_u8() {
                0 => Message::text_from_bytes(b)?,
                1 => Message::binary(b),
                _ => return Err(bad("unknown message kind")),
            };
            Frame::Data { seq, message }
        }
        T_ACK => {
            need(&b, 8)?;
            Frame::Ack { seq: b.get_u64() }
        }
        T_CLOSE => {
            need(&b, 2)?;
            let code = b.get_u16();
            Frame::Close {
                code,
                reason: text(&b)?,
            }
        }
        _ => return Err(bad("unknown frame type")),
    };
    // Trailing bytes after fixed-size frames are tolerated (room for extensions).
    Ok(frame)
}

/// Bounds and timing of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Messages sent and not yet acknowledged, kept for replay. When full, `send` waits
    /// (backpressure) until the peer acknowledges. Default: 1024.
    pub max_unacked_messages: usize,
    /// Bytes of those messages. A single message larger than this is still accepted when
    /// nothing else is waiting. Default: 8 MiB.
    pub max_unacked_bytes: usize,
    /// Acknowledge after this many delivered messages. Default: 32.
    pub ack_every: u64,
    /// Acknowledge at the latest this long after the first unacknowledged delivery.
    /// Default: 50 ms.
    pub ack_delay: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_unacked_messages: 1024,
            max_unacked_bytes: 8 << 20,
            ack_every: 32,
            ack_delay: Duration::from_millis(50),
        }
    }
}

impl SessionLimits {
    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.max_unacked_messages == 0 || self.max_unacked_bytes == 0 || self.ack_every == 0 {
            return Err(TransportError::InvalidConfig(
                "session limits: max_unacked_messages, max_unacked_bytes and ack_every must be at least 1"
                    .into(),
            ));
        }
        if usize::try_from(self.ack_every).map_or(true, |a| a > self.max_unacked_messages) {
            return Err(TransportError::InvalidConfig(
                "session limits: ack_every must not exceed max_unacked_messages".into(),
            ));
        }
        Ok(())
    }
}

/// What an incoming `DATA` frame means.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// The next message in order: deliver it.
    Deliver(Message),
    /// The next message in order, held until the application has room (see
    /// [`Session::on_data_room`]): take it with [`Session::next_held`].
    Held,
    /// Already received (a replay overlapping what arrived before): ignore it.
    Duplicate,
}

/// The state of one end of a session: what was sent and not yet acknowledged (for replay),
/// and what was received (for acknowledgements and duplicate suppression).
#[derive(Debug)]
pub struct Session {
    limits: SessionLimits,
    next_seq: u64,
    unacked: VecDeque<(u64, Message)>,
    unacked_bytes: usize,
    /// The last sequence number received in order (delivered or held).
    accepted: u64,
    /// Received in order, not yet handed to the application (its queue was full), oldest
    /// first. They are not acknowledged: the peer's replay window bounds them, and a receiver
    /// keeps reading its link meanwhile, so the peer's `ACK`s (which open our own window) are
    /// never stuck behind data the application has no room for.
    held: VecDeque<Message>,
    held_bytes: usize,
    /// The last sequence number handed to the application: what `ACK`s acknowledge.
    delivered: u64,
    ack_sent: u64,
    ack_due: Option<Instant>,
}

impl Session {
    /// A new session: nothing sent, nothing received.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            next_seq: 1,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            accepted: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            delivered: 0,
            ack_sent: 0,
            ack_due: None,
        }
    }

    /// Whether the replay buffer has room for another message.
    pub fn can_send(&self) -> bool {
        self.unacked.is_empty()
            || (self.unacked.len() < self.limits.max_unacked_messages
                && self.unacked_bytes < self.limits.max_unacked_bytes)
    }

    /// Messages waiting for acknowledgement.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The last sequence number handed to the application in order (what `HELLO`/`WELCOME`
    /// acknowledge; held messages are not).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Numbers `message`, keeps it for replay, and returns its `DATA` frame. Call only when
    /// [`can_send`](Self::can_send) (otherwise the buffer grows past its bound by one).
    pub fn send(&mut self, message: Message) -> Frame {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked_bytes += message.len();
        self.unacked.push_back((seq, message.clone()));
        Frame::Data { seq, message }
    }

    /// Handles a cumulative acknowledgement from the peer.
    ///
    /// # Errors
    /// [`TransportError::ProtocolViolation`] when it acknowledges a message never sent.
    pub fn on_ack(&mut self, seq: u64) -> Result<(), TransportError> {
        if seq >= self.next_seq {
            return Err(bad("acknowledges a message never sent"));
        }
        while let Some((s, m)) = self.unacked.front() {
            if *s > seq {
                break;
            }
            self.unacked_bytes -= m.len();
            self.unacked.pop_front();
        }
        Ok(())
    }

    /// Handles a `DATA` frame: the next in order is to be delivered, an older one is a
    /// duplicate. `now` starts the acknowledgement timer.
    ///
    /// # Errors
    /// [`TransportError::ProtocolViolation`] for a gap (a later sequence number than the next):
    /// the link is broken and must be resumed.
    pub fn on_data(
        &mut self,
        seq: u64,
        message: Message,
        now: Instant,
    ) -> Result<Received, TransportError> {
        self.on_data_with(seq, message, || now)
    }

    /// As [`on_data`](Self::on_data), calling `now` only when the delivery starts the
    /// acknowledgement timer (the first one after an `ACK`): a driver passes `Instant::now` and
    /// reads the clock once per `ACK`, not once per message.
    ///
    /// # Errors
    /// As [`on_data`](Self::on_data).
    pub fn on_data_with(
        &mut self,
        seq: u64,
        message: Message,
        now: impl FnOnce() -> Instant,
    ) -> Result<Received, TransportError> {
        self.on_data_room(seq, message, true, now)
    }

    /// As [`on_data_with`](Self::on_data_with), for a receiver that knows whether its
    /// application has `room` for a message now: without room, or while earlier messages are
    /// held, the next message in order is held ([`Received::Held`]) instead of delivered.
    ///
    /// # Errors
    /// As [`on_data`](Self::on_data).
    pub fn on_data_room(
        &mut self,
        seq: u64,
        message: Message,
        room: bool,
        now: impl FnOnce() -> Instant,
    ) -> Result<Received, TransportError> {
        if seq <= self.accepted {
            return Ok(Received::Duplicate);
        }
        if seq != self.accepted + 1 {
            return Err(bad("sequence gap"));
        }
        self.accepted = seq;
        if room && self.held.is_empty() {
            self.count_delivery(now);
            return Ok(Received::Deliver(message));
        }
        self.push_held(message);
        Ok(Received::Held)
    }

    /// As [`on_data_room`](Self::on_data_room) without room: the next message in order is
    /// held, a duplicate dropped; for a receiver that hands held messages over itself
    /// ([`next_held`](Self::next_held)) as its application's queue takes them.
    ///
    /// # Errors
    /// As [`on_data`](Self::on_data).
    pub fn hold_data(&mut self, seq: u64, message: Message) -> Result<(), TransportError> {
        self.on_data_room(seq, message, false, Instant::now)
            .map(|_| ())
    }

    /// Holds a message of a link without the session protocol (raw mode: nothing numbered,
    /// nothing acknowledged), after those already held.
    pub fn hold(&mut self, message: Message) {
        self.accepted += 1;
        self.push_held(message);
    }

    fn push_held(&mut self, message: Message) {
        self.held_bytes += message.len();
        self.held.push_back(message);
    }

    fn count_delivery(&mut self, now: impl FnOnce() -> Instant) {
        self.delivered += 1;
        if self.ack_due.is_none() {
            self.ack_due = Some(now() + self.limits.ack_delay);
        }
    }

    /// The oldest held message, to hand to an application that has room now; it counts as
    /// delivered from here on. `now` as in [`on_data_with`](Self::on_data_with).
    pub fn next_held(&mut self, now: impl FnOnce() -> Instant) -> Option<Message> {
        let message = self.held.pop_front()?;
        self.held_bytes -= message.len();
        self.count_delivery(now);
        Some(message)
    }

    /// The oldest held message, left held.
    pub fn front_held(&self) -> Option<&Message> {
        self.held.front()
    }

    /// Whether messages wait for the application's room.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether as much is held as our own replay window allows to be unacknowledged: a peer
    /// with the same limits cannot send more before the application reads, so a receiver
    /// stops reading its link here (a peer with a larger window then waits on TCP's, QUIC's
    /// or HTTP's flow control instead).
    pub fn held_full(&self) -> bool {
        self.held.len() >= self.limits.max_unacked_messages
            || self.held_bytes >= self.limits.max_unacked_bytes
    }

    /// An `ACK` to send now, if one is due (enough deliveries, or the delay passed).
    pub fn poll_ack(&mut self, now: Instant) -> Option<Frame> {
        let pending = self.delivered - self.ack_sent;
        if pending == 0 {
            self.ack_due = None;
            return None;
        }
        let due = pending >= self.limits.ack_every || self.ack_due.is_some_and(|d| now >= d);
        due.then(|| {
            self.ack_sent = self.delivered;
            self.ack_due = None;
            Frame::Ack {
                seq: self.delivered,
            }
        })
    }

    /// Whether `ack_every` deliveries wait for an `ACK`: one is due whatever the time. Lets a
    /// driver skip reading the clock after each message, calling [`poll_ack`](Self::poll_ack)
    /// only when this holds or its timer ([`next_timeout`](Self::next_timeout)) fired.
    pub fn ack_count_due(&self) -> bool {
        self.delivered - self.ack_sent >= self.limits.ack_every
    }

    /// When [`poll_ack`](Self::poll_ack) should be called next.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.ack_due
    }

    /// The longest an owed ACK waits ([`SessionLimits::ack_delay`]).
    pub fn ack_delay(&self) -> Duration {
        self.limits.ack_delay
    }

    /// Resumes on a new link: the peer says it received everything up to `peer_ack`. Releases
    /// what it acknowledged and returns the frames to send again, oldest first. Our own
    /// acknowledgement travels in the handshake, so no `ACK` is owed afterwards.
    ///
    /// # Errors
    /// [`TransportError::ProtocolViolation`] when the peer acknowledges a message never sent,
    /// or misses messages no longer in the replay buffer (the replay window was exceeded).
    pub fn resume(&mut self, peer_ack: u64) -> Result<Vec<Frame>, TransportError> {
        let oldest = self.unacked.front().map_or(self.next_seq, |(s, _)| *s);
        if peer_ack.saturating_add(1) < oldest {
            return Err(TransportError::protocol(format!(
                "session replay window exceeded: the peer has received up to {peer_ack}, the \
                 replay buffer starts at {oldest}"
            )));
        }
        self.on_ack(peer_ack)?;
        self.ack_sent = self.delivered;
        self.ack_due = None;
        Ok(self
            .unacked
            .iter()
            .map(|(seq, m)| Frame::Data {
                seq: *seq,
                message: m.clone(),
            })
            .collect())
    }

    /// Sets the acknowledgement state after the handshake carried it to the peer.
    pub fn handshake_acked(&mut self) {
        self.ack_sent = self.delivered;
        self.ack_due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_frames_cut_from_a_shared_chunk_decode_alike_and_reuse_it() {
        let mut chunk = BytesMut::new();
        for (i, len) in [1000usize, 0, 5, 40_000, 1024, 3].into_iter().enumerate() {
            let seq = i as u64 + 1;
            let message = if i % 2 == 0 {
                Message::binary(vec![u8::try_from(i).unwrap_or(0); len])
            } else {
                Message::text("x".repeat(len))
            };
            let cut = encode_data_in(&mut chunk, seq, &message);
            let whole = encode(&Frame::Data {
                seq,
                message: message.clone(),
            });
            assert_eq!(cut, whole);
            assert_eq!(decode(&cut).ok(), Some(Frame::Data { seq, message }));
        }
        // Frames dropped as a link drops them: the chunk can take its whole room back without
        // allocating; not while a frame cut from it is alive.
        let message = Message::binary(vec![7u8; 1024]);
        for seq in 0..1_000 {
            drop(encode_data_in(&mut chunk, seq, &message));
        }
        let kept = encode_data_in(&mut chunk, 1_000, &message);
        assert!(!chunk.try_reclaim(ENCODE_CHUNK));
        drop(kept);
        assert!(chunk.try_reclaim(ENCODE_CHUNK));
    }

    fn limits(n: usize) -> SessionLimits {
        SessionLimits {
            max_unacked_messages: n,
            max_unacked_bytes: 1 << 20,
            ack_every: 2,
            ack_delay: Duration::from_millis(50),
        }
    }

    #[test]
    fn frames_round_trip() {
        let id = SessionId([7; 16]);
        let frames = [
            Frame::Ping,
            Frame::Pong,
            Frame::Hello {
                session: id,
                ack: 42,
            },
            Frame::Welcome {
                session: id,
                resumed: true,
                ack: u64::MAX,
            },
            Frame::Reject {
                code: RejectCode::UnknownSession,
                reason: "expired".into(),
            },
            Frame::Reject {
                code: RejectCode::Other(77),
                reason: String::new(),
            },
            Frame::Data {
                seq: 1,
                message: Message::text("héllo"),
            },
            Frame::Data {
                seq: 2,
                message: Message::binary(vec![0u8, 255, 3]),
            },
            Frame::Data {
                seq: 3,
                message: Message::text(""),
            },
            Frame::Ack { seq: 9 },
            Frame::Close {
                code: 1000,
                reason: "bye".into(),
            },
        ];
        for f in frames {
            assert_eq!(decode(&encode(&f)).unwrap(), f);
        }
    }

    #[test]
    fn held_messages_are_not_acknowledged_until_taken_and_keep_their_order() {
        let limits = SessionLimits {
            max_unacked_messages: 3,
            ack_every: 1,
            ..SessionLimits::default()
        };
        let mut s = Session::new(limits);
        let now = Instant::now();
        let m = |i: u8| Message::binary(vec![i]);
        assert_eq!(
            s.on_data_room(1, m(1), true, || now),
            Ok(Received::Deliver(m(1)))
        );
        assert_eq!(s.poll_ack(now), Some(Frame::Ack { seq: 1 }));
        // No room: held, and what comes after waits behind it even once there is room.
        assert_eq!(s.on_data_room(2, m(2), false, || now), Ok(Received::Held));
        assert_eq!(s.on_data_room(3, m(3), true, || now), Ok(Received::Held));
        assert!(!s.held_full());
        assert_eq!(s.on_data_room(4, m(4), true, || now), Ok(Received::Held));
        assert!(s.held_full());
        // Received, so a replay of them is a duplicate; not delivered, so not acknowledged.
        assert_eq!(
            s.on_data_room(3, m(3), true, || now),
            Ok(Received::Duplicate)
        );
        assert_eq!(s.poll_ack(now), None);
        assert_eq!(s.delivered(), 1);
        assert_eq!(s.front_held(), Some(&m(2)));
        assert_eq!(s.next_held(|| now), Some(m(2)));
        assert_eq!(s.poll_ack(now), Some(Frame::Ack { seq: 2 }));
        assert_eq!(s.next_held(|| now), Some(m(3)));
        assert_eq!(s.next_held(|| now), Some(m(4)));
        assert_eq!(s.next_held(|| now), None);
        assert!(!s.has_held());
        assert_eq!(s.delivered(), 4);
        assert_eq!(
            s.on_data_room(5, m(5), true, || now),
            Ok(Received::Deliver(m(5)))
        );
        assert_eq!(
            s.on_data_room(7, m(7), true, || now),
            Err(bad("sequence gap"))
        );
    }

    #[test]
    fn foreign_messages_are_errors_not_panics() {
        for m in [
            Message::text("hello"),
            Message::binary(Vec::<u8>::new()),
            Message::binary(vec![T_HELLO]),
            Message::binary(b"\x03tses\x01short".to_vec()),
            Message::binary(b"\x01tsex\x01".to_vec()),
            Message::binary(b"\x01tses\x02".to_vec()),
            Message::binary(vec![T_DATA, 0, 0]),
            Message::binary(vec![T_DATA, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff]),
            Message::binary(vec![T_DATA, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
            Message::binary(vec![0x7f]),
        ] {
            assert!(decode(&m).is_err(), "{m:?}");
        }
        // Every prefix of every valid frame decodes or fails cleanly.
        let f = encode(&Frame::Welcome {
            session: SessionId([1; 16]),
            resumed: false,
            ack: 3,
        });
        let b = f.payload();
        for n in 0..b.len() {
            assert!(decode(&Message::binary(b.slice(..n))).is_err());
        }
    }

    /// A poor man's fuzz run: random and mutated frames never panic the decoder, and
    /// whatever decodes encodes back to something that decodes the same.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand_like(0xf00d);
        let seeds = [
            encode(&Frame::Hello {
                session: SessionId([3; 16]),
                ack: 5,
            }),
            encode(&Frame::Data {
                seq: 7,
                message: Message::text("abc"),
            }),
            encode(&Frame::Reject {
                code: RejectCode::Full,
                reason: "x".into(),
            }),
        ];
        for i in 0..20_000u32 {
            let mut bytes: Vec<u8> = if i % 2 == 0 {
                seeds[(i as usize / 2) % seeds.len()].as_bytes().to_vec()
            } else {
                let len = usize::try_from(rng() % 40).unwrap();
                (0..len).map(|_| rng().to_le_bytes()[0]).collect()
            };
            if !bytes.is_empty() {
                let at = usize::try_from(rng()).unwrap() % bytes.len();
                bytes[at] = rng().to_le_bytes()[0];
            }
            if let Ok(frame) = decode(&Message::binary(bytes)) {
                assert_eq!(decode(&encode(&frame)).unwrap(), frame);
            }
        }
    }

    #[test]
    fn in_order_delivery_drops_duplicates_and_refuses_gaps() {
        let t = Instant::now();
        let mut s = Session::new(limits(8));
        assert_eq!(
            s.on_data(1, Message::text("a"), t).unwrap(),
            Received::Deliver(Message::text("a"))
        );
        assert_eq!(
            s.on_data(1, Message::text("a"), t).unwrap(),
            Received::Duplicate
        );
        assert!(s.on_data(3, Message::text("c"), t).is_err());
        assert_eq!(s.delivered(), 1);
    }

    #[test]
    fn acks_after_count_or_delay() {
        let t = Instant::now();
        let mut s = Session::new(limits(8));
        assert_eq!(s.poll_ack(t), None);
        s.on_data(1, Message::text("a"), t).unwrap();
        assert!(!s.ack_count_due());
        assert_eq!(s.poll_ack(t), None);
        assert_eq!(s.next_timeout(), Some(t + Duration::from_millis(50)));
        assert_eq!(
            s.poll_ack(t + Duration::from_millis(50)),
            Some(Frame::Ack { seq: 1 })
        );
        assert_eq!(s.next_timeout(), None);
        s.on_data(2, Message::text("b"), t).unwrap();
        s.on_data(3, Message::text("c"), t).unwrap();
        assert!(s.ack_count_due());
        assert_eq!(s.poll_ack(t), Some(Frame::Ack { seq: 3 }));
        assert!(!s.ack_count_due());
        assert_eq!(s.poll_ack(t + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_clock_is_read_once_per_ack_cycle() {
        let t = Instant::now();
        let mut s = Session::new(limits(8));
        let mut reads = 0;
        for seq in 1..=2 {
            s.on_data_with(seq, Message::text("x"), || {
                reads += 1;
                t
            })
            .unwrap();
        }
        assert_eq!(reads, 1);
        assert_eq!(s.poll_ack(t), Some(Frame::Ack { seq: 2 }));
        s.on_data_with(3, Message::text("x"), || {
            reads += 1;
            t
        })
        .unwrap();
        assert_eq!(reads, 2);
        assert_eq!(s.next_timeout(), Some(t + Duration::from_millis(50)));
    }

    #[test]
    fn replay_buffer_is_bounded_and_released_by_acks() {
        let mut s = Session::new(limits(2));
        assert!(s.can_send());
        s.send(Message::text("1"));
        s.send(Message::text("2"));
        assert!(!s.can_send());
        assert!(s.on_ack(5).is_err());
        s.on_ack(1).unwrap();
        assert!(s.can_send());
        assert_eq!(s.unacked(), 1);
        // Old acks are harmless.
        s.on_ack(0).unwrap();
        assert_eq!(s.unacked(), 1);
    }

    #[test]
    fn byte_bound_lets_one_large_message_through() {
        let mut s = Session::new(SessionLimits {
            max_unacked_bytes: 4,
            ..limits(8)
        });
        s.send(Message::binary(vec![0u8; 10]));
        assert!(!s.can_send());
        s.on_ack(1).unwrap();
        assert!(s.can_send());
    }

    #[test]
    fn resume_replays_what_the_peer_missed() {
        let mut s = Session::new(limits(8));
        for i in 1..=4 {
            s.send(Message::text(i.to_string()));
        }
        s.on_ack(1).unwrap();
        let replay = s.resume(2).unwrap();
        let seqs: Vec<u64> = replay
            .iter()
            .map(|f| match f {
                Frame::Data { seq, .. } => *seq,
                _ => 0,
            })
            .collect();
        assert_eq!(seqs, [3, 4]);
        // The peer regressed below what was released: the window was exceeded.
        assert!(s.resume(0).is_err());
        // The peer claims more than was sent (or anything at all, without panicking).
        assert!(s.resume(9).is_err());
        assert!(s.resume(u64::MAX).is_err());
        assert!(s.on_ack(u64::MAX).is_err());
        let t = Instant::now();
        assert!(s.on_data(u64::MAX, Message::text("x"), t).is_err());
        assert_eq!(
            s.on_data(0, Message::text("x"), t).unwrap(),
            Received::Duplicate
        );
    }

    /// Two sessions over a lossy link that drops everything in flight at random points:
    /// after each resume every message arrives once, in order.
    #[test]
    fn exactly_once_across_random_link_losses() {
        let t = Instant::now();
        let mut rng = fastrand_like(0x5eed);
        let (mut a, mut b) = (Session::new(limits(16)), Session::new(limits(16)));
        let mut in_flight: VecDeque<Frame> = VecDeque::new();
        let mut got = Vec::new();
        let mut next = 0u32;
        for _ in 0..20_000 {
            match rng() % 10 {
                0..=4 if a.can_send() && next < 1000 => {
                    next += 1;
                    in_flight.push_back(a.send(Message::text(next.to_string())));
                }
                5..=7 => {
                    if let Some(Frame::Data { seq, message }) = in_flight.pop_front()
                        && let Received::Deliver(m) = b.on_data(seq, message, t).unwrap()
                    {
                        got.push(m);
                    }
                    if let Some(Frame::Ack { seq }) = b.poll_ack(t) {
                        a.on_ack(seq).unwrap();
                    }
                }
                8 => {
                    // The link drops: everything in flight is lost, then a resume.
                    in_flight.clear();
                    b.handshake_acked();
                    in_flight.extend(a.resume(b.delivered()).unwrap());
                }
                _ => {}
            }
        }
        // Drain.
        in_flight.clear();
        in_flight.extend(a.resume(b.delivered()).unwrap());
        while let Some(Frame::Data { seq, message }) = in_flight.pop_front() {
            if let Received::Deliver(m) = b.on_data(seq, message, t).unwrap() {
                got.push(m);
            }
        }
        let want: Vec<Message> = (1..=next).map(|i| Message::text(i.to_string())).collect();
        assert!(next > 100, "the test made too little progress: {next}");
        assert_eq!(got, want);
    }

    fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
