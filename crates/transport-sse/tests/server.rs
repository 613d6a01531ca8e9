//! Our SSE server, driven by a raw HTTP client (hyper) that parses the stream with our parser:
//! session event, messages both ways, POST errors, resume with Last-Event-ID, close, shutdown,
//! session limit, slow client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use transport_core::{Message, MessageMetadata, Transport, TransportError};
use transport_sse::protocol;
use transport_sse::{ParserLimits, SseEvent, SseParser, SseServer, SseServerConfig};

const LIMIT: Duration = Duration::from_secs(10);

async fn request(
    addr: std::net::SocketAddr,
    req: http::Request<Full<Bytes>>,
) -> http::Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send.send_request(req).await.unwrap()
}

/// An open event stream read by our parser.
struct Stream {
    body: Incoming,
    parser: SseParser,
    headers: http::HeaderMap,
}

impl Stream {
    async fn open(addr: std::net::SocketAddr, last_event_id: Option<&str>) -> Self {
        let mut b = http::Request::get(format!("http://{addr}/events"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            b = b.header("last-event-id", id);
        }
        let resp = request(addr, b.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(resp.status(), 200);
        let headers = resp.headers().clone();
        Self {
            body: resp.into_body(),
            parser: SseParser::new(ParserLimits::default()),
            headers,
        }
    }

    /// The next event, or None when the body ends.
    async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(LIMIT, async {
            loop {
                if let Some(e) = self.parser.next_event() {
                    return Some(e.unwrap());
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            self.parser.feed(data);
                        }
                    }
                    _ => return None,
                }
            }
        })
        .await
        .expect("no event in time")
    }
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> u16 {
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap();
    request(addr, req).await.status().as_u16()
}

async fn server(config: SseServerConfig) -> SseServer {
    SseServer::bind("127.0.0.1:0", config).await.unwrap()
}

#[tokio::test]
async fn session_event_then_messages_both_ways() {
    let mut server = server(SseServerConfig::default()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    assert!(
        stream.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    let first = stream.next().await.unwrap();
    assert_eq!(first.event_type(), protocol::EVENT_SESSION);
    let (token, send) = protocol::parse_session_json(&first.data).unwrap();
    assert_eq!(token.len(), 32, "128-bit token in hex");
    assert_eq!(stream.headers[protocol::HEADER_SEND], send.as_str());
    assert_eq!(first.id, format!("{token}.0"));

    let (mut conn, req) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req.session, token);
    conn.send(Message::text("line one\nline two"))
        .await
        .unwrap();
    conn.send(Message::binary(vec![0, 255])).await.unwrap();
    conn.send(
        Message::text("typed").with_metadata(MessageMetadata::new(Some("tick".into()), None)),
    )
    .await
    .unwrap();
    let e = stream.next().await.unwrap();
    assert_eq!(
        (e.event_type(), e.data.as_str(), e.id.clone()),
        ("message", "line one\nline two", format!("{token}.1"))
    );
    let e = stream.next().await.unwrap();
    assert_eq!(e.event_type(), protocol::EVENT_BINARY);
    assert_eq!(
        protocol::decode_b64(&e.data, false).unwrap(),
        Message::binary(vec![0, 255])
    );
    assert_eq!(stream.next().await.unwrap().event_type(), "tick");

    assert_eq!(
        post(addr, &send, "text/plain; charset=utf-8", "hello").await,
        204
    );
    assert_eq!(conn.recv().await.unwrap(), Some(Message::text("hello")));
    assert_eq!(
        post(addr, &send, protocol::CONTENT_BINARY, vec![1u8, 2]).await,
        204
    );
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::binary(vec![1, 2]))
    );
    let mut batch = bytes::BytesMut::new();
    protocol::encode_batch_frame(&mut batch, &Message::text("a"));
    protocol::encode_batch_frame(&mut batch, &Message::binary(vec![3]));
    assert_eq!(
        post(addr, &send, protocol::CONTENT_BATCH, batch.freeze()).await,
        204
    );
    assert_eq!(conn.recv().await.unwrap(), Some(Message::text("a")));
    assert_eq!(conn.recv().await.unwrap(), Some(Message::binary(vec![3])));
}

#[tokio::test]
async fn bad_posts_get_typed_statuses() {
    let mut config = SseServerConfig::default();
    config.transport.max_message_size(16);
    let mut server = server(config).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    let (_, send) = protocol::parse_session_json(&stream.next().await.unwrap().data).unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    assert_eq!(
        post(
            addr,
            "/events/send/0123456789abcdef0123456789abcdef",
            "text/plain",
            "x"
        )
        .await,
        404
    );
    assert_eq!(post(addr, &send, "application/json", "{}").await, 415);
    assert_eq!(post(addr, &send, "text/plain", vec![b'x'; 17]).await, 413);
    assert_eq!(
        post(addr, &send, "text/plain", vec![0xffu8, 0xfe]).await,
        400
    );
    assert_eq!(
        post(addr, &send, protocol::CONTENT_BATCH, vec![1u8, 0, 0]).await,
        400
    );
    assert_eq!(post(addr, &send, "text/plain", "ok").await, 204);
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::text("ok")),
        "nothing bad got through"
    );
}

