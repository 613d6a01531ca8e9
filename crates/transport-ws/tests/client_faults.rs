//! The client against an independent peer (bare tokio-tungstenite and raw TCP, from
//! test-servers): each fault scenario ends in its typed error or a reconnect.

use std::time::Duration;

use test_servers::ws::{Scenario, WsTestServer};
use transport_core::{
    ConnectionState, Message, ReconnectPolicy, Transport, TransportError, TrySendError,
};
use transport_ws::{ProxyConfig, WsConfig};

const LIMIT: Duration = Duration::from_secs(15);

fn config() -> WsConfig {
    let mut c = WsConfig::default();
    c.proxy(ProxyConfig::none());
    c.transport.reconnect(ReconnectPolicy::disabled());
    c.transport.connect_timeout(Duration::from_secs(5));
    c
}

fn reconnecting() -> WsConfig {
    let mut c = config();
    let mut p = ReconnectPolicy::default();
    p.delays(Duration::from_millis(10), Duration::from_millis(50));
    p.max_attempts(Some(5));
    c.transport.reconnect(p);
    c
}

async fn recv(t: &mut impl Transport) -> Result<Option<Message>, TransportError> {
    tokio::time::timeout(LIMIT, t.recv())
        .await
        .expect("recv timed out")
}

#[tokio::test]
async fn echoes_text_and_binary() {
    let server = WsTestServer::start(Scenario::Echo).await.unwrap();
    let mut c = transport_ws::connect(&server.url(), config())
        .await
        .unwrap();
    assert_eq!(c.state(), ConnectionState::Connected);
    assert_eq!(c.info().transport, "ws");
    // Known from the IP literal of the URL (no `getpeername`), and the address connected to.
    let host_port = server
        .url()
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(c.info().peer_addr.map(|a| a.to_string()), Some(host_port));
    c.send(Message::text("héllo")).await.unwrap();
    c.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    let big = Message::binary(vec![7u8; 1 << 20]);
    c.send(big.clone()).await.unwrap();
    assert_eq!(recv(&mut c).await.unwrap(), Some(Message::text("héllo")));
    assert_eq!(
        recv(&mut c).await.unwrap(),
        Some(Message::binary(vec![0u8, 1, 2, 255]))
    );
    assert_eq!(recv(&mut c).await.unwrap(), Some(big));
    c.close(1000, "done").await.unwrap();
    assert_eq!(c.state(), ConnectionState::Disconnected);
    assert_eq!(recv(&mut c).await.unwrap(), None);
}

