//! The in-memory transport and the generic driver: messages, close handshakes, backpressure,
//! split + Stream/Sink, reconnect with state changes, giving up.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use transport_core::memory;
use transport_core::{
    ConnectionState, Connector, Message, ReconnectPolicy, Transport, TransportConfig,
    TransportError, TrySendError,
};

const LIMIT: Duration = Duration::from_secs(10);

fn config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.buffers(4, 4);
    c.close_timeout = Duration::from_secs(2);
    c
}

fn fast_reconnect() -> ReconnectPolicy {
    let mut p = ReconnectPolicy::default();
    p.delays(Duration::from_millis(5), Duration::from_millis(20));
    p
}

async fn wait_state(t: &impl Transport, want: ConnectionState) {
    let mut rx = t.watch_state();
    tokio::time::timeout(LIMIT, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("state {want} not reached, still {}", t.state()))
        .unwrap();
}

#[tokio::test]
async fn messages_flow_both_ways_in_order() {
    let (a, mut b) = memory::pair(&config());
    assert_eq!(a.state(), ConnectionState::Connected);
    let sender = a.sender();
    let task = tokio::spawn(async move {
        for i in 0..100 {
            sender.send(Message::text(format!("m{i}"))).await.unwrap();
        }
    });
    for i in 0..100 {
        let m = b.recv().await.unwrap().unwrap();
        assert_eq!(m.as_text(), Some(format!("m{i}").as_str()));
    }
    task.await.unwrap();
    b.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let mut a = a;
    assert_eq!(
        a.recv().await.unwrap(),
        Some(Message::binary(vec![1, 2, 3]))
    );
}

#[tokio::test]
async fn normal_close_ends_both_sides_cleanly() {
    let (a, mut b) = memory::pair(&config());
    a.send(Message::text("last")).await.unwrap();
    a.close(1000, "done").await.unwrap();
    assert_eq!(a.state(), ConnectionState::Disconnected);
    assert_eq!(b.recv().await.unwrap(), Some(Message::text("last")));
    assert_eq!(b.recv().await.unwrap(), None);
    assert_eq!(b.peer_close_frame().unwrap().reason, "done");
    wait_state(&b, ConnectionState::Disconnected).await;
    assert_eq!(
        a.send(Message::text("late")).await,
        Err(TransportError::Closed)
    );
}

#[tokio::test]
async fn close_with_error_code_surfaces_to_the_peer() {
    let (a, mut b) = memory::pair(&config());
    a.close(4001, "kicked").await.unwrap();
    assert_eq!(
        b.recv().await,
        Err(TransportError::ClosedByPeer {
            code: 4001,
            reason: "kicked".into()
        })
    );
    assert_eq!(b.recv().await.unwrap(), None);
}

#[tokio::test]
async fn invalid_close_codes_and_reasons_are_refused() {
    let (a, _b) = memory::pair(&config());
    assert!(matches!(
        a.close(1006, "").await,
        Err(TransportError::InvalidConfig(_))
    ));
    assert!(matches!(
        a.close(1000, &"x".repeat(124)).await,
        Err(TransportError::InvalidConfig(_))
    ));
    assert_eq!(a.state(), ConnectionState::Connected);
}

#[tokio::test]
async fn oversized_sends_are_refused_before_queueing() {
    let mut c = config();
    c.max_message_size(8);
    let (a, _b) = memory::pair(&c);
    assert_eq!(
        a.send(Message::binary(vec![0; 9])).await,
        Err(TransportError::MessageTooLarge { size: 9, limit: 8 })
    );
    a.send(Message::binary(vec![0; 8])).await.unwrap();
}