#[tokio::test]
async fn resume_replays_what_was_missed() {
    let mut server = server(SseServerConfig::default()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    let (token, _) = protocol::parse_session_json(&stream.next().await.unwrap().data).unwrap();
    let (conn, _) = server.accept().await.unwrap();
    conn.send(Message::text("seen")).await.unwrap();
    let seen = stream.next().await.unwrap();
    drop(stream); // the connection drops
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.send(Message::text("missed 1")).await.unwrap();
    conn.send(Message::text("missed 2")).await.unwrap();
    let mut stream = Stream::open(addr, Some(&seen.id)).await;
    assert_eq!(
        stream.headers[protocol::HEADER_SESSION],
        token.as_str(),
        "same session"
    );
    assert_eq!(stream.next().await.unwrap().data, "missed 1");
    assert_eq!(stream.next().await.unwrap().data, "missed 2");
    conn.send(Message::text("live")).await.unwrap();
    assert_eq!(stream.next().await.unwrap().data, "live");
    assert_eq!(server.endpoint().session_count(), 1);
    // An unknown id starts a new session.
    let mut other = Stream::open(addr, Some("ffff.3")).await;
    assert_eq!(
        other.next().await.unwrap().event_type(),
        protocol::EVENT_SESSION
    );
}

#[tokio::test]
async fn closes_from_either_side() {
    let mut server = server(SseServerConfig::default()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    stream.next().await.unwrap();
    let (conn, _) = server.accept().await.unwrap();
    conn.close(4000, "bye").await.unwrap();
    let e = stream.next().await.unwrap();
    assert_eq!(e.event_type(), protocol::EVENT_CLOSE);
    assert_eq!(
        protocol::parse_close_json(e.data.as_bytes()).unwrap().code,
        4000
    );
    assert!(stream.next().await.is_none(), "the response ends");

    let mut stream = Stream::open(addr, None).await;
    let (_, send) = protocol::parse_session_json(&stream.next().await.unwrap().data).unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    assert_eq!(
        post(
            addr,
            &send,
            protocol::CONTENT_CLOSE,
            r#"{"code":4001,"reason":"done"}"#
        )
        .await,
        204
    );
    assert_eq!(
        conn.recv().await,
        Err(TransportError::ClosedByPeer {
            code: 4001,
            reason: "done".into()
        })
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn shutdown_sends_going_away() {
    let server = server(SseServerConfig::default()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    stream.next().await.unwrap();
    tokio::spawn(server.shutdown());
    let e = stream.next().await.unwrap();
    assert_eq!(
        protocol::parse_close_json(e.data.as_bytes()).unwrap().code,
        1001
    );
}

#[tokio::test]
async fn session_limit_and_keepalives() {
    let mut config = SseServerConfig::default();
    config.max_sessions = 1;
    config
        .transport
        .keepalive(Some(Duration::from_millis(50)), Duration::from_secs(5));
    let server = server(config).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    stream.next().await.unwrap();
    let req = http::Request::get(format!("http://{addr}/events"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(request(addr, req).await.status(), 503);
    // Keepalive comments arrive as bytes but dispatch nothing.
    let frame = tokio::time::timeout(LIMIT, stream.body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.data_ref().map(|b| &b[..]), Some(&b":\n\n"[..]));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let mut config = SseServerConfig::default();
    config.stream_queue = 2;
    config.transport.keepalive(None, Duration::from_millis(300));
    let mut server = server(config).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    stream.next().await.unwrap();
    let (conn, _) = server.accept().await.unwrap();
    // Never read again; sends keep going (bounded by the stream queue and the TCP window),
    // then the stream is dropped and the session waits for a reconnect.
    let big = Message::text("x".repeat(256 << 10));
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..200 {
            conn.send(big.clone()).await.unwrap();
        }
    })
    .await;
    assert!(
        sent.is_ok(),
        "the application is not blocked forever by a dead reader"
    );
    assert_eq!(
        server.endpoint().session_count(),
        1,
        "the session waits in its grace period"
    );
    drop(stream);
}

#[tokio::test]
async fn an_unsendable_event_type_fails_loudly() {
    let mut server = server(SseServerConfig::default()).await;
    let addr = server.local_addr();
    let mut stream = Stream::open(addr, None).await;
    stream.next().await.unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    let bad = Message::text("x").with_metadata(MessageMetadata::new(Some("a\nb".into()), None));
    conn.send(bad).await.unwrap();
    assert!(matches!(
        conn.recv().await,
        Err(TransportError::InvalidConfig(_))
    ));
    let e = stream.next().await.unwrap();
    assert_eq!(
        protocol::parse_close_json(e.data.as_bytes()).unwrap().code,
        1011
    );
}
