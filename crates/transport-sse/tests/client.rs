//! The SSE client against raw-TCP scenario servers (`test_servers::sse`): parsing edge cases
//! split at awkward chunk boundaries, metadata, subscriptions, request headers, the reserved
//! `transport.*` events, limits, and `send` on a plain SSE stream.

mod client_common;

use std::time::Duration;

use client_common::{config, drain, event, next, no_reconnect, recv};
use test_servers::sse::{Framing, Reply, SseTestServer, split_at, split_every};
use transport_core::{CloseFrame, ConnectionState, Connector, Message, Transport, TransportError};
use transport_sse::{InvalidUtf8, ParserLimits, SseConfig, SseConnector};

/// Every parser edge case the spec has, in one body.
fn edge_case_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"\xEF\xBB\xBF"); // BOM
    b.extend_from_slice(b": a comment\n");
    b.extend_from_slice(b"retry: 1000\n");
    b.extend_from_slice(b"data: first\n\n");
    b.extend_from_slice(b"data:no space\r\n\r\n");
    b.extend_from_slice(b"data\n\n"); // empty data
    b.extend_from_slice(b"id: 1\nevent: tick\ndata: a\ndata: b\r\r"); // lone CRs
    b.extend_from_slice(b"data: keeps id\n\n");
    b.extend_from_slice(b"id: bad\0id\ndata: nul ignored\n\n");
    b.extend_from_slice(b"id\ndata: reset\n\n");
    b.extend_from_slice(b"event: no data\n\n"); // not dispatched
    b.extend_from_slice(b"foo: unknown field\ndata: x\n\n");
    b.extend_from_slice("data: café 😀\n\n".as_bytes());
    b.extend_from_slice(b"data: bad \xFF byte\n\n");
    b.extend_from_slice(b"event: transport.binary\ndata: AAEC/w==\n\n");
    b.extend_from_slice(b"event: transport.text64\ndata: YQ1i\n\n");
    b.extend_from_slice(b"event: transport.future\ndata: ignored\n\n");
    b.extend_from_slice(b":\n\n"); // keepalive
    b.extend_from_slice(b"data:  two spaces\r\n\n");
    b.extend_from_slice(b"data: last\n\n");
    b.extend_from_slice(b"data: never dispatched");
    b
}

fn edge_case_messages() -> Vec<Message> {
    vec![
        event("first", None, None),
        event("no space", None, None),
        event("", None, None),
        event("a\nb", Some("tick"), Some("1")),
        event("keeps id", None, Some("1")),
        event("nul ignored", None, Some("1")),
        event("reset", None, None),
        event("x", None, None),
        event("café 😀", None, None),
        event("bad \u{FFFD} byte", None, None),
        Message::binary(vec![0, 1, 2, 255]),
        Message::text("a\rb"),
        event(" two spaces", None, None),
        event("last", None, None),
    ]
}

