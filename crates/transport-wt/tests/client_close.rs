//! Ending a session: the client's close reaches the server with its code, the server's close
//! reaches the client with its code, server-opened streams, and an idle timeout.

mod client_common;

use std::time::Duration;

use client_common::{bounded, pinned, server};
use transport_core::TransportError;
use transport_wt::{
    SessionClose, WtClientConfig, WtServer, WtServerConfig, WtServerSession, WtSession, connect,
};

/// A client session, the server's side of it, and the server (keep it alive).
async fn pair(config: impl FnOnce(&mut WtClientConfig)) -> (WtSession, WtServerSession, WtServer) {
    let (mut srv, cert) = server(WtServerConfig::default());
    let url = srv.url();
    let accept = tokio::spawn(async move {
        let (session, _) = srv.accept_session().await.unwrap();
        (session, srv)
    });
    let mut client_config = pinned(&cert);
    config(&mut client_config);
    let client = bounded(connect(&url, client_config)).await.unwrap();
    let (server_session, srv) = bounded(accept).await.unwrap();
    (client, server_session, srv)
}

#[tokio::test]
async fn client_close_reaches_the_server() {
    let (client, server, _srv) = pair(|_| {}).await;
    bounded(client.close(42, "bye")).await.unwrap();
    assert_eq!(
        bounded(client.closed()).await,
        SessionClose::Local {
            code: 42,
            reason: "bye".into()
        }
    );
    let seen = bounded(server.closed()).await;
    assert!(
        matches!(&seen, TransportError::ClosedByPeer { code: 42, reason } if reason == "bye"),
        "{seen:?}"
    );
    // Closing twice is harmless.
    bounded(client.close(1, "again")).await.unwrap();
}

#[tokio::test]
async fn server_close_reaches_the_client() {
    let (client, server, _srv) = pair(|_| {}).await;
    server.close(7, "go away");
    assert_eq!(
        bounded(client.closed()).await,
        SessionClose::Peer {
            code: 7,
            reason: "go away".into()
        }
    );
    let err = bounded(client.accept_bi()).await.unwrap_err();
    assert_eq!(
        err,
        TransportError::ClosedByPeer {
            code: 7,
            reason: "go away".into()
        }
    );
    assert!(client.open_uni().await.is_err());
}

#[tokio::test]
async fn server_opened_streams() {
    let (client, server, _srv) = pair(|_| {}).await;
    let (_recv, mut send) = tokio::io::split(bounded(server.open_bi()).await.unwrap());
    tokio::io::AsyncWriteExt::write_all(&mut send, b"from server")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut send).await.unwrap();
    let (_s, mut r) = bounded(client.accept_bi()).await.unwrap();
    assert_eq!(bounded(r.read_to_end(100)).await.unwrap(), b"from server");

    let mut uni = bounded(server.open_uni()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut uni, b"uni")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut uni).await.unwrap();
    let mut r = bounded(client.accept_uni()).await.unwrap();
    assert_eq!(bounded(r.read_to_end(100)).await.unwrap(), b"uni");

    // Datagrams the other way.
    server
        .send_datagram(bytes::Bytes::from_static(b"dg"))
        .unwrap();
    assert_eq!(bounded(client.read_datagram()).await.unwrap(), &b"dg"[..]);
}

#[tokio::test]
async fn idle_timeout_is_connection_lost() {
    // The idle timeout is the smaller of both sides': a client without keepalives and a short
    // dead-peer timeout sees the connection time out when nothing is sent.
    let (client, _server, _srv) = pair(|c| {
        c.transport.keepalive(None, Duration::from_millis(400));
    })
    .await;
    match bounded(client.closed()).await {
        SessionClose::Lost(TransportError::ConnectionLost { reason }) => {
            assert!(reason.contains("idle"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
