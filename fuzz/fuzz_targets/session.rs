//! Fuzzes the session layer of `transport-adaptive` (`transport_adaptive::session`).
//!
//! Input byte 0 picks the mode:
//! - even: the rest is one message (text when byte 1 is odd, else binary) given to `decode`:
//!   it never panics, and whatever decodes re-encodes to a message that decodes the same;
//! - odd: the rest is a script of operations on two sessions joined by a lossy link (sends,
//!   deliveries, acknowledgements that get lost, link drops followed by a resume). Whatever
//!   the script, every message arrives exactly once and in order, and the replay buffer never
//!   exceeds its bound.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use transport_adaptive::session::{self, Frame, Received, Session, SessionLimits};
use transport_core::Message;

const MAX_UNACKED: usize = 8;

fn limits() -> SessionLimits {
    let mut limits = SessionLimits::default();
    limits.max_unacked_messages = MAX_UNACKED;
    limits.ack_every = 3;
    limits.ack_delay = Duration::from_millis(10);
    limits
}

fn round_trip(input: &[u8], text: bool) {
    let message = if text {
        match Message::text_from_bytes(input.to_vec()) {
            Ok(m) => m,
            Err(_) => return,
        }
    } else {
        Message::binary(input.to_vec())
    };
    if let Ok(frame) = session::decode(&message) {
        let again = session::decode(&session::encode(&frame)).expect("re-encoded frame decodes");
        assert_eq!(again, frame);
    }
}

/// Delivers the frames of `link` to `to`, recording messages; returns false on a protocol
/// error (a gap), which a real link answers by dropping and resuming.
fn deliver(
    link: &mut VecDeque<Frame>,
    count: usize,
    to: &mut Session,
    got: &mut Vec<Message>,
    now: Instant,
) -> bool {
    // An even count plays an application with no room: what arrives is held (and not
    // acknowledged) until a later call with room hands it over, before anything newer.
    let room = count % 2 == 1;
    for _ in 0..count {
        let Some(frame) = link.pop_front() else { break };
        if let Frame::Data { seq, message } = frame {
            match to.on_data_room(seq, message, room, || now) {
                Ok(Received::Deliver(m)) => got.push(m),
                Ok(Received::Duplicate | Received::Held) => {}
                Err(_) => return false,
            }
        }
        if room {
            got.extend(std::iter::from_fn(|| to.next_held(|| now)));
        }
    }
    if room {
        got.extend(std::iter::from_fn(|| to.next_held(|| now)));
    }
    true
}

fn script(ops: &[u8]) {
    let now = Instant::now();
    let (mut a, mut b) = (Session::new(limits()), Session::new(limits()));
    let (mut a_to_b, mut b_to_a) = (VecDeque::new(), VecDeque::new());
    let (mut sent_a, mut sent_b) = (0_u32, 0_u32);
    let (mut got_b, mut got_a) = (Vec::new(), Vec::new());
    let mut t = now;
    for op in ops {
        let arg = usize::from(op >> 3) + 1;
        let mut broken = false;
        match op & 7 {
            0 if a.can_send() => {
                sent_a += 1;
                a_to_b.push_back(a.send(Message::text(sent_a.to_string())));
            }
            1 if b.can_send() => {
                sent_b += 1;
                b_to_a.push_back(b.send(Message::binary(sent_b.to_be_bytes().to_vec())));
            }
            2 => broken = !deliver(&mut a_to_b, arg, &mut b, &mut got_b, t),
            3 => broken = !deliver(&mut b_to_a, arg, &mut a, &mut got_a, t),
            4 => {
                // Acknowledgements, due by count or time; an ACK that is lost is fine.
                t += Duration::from_millis(u64::from(*op));
                if let Some(Frame::Ack { seq }) = b.poll_ack(t)
                    && op & 0x80 == 0
                {
                    a.on_ack(seq).expect("an ACK of delivered data");
                }
                if let Some(Frame::Ack { seq }) = a.poll_ack(t)
                    && op & 0x40 == 0
                {
                    b.on_ack(seq).expect("an ACK of delivered data");
                }
            }
            5 => {
                // Lose the frame at the head of one direction.
                if op & 0x80 == 0 {
                    a_to_b.pop_front();
                } else {
                    b_to_a.pop_front();
                }
            }
            6 => broken = true,
            _ => {}
        }
        assert!(a.unacked() <= MAX_UNACKED && b.unacked() <= MAX_UNACKED);
        if broken {
            // The link drops: what is in flight is gone; HELLO/WELCOME carry each side's
            // acknowledgement, then both replay.
            a_to_b.clear();
            b_to_a.clear();
            let (a_acked, b_acked) = (a.delivered(), b.delivered());
            a_to_b.extend(a.resume(b_acked).expect("within the replay window"));
            b_to_a.extend(b.resume(a_acked).expect("within the replay window"));
        }
    }
    // Drain both ways over a healthy link.
    for _ in 0..4 {
        let (a_acked, b_acked) = (a.delivered(), b.delivered());
        a_to_b.clear();
        b_to_a.clear();
        a_to_b.extend(a.resume(b_acked).expect("within the replay window"));
        b_to_a.extend(b.resume(a_acked).expect("within the replay window"));
        assert!(deliver(&mut a_to_b, usize::MAX, &mut b, &mut got_b, t));
        assert!(deliver(&mut b_to_a, usize::MAX, &mut a, &mut got_a, t));
    }
    let want_b: Vec<Message> = (1..=sent_a).map(|i| Message::text(i.to_string())).collect();
    let want_a: Vec<Message> = (1..=sent_b)
        .map(|i| Message::binary(i.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(got_b, want_b, "a -> b: not exactly once in order");
    assert_eq!(got_a, want_a, "b -> a: not exactly once in order");
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        if let [flag, input @ ..] = rest {
            round_trip(input, flag % 2 == 1);
        }
    } else {
        script(rest);
    }
});
