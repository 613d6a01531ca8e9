//! A client that pumps far more messages than every queue holds, from a task of its own, to a
//! server application that echoes each one, over each transport: the echoes all come back,
//! once each and in order. A session loop that awaited a delivery inside one branch would stop
//! taking the application's sends meanwhile, and the application, waiting on its own send
//! with its receive queue full, would never read again.

mod common;

use std::sync::Arc;

use common::{AbortOnDrop, LIMIT, client_config, server_config};
use transport_adaptive::{AdaptiveServer, TransportKind};
use transport_core::{Message, Transport, TransportError};

async fn pump(kind: TransportKind, count: u32) {
    let mut config = server_config();
    // One message of room each way on the server makes a wait in either direction likely.
    config.transport.buffers(1, 1);
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap(),
    );
    let accepting = server.clone();
    let _echo = AbortOnDrop(tokio::spawn(async move {
        let Some((mut conn, _)) = accepting.accept().await else {
            return;
        };
        while let Ok(Some(m)) = conn.recv().await {
            if conn.send(m).await.is_err() {
                return;
            }
        }
    }));
    let conn = tokio::time::timeout(
        LIMIT,
        transport_adaptive::connect(client_config(&server, &[kind])),
    )
    .await
    .unwrap()
    .unwrap();
    let (tx, mut rx) = conn.into_inner().split();
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
                "{kind:?}"
            );
        }
    };
    tokio::time::timeout(LIMIT * 3, echoed)
        .await
        .unwrap_or_else(|_| panic!("every message echoed over {kind:?}"));
    let tx = sending.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket() {
    pump(TransportKind::WebSocket, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_webtransport() {
    pump(TransportKind::WebTransport, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sse() {
    pump(TransportKind::Sse, 5_000).await;
}
