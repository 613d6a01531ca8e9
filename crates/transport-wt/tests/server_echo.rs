//! A session accepted with its request visible, then bidi, uni and datagram echo against an
//! independent client (the `wtransport` crate), which trusts the server by certificate hash.

mod server_common;

use std::time::Duration;

use server_common::{LIMIT, bounded, connect, server};
use tokio::io::AsyncReadExt;
use transport_wt::{CongestionControl, WtServerConfig, echo};

#[tokio::test]
async fn request_visible_then_bidi_uni_datagram_echo() {
    let (mut server, cert) = server(WtServerConfig::default());
    let url = format!("{}/echo?room=7", server.url());
    let client = tokio::spawn({
        let cert = cert.clone();
        async move {
            connect(
                &cert,
                &url,
                &[("x-token", "secret"), ("origin", "https://app.example")],
            )
            .await
        }
    });

    let incoming = bounded(server.accept()).await.unwrap();
    let request = incoming.request().clone();
    assert_eq!(request.path, "/echo");
    assert_eq!(request.query.as_deref(), Some("room=7"));
    assert_eq!(request.headers["x-token"], "secret");
    assert_eq!(request.origin.as_deref(), Some("https://app.example"));
    assert!(request.peer_addr.ip().is_loopback());
    let (session, same) = bounded(incoming.accept()).await.unwrap();
    assert_eq!(same.path, "/echo");
    assert!(session.max_datagram_size().unwrap() > 1000);
    let echoing = tokio::spawn(echo(session));

    let conn = bounded(client).await.unwrap().unwrap();

    // Bidirectional: small, then larger than any window, echoed on the same stream.
    for size in [5usize, 300_000] {
        let payload = pattern(size);
        let back = bidi_echo(&conn, &payload).await;
        assert_eq!(back.len(), payload.len());
        assert!(back == payload, "bidi echo differs at size {size}");
    }

    // Unidirectional: echoed on a new unidirectional stream.
    let mut send = bounded(async { conn.open_uni().await.unwrap().await.unwrap() }).await;
    send.write_all(b"one way").await.unwrap();
    send.finish().await.unwrap();
    let mut recv = bounded(conn.accept_uni()).await.unwrap();
    let mut back = Vec::new();
    bounded(recv.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"one way");

    // Datagrams: unreliable, so retried a few times.
    let mut echoed = None;
    for _ in 0..10 {
        conn.send_datagram(b"ping".as_slice()).unwrap();
        if let Ok(d) =
            tokio::time::timeout(Duration::from_millis(500), conn.receive_datagram()).await
        {
            echoed = Some(d.unwrap().payload().to_vec());
            break;
        }
    }
    assert_eq!(echoed.as_deref(), Some(b"ping".as_slice()));

    // The client closes: echo ends cleanly.
    conn.close(0u32.into(), b"bye");
    let ended = tokio::time::timeout(LIMIT, echoing).await.unwrap().unwrap();
    assert_eq!(ended, Ok(()));
    assert_eq!(server.open_sessions(), 0);
    bounded(server.shutdown()).await;
}

/// The server's congestion controller is configurable (per endpoint); BBR and NewReno carry a
/// stream larger than the initial window.
#[tokio::test]
async fn echo_with_each_congestion_controller() {
    for cc in [CongestionControl::Bbr, CongestionControl::NewReno] {
        let mut config = WtServerConfig::default();
        config.congestion_control(cc);
        let (mut server, cert) = server(config);
        let url = format!("{}/cc", server.url());
        let client = tokio::spawn(async move { connect(&cert, &url, &[]).await });
        let (session, _) =
            bounded(async { server.accept().await.unwrap().accept().await.unwrap() }).await;
        let echoing = tokio::spawn(echo(session));
        let conn = bounded(client).await.unwrap().unwrap();
        let payload = pattern(200_000);
        let back = bidi_echo(&conn, &payload).await;
        assert!(back == payload, "{cc:?}");
        drop(conn);
        let _ = bounded(echoing).await;
    }
}

/// `size` bytes of a pattern that does not repeat on power-of-two boundaries.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

/// Sends `payload` on a new bidirectional stream, finishes it, and reads everything that comes
/// back on it (writing and reading at once, so a payload larger than the windows gets through).
async fn bidi_echo(conn: &wtransport::Connection, payload: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) =
        bounded(async { conn.open_bi().await.unwrap().await.unwrap() }).await;
    let writer = async move {
        send.write_all(payload).await.unwrap();
        send.finish().await.unwrap();
    };
    let mut back = Vec::new();
    let reader = recv.read_to_end(&mut back);
    let ((), read) = bounded(async { tokio::join!(writer, reader) }).await;
    read.unwrap();
    back
}