/// Offsets that cut the body inside every CRLF, every multi-byte character and the BOM.
fn awkward_offsets(body: &[u8]) -> Vec<usize> {
    let mut offsets = vec![1, 2];
    for i in 1..body.len() {
        let inside_crlf = body[i - 1] == b'\r' && body[i] == b'\n';
        let inside_char = body[i] & 0xC0 == 0x80;
        if inside_crlf || inside_char {
            offsets.push(i);
        }
    }
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

#[tokio::test]
async fn parser_edge_cases_arrive_whatever_the_chunking() {
    let body = edge_case_body();
    let chunkings: Vec<(&str, Vec<Vec<u8>>, Framing)> = vec![
        ("whole", vec![body.clone()], Framing::Chunked),
        ("bytes", split_every(&body, 1), Framing::Chunked),
        ("pairs", split_every(&body, 2), Framing::Close),
        ("threes", split_every(&body, 3), Framing::Chunked),
        ("sevens", split_every(&body, 7), Framing::Close),
        (
            "awkward",
            split_at(&body, &awkward_offsets(&body)),
            Framing::Chunked,
        ),
        (
            "awkward-raw",
            split_at(&body, &awkward_offsets(&body)),
            Framing::Close,
        ),
    ];
    for (name, chunks, framing) in chunkings {
        let reply = Reply::events(chunks)
            .framing(framing)
            .chunk_delay(Duration::from_millis(1))
            .then(test_servers::sse::End::Hang);
        let server = SseTestServer::start(vec![reply]).await.unwrap();
        // The standard's rule for invalid UTF-8 (U+FFFD), which the body's bad byte tests.
        let mut c = no_reconnect();
        c.parser_limits(*ParserLimits::default().invalid_utf8(InvalidUtf8::Replace));
        let mut conn = transport_sse::connect(&server.url("/events"), c)
            .await
            .unwrap();
        let expected = edge_case_messages();
        for (i, want) in expected.iter().enumerate() {
            let got = recv(&mut conn).await;
            assert_eq!(&got, want, "{name}: message {i}");
        }
        conn.close(1000, "").await.unwrap();
        assert_eq!(server.gets().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn subscriptions_filter_event_types() {
    let body = "data: plain\n\n\
                event: tick\ndata: t1\n\n\
                event: tock\ndata: k1\n\n\
                event: transport.binary\ndata: AQ==\n\n\
                event: message\ndata: named message\n\n\
                event: tick\ndata: t2\n\n\
                event: transport.close\ndata: {\"code\":1000,\"reason\":\"\"}\n\n";
    let server = SseTestServer::start(vec![Reply::events([body])])
        .await
        .unwrap();
    let url = server.url("/events");

    let mut c = config();
    c.subscribe(["tick", "message"]);
    let mut conn = transport_sse::connect(&url, c).await.unwrap();
    let (got, error) = drain(&mut conn).await;
    assert_eq!(error, None);
    assert_eq!(
        got,
        vec![
            event("plain", None, None),
            event("t1", Some("tick"), None),
            Message::binary(vec![1]),
            event("named message", Some("message"), None),
            event("t2", Some("tick"), None),
        ]
    );

    let mut c = config();
    c.subscribe(["tock"]);
    let mut conn = transport_sse::connect(&url, c).await.unwrap();
    let (got, error) = drain(&mut conn).await;
    assert_eq!(error, None);
    assert_eq!(got, vec![event("k1", Some("tock"), None)]);

    let mut c = config();
    c.subscribe(Vec::<String>::new());
    let mut conn = transport_sse::connect(&url, c).await.unwrap();
    assert_eq!(drain(&mut conn).await, (vec![], None));
}

#[tokio::test]
async fn request_headers_are_sent() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: hi\n\n"]).then(test_servers::sse::End::Hang),
    ])
    .await
    .unwrap();
    let mut c = no_reconnect();
    c.transport
        .header("Authorization", "Bearer secret")
        .unwrap()
        .header("X-Custom", "custom value")
        .unwrap();
    c.last_event_id("resume-7");
    let mut conn = transport_sse::connect(&server.url("/events?room=1"), c)
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("hi", None, Some("resume-7")));
    conn.close(1000, "").await.unwrap();

    let gets = server.gets();
    let get = &gets[0];
    assert_eq!(get.path, "/events?room=1");
    assert_eq!(get.header("accept"), Some("text/event-stream"));
    assert_eq!(get.header("cache-control"), Some("no-cache"));
    assert_eq!(get.header("authorization"), Some("Bearer secret"));
    assert_eq!(get.header("x-custom"), Some("custom value"));
    assert_eq!(get.header("last-event-id"), Some("resume-7"));
    assert_eq!(get.header("host"), Some(server.addr().to_string().as_str()));

    // A fresh connection without a stored id sends none.
    let mut conn = transport_sse::connect(&server.url("/events"), no_reconnect())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("hi", None, None));
    assert_eq!(server.gets()[1].header("last-event-id"), None);
}

#[tokio::test]
async fn send_on_a_plain_sse_stream_is_unsupported() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: hi\n\n"]).then(test_servers::sse::End::Hang),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), no_reconnect())
        .await
        .unwrap();
    // Refused at once, even before any event has arrived: nothing is queued and dropped.
    let err = conn.send(Message::text("up")).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Unsupported(reason) if reason.contains("no send URL")),
        "{err:?}"
    );
    recv(&mut conn).await;
    assert!(conn.try_send(Message::text("up")).is_err());
    conn.close(1000, "").await.unwrap();
    assert!(server.posts().is_empty());
}

