//! The client against this crate's server: messages both ways (text, event types, text with
//! CR, binary, batches), closes from either side, a silent stream resuming its session with
//! `Last-Event-ID`, refusals, HTTP/2 (prior knowledge and TLS).

mod client_common;

use std::time::Duration;

use client_common::{WAIT, config, drain, event, no_reconnect, recv};
use transport_core::{
    CloseFrame, Connection, ConnectionState, Message, MessageMetadata, Transport, TransportError,
};
use transport_sse::{SseConfig, SseRequest, SseServer, SseServerConfig};

fn server_config() -> SseServerConfig {
    let mut c = SseServerConfig::default();
    c.retry = Some(Duration::from_millis(50));
    c
}

async fn accept(server: &mut SseServer) -> (Connection, SseRequest) {
    tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("a session in time")
        .expect("the server is running")
}

async fn server_recv(session: &mut Connection) -> Message {
    match tokio::time::timeout(WAIT, session.recv()).await {
        Ok(Ok(Some(m))) => m,
        other => panic!("the server expected a message, got {other:?}"),
    }
}

/// Messages both ways, then a close from the client.
async fn round_trip(server: &mut SseServer, client_config: SseConfig) {
    let mut client = transport_sse::connect(&server.url(), client_config)
        .await
        .unwrap();
    let (mut session, request) = accept(server).await;
    let token = request.session.clone();
    assert_eq!(token.len(), 32);
    let id = |n: u32| format!("{token}.{n}");

    session.send(Message::text("plain")).await.unwrap();
    let typed = Message::text("line 1\nline 2")
        .with_metadata(MessageMetadata::new(Some("tick".into()), None));
    session.send(typed).await.unwrap();
    session.send(Message::text("cr\r\nlf")).await.unwrap();
    session
        .send(Message::binary(vec![0, 255, 10]))
        .await
        .unwrap();
    assert_eq!(recv(&mut client).await, event("plain", None, Some(&id(1))));
    assert_eq!(
        recv(&mut client).await,
        event("line 1\nline 2", Some("tick"), Some(&id(2)))
    );
    assert_eq!(recv(&mut client).await, Message::text("cr\r\nlf"));
    assert_eq!(recv(&mut client).await, Message::binary(vec![0, 255, 10]));

    client.send(Message::text("up")).await.unwrap();
    assert_eq!(server_recv(&mut session).await, Message::text("up"));
    let burst: Vec<Message> = (0..100u8)
        .map(|i| {
            if i % 2 == 0 {
                Message::text(format!("m{i}"))
            } else {
                Message::binary(vec![i; usize::from(i)])
            }
        })
        .collect();
    for m in &burst {
        client.send(m.clone()).await.unwrap();
    }
    for m in &burst {
        assert_eq!(&server_recv(&mut session).await, m);
    }

    let started = std::time::Instant::now();
    client.close(1000, "bye").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the server ends the stream"
    );
    assert_eq!(client.state(), ConnectionState::Disconnected);
    let end = tokio::time::timeout(WAIT, session.recv()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert_eq!(
        session.peer_close_frame(),
        Some(CloseFrame::new(1000, "bye"))
    );
}

#[tokio::test]
async fn messages_flow_both_ways_over_http1() {
    let mut server = SseServer::bind("127.0.0.1:0", server_config())
        .await
        .unwrap();
    round_trip(&mut server, no_reconnect()).await;
}

#[tokio::test]
async fn messages_flow_both_ways_over_http2_with_prior_knowledge() {
    let mut server = SseServer::bind("127.0.0.1:0", server_config())
        .await
        .unwrap();
    let mut c = no_reconnect();
    c.http2_prior_knowledge(true);
    round_trip(&mut server, c).await;
}

