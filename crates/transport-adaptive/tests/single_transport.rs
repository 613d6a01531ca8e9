//! Our client against our server over each transport alone, and through negotiation.

mod common;

use std::sync::Arc;

use common::{bounded, client_config, round_trip, server, spawn_echo};
use transport_adaptive::{AdaptiveEvent, ChangeReason, TransportKind};
use transport_core::{ConnectionState, Message, Transport};

async fn over(kind: TransportKind) {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let config = client_config(&server, &[kind]);
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let status = conn.status();
    assert_eq!(status.transport, Some(kind));
    assert!(status.delivery_guaranteed);
    assert!(status.session.is_some());
    assert_eq!(conn.info().transport, kind.name());
    assert_eq!(conn.state(), ConnectionState::Connected);
    round_trip(&mut conn, Message::text("hello")).await;
    round_trip(&mut conn, Message::binary(vec![0u8, 1, 2, 255])).await;
    round_trip(&mut conn, Message::text("line\r\nbreaks\n")).await;
    // Large messages fit every link, SSE's base64 events included.
    let large: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut conn, Message::binary(large)).await;
    // Past the limit: refused at once, the connection carries on.
    let err = conn
        .send(Message::binary(vec![0u8; 16 << 20]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, transport_core::TransportError::MessageTooLarge { .. }),
        "{err}"
    );
    for i in 0..200 {
        conn.send(Message::text(i.to_string())).await.unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            bounded(conn.recv()).await.unwrap(),
            Some(Message::text(i.to_string()))
        );
    }
    bounded(conn.close(1000, "done")).await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn over_webtransport_only() {
    over(TransportKind::WebTransport).await;
}

#[tokio::test]
async fn over_websocket_only() {
    over(TransportKind::WebSocket).await;
}

#[tokio::test]
async fn over_sse_only() {
    over(TransportKind::Sse).await;
}

#[tokio::test]
async fn negotiation_finds_every_transport_and_webtransport_wins() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let mut base = transport_adaptive::AdaptiveConfig::default();
    common::tune(&mut base);
    let config = bounded(transport_adaptive::negotiate(&server.base_url(), base))
        .await
        .unwrap();
    let kinds: Vec<_> = config.endpoints.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            TransportKind::WebTransport,
            TransportKind::WebSocket,
            TransportKind::Sse
        ]
    );
    assert_eq!(config.endpoints[1].url, server.ws_url());
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let mut events = conn.events();
    assert_eq!(conn.transport(), Some(TransportKind::WebTransport));
    round_trip(&mut conn, Message::text("negotiated")).await;
    // The first receiver starts with connect's own events: the initial choice, nothing else.
    match events.try_recv().unwrap() {
        AdaptiveEvent::TransportChanged { from, to, reason } => {
            assert_eq!(
                (from, to, reason),
                (None, TransportKind::WebTransport, ChangeReason::Initial)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(events.try_recv().is_err());
    bounded(conn.close(1000, "")).await.unwrap();
    // A base URL without the endpoint: a typed refusal.
    let err = transport_adaptive::negotiate(
        &format!("{}/nowhere", server.base_url()),
        transport_adaptive::AdaptiveConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        transport_core::TransportError::HandshakeRejected { status: 404 }
    );
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_close_ends_the_session_on_both_sides_without_reconnecting() {
    let server = server().await;
    for kind in [TransportKind::WebSocket, TransportKind::WebTransport] {
        // The server application closes with 1001: the client ends, it does not resume.
        let mut conn = bounded(transport_adaptive::connect(client_config(&server, &[kind])))
            .await
            .unwrap();
        let (mut server_conn, request) = bounded(server.accept()).await.unwrap();
        assert_eq!(request.transport, kind);
        round_trip_via(&mut conn, &mut server_conn).await;
        bounded(server_conn.close(1001, "going away"))
            .await
            .unwrap();
        assert_eq!(
            bounded(conn.recv()).await.unwrap_err(),
            transport_core::TransportError::ClosedByPeer {
                code: 1001,
                reason: "going away".into()
            }
        );
        assert_eq!(bounded(conn.recv()).await.unwrap(), None);
        bounded(
            conn.watch_state()
                .wait_for(|s| *s == ConnectionState::Disconnected),
        )
        .await
        .unwrap();

        // The client closes: the server's connection ends cleanly.
        let mut conn = bounded(transport_adaptive::connect(client_config(&server, &[kind])))
            .await
            .unwrap();
        let (mut server_conn, _) = bounded(server.accept()).await.unwrap();
        round_trip_via(&mut conn, &mut server_conn).await;
        bounded(conn.close(1000, "bye")).await.unwrap();
        assert_eq!(bounded(server_conn.recv()).await.unwrap(), None);
    }
    // Ended sessions leave the table.
    for _ in 0..100 {
        if server.sessions().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(server.sessions().is_empty());
    bounded(server.shutdown()).await;
}

async fn round_trip_via(
    client: &mut transport_adaptive::AdaptiveConnection,
    server: &mut transport_core::Connection,
) {
    client.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        bounded(server.recv()).await.unwrap(),
        Some(Message::text("ping"))
    );
    server.send(Message::text("pong")).await.unwrap();
    assert_eq!(
        bounded(client.recv()).await.unwrap(),
        Some(Message::text("pong"))
    );
}
