//! Reliable unordered mode (a unidirectional stream per message) and unreliable mode (a
//! datagram per message, capped by the datagram size).

mod transport_common;

use std::collections::HashSet;

use transport_common::{AbortOnDrop, accepting, bounded, client, echoing, server_transport};
use transport_core::{Message, Transport, TransportError};
use transport_wt::{CongestionControl, Ordering, Reliability, StreamConfig, connect_transport};

#[tokio::test]
async fn unordered_mode_delivers_every_message() {
    let mut stream = StreamConfig::default();
    stream
        .ordering(Ordering::Unordered)
        .congestion_control(CongestionControl::NewReno)
        .priority(3);
    let (url, cert, server) = echoing(stream);
    let _server = AbortOnDrop(server);
    let mut conn = bounded(connect_transport(&url, client(&cert, stream)))
        .await
        .unwrap();
    let sent: HashSet<String> = (0..200).map(|i| format!("unordered {i}")).collect();
    for text in &sent {
        conn.send(Message::text(text.clone())).await.unwrap();
    }
    conn.send(Message::binary(vec![9u8; 100_000]))
        .await
        .unwrap();
    let mut got = HashSet::new();
    let mut big = false;
    while got.len() < sent.len() || !big {
        let m = bounded(conn.recv()).await.unwrap().unwrap();
        if let Some(text) = m.as_text() {
            assert!(got.insert(text.to_owned()), "duplicate {text}");
        } else {
            assert_eq!(m, Message::binary(vec![9u8; 100_000]));
            big = true;
        }
    }
    assert_eq!(got, sent);
    assert_eq!(conn.stats().messages_received, 201);
    bounded(conn.close(1000, "")).await.unwrap();
}

#[tokio::test]
async fn unreliable_mode_uses_datagrams_within_their_size() {
    let mut stream = StreamConfig::default();
    stream
        .reliability(Reliability::Unreliable)
        .congestion_control(CongestionControl::Bbr);
    let (url, cert, server) = echoing(stream);
    let _server = AbortOnDrop(server);
    let mut conn = bounded(connect_transport(&url, client(&cert, stream)))
        .await
        .unwrap();
    // Loopback loses nothing in practice; wait for each echo before the next.
    for i in 0..20 {
        let m = if i % 2 == 0 {
            Message::text(format!("datagram {i}"))
        } else {
            Message::binary(vec![u8::try_from(i).unwrap(); 1000])
        };
        conn.send(m.clone()).await.unwrap();
        assert_eq!(bounded(conn.recv()).await.unwrap(), Some(m));
    }
    match conn.send(Message::binary(vec![0u8; 2000])).await {
        Err(TransportError::MessageTooLarge { size, limit }) => {
            assert_eq!(size, 2000);
            assert!(limit > 1000 && limit < 1500, "datagram limit {limit}");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // The connection is still fine.
    conn.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("still here"))
    );
    bounded(conn.close(1000, "")).await.unwrap();
}

#[tokio::test]
async fn modes_may_differ_between_the_sides() {
    // The server sends on its message stream, the client in datagrams: each receives both.
    let (url, cert, mut accepted, task) = accepting(server_transport(), StreamConfig::default());
    let _task = AbortOnDrop(task);
    let mut stream = StreamConfig::default();
    stream.reliability(Reliability::Unreliable);
    let mut conn = bounded(connect_transport(&url, client(&cert, stream)))
        .await
        .unwrap();
    let mut server = bounded(accepted.recv()).await.unwrap();
    conn.send(Message::text("a datagram")).await.unwrap();
    assert_eq!(
        bounded(server.recv()).await.unwrap(),
        Some(Message::text("a datagram"))
    );
    // Larger than a datagram: the client's send limit, not its receive limit.
    let big = Message::binary(vec![5u8; 10_000]);
    server.send(big.clone()).await.unwrap();
    assert_eq!(bounded(conn.recv()).await.unwrap(), Some(big));
    bounded(conn.close(1000, "")).await.unwrap();
}
