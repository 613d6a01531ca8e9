//! Per-connection statistics: counters any transport fills through its [`DriverIo`], read with
//! one cheap call. Atomics only, no lock on the message path.
//!
//! [`DriverIo`]: crate::driver::DriverIo

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::MessageMetrics;

/// A snapshot of one connection's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Messages handed to the link for sending.
    pub messages_sent: u64,
    /// Payload bytes of those messages.
    pub bytes_sent: u64,
    /// Messages received and handed to the application.
    pub messages_received: u64,
    /// Payload bytes of those messages.
    pub bytes_received: u64,
    /// Links re-established after a drop.
    pub reconnects: u64,
    /// Round-trip time of the latest keepalive ping answered, when the transport measures it.
    pub rtt: Option<Duration>,
    /// Time spent connected, over every link of this connection.
    pub connected_for: Duration,
}

/// The live counters behind [`ConnectionStats`].
#[derive(Debug)]
pub(crate) struct Counters {
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_received: AtomicU64,
    reconnects: AtomicU64,
    /// Nanoseconds; `u64::MAX` = not measured.
    rtt_nanos: AtomicU64,
    /// Nanoseconds connected on links that have ended.
    connected_before: AtomicU64,
    /// Nanoseconds since `epoch` when the current link came up; `u64::MAX` = no link up.
    link_up_at: AtomicU64,
    epoch: Instant,
    /// The server's `metrics` counters, for accepted connections.
    metrics: Option<MessageMetrics>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl Counters {
    pub(crate) fn new(connected: bool, metrics: Option<MessageMetrics>) -> Self {
        Self {
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            rtt_nanos: AtomicU64::new(u64::MAX),
            connected_before: AtomicU64::new(0),
            link_up_at: AtomicU64::new(if connected { 0 } else { u64::MAX }),
            epoch: Instant::now(),
            metrics,
        }
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.sent(bytes);
        }
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.received(bytes);
        }
    }

    pub(crate) fn metrics(&self) -> Option<&MessageMetrics> {
        self.metrics.as_ref()
    }

    pub(crate) fn rtt(&self, rtt: Duration) {
        self.rtt_nanos.store(nanos(rtt), Ordering::Relaxed);
    }

    pub(crate) fn link_up(&self, reconnect: bool) {
        if reconnect {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.link_up_at
            .store(nanos(self.epoch.elapsed()), Ordering::Relaxed);
    }

    pub(crate) fn link_down(&self) {
        let up = self.link_up_at.swap(u64::MAX, Ordering::Relaxed);
        if up != u64::MAX {
            let now = nanos(self.epoch.elapsed());
            self.connected_before
                .fetch_add(now.saturating_sub(up), Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> ConnectionStats {
        let up = self.link_up_at.load(Ordering::Relaxed);
        let current = if up == u64::MAX {
            0
        } else {
            nanos(self.epoch.elapsed()).saturating_sub(up)
        };
        let rtt = self.rtt_nanos.load(Ordering::Relaxed);
        ConnectionStats {
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            messages_received: self.messages_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            rtt: (rtt != u64::MAX).then(|| Duration::from_nanos(rtt)),
            connected_for: Duration::from_nanos(
                self.connected_before
                    .load(Ordering::Relaxed)
                    .saturating_add(current),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times() {
        let c = Counters::new(true, None);
        c.sent(10);
        c.sent(5);
        c.received(7);
        c.rtt(Duration::from_micros(150));
        let s = c.snapshot();
        assert_eq!((s.messages_sent, s.bytes_sent), (2, 15));
        assert_eq!((s.messages_received, s.bytes_received), (1, 7));
        assert_eq!(s.rtt, Some(Duration::from_micros(150)));
        c.link_down();
        let down = c.snapshot().connected_for;
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            c.snapshot().connected_for,
            down,
            "no time counted while down"
        );
        c.link_up(true);
        assert_eq!(c.snapshot().reconnects, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.snapshot().connected_for >= down + Duration::from_millis(5));
    }
}
