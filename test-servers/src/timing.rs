//! For the abuse tests: running the attacker apart from the server, and summarising the
//! round-trip times a well-behaved client measured meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How many round trips a flood test measures at least: the flood goes on (up to
/// [`Enough::keep_going`]'s bound) until the probe has them. A 95th percentile of a handful is
/// their maximum, which one scheduling hiccup of a shared machine would decide.
pub const MIN_SAMPLES: usize = 100;

/// How far past its own size a flood may go while the probe gathers [`MIN_SAMPLES`].
const MAX_STRETCH: usize = 50;

/// The signal a flood test's probe gives its attacker once it has [`MIN_SAMPLES`] round
/// trips (see [`sample_during`]).
#[derive(Clone, Debug, Default)]
pub struct Enough(Arc<AtomicBool>);

impl Enough {
    /// A signal not given yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an attacker that has done `done` units of a flood of `size` does another: always
    /// until `size`, then until the probe has enough samples, at most `50 * size`.
    #[must_use]
    pub fn keep_going(&self, done: usize, size: usize) -> bool {
        done < size || (!self.0.load(Ordering::Relaxed) && done < size.saturating_mul(MAX_STRETCH))
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Round trips measured by `probe` (given the sample's index), one every millisecond, while
/// `flood` runs, at most `max`; `enough` is set once [`MIN_SAMPLES`] are in.
pub async fn sample_during<T>(
    flood: &JoinHandle<T>,
    enough: &Enough,
    max: usize,
    mut probe: impl AsyncFnMut(usize) -> Duration,
) -> Vec<Duration> {
    let mut times = Vec::new();
    while !flood.is_finished() && times.len() < max {
        times.push(probe(times.len()).await);
        if times.len() >= MIN_SAMPLES {
            enough.set();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    enough.set();
    times
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

    #[test]
    fn a_flood_goes_on_until_the_probe_has_enough_within_its_bound() {
        let enough = Enough::new();
        assert!(enough.keep_going(0, 10));
        assert!(
            enough.keep_going(10, 10),
            "past its size until enough samples"
        );
        assert!(!enough.keep_going(500, 10), "never past 50 times its size");
        enough.set();
        assert!(enough.keep_going(9, 10), "its own size always");
        assert!(!enough.keep_going(10, 10));
    }

    #[tokio::test]
    async fn sampling_stops_when_the_flood_ends_and_signals_enough() {
        let enough = Enough::new();
        let flood = {
            let enough = enough.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while enough.keep_going(done, 10) {
                    done += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                done
            })
        };
        let times = sample_during(&flood, &enough, 10_000, async |i| {
            Duration::from_millis(u64::try_from(i).unwrap_or(0))
        })
        .await;
        let done = flood.await.unwrap();
        assert!(times.len() >= MIN_SAMPLES, "{} samples", times.len());
        assert!(times.len() < 10_000);
        // Past its size, stopped by the probe before its bound of 500.
        assert!(done > 10 && done < 500, "{done}");
    }
}
