//! The shared metrics of `transport_core::metrics`, recorded into a small in-test recorder:
//! messages and bytes of accepted connections, `try_send` refusals, errors by kind (with the
//! recorder installed globally: the only test of this binary that does), the connection gauge
//! guard, a server's handles looked up once and the handshake counters (with it installed
//! locally).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use transport_core::metrics::{self as names, ConnectionGauge, ServerMetrics};
use transport_core::{Message, Transport, TransportConfig, TrySendError, memory};

const LIMIT: Duration = Duration::from_secs(10);

/// Counters and gauges by `name{label=value,...}` (labels sorted).
#[derive(Debug, Default, Clone)]
struct TestRecorder {
    values: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

fn series(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        self.values
            .lock()
            .unwrap()
            .entry(series(key))
            .or_default()
            .clone()
    }

    fn counter(&self, series: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(series)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }

    fn gauge(&self, series: &str) -> f64 {
        f64::from_bits(self.counter(series))
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

#[tokio::test]
async fn accepted_connections_count_messages_bytes_full_queues_and_errors() {
    let recorder = TestRecorder::default();
    // Errors are counted when a connection ends, from its driver task: global recorder.
    metrics::set_global_recorder(recorder.clone())
        .expect("the only global recorder of this test binary");
    let mut config = TransportConfig::default();
    config.buffers(1, 16);
    let (a, mut b) = memory::pair(&config);

    a.send(Message::text("hello")).await.unwrap();
    let got = tokio::time::timeout(LIMIT, b.recv()).await.unwrap();
    assert_eq!(got.unwrap().unwrap().as_text(), Some("hello"));
    let sent = format!("{}{{transport=memory}}", names::MESSAGES_SENT);
    let received = format!("{}{{transport=memory}}", names::MESSAGES_RECEIVED);
    assert_eq!(recorder.counter(&sent), 1);
    assert_eq!(recorder.counter(&received), 1);
    assert_eq!(
        recorder.counter(&format!("{}{{transport=memory}}", names::BYTES_SENT)),
        5
    );
    assert_eq!(
        recorder.counter(&format!("{}{{transport=memory}}", names::BYTES_RECEIVED)),
        5
    );

    // A one-message send queue fills at once when nobody reads on the other side.
    let mut full = 0;
    for _ in 0..1_000 {
        match a.try_send(Message::text("x")) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full > 0);
    assert_eq!(
        recorder.counter(&format!(
            "{}{{queue=send,transport=memory}}",
            names::QUEUE_FULL
        )),
        full
    );

    // An error ending a connection is counted by kind: `a` sees a close with 4000.
    b.close(4000, "bye").await.unwrap();
    let errors = format!("{}{{kind=closed_by_peer,transport=memory}}", names::ERRORS);
    for _ in 0..200 {
        if recorder.counter(&errors) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(recorder.counter(&errors), 1);
}

#[test]
fn connection_gauge_counts_while_held() {
    let recorder = TestRecorder::default();
    let series = format!("{}{{transport=ws}}", names::CONNECTIONS);
    metrics::with_local_recorder(&recorder, || {
        let one = ConnectionGauge::new("ws");
        let two = ConnectionGauge::new("ws");
        assert!((recorder.gauge(&series) - 2.0).abs() < f64::EPSILON);
        drop(one);
        assert!((recorder.gauge(&series) - 1.0).abs() < f64::EPSILON);
        drop(two);
        assert!(recorder.gauge(&series).abs() < f64::EPSILON);
    });
}

#[test]
fn server_metrics_are_looked_up_once_and_count_every_accept() {
    let recorder = TestRecorder::default();
    // Made while the recorder is installed; used after, as a server's accepts are.
    let server = metrics::with_local_recorder(&recorder, || ServerMetrics::new("ws"));
    let (one, messages) = server.accepted();
    let (two, _) = server.accepted();
    messages.received(7);
    messages.sent(3);
    let gauge = format!("{}{{transport=ws}}", names::CONNECTIONS);
    assert_eq!(
        recorder.counter(&format!("{}{{transport=ws}}", names::HANDSHAKES_ACCEPTED)),
        2
    );
    assert!((recorder.gauge(&gauge) - 2.0).abs() < f64::EPSILON);
    assert_eq!(
        recorder.counter(&format!("{}{{transport=ws}}", names::BYTES_RECEIVED)),
        7
    );
    assert_eq!(
        recorder.counter(&format!("{}{{transport=ws}}", names::MESSAGES_SENT)),
        1
    );
    drop(one);
    assert!((recorder.gauge(&gauge) - 1.0).abs() < f64::EPSILON);
    drop(two);
    assert!(recorder.gauge(&gauge).abs() < f64::EPSILON);
}

#[test]
fn handshake_counters_carry_their_reason() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        names::handshake_accepted("sse");
        names::handshake_rejected("sse", names::reason::ORIGIN);
        names::handshake_rejected("sse", names::reason::ORIGIN);
    });
    assert_eq!(
        recorder.counter(&format!("{}{{transport=sse}}", names::HANDSHAKES_ACCEPTED)),
        1
    );
    assert_eq!(
        recorder.counter(&format!(
            "{}{{reason=origin,transport=sse}}",
            names::HANDSHAKES_REJECTED
        )),
        2
    );
}
