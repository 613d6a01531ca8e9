//! Graceful shutdown: accepting stops, open sessions are closed with a CLOSE_WEBTRANSPORT_SESSION
//! capsule (H3_NO_ERROR, "server shutting down"), and the server waits a bounded time.

mod server_common;

use std::time::{Duration, Instant};

use server_common::{LIMIT, bounded, connect, server};
use transport_wt::{H3_NO_ERROR, WtServerConfig, echo};
use wtransport::error::ConnectionError;

#[tokio::test]
async fn shutdown_closes_sessions_with_a_code() {
    let mut config = WtServerConfig::default();
    config.transport.close_timeout = Duration::from_secs(2);
    let (mut server, cert) = server(config);
    let url = format!("{}/s", server.url());
    let addr = server.local_addr();

    // One session echoing, one request never taken from the backlog.
    let first = tokio::spawn({
        let (cert, url) = (cert.clone(), url.clone());
        async move { connect(&cert, &url, &[]).await }
    });
    let (session, _) =
        bounded(async { server.accept().await.unwrap().accept().await.unwrap() }).await;
    let echoing = tokio::spawn(echo(session));
    let first = bounded(first).await.unwrap().unwrap();
    let waiting = tokio::spawn({
        let (cert, url) = (cert.clone(), url.clone());
        async move { connect(&cert, &url, &[]).await }
    });
    let deadline = Instant::now() + LIMIT;
    while server.open_sessions() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    bounded(server.shutdown()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // wtransport reads the CLOSE_WEBTRANSPORT_SESSION capsule (and closes the connection
    // itself): its session calls report the code and reason.
    match bounded(first.accept_bi()).await {
        Err(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), wtransport::VarInt::from_u32(H3_NO_ERROR));
            assert_eq!(close.reason(), b"server shutting down");
        }
        other => panic!("unexpected close: {:?}", other.map(|_| ())),
    }
    assert_eq!(bounded(echoing).await.unwrap(), Ok(()));
    assert!(
        bounded(waiting).await.unwrap().is_err(),
        "queued request not refused"
    );

    // Nobody listens any more.
    let late = tokio::time::timeout(
        Duration::from_secs(1),
        connect(&cert, &format!("https://{addr}/s"), &[]),
    )
    .await;
    assert!(!matches!(late, Ok(Ok(_))), "connected after shutdown");
}