#[tokio::test]
async fn peer_close_code_and_reason_are_surfaced() {
    let server = WsTestServer::start(Scenario::CloseAfter {
        n: 1,
        code: 4000,
        reason: "kicked out".into(),
    })
    .await
    .unwrap();
    let mut c = transport_ws::connect(&server.url(), config())
        .await
        .unwrap();
    c.send(Message::text("x")).await.unwrap();
    assert_eq!(recv(&mut c).await.unwrap(), Some(Message::text("x")));
    assert_eq!(
        recv(&mut c).await,
        Err(TransportError::ClosedByPeer {
            code: 4000,
            reason: "kicked out".into()
        })
    );
    assert_eq!(recv(&mut c).await.unwrap(), None);
    assert_eq!(c.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn normal_peer_close_ends_cleanly() {
    let server = WsTestServer::start(Scenario::CloseAfter {
        n: 0,
        code: 1000,
        reason: "bye".into(),
    })
    .await
    .unwrap();
    let mut c = transport_ws::connect(&server.url(), config())
        .await
        .unwrap();
    assert_eq!(recv(&mut c).await.unwrap(), None);
    assert_eq!(
        c.peer_close_frame().map(|f| (f.code, f.reason)),
        Some((1000, "bye".into()))
    );
}

#[tokio::test]
async fn dropped_tcp_without_close_frame_reconnects() {
    let server = WsTestServer::start(Scenario::DropAfter(1)).await.unwrap();
    let mut c = transport_ws::connect(&server.url(), reconnecting())
        .await
        .unwrap();
    let mut states = c.watch_state();
    c.send(Message::text("one")).await.unwrap();
    assert_eq!(recv(&mut c).await.unwrap(), Some(Message::text("one")));
    // The server drops TCP; the client goes Reconnecting, then Connected on a new socket.
    tokio::time::timeout(
        LIMIT,
        states.wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(LIMIT, states.wait_for(|s| *s == ConnectionState::Connected))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.accepted(), 2);
    c.send(Message::text("two")).await.unwrap();
    assert_eq!(recv(&mut c).await.unwrap(), Some(Message::text("two")));
}

#[tokio::test]
async fn dropped_tcp_without_reconnect_is_connection_lost() {
    let server = WsTestServer::start(Scenario::DropAfter(0)).await.unwrap();
    let mut c = transport_ws::connect(&server.url(), config())
        .await
        .unwrap();
    let err = recv(&mut c).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn reconnect_gives_up_and_fails() {
    let server = WsTestServer::start(Scenario::DropAfter(0)).await.unwrap();
    let url = server.url();
    let mut c = transport_ws::connect(&url, reconnecting()).await.unwrap();
    drop(server); // nothing listens any more
    let err = recv(&mut c).await.unwrap_err();
    assert!(err.is_retryable(), "the last attempt's error: {err}");
    assert_eq!(c.state(), ConnectionState::Failed);
    assert_eq!(recv(&mut c).await.unwrap(), None);
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let server = WsTestServer::start(Scenario::StallBeforeHandshake)
        .await
        .unwrap();
    let mut c = config();
    c.transport.connect_timeout(Duration::from_millis(300));
    let err = transport_ws::connect(&server.url(), c).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn dead_peer_is_detected_by_keepalive() {
    let server = WsTestServer::start(Scenario::StallAfterHandshake)
        .await
        .unwrap();
    let mut c = config();
    c.transport
        .keepalive(Some(Duration::from_millis(100)), Duration::from_millis(400));
    let mut c = transport_ws::connect(&server.url(), c).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = recv(&mut c).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_utf8_from_the_server_is_a_protocol_error() {
    let server = WsTestServer::start(Scenario::InvalidUtf8).await.unwrap();
    let mut c = transport_ws::connect(&server.url(), config())
        .await
        .unwrap();
    let err = recv(&mut c).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ProtocolViolation { .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let server = WsTestServer::start(Scenario::Oversized(2 << 20))
        .await
        .unwrap();
    let mut c = config();
    c.transport.max_message_size(1 << 20);
    let mut c = transport_ws::connect(&server.url(), c).await.unwrap();
    let err = recv(&mut c).await.unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { limit, .. } if limit == 1 << 20),
        "{err}"
    );
    // Sending past the limit is refused before anything is queued.
    let c2 = transport_ws::connect(&WsTestServer::start(Scenario::Echo).await.unwrap().url(), {
        let mut c = config();
        c.transport.max_message_size(10);
        c
    })
    .await
    .unwrap();
    assert!(matches!(
        c2.send(Message::binary(vec![0; 11])).await,
        Err(TransportError::MessageTooLarge {
            size: 11,
            limit: 10
        })
    ));
}

#[tokio::test]
async fn slow_server_applies_backpressure() {
    let server = WsTestServer::start(Scenario::SlowReader(Duration::from_millis(50)))
        .await
        .unwrap();
    let mut c = config();
    c.transport.buffers(8, 8);
    let c = transport_ws::connect(&server.url(), c).await.unwrap();
    let payload = Message::binary(vec![0u8; 256 << 10]);
    let mut sent = 0usize;
    let mut full = false;
    for _ in 0..400 {
        match c.try_send(payload.clone()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => {
                full = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        tokio::task::yield_now().await;
    }
    assert!(
        full,
        "the send queue must fill against a slow reader (sent {sent})"
    );
    assert!(sent < 400);
}

#[tokio::test]
async fn refused_handshake_is_not_retried() {
    let server = WsTestServer::start(Scenario::RefuseHandshake(401))
        .await
        .unwrap();
    let err = transport_ws::connect(&server.url(), reconnecting())
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 401 });
    assert!(!err.is_retryable());
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn closed_port_fails_to_connect() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = transport_ws::connect(&format!("ws://{addr}/"), config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionFailed { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    for url in ["http://127.0.0.1/", "not a url", "ws://"] {
        let err = transport_ws::connect(url, config()).await.unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidUrl { .. }),
            "{url}: {err}"
        );
    }
}
