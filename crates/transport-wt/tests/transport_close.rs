//! The close handshake both ways: code and reason reach the other side, both end
//! `Disconnected`, and a normal close (1000) is a clean end of the stream.

mod transport_common;

use transport_common::{AbortOnDrop, accepting, bounded, client, server_transport};
use transport_core::{CloseFrame, ConnectionState, Message, Transport, TransportError};
use transport_wt::{StreamConfig, connect_transport};

#[tokio::test]
async fn client_closes_with_code_and_reason() {
    let (url, cert, mut accepted, task) = accepting(server_transport(), StreamConfig::default());
    let _task = AbortOnDrop(task);
    let conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    let mut server = bounded(accepted.recv()).await.unwrap();
    conn.send(Message::text("before the close")).await.unwrap();
    bounded(conn.close(4000, "client bye")).await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);

    assert_eq!(
        bounded(server.recv()).await.unwrap(),
        Some(Message::text("before the close"))
    );
    assert_eq!(
        bounded(server.recv()).await,
        Err(TransportError::ClosedByPeer {
            code: 4000,
            reason: "client bye".into()
        })
    );
    assert_eq!(bounded(server.recv()).await, Ok(None));
    assert_eq!(
        server.peer_close_frame(),
        Some(CloseFrame::new(4000, "client bye"))
    );
    assert_eq!(server.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn server_closes_with_code_and_reason() {
    let (url, cert, mut accepted, task) = accepting(server_transport(), StreamConfig::default());
    let _task = AbortOnDrop(task);
    let mut conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    let server = bounded(accepted.recv()).await.unwrap();
    server.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    bounded(server.close(4001, "server bye")).await.unwrap();
    assert_eq!(server.state(), ConnectionState::Disconnected);

    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::binary(vec![1, 2, 3]))
    );
    assert_eq!(
        bounded(conn.recv()).await,
        Err(TransportError::ClosedByPeer {
            code: 4001,
            reason: "server bye".into()
        })
    );
    assert_eq!(bounded(conn.recv()).await, Ok(None));
    assert_eq!(
        conn.peer_close_frame(),
        Some(CloseFrame::new(4001, "server bye"))
    );
    // A close the application asked for is not a reason to reconnect.
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert_eq!(conn.stats().reconnects, 0);
}

#[tokio::test]
async fn a_normal_close_ends_the_stream_cleanly() {
    let (url, cert, mut accepted, task) = accepting(server_transport(), StreamConfig::default());
    let _task = AbortOnDrop(task);
    let mut conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    let server = bounded(accepted.recv()).await.unwrap();
    bounded(server.close(1000, "")).await.unwrap();
    assert_eq!(bounded(conn.recv()).await, Ok(None));
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert_eq!(
        conn.send(Message::text("late")).await,
        Err(TransportError::Closed)
    );
}
