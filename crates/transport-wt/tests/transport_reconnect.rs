//! The client reconnects (a new session, a new message stream) when the server drops the
//! session without the close handshake: Connected → Reconnecting → Connected.

mod transport_common;

use std::time::Duration;

use transport_common::{AbortOnDrop, bounded, client, server, server_transport};
use transport_core::{ConnectionState, Message, Transport};
use transport_wt::{H3_NO_ERROR, StreamConfig, connect_transport};

#[tokio::test]
async fn reconnects_after_the_server_drops_the_session() {
    let (mut server, cert) = server();
    let url = server.url();
    let task = tokio::spawn(async move {
        // First session: wait for its message stream, then drop it without a close frame.
        let (session, _) = server.accept_session().await.unwrap();
        let stream = session.accept_bi().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        session.close(H3_NO_ERROR, "gone");
        drop(stream);
        // Second session: an echo through the adapter.
        let (mut conn, _) = server
            .accept_transport(&server_transport(), StreamConfig::default())
            .await
            .unwrap();
        while let Ok(Some(m)) = conn.recv().await {
            conn.send(m).await.unwrap();
        }
    });
    let _task = AbortOnDrop(task);

    let mut conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    let mut states = conn.watch_state();
    bounded(states.wait_for(|s| *s == ConnectionState::Reconnecting))
        .await
        .unwrap();
    bounded(states.wait_for(|s| *s == ConnectionState::Connected))
        .await
        .unwrap();
    conn.send(Message::text("after the reconnect"))
        .await
        .unwrap();
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("after the reconnect"))
    );
    assert_eq!(conn.stats().reconnects, 1);
    bounded(conn.close(1000, "")).await.unwrap();
}
