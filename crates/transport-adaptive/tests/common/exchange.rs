//! Both directions at once: the client and the server handler each send `n` numbered messages
//! and check that they receive the other's `n`, each once, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Barrier;
use transport_adaptive::{AdaptiveConnection, AdaptiveServer};
use transport_core::{Connection, Message};

use super::bounded;

/// Counts what one side has received so far.
pub type Progress = Arc<AtomicU32>;

async fn stream(
    conn: Connection,
    n: u32,
    pace: Option<u32>,
    progress: Progress,
    done: Arc<Barrier>,
) {
    let (tx, mut rx) = conn.split();
    let writer = tokio::spawn(async move {
        for i in 1..=n {
            tx.send(Message::text(i.to_string())).await.unwrap();
            if pace.is_some_and(|every| i % every == 0) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tx
    });
    for want in 1..=n {
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled waiting for {want}"))
            .unwrap_or_else(|e| panic!("error waiting for {want}: {e}"))
            .unwrap_or_else(|| panic!("ended waiting for {want}"));
        assert_eq!(
            got,
            Message::text(want.to_string()),
            "out of order or duplicate"
        );
        progress.store(want, Ordering::Relaxed);
    }
    // Nothing more may come (no duplicates at the end).
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(extra.is_err(), "unexpected extra message: {extra:?}");
    let tx = bounded(writer).await.unwrap();
    // Both sides stay connected until both have everything.
    bounded(done.wait()).await;
    drop((tx, rx));
}

/// Runs the exchange; `disrupt` runs once the client has received `n / 3` messages and is
/// handed the client's progress. With `pace: Some(k)`, both writers pause 1 ms every `k` messages so
/// that the exchange lasts long enough for a slow disruption (an upgrade) to happen mid-way.
pub async fn exchange<F, Fut>(
    server: Arc<AdaptiveServer>,
    client: AdaptiveConnection,
    n: u32,
    pace: Option<u32>,
    disrupt: F,
) where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server_progress = Progress::default();
    let sp = server_progress.clone();
    let done = Arc::new(Barrier::new(2));
    let d = done.clone();
    let handler = tokio::spawn(async move {
        let (conn, request) = bounded(server.accept()).await.unwrap();
        assert!(request.delivery_guaranteed);
        stream(conn, n, pace, sp, d).await;
    });
    let client_progress = Progress::default();
    let cp = client_progress.clone();
    let client_task = tokio::spawn(stream(client.into_inner(), n, pace, cp, done));
    // Wait for a third, bounded.
    let mut waited = 0;
    while client_progress.load(Ordering::Relaxed) < n / 3 {
        assert!(waited < 3000, "no progress before the disruption");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    disrupt(client_progress.clone()).await;
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        client_task.await.unwrap();
        handler.await.unwrap();
    })
    .await;
    assert!(
        result.is_ok(),
        "exchange stalled: client received {}, server received {}",
        client_progress.load(Ordering::Relaxed),
        server_progress.load(Ordering::Relaxed)
    );
}
