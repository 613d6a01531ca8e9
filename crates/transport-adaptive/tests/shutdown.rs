//! `shutdown` ends sessions (clients see why and stop reconnecting); `shutdown_for_restart`
//! keeps them for a server bound later.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, client_config, round_trip, server, spawn_echo};
use transport_adaptive::TransportKind;
use transport_core::{ConnectionState, Message, Transport, TransportError};

#[tokio::test]
async fn shutdown_ends_every_session_with_a_code_the_client_sees() {
    for kind in [
        TransportKind::WebTransport,
        TransportKind::WebSocket,
        TransportKind::Sse,
    ] {
        let server = Arc::new(server().await);
        let mut conn = bounded(transport_adaptive::connect(client_config(&server, &[kind])))
            .await
            .unwrap();
        let (mut server_conn, _) = bounded(server.accept()).await.unwrap();
        round_trip_via(&mut conn, &mut server_conn).await;

        let started = Instant::now();
        bounded(server.shutdown()).await;
        let err = bounded(conn.recv()).await.unwrap_err();
        println!(
            "{kind}: client saw \"{err}\" {:?} after shutdown began",
            started.elapsed()
        );
        assert_eq!(
            err,
            TransportError::ClosedByPeer {
                code: 1001,
                reason: "server shutting down".into()
            }
        );
        // No reconnect: the connection has ended for good.
        assert_eq!(bounded(conn.recv()).await.unwrap(), None);
        assert!(
            matches!(
                conn.state(),
                ConnectionState::Disconnected | ConnectionState::Failed
            ),
            "{:?}",
            conn.state()
        );
        // The application's side of the session ended with the same code.
        let server_err = bounded(server_conn.recv()).await.unwrap_err();
        assert!(
            matches!(&server_err, TransportError::ClosedByPeer { code: 1001, .. }),
            "{server_err}"
        );
        assert!(server.sessions().is_empty());
    }
}

#[tokio::test]
async fn shutdown_ends_detached_sessions_too() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    // Sessions stay in the table when their link is gone (client away).
    let config = client_config(&server, &[TransportKind::WebSocket]);
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    round_trip(&mut conn, Message::text("x")).await;
    drop(conn);
    let table = server.sessions();
    assert_eq!(table.len(), 1);
    bounded(server.shutdown()).await;
    let mut waited = Duration::ZERO;
    while !table.is_empty() {
        assert!(
            waited < Duration::from_secs(5),
            "the session outlived the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
}

#[tokio::test]
async fn shutdown_for_restart_keeps_the_session() {
    let first = server().await;
    let mut conn = bounded(transport_adaptive::connect(client_config(
        &first,
        &[TransportKind::WebSocket],
    )))
    .await
    .unwrap();
    let (_server_conn, _) = bounded(first.accept()).await.unwrap();
    bounded(first.shutdown_for_restart()).await;
    // The client is reconnecting, not closed.
    bounded(
        conn.watch_state()
            .wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .unwrap();
    assert_eq!(first.sessions().len(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), conn.recv())
            .await
            .is_err(),
        "the connection ended"
    );
}

async fn round_trip_via(
    conn: &mut transport_adaptive::AdaptiveConnection,
    server_conn: &mut transport_core::Connection,
) {
    conn.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        bounded(server_conn.recv()).await.unwrap(),
        Some(Message::text("ping"))
    );
    server_conn.send(Message::text("pong")).await.unwrap();
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("pong"))
    );
}
