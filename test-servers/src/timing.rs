//! For the abuse tests: running the attacker apart from the server, and summarising the
//! round-trip times a well-behaved client measured meanwhile.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Runs `attack` on a runtime of its own, on another thread, so that the attacker's own
/// client work (connects, writes) does not compete with the server and the measuring client
/// for the test's runtime: what the measured round trips show is the server's responsiveness.
/// Tasks `attack` spawns run on that runtime too. Awaiting the handle gives its output (a
/// panic inside is a `JoinError`).
pub fn spawn_apart<F>(attack: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the attacker");
        runtime.block_on(attack)
    })
}

/// The `pct`th percentile of `times` (nearest rank; zero for no samples).
#[must_use]
pub fn percentile(times: &[Duration], pct: usize) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let index = (sorted.len() * pct.min(100))
        .div_ceil(100)
        .saturating_sub(1);
    sorted.get(index).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&times, 95), Duration::from_millis(95));
        assert_eq!(percentile(&times, 100), Duration::from_millis(100));
        assert_eq!(percentile(&times[..10], 95), Duration::from_millis(10));
        assert_eq!(percentile(&[], 95), Duration::ZERO);
    }
}
