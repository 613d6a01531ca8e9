//! Sends while reconnecting: held in a bounded buffer, then delivered exactly once; a full
//! buffer fails (`Error`) or waits (`Wait`), never drops.

mod common;

use std::time::Duration;

use common::{bounded, client_config, server_config};
use transport_adaptive::{AdaptiveServer, SendBufferPolicy, TransportKind};
use transport_core::{ConnectionState, Message, Transport, TransportError};

async fn plain_server(
    addr: &str,
    table: Option<transport_adaptive::SessionTable>,
) -> AdaptiveServer {
    let mut config = server_config();
    config.enable_wt = false;
    let addr = addr.parse().unwrap();
    match table {
        Some(t) => AdaptiveServer::bind_with_sessions(addr, config, t).await,
        None => AdaptiveServer::bind(addr, config).await,
    }
    .unwrap()
}

async fn run(policy: SendBufferPolicy) {
    let first = plain_server("127.0.0.1:0", None).await;
    let addr = first.local_addr();
    let mut config = client_config(&first, &[TransportKind::WebSocket]);
    config.send_buffer_policy(policy);
    config.transport.send_buffer = 4;
    let conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let (mut server_conn, _) = bounded(first.accept()).await.unwrap();
    conn.send(Message::text("0")).await.unwrap();
    assert_eq!(
        bounded(server_conn.recv()).await.unwrap(),
        Some(Message::text("0"))
    );

    // The server goes away: the client keeps trying (connections refused).
    let table = first.sessions();
    bounded(first.shutdown_for_restart()).await;
    drop(first);
    bounded(
        conn.watch_state()
            .wait_for(|s| *s == ConnectionState::Reconnecting),
    )
    .await
    .unwrap();

    let mut queued = 0u32;
    for i in 1..=100u32 {
        let sent = tokio::time::timeout(
            Duration::from_millis(200),
            conn.send(Message::text(i.to_string())),
        )
        .await;
        match (policy, sent) {
            (_, Ok(Ok(()))) => queued = i,
            (SendBufferPolicy::Error, Ok(Err(e))) => {
                assert_eq!(e, TransportError::NotConnected);
                break;
            }
            (SendBufferPolicy::Wait, Err(_elapsed)) => break,
            (p, other) => panic!("{p:?}: unexpected {other:?}"),
        }
    }
    println!("{policy:?}: {queued} sends held while reconnecting");
    // The buffer (4) plus the one message the driver holds while no link is up.
    assert!((4..=5).contains(&queued), "{queued}");

    // The server comes back with its sessions: everything held arrives, once, in order.
    let second = plain_server(&addr.to_string(), Some(table)).await;
    for i in 1..=queued {
        assert_eq!(
            bounded(server_conn.recv()).await.unwrap(),
            Some(Message::text(i.to_string()))
        );
    }
    conn.send(Message::text("after")).await.unwrap();
    assert_eq!(
        bounded(server_conn.recv()).await.unwrap(),
        Some(Message::text("after"))
    );
    bounded(second.shutdown()).await;
}

#[tokio::test]
async fn full_buffer_fails_with_the_error_policy() {
    run(SendBufferPolicy::Error).await;
}

#[tokio::test]
async fn full_buffer_waits_with_the_wait_policy() {
    run(SendBufferPolicy::Wait).await;
}
