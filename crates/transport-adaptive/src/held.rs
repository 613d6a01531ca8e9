//! Handing received messages to the application without waiting on it.
//!
//! A session loop that awaited the application's room inside one branch would stop taking the
//! application's sends meanwhile; an application that echoes (its own send waiting while its
//! receive queue is full) then never reads again. And a loop that stopped reading its link
//! while the application is full would never see the peer's `ACK`s, which are what open its
//! own send window. So messages received in order are held in the [`Session`] (bounded by the
//! replay window, see [`Session::held_full`]) and handed over as room appears.

use std::time::Instant;

use transport_core::driver::DriverIo;

use crate::session::Session;

/// Hands held messages to the application while its queue has room now (one whose receiver
/// is gone discards them).
pub(crate) fn hand_over(session: &mut Session, io: &mut DriverIo) {
    while let Some(m) = session.front_held() {
        if io.try_deliver(m.clone()).is_err() {
            return;
        }
        session.next_held(Instant::now);
    }
}

/// Hands the oldest held message over through the room `poll_reserve` reserved (or discards
/// it, `room` false: the receiver is gone), then what else fits.
pub(crate) fn hand_over_reserved(session: &mut Session, io: &mut DriverIo, room: bool) {
    if let Some(m) = session.next_held(Instant::now)
        && room
    {
        io.send_reserved(m);
    }
    hand_over(session, io);
}

/// Hands every held message to the application, waiting for its room: before an end that
/// the peer announced, so nothing it sent first is lost.
pub(crate) async fn deliver_held(session: &mut Session, io: &mut DriverIo) {
    while let Some(m) = session.next_held(Instant::now) {
        io.deliver(m).await;
    }
}
