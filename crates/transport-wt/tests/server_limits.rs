//! Limits: a QUIC client that never sends its CONNECT is dropped after `handshake_timeout`;
//! connections beyond `max_sessions` are refused until a slot frees; datagrams the application
//! does not read are bounded by `datagram_queue`.

mod server_common;

use std::time::{Duration, Instant};

use server_common::{LIMIT, bare_quic, bounded, connect, server};
use transport_wt::{H3_NO_ERROR, WtServerConfig};

#[tokio::test]
async fn silent_quic_client_is_dropped_after_the_handshake_timeout() {
    let mut config = WtServerConfig::default();
    config.handshake_timeout(Duration::from_millis(300));
    let (server, _cert) = server(config);
    let started = Instant::now();
    let quic = bounded(bare_quic(server.local_addr())).await;
    assert_eq!(server.open_sessions(), 1);
    let error = bounded(quic.closed()).await;
    let elapsed = started.elapsed();
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(H3_NO_ERROR));
        }
        other => panic!("unexpected close: {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < LIMIT, "{elapsed:?}");
    // The slot is free again.
    let deadline = Instant::now() + LIMIT;
    while server.open_sessions() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.open_sessions(), 0);
}

#[tokio::test]
async fn sessions_beyond_max_sessions_are_refused() {
    let mut config = WtServerConfig::default();
    config.max_sessions(1);
    let (mut server, cert) = server(config);
    let url = format!("{}/one", server.url());

    let first = tokio::spawn({
        let (cert, url) = (cert.clone(), url.clone());
        async move { connect(&cert, &url, &[]).await }
    });
    let (session, _) =
        bounded(async { server.accept().await.unwrap().accept().await.unwrap() }).await;
    let first = bounded(first).await.unwrap().unwrap();
    assert_eq!(server.open_sessions(), 1);

    let second = bounded(connect(&cert, &url, &[])).await;
    assert!(
        second.is_err(),
        "second session accepted beyond max_sessions"
    );

    // Closing the first session frees the slot.
    drop(session);
    bounded(first.closed()).await;
    let third = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let (_session, _) =
        bounded(async { server.accept().await.unwrap().accept().await.unwrap() }).await;
    bounded(third).await.unwrap().unwrap();
}

#[tokio::test]
async fn dead_peer_timeout_is_the_quic_idle_timeout() {
    let mut config = WtServerConfig::default();
    config
        .handshake_timeout(LIMIT)
        .transport
        .keepalive(None, Duration::from_millis(300));
    let (server, _cert) = server(config);
    let started = Instant::now();
    // The bare client sends nothing after the handshake and has no keep-alive either.
    let quic = bounded(bare_quic(server.local_addr())).await;
    let error = bounded(quic.closed()).await;
    assert!(
        matches!(error, quinn::ConnectionError::TimedOut),
        "unexpected close: {error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn streams_beyond_max_streams_per_session_wait() {
    let mut config = WtServerConfig::default();
    config.max_streams_per_session(2);
    let (mut server, cert) = server(config);
    let url = format!("{}/streams", server.url());
    let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let (session, _) = bounded(server.accept_session()).await.unwrap();
    let conn = bounded(client).await.unwrap().unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) =
            bounded(async { conn.open_bi().await.unwrap().await.unwrap() }).await;
        send.write_all(b"x").await.unwrap();
        open.push((send, recv));
    }
    let third = tokio::time::timeout(Duration::from_millis(300), async {
        conn.open_bi().await.unwrap().await
    })
    .await;
    assert!(third.is_err(), "a third concurrent stream was allowed");
    drop(session);
}

#[tokio::test]
async fn unread_datagrams_are_bounded_by_datagram_queue() {
    const QUEUE: usize = 16 * 1024;
    let mut config = WtServerConfig::default();
    config.datagram_queue(QUEUE);
    let (mut server, cert) = server(config);
    let url = format!("{}/datagrams", server.url());
    let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let (session, _) = bounded(server.accept_session()).await.unwrap();
    let conn = bounded(client).await.unwrap().unwrap();

    // 2 MB of datagrams that the application does not read while they arrive.
    let payload = vec![7_u8; 1000];
    for i in 0..2000 {
        conn.send_datagram(payload.clone()).unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // What waits for the application is at most the queue (plus one datagram that tipped it).
    let mut queued = 0;
    while let Ok(Ok(datagram)) =
        tokio::time::timeout(Duration::from_millis(100), session.read_datagram()).await
    {
        queued += datagram.len();
        assert!(queued <= QUEUE + 1500, "{queued} bytes queued");
    }
    println!("{queued} bytes of 2,000,000 were queued for the application");
    assert!(queued > 0, "nothing was queued at all");

    // The session is unharmed: a datagram sent now arrives.
    let deadline = Instant::now() + LIMIT;
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        conn.send_datagram(b"after").unwrap();
        if let Ok(Ok(d)) =
            tokio::time::timeout(Duration::from_millis(100), session.read_datagram()).await
        {
            seen = &d[..] == b"after";
        }
    }
    assert!(seen, "no datagram got through after the overflow");
}
