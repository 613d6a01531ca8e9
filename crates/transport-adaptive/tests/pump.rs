//! A client that pumps far more messages than every queue holds, from a task of its own, to a
//! server application that echoes each one, over each transport: the echoes all come back,
//! once each and in order. A session loop that awaited a delivery inside one branch would stop
//! taking the application's sends meanwhile, and the application, waiting on its own send
//! with its receive queue full, would never read again; a link that stopped reading while the
//! application is full would never see the ACKs that open the server's own send window.

mod common;

use std::sync::Arc;

use common::{AbortOnDrop, LIMIT, client_config, server_config};
use transport_adaptive::{AdaptiveServer, TransportKind};
use transport_core::{Connection, Message, Transport, TransportError};

/// A server whose application echoes the first connection, with one message of room each way
/// (a wait in either direction is then likely at every message).
async fn echo_server() -> (Arc<AdaptiveServer>, AbortOnDrop) {
    let mut config = server_config();
    config.transport.buffers(1, 1);
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap(),
    );
    let accepting = server.clone();
    let echo = AbortOnDrop(tokio::spawn(async move {
        let Some((mut conn, _)) = accepting.accept().await else {
            return;
        };
        while let Ok(Some(m)) = conn.recv().await {
            if conn.send(m).await.is_err() {
                return;
            }
        }
    }));
    (server, echo)
}

/// Sends `count` messages from a task while reading the echoes, which must all come back in
/// order.
async fn pump(conn: Connection, count: u32, what: &str) {
    let (tx, mut rx) = conn.split();
    let sending = tokio::spawn(async move {
        for i in 0..count {
            tx.send(Message::text(format!("{i:08} pumped"))).await?;
        }
        Ok::<_, TransportError>(tx)
    });
    let echoed = async {
        for i in 0..count {
            let m = rx.recv().await.unwrap().unwrap();
            assert_eq!(
                m.as_text(),
                Some(format!("{i:08} pumped").as_str()),
                "{what}"
            );
        }
    };
    tokio::time::timeout(LIMIT * 3, echoed)
        .await
        .unwrap_or_else(|_| panic!("every message echoed over {what}"));
    let tx = sending.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
}

async fn over(kind: TransportKind, count: u32) {
    let (server, _echo) = echo_server().await;
    let conn = tokio::time::timeout(
        LIMIT,
        transport_adaptive::connect(client_config(&server, &[kind])),
    )
    .await
    .unwrap()
    .unwrap();
    pump(conn.into_inner(), count, kind.name()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket() {
    over(TransportKind::WebSocket, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_webtransport() {
    over(TransportKind::WebTransport, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sse() {
    over(TransportKind::Sse, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_webtransport_client() {
    // No session protocol: the server relays the link's messages to the application itself.
    let (server, _echo) = echo_server().await;
    let mut wt = transport_wt::WtConfig::default();
    wt.client
        .cert_hash(common::hex32(server.wt_cert_hash().unwrap()));
    let conn = tokio::time::timeout(
        LIMIT,
        transport_wt::connect_transport(&server.wt_url().unwrap(), wt),
    )
    .await
    .unwrap()
    .unwrap();
    pump(conn, 20_000, "a plain WebTransport link").await;
}