#[tokio::test]
async fn messages_flow_both_ways_over_tls() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let tls =
        transport_core::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), &[]).unwrap();
    let mut server = SseServer::bind_tls("127.0.0.1:0", server_config(), tls)
        .await
        .unwrap();
    assert!(server.url().starts_with("https://"));
    let mut c = no_reconnect();
    c.transport.tls.add_root_ca_pem(cert_pem);
    round_trip(&mut server, c).await;
}

#[tokio::test]
async fn a_server_close_reaches_the_client() {
    let mut server = SseServer::bind("127.0.0.1:0", server_config())
        .await
        .unwrap();
    let mut client = transport_sse::connect(&server.url(), config())
        .await
        .unwrap();
    let (session, _) = accept(&mut server).await;
    session.send(Message::text("last words")).await.unwrap();
    session.close(4000, "done").await.unwrap();
    let (got, error) = drain(&mut client).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        error,
        Some(TransportError::ClosedByPeer {
            code: 4000,
            reason: "done".into()
        })
    );
    assert_eq!(
        client.peer_close_frame(),
        Some(CloseFrame::new(4000, "done"))
    );

    let mut client = transport_sse::connect(&server.url(), config())
        .await
        .unwrap();
    let (session, _) = accept(&mut server).await;
    session.close(1000, "").await.unwrap();
    assert_eq!(drain(&mut client).await, (vec![], None));
}

#[tokio::test]
async fn a_silent_stream_resumes_its_session() {
    let mut sc = server_config();
    sc.transport.keepalive(None, Duration::from_secs(30));
    let mut server = SseServer::bind("127.0.0.1:0", sc).await.unwrap();
    let mut c = config();
    c.transport.keepalive(None, Duration::from_millis(300));
    let mut client = transport_sse::connect(&server.url(), c).await.unwrap();
    let (session, request) = accept(&mut server).await;
    session.send(Message::text("before")).await.unwrap();
    let first = recv(&mut client).await;
    assert_eq!(first.as_text(), Some("before"));

    // The server says nothing for 300 ms: the client drops the stream and comes back.
    let mut state = client.watch_state();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == ConnectionState::Connected))
        .await
        .unwrap()
        .unwrap();
    session.send(Message::text("after")).await.unwrap();
    let after = recv(&mut client).await;
    assert_eq!(after.as_text(), Some("after"));
    let id = after.metadata().and_then(|m| m.id.clone());
    assert_eq!(
        id,
        Some(format!("{}.2", request.session)),
        "the same session"
    );
    let again = tokio::time::timeout(Duration::from_millis(200), server.accept()).await;
    assert!(again.is_err(), "no new session");
    client.send(Message::text("still here")).await.unwrap();
    let mut session = session;
    assert_eq!(server_recv(&mut session).await, Message::text("still here"));
}

#[tokio::test]
async fn refusals_are_final() {
    let mut sc = server_config();
    sc.policy
        .authorize(|request| match request.headers().get("authorization") {
            Some(v) if v == "Bearer ok" => Ok(()),
            _ => Err(http::StatusCode::UNAUTHORIZED),
        });
    let mut server = SseServer::bind("127.0.0.1:0", sc).await.unwrap();
    let error = transport_sse::connect(&server.url(), config())
        .await
        .unwrap_err();
    assert_eq!(error, TransportError::HandshakeRejected { status: 401 });

    let wrong_path = server.url().replace("/events", "/nothing");
    let error = transport_sse::connect(&wrong_path, config())
        .await
        .unwrap_err();
    assert_eq!(error, TransportError::HandshakeRejected { status: 404 });

    let mut c = config();
    c.transport.header("Authorization", "Bearer ok").unwrap();
    let client = transport_sse::connect(&server.url(), c).await.unwrap();
    let (_session, request) = accept(&mut server).await;
    assert_eq!(
        request
            .headers
            .get("accept")
            .map(http::HeaderValue::as_bytes),
        Some(&b"text/event-stream"[..])
    );
    client.close(1000, "").await.unwrap();
}
