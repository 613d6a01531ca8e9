//! The adapter's client against a raw echo server (`echo`): the framing is symmetric, so the
//! echoed bytes are the same messages, and the echoed close frame completes the close
//! handshake. In every sending mode.

mod transport_common;

use transport_common::{AbortOnDrop, bounded, client, raw_echo};
use transport_core::{ConnectionState, Message, Transport};
use transport_wt::{Ordering, Reliability, StreamConfig, connect_transport};

async fn round_trip(stream: StreamConfig) {
    let (url, cert, server) = raw_echo();
    let _server = AbortOnDrop(server);
    let mut conn = bounded(connect_transport(&url, client(&cert, stream)))
        .await
        .unwrap();
    for m in [
        Message::text("over a raw echo"),
        Message::binary(vec![1u8, 2, 3]),
    ] {
        conn.send(m.clone()).await.unwrap();
        assert_eq!(bounded(conn.recv()).await.unwrap(), Some(m));
    }
    bounded(conn.close(4002, "echoed")).await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn message_stream() {
    round_trip(StreamConfig::default()).await;
}

#[tokio::test]
async fn uni_streams() {
    let mut stream = StreamConfig::default();
    stream.ordering(Ordering::Unordered);
    round_trip(stream).await;
}

#[tokio::test]
async fn datagrams() {
    let mut stream = StreamConfig::default();
    stream.reliability(Reliability::Unreliable);
    round_trip(stream).await;
}
