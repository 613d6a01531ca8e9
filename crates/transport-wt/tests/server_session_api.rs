//! The raw server-side session API beyond echo: streams and datagrams opened by the server,
//! a close with a code the client sees, and `Send`/`Sync` of the public handles and futures.

mod server_common;

use bytes::Bytes;
use server_common::{bounded, connect, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use transport_wt::{WtServer, WtServerConfig, WtServerSession};
use wtransport::error::ConnectionError;

fn assert_send_sync<T: Send + Sync>(_: &T) {}
fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn server_opens_streams_sends_datagrams_and_closes_with_a_code() {
    let (mut server, cert) = server(WtServerConfig::default());
    let url = format!("{}/api", server.url());
    let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
    let accept = server.accept();
    assert_send(&accept);
    let incoming = bounded(accept).await.unwrap();
    assert_send_sync(&incoming);
    let (session, _) = bounded(incoming.accept()).await.unwrap();
    assert_send_sync(&session);
    let conn = bounded(client).await.unwrap().unwrap();

    // Server-opened bidirectional stream: the client answers on it.
    let mut bi = bounded(session.open_bi()).await.unwrap();
    bi.write_all(b"question").await.unwrap();
    bi.shutdown().await.unwrap();
    let (mut send, mut recv) = bounded(conn.accept_bi()).await.unwrap();
    let mut got = Vec::new();
    bounded(recv.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"question");
    send.write_all(b"answer").await.unwrap();
    send.finish().await.unwrap();
    let mut answer = Vec::new();
    bounded(bi.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, b"answer");

    // Server-opened unidirectional stream.
    let mut uni = bounded(session.open_uni()).await.unwrap();
    uni.write_all(b"news").await.unwrap();
    uni.shutdown().await.unwrap();
    let mut recv = bounded(conn.accept_uni()).await.unwrap();
    let mut news = Vec::new();
    bounded(recv.read_to_end(&mut news)).await.unwrap();
    assert_eq!(news, b"news");

    // Client-opened unidirectional stream read by the server.
    let mut send = bounded(async { conn.open_uni().await.unwrap().await.unwrap() }).await;
    send.write_all(b"report").await.unwrap();
    send.finish().await.unwrap();
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    let mut report = Vec::new();
    bounded(recv.read_to_end(&mut report)).await.unwrap();
    assert_eq!(report, b"report");

    // Datagrams both ways; a datagram larger than allowed is a typed error.
    let max = session.max_datagram_size().unwrap();
    let too_big = Bytes::from(vec![0u8; max + 1]);
    assert!(matches!(
        session.send_datagram(too_big),
        Err(transport_core::TransportError::MessageTooLarge { .. })
    ));
    let mut received = None;
    for _ in 0..10 {
        session.send_datagram(Bytes::from_static(b"tick")).unwrap();
        if let Ok(d) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            conn.receive_datagram(),
        )
        .await
        {
            received = Some(d.unwrap().payload().to_vec());
            break;
        }
    }
    assert_eq!(received.as_deref(), Some(b"tick".as_slice()));
    let mut from_client = None;
    for _ in 0..10 {
        conn.send_datagram(b"tock".as_slice()).unwrap();
        if let Ok(d) = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            session.read_datagram(),
        )
        .await
        {
            from_client = Some(d.unwrap());
            break;
        }
    }
    assert_eq!(from_client.as_deref(), Some(b"tock".as_slice()));

    // Close with an application code: the client sees it (wtransport reads the
    // CLOSE_WEBTRANSPORT_SESSION capsule, reports it from its session calls and closes the
    // connection itself); the server side reports Closed.
    session.close(4000, "done");
    match bounded(conn.accept_bi()).await {
        Err(ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), wtransport::VarInt::from_u32(4000));
            assert_eq!(close.reason(), b"done");
        }
        other => panic!("unexpected close: {:?}", other.map(|_| ())),
    }
    assert_eq!(
        bounded(session.closed()).await,
        transport_core::TransportError::Closed
    );
    assert!(session.accept_uni().await.is_err());
    bounded(server.shutdown()).await;
}

#[test]
fn public_types_are_send_and_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<WtServer>();
    is_send_sync::<WtServerSession>();
    is_send_sync::<transport_wt::WtIncomingSession>();
    is_send_sync::<transport_wt::WtRequest>();
    is_send_sync::<transport_wt::WtServerConfig>();
    is_send_sync::<transport_wt::SessionClose>();
    is_send_sync::<transport_wt::WtBiStream>();
    is_send_sync::<transport_wt::WtSendStream>();
    is_send_sync::<transport_wt::WtRecvStream>();
}

/// The session's futures can move between tasks (compile-time check).
#[allow(dead_code)]
fn session_futures_are_send(session: &WtServerSession) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&session.accept_bi());
    is_send(&session.accept_uni());
    is_send(&session.open_bi());
    is_send(&session.open_uni());
    is_send(&session.read_datagram());
    is_send(&session.closed());
    is_send(&session.session_closed());
    is_send(&session.drain_received());
    is_send(&transport_wt::echo_session(session));
}
