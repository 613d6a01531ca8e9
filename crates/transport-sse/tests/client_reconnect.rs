//! Reconnects: a stream that ends or dies mid-event is reopened with `Last-Event-ID`, no
//! sooner than the server's `retry:`; a silent stream is detected; a refused reconnect is
//! final.

mod client_common;

use std::time::Duration;

use client_common::{config, drain, event, next, recv};
use test_servers::sse::{End, Framing, Reply, SseTestServer};
use transport_core::{ConnectionState, ReconnectPolicy, Transport, TransportError};

#[tokio::test]
async fn a_stream_dying_mid_event_resumes_after_retry_with_last_event_id() {
    for framing in [Framing::Chunked, Framing::Close] {
        let server = SseTestServer::start(vec![
            Reply::events([
                "retry: 600\nid: a1\ndata: one\n\n",
                "id: a2\ndata: two\n\n",
                "id: a3\ndata: par",
                "tial",
            ])
            .framing(framing)
            .then(End::Drop),
            Reply::events(["data: three\n\n"]).then(End::Hang),
        ])
        .await
        .unwrap();
        let mut conn = transport_sse::connect(&server.url("/events"), config())
            .await
            .unwrap();
        assert_eq!(recv(&mut conn).await, event("one", None, Some("a1")));
        assert_eq!(recv(&mut conn).await, event("two", None, Some("a2")));
        // The cut event is discarded, its id with it.
        assert_eq!(recv(&mut conn).await, event("three", None, Some("a2")));

        let gets = server.gets();
        assert_eq!(gets.len(), 2);
        assert_eq!(gets[0].header("last-event-id"), None);
        assert_eq!(gets[1].header("last-event-id"), Some("a2"));
        let dropped = server.stream_ends()[0];
        let gap = gets[1].at.duration_since(dropped);
        assert!(
            gap >= Duration::from_millis(600) && gap < Duration::from_secs(5),
            "{framing:?}: reconnected {gap:?} after the drop, retry was 600 ms"
        );
        assert_eq!(conn.state(), ConnectionState::Connected);
        conn.close(1000, "").await.unwrap();
    }
}

#[tokio::test]
async fn every_reconnect_sends_the_latest_id() {
    let server = SseTestServer::start(vec![
        Reply::events(["id: 1\ndata: a\n\n"]),
        Reply::events(["data: b\n\nid: 2\ndata: c\n\n"]),
        Reply::events([": nothing new\n\n"]),
        Reply::events(["id\ndata: reset\n\n"]),
        Reply::events(["data: end\n\n"]).then(End::Hang),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(recv(&mut conn).await);
    }
    assert_eq!(
        got,
        vec![
            event("a", None, Some("1")),
            event("b", None, Some("1")),
            event("c", None, Some("2")),
            event("reset", None, None),
            event("end", None, None),
        ]
    );
    let ids: Vec<_> = server
        .gets()
        .iter()
        .map(|g| g.header("last-event-id").map(str::to_owned))
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(ids, vec![None, s("1"), s("2"), s("2"), None]);
}

#[tokio::test]
async fn a_silent_stream_is_dropped_and_reopened() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: one\n\n"]).then(End::Hang),
        Reply::events(["data: two\n\n"]).then(End::Hang),
    ])
    .await
    .unwrap();
    let mut c = config();
    c.transport.keepalive(None, Duration::from_millis(300));
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("one", None, None));
    assert_eq!(recv(&mut conn).await, event("two", None, None));
    let gets = server.gets();
    assert_eq!(gets.len(), 2);
    let gap = gets[1].at.duration_since(gets[0].at);
    assert!(
        gap >= Duration::from_millis(300) && gap < Duration::from_secs(5),
        "{gap:?}"
    );
}

#[tokio::test]
async fn keepalive_comments_keep_a_quiet_stream_alive() {
    let mut chunks = vec![":\n\n"; 12];
    chunks.push("data: alive\n\n");
    let server = SseTestServer::start(vec![
        Reply::events(chunks)
            .chunk_delay(Duration::from_millis(100))
            .then(End::Hang),
    ])
    .await
    .unwrap();
    let mut c = config();
    c.transport.keepalive(None, Duration::from_millis(600));
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("alive", None, None));
    assert_eq!(server.gets().len(), 1, "comments count as traffic");
}

#[tokio::test]
async fn a_slow_application_is_not_a_silent_stream() {
    // The client stops reading while the application does not take messages; that time is
    // not counted against the server.
    let chunks: Vec<String> = (0..40).map(|i| format!("data: {i}\n\n")).collect();
    let server = SseTestServer::start(vec![Reply::events([chunks.concat()]).then(End::Hang)])
        .await
        .unwrap();
    let mut c = config();
    c.transport.keepalive(None, Duration::from_millis(300));
    c.transport.buffers(4, 2);
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..40 {
        assert_eq!(recv(&mut conn).await, event(&i.to_string(), None, None));
    }
    assert_eq!(server.gets().len(), 1);
}

#[tokio::test]
async fn a_refused_reconnect_is_final() {
    let refusals = [
        (
            Reply::status(204),
            TransportError::HandshakeRejected { status: 204 },
        ),
        (
            Reply::status(500),
            TransportError::HandshakeRejected { status: 500 },
        ),
        (
            Reply::status(503),
            TransportError::HandshakeRejected { status: 503 },
        ),
        (
            Reply::events(["data: x\n\n"]).content_type(Some("text/html")),
            TransportError::protocol("Content-Type \"text/html\" is not text/event-stream"),
        ),
    ];
    for (refusal, expected) in refusals {
        let server = SseTestServer::start(vec![Reply::events(["id: 9\ndata: one\n\n"]), refusal])
            .await
            .unwrap();
        let mut conn = transport_sse::connect(&server.url("/events"), config())
            .await
            .unwrap();
        let (got, error) = drain(&mut conn).await;
        assert_eq!(got, vec![event("one", None, Some("9"))]);
        assert_eq!(error.as_ref(), Some(&expected));
        assert_eq!(conn.state(), ConnectionState::Failed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(server.gets().len(), 2, "no attempt after {expected:?}");
        assert_eq!(server.gets()[1].header("last-event-id"), Some("9"));
    }
}

#[tokio::test]
async fn a_vanished_server_makes_the_policy_give_up() {
    let server = SseTestServer::start(vec![Reply::events(["data: one\n\n"])])
        .await
        .unwrap();
    let url = server.url("/events");
    let mut c = config();
    let mut policy = ReconnectPolicy::default();
    policy
        .delays(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(Some(3));
    c.transport.reconnect(policy);
    let mut conn = transport_sse::connect(&url, c).await.unwrap();
    assert_eq!(recv(&mut conn).await, event("one", None, None));
    drop(server);
    let error = loop {
        match next(&mut conn).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(error, TransportError::ConnectionFailed { .. }),
        "{error:?}"
    );
    assert_eq!(conn.state(), ConnectionState::Failed);
}

#[tokio::test]
async fn close_during_reconnect_ends_the_connection() {
    let server = SseTestServer::start(vec![
        Reply::events(["retry: 5000\ndata: one\n\n"]),
        Reply::events(["data: two\n\n"]),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("one", None, None));
    let mut state = conn.watch_state();
    tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(Duration::from_secs(2), conn.close(1000, ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert_eq!(server.gets().len(), 1);
}
