//! Sending: messages POSTed to the send URL (from the `X-Transport-Send` header or the
//! `transport.session` event), batched and in order; the answers 413, 404, 400, 503; slow
//! POSTs do not hold up events; close POSTs the close frame.

mod client_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use client_common::{WAIT, config, drain, event, next, recv};
use test_servers::sse::{End, RecordedRequest, Reply, SseTestServer};
use transport_core::{CloseFrame, ConnectionState, Message, Transport, TransportError};
use transport_sse::protocol::{
    CONTENT_BATCH, CONTENT_BINARY, CONTENT_CLOSE, CONTENT_TEXT, decode_batch, parse_close_json,
};

const SEND: &str = "/events/send/0123abcd";

/// A stream announcing `SEND` in its header, then staying open.
fn session_stream(body: &str) -> Reply {
    Reply::events([body.to_owned()])
        .header("X-Transport-Send", SEND)
        .then(End::Hang)
}

/// The messages a POST carried.
fn messages(post: &RecordedRequest) -> Vec<Message> {
    let body = Bytes::from(post.body.clone());
    match post.header("content-type") {
        Some(CONTENT_TEXT) => vec![Message::text_from_bytes(body).unwrap()],
        Some(CONTENT_BINARY) => vec![Message::binary(body)],
        Some(CONTENT_BATCH) => decode_batch(body, 1 << 20).unwrap(),
        other => panic!("unexpected content type {other:?}"),
    }
}

async fn wait_posts(server: &SseTestServer, n: usize) -> Vec<RecordedRequest> {
    let ok = server
        .wait_for(WAIT, |r| {
            r.iter().filter(|r| r.method == "POST").count() >= n
        })
        .await;
    assert!(ok, "{n} POSTs expected, got {:?}", server.posts().len());
    server.posts()
}

#[tokio::test]
async fn messages_are_posted_alone_or_batched_in_order() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    let mut c = config();
    c.transport.header("Authorization", "Bearer t").unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("hi", None, None));

    conn.send(Message::text("one")).await.unwrap();
    let posts = wait_posts(&server, 1).await;
    assert_eq!(posts[0].path, SEND);
    assert_eq!(posts[0].header("content-type"), Some(CONTENT_TEXT));
    assert_eq!(posts[0].header("content-length"), Some("3"));
    assert_eq!(posts[0].header("authorization"), Some("Bearer t"));
    assert_eq!(posts[0].body, b"one");

    conn.send(Message::binary(vec![0, 1, 2])).await.unwrap();
    let posts = wait_posts(&server, 2).await;
    assert_eq!(posts[1].header("content-type"), Some(CONTENT_BINARY));
    assert_eq!(posts[1].body, [0, 1, 2]);

    // Queued at once: they leave in few POSTs, in order.
    let burst: Vec<Message> = (0..50)
        .map(|i| {
            if i % 3 == 0 {
                Message::binary(vec![i; usize::from(i)])
            } else {
                Message::text(format!("message {i}"))
            }
        })
        .collect();
    for m in &burst {
        conn.try_send(m.clone()).unwrap();
    }
    let ok = server
        .wait_for(WAIT, |r| {
            let sent: usize = r
                .iter()
                .filter(|r| r.method == "POST")
                .map(|p| messages(p).len())
                .sum();
            sent >= 52
        })
        .await;
    assert!(ok);
    let posts = server.posts();
    let received: Vec<Message> = posts[2..].iter().flat_map(messages).collect();
    assert_eq!(received, burst);
    assert!(posts.len() < 52, "{} POSTs for 52 messages", posts.len());
    assert!(
        posts
            .iter()
            .any(|p| p.header("content-type") == Some(CONTENT_BATCH))
    );
    assert_eq!(server.gets().len(), 1, "one connection for the stream");
}

#[tokio::test]
async fn batches_stay_within_four_times_the_message_limit() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    let mut c = config();
    c.transport.max_message_size(1000);
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    recv(&mut conn).await;
    let burst: Vec<Message> = (0..20).map(|i| Message::binary(vec![i; 900])).collect();
    for m in &burst {
        conn.try_send(m.clone()).unwrap();
    }
    let ok = server
        .wait_for(WAIT, |r| {
            r.iter()
                .filter(|r| r.method == "POST")
                .map(|p| messages(p).len())
                .sum::<usize>()
                >= 20
        })
        .await;
    assert!(ok);
    let posts = server.posts();
    for post in &posts {
        assert!(post.body.len() <= 4000, "{} bytes", post.body.len());
    }
    let received: Vec<Message> = posts.iter().flat_map(messages).collect();
    assert_eq!(received, burst);
}

#[tokio::test]
async fn the_send_url_can_come_from_the_session_event() {
    let body = "retry: 100\nid: abc.0\nevent: transport.session\n\
                data: {\"session\":\"abc\",\"send\":\"/events/send/abc\"}\n\n\
                data: ready\n\n";
    let server = SseTestServer::start(vec![Reply::events([body]).then(End::Hang)])
        .await
        .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("ready", None, Some("abc.0")));
    conn.send(Message::text("up")).await.unwrap();
    let posts = wait_posts(&server, 1).await;
    assert_eq!(posts[0].path, "/events/send/abc");
    assert_eq!(posts[0].body, b"up");
}

#[tokio::test]
async fn a_send_url_on_another_origin_is_refused() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: hi\n\n"]).header("X-Transport-Send", "http://192.0.2.1/steal"),
    ])
    .await
    .unwrap();
    let error = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TransportError::ProtocolViolation { reason } if reason.contains("origin")),
        "{error:?}"
    );
}

