//! Typed errors: a message over `max_message_size` (refused by `send`, and fatal when it
//! arrives: close 1009), invalid UTF-8 in a text message (close 1007), an unknown frame type
//! (close 1002).

mod transport_common;

use transport_common::{AbortOnDrop, accepting, bounded, client, server_transport};
use transport_core::{ConnectionState, Message, Transport, TransportError};
use transport_wt::{StreamConfig, connect, connect_transport};

#[tokio::test]
async fn a_message_over_the_limit_is_refused_and_fails_the_receiver() {
    let mut transport = server_transport();
    transport.max_message_size = 1000;
    let (url, cert, mut accepted, task) = accepting(transport, StreamConfig::default());
    let _task = AbortOnDrop(task);
    let mut config = client(&cert, StreamConfig::default());
    config.client.transport.reconnect.enabled = false;
    let mut conn = bounded(connect_transport(&url, config)).await.unwrap();
    let mut server = bounded(accepted.recv()).await.unwrap();

    // Sending over the local limit fails at once.
    assert_eq!(
        server.send(Message::binary(vec![0u8; 1001])).await,
        Err(TransportError::MessageTooLarge {
            size: 1001,
            limit: 1000
        })
    );
    // Receiving over the limit fails the connection, and tells the peer (1009).
    conn.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    assert_eq!(
        bounded(server.recv()).await,
        Err(TransportError::MessageTooLarge {
            size: 2000,
            limit: 1000
        })
    );
    assert_eq!(bounded(server.recv()).await, Ok(None));
    assert_eq!(
        bounded(conn.recv()).await,
        Err(TransportError::ClosedByPeer {
            code: 1009,
            reason: String::new()
        })
    );
    let mut states = conn.watch_state();
    bounded(states.wait_for(|s| *s == ConnectionState::Disconnected))
        .await
        .unwrap();
}

/// Writes raw bytes on a raw session's first bidirectional stream and returns what the
/// server's adapter answers, up to the end of the stream.
async fn raw_exchange(bytes: &[u8]) -> (Vec<u8>, Result<Option<Message>, TransportError>) {
    let (url, cert, mut accepted, task) = accepting(server_transport(), StreamConfig::default());
    let _task = AbortOnDrop(task);
    let session = bounded(connect(&url, client(&cert, StreamConfig::default()).client))
        .await
        .unwrap();
    let (mut send, mut recv) = bounded(session.open_bi()).await.unwrap();
    let mut server = bounded(accepted.recv()).await.unwrap();
    send.write_all(bytes).await.unwrap();
    let answer = bounded(recv.read_to_end(1024)).await.unwrap();
    let error = bounded(server.recv()).await;
    (answer, error)
}

#[tokio::test]
async fn invalid_utf8_text_is_a_typed_error() {
    let (answer, error) = raw_exchange(&[0x01, 2, 0xff, 0xfe]).await;
    assert_eq!(error, Err(TransportError::InvalidUtf8 { valid_up_to: 0 }));
    // A close frame with 1007 (0x03ef), empty reason, then the end of the stream.
    assert_eq!(answer, [0x03, 0x03, 0xef, 0]);
}

#[tokio::test]
async fn an_unknown_frame_type_is_a_protocol_violation() {
    let (answer, error) = raw_exchange(&[0x07, 0]).await;
    assert!(
        matches!(error, Err(TransportError::ProtocolViolation { .. })),
        "{error:?}"
    );
    assert_eq!(answer, [0x03, 0x03, 0xea, 0]);
}
