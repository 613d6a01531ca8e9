//! A `metrics` recorder for the tests that assert server metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::LIMIT;

/// Counters by `name{label=value,...}` (labels sorted).
#[derive(Debug, Default, Clone)]
pub struct TestRecorder(Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl TestRecorder {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let series = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(series).or_default().clone()
    }

    pub fn counter(&self, series: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(series)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// Waits (bounded) until `series` reaches `at_least`.
    pub async fn reaches(&self, series: &str, at_least: u64) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while self.counter(series) < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} stayed at {}",
                self.counter(series)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