#[tokio::test]
async fn close_event_1000_ends_cleanly_without_reconnect() {
    let body = "data: hi\n\nevent: transport.close\ndata: {\"code\":1000,\"reason\":\"done\"}\n\ndata: after\n\n";
    let server = SseTestServer::start(vec![
        Reply::events([body]).then(test_servers::sse::End::Hang),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(
        drain(&mut conn).await,
        (vec![event("hi", None, None)], None)
    );
    assert_eq!(conn.peer_close_frame(), Some(CloseFrame::new(1000, "done")));
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.gets().len(), 1);
}

#[tokio::test]
async fn close_event_with_an_error_code_is_reported() {
    let body = "event: transport.close\ndata: {\"code\":4001,\"reason\":\"go away\"}\n\n";
    let server = SseTestServer::start(vec![Reply::events([body])])
        .await
        .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    let (got, error) = drain(&mut conn).await;
    assert!(got.is_empty());
    assert_eq!(
        error,
        Some(TransportError::ClosedByPeer {
            code: 4001,
            reason: "go away".into()
        })
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.gets().len(), 1, "4001 is not worth a reconnect");
}

#[tokio::test]
async fn close_event_with_a_restart_code_reconnects() {
    let server = SseTestServer::start(vec![
        Reply::events(["id: 5\ndata: a\n\nevent: transport.close\ndata: {\"code\":1012}\n\n"]),
        Reply::events(["data: b\n\n"]).then(test_servers::sse::End::Hang),
    ])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut conn).await, event("a", None, Some("5")));
    assert_eq!(recv(&mut conn).await, event("b", None, Some("5")));
    assert_eq!(server.gets()[1].header("last-event-id"), Some("5"));
}

#[tokio::test]
async fn oversized_events_fail_with_a_typed_error() {
    let server = SseTestServer::start(vec![Reply::events([
        "data: ok\n\ndata: 0123456789abcdefghij\n\ndata: not seen\n\n",
    ])])
    .await
    .unwrap();
    let mut c = config();
    c.transport.max_message_size(10);
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    let (got, error) = drain(&mut conn).await;
    assert_eq!(got, vec![event("ok", None, None)]);
    assert_eq!(
        error,
        Some(TransportError::MessageTooLarge {
            size: 20,
            limit: 10
        })
    );

    // The parser's own limit, detected while the line is still arriving.
    let mut c = config();
    c.parser_limits(*ParserLimits::default().max_event_size(8));
    let mut conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    let (got, error) = drain(&mut conn).await;
    assert_eq!(got, vec![event("ok", None, None)]);
    assert_eq!(
        error,
        Some(TransportError::MessageTooLarge { size: 9, limit: 8 })
    );
    assert_eq!(server.gets().len(), 2, "no reconnects");
}

#[tokio::test]
async fn invalid_utf8_fails_with_a_typed_error_by_default() {
    let server = SseTestServer::start(vec![Reply::events([
        &b"data: ok\n\ndata: bad \xFF byte\n\ndata: not seen\n\n"[..],
    ])])
    .await
    .unwrap();
    let mut conn = transport_sse::connect(&server.url("/events"), config())
        .await
        .unwrap();
    let (got, error) = drain(&mut conn).await;
    assert_eq!(got, vec![event("ok", None, None)]);
    assert_eq!(error, Some(TransportError::InvalidUtf8 { valid_up_to: 4 }));
    assert_eq!(
        server.gets().len(),
        1,
        "not retried: the same bytes would come again"
    );
}

#[tokio::test]
async fn bad_reserved_events_are_protocol_violations() {
    for body in [
        "event: transport.binary\ndata: not base64!\n\n",
        "event: transport.close\ndata: nonsense\n\n",
        "event: transport.session\ndata: {}\n\n",
    ] {
        let server = SseTestServer::start(vec![Reply::events([body])])
            .await
            .unwrap();
        let mut conn = transport_sse::connect(&server.url("/events"), config())
            .await
            .unwrap();
        let (got, error) = drain(&mut conn).await;
        assert!(got.is_empty());
        assert!(
            matches!(error, Some(TransportError::ProtocolViolation { .. })),
            "{body}: {error:?}"
        );
    }
}

#[tokio::test]
async fn connector_connects_again_and_again() {
    let server = SseTestServer::start(vec![
        Reply::events(["data: hi\n\n"]).then(test_servers::sse::End::Hang),
    ])
    .await
    .unwrap();
    let connector = SseConnector::new(&server.url("/events"), no_reconnect()).unwrap();
    for _ in 0..3 {
        let mut conn = connector.clone().connect().await.unwrap();
        assert_eq!(conn.info().transport, "sse");
        assert_eq!(conn.info().peer_addr, Some(server.addr()));
        assert_eq!(recv(&mut conn).await, event("hi", None, None));
        conn.close(1000, "").await.unwrap();
        assert!(matches!(next(&mut conn).await, Ok(None)));
    }
    assert_eq!(server.gets().len(), 3);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<SseConnector>();
    send_sync::<SseConfig>();
    let connector = SseConnector::new("http://127.0.0.1:1/", SseConfig::default()).unwrap();
    send(&connector.connect());
    send(&transport_sse::connect(
        "http://127.0.0.1:1/",
        SseConfig::default(),
    ));
}