#[tokio::test]
async fn post_413_is_message_too_large() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    server.push_post_statuses(&[413]);
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    recv(&mut conn).await;
    conn.send(Message::text("big")).await.unwrap();
    let (_, error) = drain(&mut conn).await;
    assert_eq!(
        error,
        Some(TransportError::MessageTooLarge {
            size: 3,
            limit: 16 << 20
        })
    );
    // A permanent error while connected ends the connection (Connected -> Disconnected).
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert_eq!(server.gets().len(), 1);
}

#[tokio::test]
async fn post_400_is_a_protocol_violation() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    server.push_post_statuses(&[400]);
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    recv(&mut conn).await;
    conn.send(Message::text("x")).await.unwrap();
    let (_, error) = drain(&mut conn).await;
    assert!(
        matches!(&error, Some(TransportError::ProtocolViolation { reason }) if reason.contains("400")),
        "{error:?}"
    );
}

#[tokio::test]
async fn post_404_means_the_session_is_gone_and_reconnects() {
    let server = SseTestServer::start(vec![
        session_stream("id: old.1\ndata: hi\n\n"),
        Reply::events(["id: new.0\ndata: again\n\n"])
            .header("X-Transport-Send", "/events/send/new")
            .then(End::Hang),
    ])
    .await
    .unwrap();
    server.push_post_statuses(&[404]);
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("hi", None, Some("old.1")));
    conn.send(Message::text("lost")).await.unwrap();
    assert_eq!(recv(&mut conn).await, event("again", None, Some("new.0")));
    let gets = server.gets();
    assert_eq!(gets[1].header("last-event-id"), Some("old.1"));
    conn.send(Message::text("found")).await.unwrap();
    let posts = wait_posts(&server, 2).await;
    assert_eq!(posts[1].path, "/events/send/new");
    assert_eq!(posts[1].body, b"found");
}

#[tokio::test]
async fn post_503_is_retried() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    server.push_post_statuses(&[503, 503]);
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    recv(&mut conn).await;
    conn.send(Message::text("patient")).await.unwrap();
    let posts = wait_posts(&server, 3).await;
    let bodies: Vec<&[u8]> = posts.iter().map(|p| p.body.as_slice()).collect();
    assert_eq!(bodies, [b"patient", b"patient", b"patient"]);
    conn.send(Message::text("next")).await.unwrap();
    let posts = wait_posts(&server, 4).await;
    assert_eq!(messages(&posts[3]), vec![Message::text("next")]);
    assert_eq!(conn.state(), ConnectionState::Connected);

    // Busy for good: after five attempts the link fails and is reopened.
    server.push_post_statuses(&[503; 5]);
    conn.send(Message::text("hopeless")).await.unwrap();
    let ok = server
        .wait_for(WAIT, |r| {
            r.iter().filter(|r| r.method == "GET").count() >= 2
        })
        .await;
    assert!(ok, "reconnected");
    assert_eq!(server.posts().len(), 9);
}

#[tokio::test]
async fn events_flow_while_a_post_is_in_flight() {
    let chunks: Vec<String> = (0..10).map(|i| format!("data: {i}\n\n")).collect();
    let server = SseTestServer::start(vec![
        Reply::events(chunks)
            .header("X-Transport-Send", SEND)
            .chunk_delay(Duration::from_millis(50))
            .then(End::Hang),
    ])
    .await
    .unwrap();
    server.set_post_delay(Duration::from_secs(3));
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("0", None, None));
    conn.send(Message::text("slow")).await.unwrap();
    wait_posts(&server, 1).await;
    let start = Instant::now();
    for i in 1..10 {
        assert_eq!(recv(&mut conn).await, event(&i.to_string(), None, None));
    }
    assert!(start.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn a_post_past_its_timeout_fails_the_link() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    server.set_post_delay(Duration::from_secs(2));
    let mut c = config();
    c.post_timeout(Duration::from_millis(200));
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    recv(&mut conn).await;
    conn.send(Message::text("x")).await.unwrap();
    // The link fails with a timeout and is reopened.
    assert_eq!(recv(&mut conn).await, event("hi", None, None));
    assert_eq!(server.gets().len(), 2);
}

#[tokio::test]
async fn close_posts_the_close_frame_after_the_queued_messages() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: hi\n\n", ": the server ends the stream\n\n"])
            .header("X-Transport-Send", SEND)
            .chunk_delay(Duration::from_millis(300)),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    recv(&mut conn).await;
    conn.send(Message::text("a")).await.unwrap();
    conn.send(Message::text("b")).await.unwrap();
    let start = Instant::now();
    conn.close(4000, "bye").await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert!(matches!(next(&mut conn).await, Ok(None)));

    let posts = server.posts();
    let (close, sent) = posts.split_last().unwrap();
    let sent: Vec<Message> = sent.iter().flat_map(messages).collect();
    assert_eq!(sent, vec![Message::text("a"), Message::text("b")]);
    assert_eq!(close.header("content-type"), Some(CONTENT_CLOSE));
    assert_eq!(
        parse_close_json(&close.body).unwrap(),
        CloseFrame::new(4000, "bye")
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.gets().len(), 1, "no reconnect after a close");
}

#[tokio::test]
async fn close_is_bounded_by_the_close_timeout() {
    let server = SseTestServer::start(vec![session_stream("data: hi\n\n")])
        .await
        .unwrap();
    server.set_post_delay(Duration::from_secs(5));
    let mut c = config();
    c.transport.close_timeout = Duration::from_millis(300);
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    recv(&mut conn).await;
    let start = Instant::now();
    conn.close(1000, "").await.unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(conn.state(), ConnectionState::Disconnected);
}
