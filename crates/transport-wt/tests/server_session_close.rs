//! Session close through the CONNECT stream, our client against our server: the client's
//! CLOSE_WEBTRANSPORT_SESSION reaches the server with its code and reason (also as a message
//! connection's close frame), and the server's close, drop and shutdown reach the client as
//! capsules with their code and reason (cut to the draft's 1024 bytes).

mod client_common;

use std::time::Duration;

use client_common::{bounded, pinned, server};
use tokio::io::AsyncWriteExt as _;
use transport_core::{CloseFrame, Transport as _, TransportConfig, TransportError};
use transport_wt::{
    H3_NO_ERROR, SessionClose, StreamConfig, WtServer, WtServerConfig, WtServerSession, WtSession,
    connect,
};

/// A client session, the server's side of it, and the server (keep it alive).
async fn pair() -> (WtSession, WtServerSession, WtServer) {
    let (mut srv, cert) = server(WtServerConfig::default());
    let url = srv.url();
    let accept = tokio::spawn(async move {
        let (session, _) = srv.accept_session().await.unwrap();
        (session, srv)
    });
    let client = bounded(connect(&url, pinned(&cert))).await.unwrap();
    let (server_session, srv) = bounded(accept).await.unwrap();
    (client, server_session, srv)
}

#[tokio::test]
async fn the_server_sees_the_clients_code_and_reason() {
    let (client, server, _srv) = pair().await;
    let reason = "é".repeat(400);
    bounded(client.close(0xdead_beef, &reason)).await.unwrap();
    // The full 32-bit code and the reason, losslessly.
    assert_eq!(
        bounded(server.session_closed()).await,
        SessionClose::Peer {
            code: 0xdead_beef,
            reason: reason.clone()
        }
    );
    assert!(matches!(
        bounded(server.accept_bi()).await,
        Err(TransportError::ClosedByPeer { code: u16::MAX, .. })
    ));
    assert!(server.open_uni().await.is_err());
}

#[tokio::test]
async fn the_client_sees_the_servers_code_and_reason() {
    let (client, server, _srv) = pair().await;
    // 700 two-byte characters: cut to 512 of them, 1024 bytes.
    server.close(4242, &"é".repeat(700));
    assert_eq!(
        bounded(client.closed()).await,
        SessionClose::Peer {
            code: 4242,
            reason: "é".repeat(512)
        }
    );
    assert_eq!(
        bounded(server.session_closed()).await,
        SessionClose::Local {
            code: 4242,
            reason: "é".repeat(512)
        }
    );
    assert_eq!(bounded(server.closed()).await, TransportError::Closed);
    // Closing again changes nothing.
    server.close(1, "again");
    assert!(matches!(
        server.session_closed().await,
        SessionClose::Local { code: 4242, .. }
    ));
}

#[tokio::test]
async fn dropping_the_server_session_sends_code_zero() {
    let (client, server, _srv) = pair().await;
    drop(server);
    assert_eq!(
        bounded(client.closed()).await,
        SessionClose::Peer {
            code: 0,
            reason: String::new()
        }
    );
}

#[tokio::test]
async fn shutdown_sends_the_close_capsule() {
    let mut config = WtServerConfig::default();
    config.transport.close_timeout = Duration::from_secs(2);
    let (mut srv, cert) = server(config);
    let url = srv.url();
    let accept = tokio::spawn(async move {
        let (session, _) = srv.accept_session().await.unwrap();
        (session, srv)
    });
    let client = bounded(connect(&url, pinned(&cert))).await.unwrap();
    let (session, srv) = bounded(accept).await.unwrap();
    let started = std::time::Instant::now();
    bounded(srv.shutdown()).await;
    // Our client closes the connection on the capsule: no waiting for the close timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        bounded(client.closed()).await,
        SessionClose::Peer {
            code: H3_NO_ERROR,
            reason: "server shutting down".into()
        }
    );
    assert_eq!(
        bounded(session.session_closed()).await,
        SessionClose::Local {
            code: H3_NO_ERROR,
            reason: "server shutting down".into()
        }
    );
}

#[tokio::test]
async fn drain_leaves_the_session_open() {
    let (client, server, _srv) = pair().await;
    assert!(!client.drain_requested());
    server.drain();
    bounded(client.drain_received()).await;
    assert!(client.drain_requested());
    assert!(!server.drain_requested());
    // Still usable both ways.
    let mut uni = bounded(server.open_uni()).await.unwrap();
    uni.write_all(b"after drain").await.unwrap();
    uni.shutdown().await.unwrap();
    let mut recv = bounded(client.accept_uni()).await.unwrap();
    let got = bounded(recv.read_to_end(64)).await.unwrap();
    assert_eq!(got, b"after drain");
    bounded(client.close(0, "")).await.unwrap();
    assert_eq!(
        bounded(server.session_closed()).await,
        SessionClose::Peer {
            code: 0,
            reason: String::new()
        }
    );
}

/// A raw client session closed with a capsule ends the server's message connection with that
/// code and reason, as a close frame would.
#[tokio::test]
async fn a_message_connection_gets_the_session_close_as_its_close_frame() {
    let (client, server, _srv) = pair().await;
    let (mut send, _recv) = bounded(client.open_bi()).await.unwrap();
    // Open the message stream for real: the server waits for its first bytes.
    send.write_all(&[]).await.unwrap();
    let mut transport = TransportConfig::default();
    transport.close_timeout = Duration::from_secs(2);
    let connecting = tokio::spawn(async move {
        server
            .into_connection(&transport, StreamConfig::default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bounded(client.close(4003, "raw bye")).await.unwrap();
    let mut conn = bounded(connecting).await.unwrap().unwrap();
    assert_eq!(
        bounded(conn.recv()).await,
        Err(TransportError::ClosedByPeer {
            code: 4003,
            reason: "raw bye".into()
        })
    );
    assert_eq!(
        conn.peer_close_frame(),
        Some(CloseFrame::new(4003, "raw bye"))
    );
}