#[tokio::test]
async fn slow_reader_applies_backpressure() {
    let (a, mut b) = memory::pair(&config());
    // Queues: a's send queue (4) + link (4) + b's receive queue (4) + one in flight per driver.
    // Fill until the queues stay full even after the drivers had time to move messages on.
    let mut queued = 0;
    let mut full_in_a_row = 0;
    while full_in_a_row < 5 && queued < 100 {
        match a.try_send(Message::text(format!("{queued}"))) {
            Ok(()) => {
                queued += 1;
                full_in_a_row = 0;
            }
            Err(TrySendError::Full(_)) => {
                full_in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        queued < 30,
        "sends must block when nobody reads, queued {queued}"
    );
    for i in 0..queued {
        assert_eq!(
            b.recv().await.unwrap().unwrap().as_text(),
            Some(format!("{i}").as_str())
        );
    }
}

#[tokio::test]
async fn an_echoing_peer_and_a_pumping_sender_never_wait_on_each_other() {
    // Far more messages in flight than every queue and link together hold. A driver that
    // stopped reading its link while a send waited for room (or stopped taking sends while a
    // delivery waited) would close a cycle: the echo waits on its own send, its driver on the
    // echo, the sender's driver on the echo's driver, and nobody reads the echoes.
    let (a, mut b) = memory::pair(&TransportConfig::default());
    let echo = tokio::spawn(async move {
        while let Ok(Some(m)) = b.recv().await {
            if b.send(m).await.is_err() {
                break;
            }
        }
    });
    let (tx, mut rx) = a.split();
    let count = 20_000_u32;
    let pump = tokio::spawn(async move {
        for i in 0..count {
            tx.send(Message::binary(i.to_be_bytes().to_vec())).await?;
        }
        Ok::<_, TransportError>(tx)
    });
    let echoed = async {
        for i in 0..count {
            let m = rx.recv().await.unwrap().unwrap();
            assert_eq!(m.as_bytes(), i.to_be_bytes());
        }
    };
    tokio::time::timeout(LIMIT, echoed)
        .await
        .expect("every message echoed");
    let tx = pump.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
    echo.await.unwrap();
}

#[tokio::test]
async fn split_with_stream_and_sink() {
    let (a, b) = memory::pair(&config());
    let (tx, _rx) = a.split();
    let (_btx, mut brx) = b.split();
    let mut sink = tx.clone().into_sink();
    sink.send(Message::text("one")).await.unwrap();
    sink.send(Message::text("two")).await.unwrap();
    tx.close(1000, "").await.unwrap();
    let got: Vec<_> = (&mut brx).map(|m| m.unwrap()).collect().await;
    assert_eq!(got, vec![Message::text("one"), Message::text("two")]);
}

#[tokio::test]
async fn dropping_all_handles_closes_gracefully() {
    let (a, mut b) = memory::pair(&config());
    drop(a);
    assert_eq!(
        tokio::time::timeout(LIMIT, b.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn reconnects_after_a_drop_and_reports_states() {
    let mut c = config();
    c.reconnect(fast_reconnect());
    let (connector, mut listener) = memory::endpoint(&c);
    let (conn, server) = tokio::join!(connector.connect(), listener.accept());
    let mut conn = conn.unwrap();
    let mut server = server.unwrap();
    conn.send(Message::text("before")).await.unwrap();
    assert_eq!(server.recv().await.unwrap(), Some(Message::text("before")));

    let mut states = conn.watch_state();
    listener.sever_all();
    assert!(
        server.recv().await.is_err(),
        "server side sees the link drop"
    );
    let mut server = tokio::time::timeout(LIMIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    states.changed().await.unwrap();
    let seen = *states.borrow_and_update();
    assert!(matches!(
        seen,
        ConnectionState::Reconnecting | ConnectionState::Connected
    ));
    wait_state(&conn, ConnectionState::Connected).await;

    conn.send(Message::text("after")).await.unwrap();
    assert_eq!(server.recv().await.unwrap(), Some(Message::text("after")));
    server.send(Message::text("back")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some(Message::text("back")));
}

#[tokio::test]
async fn gives_up_and_fails_when_the_server_stays_away() {
    let mut c = config();
    let mut policy = fast_reconnect();
    policy.max_attempts(Some(3));
    c.reconnect(policy);
    let (connector, mut listener) = memory::endpoint(&c);
    let (conn, server) = tokio::join!(connector.connect(), listener.accept());
    let mut conn = conn.unwrap();
    drop(server);
    listener.refuse(true);
    listener.sever_all();
    let err = tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionFailed { .. }),
        "{err}"
    );
    wait_state(&conn, ConnectionState::Failed).await;
    assert_eq!(conn.recv().await.unwrap(), None);
    // A new connect replaces a failed connection.
    listener.refuse(false);
    let (again, _server) = tokio::join!(connector.connect(), listener.accept());
    assert_eq!(again.unwrap().state(), ConnectionState::Connected);
}

#[tokio::test]
async fn close_while_reconnecting_ends_in_disconnected() {
    let mut c = config();
    let mut policy = fast_reconnect();
    policy.delays(Duration::from_millis(200), Duration::from_millis(500));
    c.reconnect(policy);
    let (connector, mut listener) = memory::endpoint(&c);
    let (conn, _server) = tokio::join!(connector.connect(), listener.accept());
    let conn = conn.unwrap();
    listener.refuse(true);
    listener.sever_all();
    wait_state(&conn, ConnectionState::Reconnecting).await;
    conn.close(1000, "bye").await.unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn sends_while_reconnecting_are_delivered_after() {
    let mut c = config();
    let mut policy = fast_reconnect();
    policy.delays(Duration::from_millis(100), Duration::from_millis(100));
    c.reconnect(policy);
    let (connector, mut listener) = memory::endpoint(&c);
    let (conn, _server) = tokio::join!(connector.connect(), listener.accept());
    let conn = conn.unwrap();
    listener.sever_all();
    wait_state(&conn, ConnectionState::Reconnecting).await;
    conn.send(Message::text("queued-1")).await.unwrap();
    conn.send(Message::text("queued-2")).await.unwrap();
    let mut server = tokio::time::timeout(LIMIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server.recv().await.unwrap(),
        Some(Message::text("queued-1"))
    );
    assert_eq!(
        server.recv().await.unwrap(),
        Some(Message::text("queued-2"))
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    fn is_send<T: Send>() {}
    is_send_sync::<transport_core::Connection>();
    is_send_sync::<transport_core::Sender>();
    is_send_sync::<transport_core::Receiver>();
    is_send::<transport_core::SenderSink>();
    is_send_sync::<TransportError>();
    is_send_sync::<memory::MemoryConnector>();
}

#[tokio::test]
async fn stats_count_messages_bytes_and_reconnects() {
    let mut c = config();
    c.reconnect(fast_reconnect());
    let (connector, mut listener) = memory::endpoint(&c);
    let (conn, server) = tokio::join!(connector.connect(), listener.accept());
    let mut conn = conn.unwrap();
    let mut server = server.unwrap();
    conn.send(Message::text("four")).await.unwrap();
    conn.send(Message::binary(vec![0; 10])).await.unwrap();
    server.recv().await.unwrap();
    server.recv().await.unwrap();
    server.send(Message::text("abc")).await.unwrap();
    conn.recv().await.unwrap();
    let s = conn.stats();
    assert_eq!((s.messages_sent, s.bytes_sent), (2, 14));
    assert_eq!((s.messages_received, s.bytes_received), (1, 3));
    assert_eq!(server.stats().messages_received, 2);
    assert_eq!(s.reconnects, 0);
    listener.sever_all();
    let _server = tokio::time::timeout(LIMIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    wait_state(&conn, ConnectionState::Connected).await;
    let mut tries = 0;
    while conn.stats().reconnects == 0 && tries < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tries += 1;
    }
    assert_eq!(conn.stats().reconnects, 1);
    assert!(conn.stats().connected_for > Duration::ZERO);
}
