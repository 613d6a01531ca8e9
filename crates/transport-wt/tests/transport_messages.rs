//! Our client and our server as `Transport`s over the message stream: text, binary, a 1 MiB
//! message, order, statistics, and the `Send`/`Sync` of the public types.

mod transport_common;

use transport_common::{AbortOnDrop, bounded, client, echoing};
use transport_core::{ConnectionState, Message, Transport};
use transport_wt::{StreamConfig, WtConnector, connect_transport};

#[tokio::test]
async fn text_binary_large_in_order_with_stats() {
    let (url, cert, server) = echoing(StreamConfig::default());
    let _server = AbortOnDrop(server);
    let mut conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    assert_eq!(conn.state(), ConnectionState::Connected);
    assert_eq!(conn.info().transport, "wt");
    assert!(conn.info().peer_addr.is_some());

    let large = Message::binary(
        (0..1 << 20)
            .map(|i: u32| u8::try_from(i % 251).unwrap())
            .collect::<Vec<u8>>(),
    );
    let mut sent = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        large,
    ];
    for i in 0..100 {
        sent.push(Message::text(format!("message {i}")));
    }
    for m in &sent {
        conn.send(m.clone()).await.unwrap();
    }
    for expected in &sent {
        let got = bounded(conn.recv()).await.unwrap().unwrap();
        assert_eq!(&got, expected);
    }

    let stats = conn.stats();
    assert_eq!(stats.messages_sent, 104);
    assert_eq!(stats.messages_received, 104);
    assert_eq!(stats.bytes_sent, stats.bytes_received);
    assert!(stats.bytes_sent > 1 << 20);
    assert!(stats.rtt.is_some(), "quinn's RTT is recorded");

    bounded(conn.close(1000, "done")).await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert_eq!(bounded(conn.recv()).await, Ok(None));
}

/// Sizes around the reader's buffer (16 KiB and a header): a frame that fits one read, one
/// that needs the buffer grown to its length, and small frames behind large ones in the same
/// read, all intact and in order.
#[tokio::test]
async fn sizes_around_the_read_buffer_arrive_intact() {
    let (url, cert, server) = echoing(StreamConfig::default());
    let _server = AbortOnDrop(server);
    let mut conn = bounded(connect_transport(
        &url,
        client(&cert, StreamConfig::default()),
    ))
    .await
    .unwrap();
    let sizes = [
        16_383, 1, 16_384, 0, 16_385, 16_392, 16_393, 16_394, 2, 40_000, 16_384, 3,
    ];
    let sent: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| {
            Message::binary(
                (0..size)
                    .map(|i| u8::try_from((i + n) % 251).unwrap())
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    // All queued at once (the echo's reads then hold several frames), then one at a time.
    for m in &sent {
        conn.send(m.clone()).await.unwrap();
    }
    for expected in &sent {
        assert_eq!(&bounded(conn.recv()).await.unwrap().unwrap(), expected);
    }
    for m in &sent {
        conn.send(m.clone()).await.unwrap();
        assert_eq!(&bounded(conn.recv()).await.unwrap().unwrap(), m);
    }
    bounded(conn.close(1000, "done")).await.unwrap();
}

#[tokio::test]
async fn the_connector_makes_independent_connections() {
    use transport_core::Connector;
    let (url, cert, server) = echoing(StreamConfig::default());
    let _server = AbortOnDrop(server);
    let connector = WtConnector::new(&url, client(&cert, StreamConfig::default())).unwrap();
    assert_eq!(connector.url(), url);
    let mut a = bounded(connector.connect()).await.unwrap();
    let mut b = bounded(connector.clone().connect()).await.unwrap();
    a.send(Message::text("a")).await.unwrap();
    b.send(Message::text("b")).await.unwrap();
    assert_eq!(bounded(a.recv()).await.unwrap(), Some(Message::text("a")));
    assert_eq!(bounded(b.recv()).await.unwrap(), Some(Message::text("b")));
    bounded(a.close(1000, "")).await.unwrap();
    bounded(b.close(1000, "")).await.unwrap();
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<WtConnector>();
    send_sync::<transport_wt::WtConfig>();
    send(&connect_transport(
        "https://localhost/",
        transport_wt::WtConfig::default(),
    ));
}

/// Compile-time only: the server-side futures can be spawned.
fn server_futures_are_send(
    server: &mut transport_wt::WtServer,
    session: transport_wt::WtServerSession,
) {
    fn send<T: Send>(_: T) {}
    let config = transport_core::TransportConfig::default();
    send(server.accept_transport(&config, StreamConfig::default()));
    send(session.into_connection(&config, StreamConfig::default()));
}

#[test]
fn server_futures_are_checked() {
    let _ = server_futures_are_send;
}

#[test]
fn bad_urls_are_refused() {
    for url in ["http://localhost/", "wss://localhost/", "not a url"] {
        assert!(
            matches!(
                WtConnector::new(url, transport_wt::WtConfig::default()),
                Err(transport_core::TransportError::InvalidUrl { .. })
            ),
            "{url}"
        );
    }
}
