//! Per-remote-IP limits for servers: concurrent connections per IP and a handshake rate per IP
//! (a token bucket), besides each server's global maximum.
//!
//! [`IpTable`] is the sans-IO rule (time passed in); [`IpLimiter`] wraps it for servers to share
//! between their accept loop and connection tasks, handing out an [`IpPermit`] that gives the
//! connection's slot back when dropped. IPv6 addresses are grouped by their /64 prefix (one
//! host usually owns a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::TransportError;
use crate::metrics::reason;

/// Per-IP limits of a server. The defaults are generous for one browser or one NAT, and tight
/// enough that a single address cannot take a server's whole connection budget.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpLimits {
    /// Most connections (handshakes in progress included) open at once from one IP (IPv6: one
    /// /64). `None`: no per-IP limit. Default: 1024, a large office behind one NAT.
    pub max_connections_per_ip: Option<usize>,
    /// Sustained handshakes per second accepted from one IP. `None`: no rate limit.
    /// Default: 100 (a reload storm of a large NAT passes; a flood is cut to this).
    pub handshakes_per_second: Option<u32>,
    /// Handshakes from one IP allowed in a burst above the sustained rate. Default: 200.
    pub handshake_burst: u32,
    /// Most addresses tracked at once; when the table is full of active addresses, new
    /// addresses are admitted untracked (the global limit still holds) rather than refused, so
    /// a spread-out flood cannot lock everybody out. Default: 65,536.
    pub max_tracked_ips: usize,
}

impl Default for IpLimits {
    fn default() -> Self {
        Self {
            max_connections_per_ip: Some(1024),
            handshakes_per_second: Some(100),
            handshake_burst: 200,
            max_tracked_ips: 65_536,
        }
    }
}

impl IpLimits {
    /// No per-IP limit at all.
    pub fn unlimited() -> Self {
        Self {
            max_connections_per_ip: None,
            handshakes_per_second: None,
            ..Self::default()
        }
    }

    /// Sets [`max_connections_per_ip`](Self::max_connections_per_ip).
    pub fn max_connections_per_ip(&mut self, max: Option<usize>) -> &mut Self {
        self.max_connections_per_ip = max;
        self
    }

    /// Sets [`handshakes_per_second`](Self::handshakes_per_second) and
    /// [`handshake_burst`](Self::handshake_burst).
    pub fn handshake_rate(&mut self, per_second: Option<u32>, burst: u32) -> &mut Self {
        self.handshakes_per_second = per_second;
        self.handshake_burst = burst;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] for a zero limit, rate or burst.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.max_connections_per_ip == Some(0)
            || self.handshakes_per_second == Some(0)
            || self.handshake_burst == 0
            || self.max_tracked_ips == 0
        {
            return Err(TransportError::InvalidConfig(
                "ip_limits: limits, rate, burst and max_tracked_ips must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpRefusal {
    /// Too many connections open from this address.
    TooManyConnections,
    /// Handshakes from this address come faster than the configured rate.
    TooFast,
}

impl IpRefusal {
    /// The `reason` label of [`HANDSHAKES_REJECTED`](crate::metrics::HANDSHAKES_REJECTED).
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooManyConnections => reason::IP_LIMIT,
            Self::TooFast => reason::IP_RATE,
        }
    }
}

impl std::fmt::Display for IpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooManyConnections => "too many connections from this address",
            Self::TooFast => "handshakes from this address too fast",
        })
    }
}

#[derive(Debug)]
struct Entry {
    open: usize,
    /// Theoretical arrival time of the next handshake (GCRA form of a token bucket): the
    /// bucket is full when `tat <= now`.
    tat: Instant,
}

/// The per-IP accounting, sans-IO: the caller passes the time.
#[derive(Debug)]
pub struct IpTable {
    limits: IpLimits,
    interval: Option<Duration>,
    entries: HashMap<IpAddr, Entry>,
}

