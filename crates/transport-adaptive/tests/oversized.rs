//! A server-side message larger than the smallest link limit a session may use (SSE, base64)
//! is refused at `send` with a typed error; it never reaches a link, where it would break the
//! link on every replay.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{bounded, client_config, server};
use transport_adaptive::{AdaptiveServer, TransportKind, transport_sse};
use transport_core::{Message, Transport, TransportError};

/// The largest application message: 3/4 of the SSE client's line limit less `data: `, less
/// the session header (10 bytes).
const LIMIT: usize = (transport_sse::DEFAULT_MAX_EVENT_SIZE - 6) / 4 * 3 - 10;

async fn check(server: Arc<AdaptiveServer>, kind: TransportKind) {
    let mut conn = bounded(transport_adaptive::connect(client_config(&server, &[kind])))
        .await
        .unwrap();
    let (server_conn, _) = bounded(server.accept()).await.unwrap();

    let started = Instant::now();
    let err = bounded(server_conn.send(Message::binary(vec![7u8; LIMIT + 1])))
        .await
        .unwrap_err();
    println!(
        "{kind}: {} bytes refused in {:?}: {err}",
        LIMIT + 1,
        started.elapsed()
    );
    assert!(
        matches!(err, TransportError::MessageTooLarge { limit, .. } if limit == LIMIT),
        "{err}"
    );
    // The connection carries on; a message at the limit fits every link, SSE included.
    let at_limit = Message::binary(vec![7u8; LIMIT]);
    server_conn.send(at_limit.clone()).await.unwrap();
    assert_eq!(bounded(conn.recv()).await.unwrap(), Some(at_limit));
    server_conn.send(Message::text("after")).await.unwrap();
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("after"))
    );
    bounded(conn.close(1000, "")).await.unwrap();
}

#[tokio::test]
async fn an_oversized_server_send_fails_at_once_on_every_transport() {
    for kind in [
        TransportKind::Sse,
        TransportKind::WebSocket,
        TransportKind::WebTransport,
    ] {
        let server = Arc::new(server().await);
        check(server.clone(), kind).await;
        bounded(server.shutdown()).await;
    }
}
