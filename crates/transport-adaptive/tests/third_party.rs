//! A third-party server (a plain WebSocket echo, no session protocol): the client still races,
//! falls back and reconnects, and says it cannot guarantee delivery.

mod common;

use common::{bounded, refused_port, round_trip, tune};
use transport_adaptive::{AdaptiveConfig, AdaptiveEvent, SessionMode, TransportKind};
use transport_core::{Message, Transport};
use transport_ws::{WsServer, WsServerConfig};

/// A plain echo server; "go away" makes it close the connection with 1001.
async fn plain_echo() -> (String, common::AbortOnDrop) {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let task = tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if m.as_text() == Some("go away") {
                        let _ = conn.close(1001, "going away").await;
                        return;
                    }
                    if conn.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, common::AbortOnDrop(task))
}

#[tokio::test]
async fn third_party_server_works_without_guarantee_and_reconnects() {
    let (url, _server) = plain_echo().await;
    let refused = refused_port().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, format!("ws://{refused}/ws"));
    config.endpoint(TransportKind::WebSocket, url);
    tune(&mut config);
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let status = conn.status();
    assert_eq!(status.transport, Some(TransportKind::WebSocket));
    assert!(!status.delivery_guaranteed);
    assert_eq!(status.session, None);
    let mut events = conn.events();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, AdaptiveEvent::AttemptFailed { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, AdaptiveEvent::NoDeliveryGuarantee { .. })),
        "{seen:?}"
    );
    // The echoed health check is not delivered; application messages are.
    round_trip(&mut conn, Message::text("hello")).await;
    round_trip(&mut conn, Message::binary(vec![1u8, 2, 3])).await;

    // The server drops us with 1001: the client reconnects by itself.
    conn.send(Message::text("go away")).await.unwrap();
    loop {
        if let AdaptiveEvent::TransportChanged { .. } | AdaptiveEvent::Disconnected { .. } =
            bounded(events.recv()).await.unwrap()
        {
            break;
        }
    }
    bounded(
        conn.watch_status()
            .wait_for(|s| s.transport == Some(TransportKind::WebSocket)),
    )
    .await
    .unwrap();
    round_trip(&mut conn, Message::text("again")).await;
    bounded(conn.close(1000, "")).await.unwrap();
}

#[tokio::test]
async fn required_session_refuses_a_third_party_server() {
    let (url, _server) = plain_echo().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, url);
    config.session_mode(SessionMode::Required);
    tune(&mut config);
    let err = bounded(transport_adaptive::connect(config))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("session protocol"), "{err}");
}

#[tokio::test]
async fn session_off_connects_without_a_health_check() {
    let (url, _server) = plain_echo().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, url);
    config.session_mode(SessionMode::Off);
    tune(&mut config);
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert!(!conn.status().delivery_guaranteed);
    round_trip(&mut conn, Message::text("raw")).await;
}

#[tokio::test]
async fn a_plain_websocket_client_gets_a_connection_without_session() {
    let server = common::server().await;
    let mut ws = transport_ws::WsConfig::default();
    ws.proxy(transport_ws::ProxyConfig::none());
    let mut plain = bounded(transport_ws::connect(&server.ws_url(), ws))
        .await
        .unwrap();
    plain.send(Message::text("hi")).await.unwrap();
    let (mut conn, request) = bounded(server.accept()).await.unwrap();
    assert!(!request.delivery_guaranteed);
    assert_eq!(request.transport, TransportKind::WebSocket);
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("hi"))
    );
    conn.send(Message::text("hello, plain client"))
        .await
        .unwrap();
    assert_eq!(
        bounded(plain.recv()).await.unwrap(),
        Some(Message::text("hello, plain client"))
    );
    bounded(plain.close(1000, "")).await.unwrap();
    assert_eq!(bounded(conn.recv()).await.unwrap(), None);
    bounded(server.shutdown()).await;
}