/// The key of an address: IPv4 as is (IPv4-mapped IPv6 unmapped), IPv6 cut to its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl IpTable {
    /// A table enforcing `limits`.
    pub fn new(limits: IpLimits) -> Self {
        let interval = limits
            .handshakes_per_second
            .map(|rate| Duration::from_secs(1) / rate.max(1));
        Self {
            limits,
            interval,
            entries: HashMap::new(),
        }
    }

    /// Admits a new connection from `ip` at `now`, counting it as open until
    /// [`release`](Self::release). `Ok(false)`: admitted untracked (table full); do not release.
    ///
    /// # Errors
    /// Why `ip` is refused; nothing is counted then.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<bool, IpRefusal> {
        let ip = key(ip);
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.limits.max_tracked_ips {
            self.prune(now);
            if self.entries.len() >= self.limits.max_tracked_ips {
                return Ok(false);
            }
        }
        let entry = self
            .entries
            .entry(ip)
            .or_insert(Entry { open: 0, tat: now });
        if self
            .limits
            .max_connections_per_ip
            .is_some_and(|max| entry.open >= max)
        {
            return Err(IpRefusal::TooManyConnections);
        }
        if let Some(interval) = self.interval {
            let tat = entry.tat.max(now) + interval;
            if tat.duration_since(now) > interval * self.limits.handshake_burst {
                return Err(IpRefusal::TooFast);
            }
            entry.tat = tat;
        }
        entry.open += 1;
        Ok(true)
    }

    /// Gives back the slot of a connection from `ip` admitted (tracked) earlier.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(entry) = self.entries.get_mut(&key(ip)) {
            entry.open = entry.open.saturating_sub(1);
        }
    }

    /// Connections counted open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.entries.get(&key(ip)).map_or(0, |e| e.open)
    }

    /// Whether `ip` has used half its connections or half its burst at `now`: a server that
    /// cannot trust the source address (QUIC before address validation) should validate it
    /// (a stateless retry) before counting it, so spoofed packets cannot spend a victim's
    /// budget.
    pub fn under_pressure(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(entry) = self.entries.get(&key(ip)) else {
            return false;
        };
        let connections = self
            .limits
            .max_connections_per_ip
            .is_some_and(|max| entry.open.saturating_mul(2) >= max);
        let rate = self.interval.is_some_and(|interval| {
            entry.tat.saturating_duration_since(now) * 2 >= interval * self.limits.handshake_burst
        });
        connections || rate
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Forgets addresses with nothing open and a full bucket.
    pub fn prune(&mut self, now: Instant) {
        self.entries.retain(|_, e| e.open > 0 || e.tat > now);
    }
}

/// An [`IpTable`] shared by a server's tasks.
#[derive(Debug, Clone)]
pub struct IpLimiter {
    table: Arc<Mutex<IpTable>>,
}

impl IpLimiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: IpLimits) -> Self {
        Self {
            table: Arc::new(Mutex::new(IpTable::new(limits))),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, IpTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `ip` now; the permit holds its slot until dropped.
    ///
    /// # Errors
    /// Why `ip` is refused.
    pub fn admit(&self, ip: IpAddr) -> Result<IpPermit, IpRefusal> {
        let now = Instant::now();
        let mut table = self.table();
        let tracked = table.admit(ip, now)?;
        // Keep the table small without a timer: an occasional sweep on the accept path.
        if table.tracked() > 1024 && fastrand::u8(..) == 0 {
            table.prune(now);
        }
        Ok(IpPermit {
            limiter: tracked.then(|| self.clone()),
            ip,
        })
    }

    /// Connections counted open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.table().open(ip)
    }

    /// See [`IpTable::under_pressure`].
    pub fn under_pressure(&self, ip: IpAddr) -> bool {
        self.table().under_pressure(ip, Instant::now())
    }
}

/// A connection's slot in an [`IpLimiter`], given back when dropped.
#[derive(Debug)]
pub struct IpPermit {
    limiter: Option<IpLimiter>,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        if let Some(limiter) = &self.limiter {
            limiter.table().release(self.ip);
        }
    }
}

/// Logs refusals at most once per second per server (a flood must not flood the log too), with
/// the number suppressed meanwhile.
#[derive(Debug)]
pub struct RefusalLog {
    last: Mutex<(Option<Instant>, u64)>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            last: Mutex::new((None, 0)),
        }
    }
}

