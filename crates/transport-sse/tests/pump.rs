//! A client that pumps far more messages than every queue holds, from a task of its own, to a
//! server application that echoes each one: the echoes all come back. A server session that
//! awaited a delivery inside its loop would stop taking the application's sends meanwhile, and
//! the application, waiting on its own send, would never read again.

mod client_common;

use std::time::Duration;

use client_common::config;
use transport_core::{Message, Transport, TransportError};
use transport_sse::{SseServer, SseServerConfig};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pumping_client_gets_every_echo_back() {
    let mut server_config = SseServerConfig::default();
    // One message of room each way makes a wait in either direction likely at every message.
    server_config.transport.buffers(1, 1);
    let mut server = SseServer::bind("127.0.0.1:0", server_config).await.unwrap();
    let url = server.url();
    let echo = tokio::spawn(async move {
        let Some((mut conn, _request)) = server.accept().await else {
            return;
        };
        while let Ok(Some(m)) = conn.recv().await {
            if conn.send(m).await.is_err() {
                return;
            }
        }
    });
    let client = tokio::time::timeout(LIMIT, transport_sse::connect(&url, config()))
        .await
        .unwrap()
        .unwrap();
    let (tx, mut rx) = client.split();
    let count = 5_000_u32;
    let pump = tokio::spawn(async move {
        for i in 0..count {
            tx.send(Message::text(format!("{i:08} pumped"))).await?;
        }
        Ok::<_, TransportError>(tx)
    });
    let echoed = async {
        for i in 0..count {
            let m = rx.recv().await.unwrap().unwrap();
            assert_eq!(m.as_text(), Some(format!("{i:08} pumped").as_str()));
        }
    };
    tokio::time::timeout(LIMIT, echoed)
        .await
        .expect("every message echoed");
    let tx = pump.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
    echo.abort();
}
