//! What the client's and the server's session loops share: the ACK timer (one timer for a
//! link's life, re-armed only when the owed ACK's deadline changes: a timer built per message
//! costs a timer-wheel insertion and removal each time) and the batch limit.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// Most messages a session loop moves in one direction per wake-up: what is already queued
/// behind the message that woke it is taken without another turn of the loop's `select!`
/// (which rebuilds its futures), bounded so that a busy direction cannot starve the other one
/// or the timers.
pub(crate) const BATCH: usize = 64;

pub(crate) struct AckTimer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl AckTimer {
    pub(crate) fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
        }
    }

    /// Arms the timer for `next` (the session's `next_timeout()`) if that changed.
    pub(crate) fn rearm(&mut self, next: Option<Instant>) {
        if next != self.armed {
            if let Some(at) = next {
                self.sleep
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(at));
            }
            self.armed = next;
        }
    }

    /// The deadline armed, if any.
    #[cfg(test)]
    pub(crate) fn armed_at(&self) -> Option<Instant> {
        self.armed
    }

    /// Whether a deadline is armed (the `select!` precondition for [`sleep`](Self::sleep)).
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// The timer to await while armed.
    pub(crate) fn sleep(&mut self) -> &mut Pin<Box<Sleep>> {
        &mut self.sleep
    }

    /// Called when the timer fired: re-armed by the next [`rearm`](Self::rearm) if the ACK
    /// is still owed.
    pub(crate) fn fired(&mut self) {
        self.armed = None;
    }
}

/// A deadline that does not come: for timers that are disarmed until reset.
pub(crate) fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}
