//! Reconnect policy: exponential backoff with full jitter, bounded by attempts and elapsed time,
//! reset after a stable connection.
//!
//! [`Backoff`] is sans-IO: it reads no clock and sleeps nowhere; callers pass `now` in. The
//! generic client driver ([`crate::driver`]) is its one user inside the workspace, so every
//! transport reconnects the same way.

use std::time::{Duration, Instant};

/// When and how often a dropped connection is re-established.
///
/// Delays follow "full jitter" (AWS architecture blog, *Exponential Backoff and Jitter*):
/// attempt `n` waits a uniformly random time in `[0, min(max_delay, initial_delay * multiplier^n)]`.
/// The cap is applied *before* the jitter, so a crowd of clients keeps spreading out instead of
/// converging on `max_delay`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// Whether dropped connections are re-established at all. Default: `true`.
    pub enabled: bool,
    /// Upper bound of the first delay. Default: 250 ms (fast first retry, like SignalR's 0 s, but
    /// jittered so a restarted server is not stampeded).
    pub initial_delay: Duration,
    /// Growth factor per attempt. Default: 2.
    pub multiplier: f64,
    /// Cap on the delay bound, applied before jitter. Default: 30 s.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row. Default: `None` (no limit).
    pub max_attempts: Option<u32>,
    /// Give up when reconnecting has lasted this long. Default: 5 minutes.
    pub max_elapsed: Option<Duration>,
    /// A connection that stayed up this long resets the attempt counter. Default: 10 s.
    pub stable_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(250),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            max_elapsed: Some(Duration::from_secs(300)),
            stable_after: Duration::from_secs(10),
        }
    }
}

impl ReconnectPolicy {
    /// A policy that never reconnects.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn max_attempts(&mut self, attempts: Option<u32>) -> &mut Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`max_elapsed`](Self::max_elapsed).
    pub fn max_elapsed(&mut self, elapsed: Option<Duration>) -> &mut Self {
        self.max_elapsed = elapsed;
        self
    }

    /// Sets [`initial_delay`](Self::initial_delay) and [`max_delay`](Self::max_delay).
    pub fn delays(&mut self, initial: Duration, max: Duration) -> &mut Self {
        self.initial_delay = initial;
        self.max_delay = max;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`crate::TransportError::InvalidConfig`] for a multiplier below 1 or not finite, or an
    /// initial delay above the cap.
    pub fn validate(&self) -> Result<(), crate::TransportError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(crate::TransportError::InvalidConfig(format!(
                "reconnect multiplier must be finite and >= 1, got {}",
                self.multiplier
            )));
        }
        if self.initial_delay > self.max_delay {
            return Err(crate::TransportError::InvalidConfig(
                "reconnect initial_delay exceeds max_delay".into(),
            ));
        }
        Ok(())
    }

    /// The delay bound for attempt `attempt` (0-based), before jitter: the capped exponential.
    pub fn delay_bound(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.min(64)).unwrap_or(64);
        let secs = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        let cap = self.max_delay.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(cap) } else { cap })
    }

    /// A fresh backoff sequence following this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            attempt: 0,
            started: None,
            connected_at: None,
        }
    }
}

/// The state of one reconnect sequence. Time is passed in; nothing here sleeps.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
    started: Option<Instant>,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt, or `None` when the policy gives up.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        self.next_delay_with(now, fastrand::f64())
    }

    /// Like [`next_delay`](Self::next_delay) with the random draw (in `[0, 1)`) passed in, for
    /// deterministic tests.
    pub fn next_delay_with(&mut self, now: Instant, unit_random: f64) -> Option<Duration> {
        if !self.policy.enabled {
            return None;
        }
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let started = *self.started.get_or_insert(now);
        let bound = self.policy.delay_bound(self.attempt);
        let delay = bound.mul_f64(unit_random.clamp(0.0, 1.0));
        if let Some(limit) = self.policy.max_elapsed
            && now.saturating_duration_since(started) + delay > limit
        {
            return None;
        }
        self.attempt += 1;
        Some(delay)
    }

    /// Records that a connection was established at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Records that the connection dropped at `now`; resets the sequence when the connection
    /// had been stable for the policy's `stable_after`.
    pub fn disconnected(&mut self, now: Instant) {
        if let Some(at) = self.connected_at.take()
            && now.saturating_duration_since(at) >= self.policy.stable_after
        {
            self.reset();
        }
    }

    /// Starts over: attempt 0, elapsed time 0.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.started = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: None,
            ..ReconnectPolicy::default()
        }
    }

    #[test]
    fn bound_grows_then_caps_before_jitter() {
        let p = policy();
        let bounds: Vec<_> = (0..6).map(|a| p.delay_bound(a).as_millis()).collect();
        assert_eq!(bounds, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay_bound(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spans_zero_to_bound() {
        let mut b = policy().backoff();
        let now = Instant::now();
        assert_eq!(b.next_delay_with(now, 0.0), Some(Duration::ZERO));
        assert_eq!(
            b.next_delay_with(now, 0.5),
            Some(Duration::from_millis(100))
        );
        // Past the cap, the full range [0, max] is still used: no convergence on max.
        let mut b = policy().backoff();
        for _ in 0..10 {
            b.next_delay_with(now, 0.5);
        }
        assert_eq!(
            b.next_delay_with(now, 0.25),
            Some(Duration::from_millis(250))
        );
        let mut seen_small = false;
        for _ in 0..200 {
            let d = b.next_delay(now).unwrap();
            assert!(d <= Duration::from_secs(1));
            seen_small |= d < Duration::from_millis(500);
        }
        assert!(seen_small);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut p = policy();
        p.max_attempts(Some(3));
        let mut b = p.backoff();
        let now = Instant::now();
        for _ in 0..3 {
            assert!(b.next_delay_with(now, 1.0).is_some());
        }
        assert_eq!(b.next_delay_with(now, 1.0), None);
    }

    #[test]
    fn gives_up_after_max_elapsed() {
        let mut p = policy();
        p.max_elapsed(Some(Duration::from_secs(2)));
        let mut b = p.backoff();
        let t0 = Instant::now();
        assert!(b.next_delay_with(t0, 1.0).is_some());
        assert!(
            b.next_delay_with(t0 + Duration::from_millis(1500), 0.1)
                .is_some()
        );
        // 1.9 s elapsed + a 1 s delay would cross the limit.
        assert_eq!(
            b.next_delay_with(t0 + Duration::from_millis(1900), 1.0),
            None
        );
    }

    #[test]
    fn resets_only_after_a_stable_connection() {
        let mut b = policy().backoff();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.next_delay_with(t0, 1.0);
        }
        b.connected(t0);
        b.disconnected(t0 + Duration::from_secs(1));
        assert_eq!(b.attempts(), 4, "a short-lived connection does not reset");
        b.connected(t0);
        b.disconnected(t0 + Duration::from_secs(11));
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay_with(t0, 1.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn disabled_never_retries_and_validation() {
        assert_eq!(
            ReconnectPolicy::disabled()
                .backoff()
                .next_delay(Instant::now()),
            None
        );
        let mut p = policy();
        p.multiplier = 0.5;
        assert!(p.validate().is_err());
        p.multiplier = f64::NAN;
        assert!(p.validate().is_err());
        assert!(policy().validate().is_ok());
    }
}