impl RefusalLog {
    /// Logs `refusal` of `ip` at warn level unless one was logged in the last second; counts
    /// it as suppressed otherwise (logged at debug level).
    pub fn refused(&self, transport: &'static str, ip: IpAddr, refusal: IpRefusal) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.0 {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => {
                last.1 += 1;
                tracing::debug!(transport, %ip, %refusal, "refusing connection");
            }
            _ => {
                let suppressed = std::mem::take(&mut last.1);
                last.0 = Some(now);
                tracing::warn!(transport, %ip, %refusal, suppressed, "refusing connection");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    fn limits(conns: Option<usize>, rate: Option<u32>, burst: u32) -> IpLimits {
        let mut l = IpLimits::default();
        l.max_connections_per_ip(conns).handshake_rate(rate, burst);
        l
    }

    #[test]
    fn concurrent_limit_per_ip() {
        let mut t = IpTable::new(limits(Some(2), None, 1));
        let now = Instant::now();
        assert_eq!(t.admit(A, now), Ok(true));
        assert_eq!(t.admit(A, now), Ok(true));
        assert_eq!(t.admit(A, now), Err(IpRefusal::TooManyConnections));
        assert_eq!(t.admit(B, now), Ok(true), "another address is not affected");
        t.release(A);
        assert_eq!(t.admit(A, now), Ok(true));
        assert_eq!(t.open(A), 2);
    }

    #[test]
    fn token_bucket_burst_then_rate() {
        let mut t = IpTable::new(limits(None, Some(10), 3));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.admit(A, start), Ok(true));
        }
        assert_eq!(t.admit(A, start), Err(IpRefusal::TooFast));
        assert_eq!(t.admit(B, start), Ok(true));
        // One token back every 100 ms.
        let later = start + Duration::from_millis(100);
        assert_eq!(t.admit(A, later), Ok(true));
        assert_eq!(t.admit(A, later), Err(IpRefusal::TooFast));
        // A full bucket after a quiet second: a whole burst again.
        let much_later = start + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(t.admit(A, much_later), Ok(true));
        }
    }

    #[test]
    fn refused_attempts_do_not_use_tokens() {
        let mut t = IpTable::new(limits(Some(1), Some(1), 2));
        let now = Instant::now();
        assert_eq!(t.admit(A, now), Ok(true));
        for _ in 0..10 {
            assert_eq!(t.admit(A, now), Err(IpRefusal::TooManyConnections));
        }
        t.release(A);
        assert_eq!(t.admit(A, now), Ok(true), "the second token is still there");
    }

    #[test]
    fn ipv6_grouped_by_64_and_mapped_v4_unmapped() {
        let mut t = IpTable::new(limits(Some(1), None, 1));
        let now = Instant::now();
        let a: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();
        let b: IpAddr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().into();
        let c: IpAddr = "2001:db8:0:1::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(t.admit(a, now), Ok(true));
        assert_eq!(t.admit(b, now), Err(IpRefusal::TooManyConnections));
        assert_eq!(t.admit(c, now), Ok(true));
        let mapped: IpAddr = Ipv4Addr::LOCALHOST.to_ipv6_mapped().into();
        assert_eq!(t.admit(A, now), Ok(true));
        assert_eq!(t.admit(mapped, now), Err(IpRefusal::TooManyConnections));
    }

    #[test]
    fn full_table_admits_untracked_and_prunes_idle() {
        let mut l = limits(Some(1), Some(1), 1);
        l.max_tracked_ips = 1;
        let mut t = IpTable::new(l);
        let now = Instant::now();
        assert_eq!(t.admit(A, now), Ok(true));
        assert_eq!(
            t.admit(B, now),
            Ok(false),
            "table full of an active address"
        );
        t.release(A);
        // A's bucket refills after a second; then A is forgotten and B tracked.
        assert_eq!(t.admit(B, now + Duration::from_secs(2)), Ok(true));
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn permits_release_on_drop() {
        let limiter = IpLimiter::new(limits(Some(1), None, 1));
        let permit = limiter.admit(A).unwrap();
        assert_eq!(limiter.admit(A).unwrap_err(), IpRefusal::TooManyConnections);
        drop(permit);
        assert_eq!(limiter.open(A), 0);
        assert!(limiter.admit(A).is_ok());
    }

    #[test]
    fn pressure_at_half_the_connections_or_half_the_burst() {
        let now = Instant::now();
        let mut t = IpTable::new(limits(Some(4), None, 1));
        assert!(!t.under_pressure(A, now));
        t.admit(A, now).unwrap();
        assert!(!t.under_pressure(A, now));
        t.admit(A, now).unwrap();
        assert!(t.under_pressure(A, now));
        assert!(!t.under_pressure(B, now));
        let mut t = IpTable::new(limits(None, Some(10), 4));
        t.admit(A, now).unwrap();
        assert!(!t.under_pressure(A, now));
        t.admit(A, now).unwrap();
        assert!(t.under_pressure(A, now));
        assert!(!t.under_pressure(A, now + Duration::from_secs(1)));
    }

    #[test]
    fn validation() {
        assert!(IpLimits::default().validate().is_ok());
        assert!(limits(Some(0), None, 1).validate().is_err());
        assert!(limits(None, Some(10), 0).validate().is_err());
    }
}
