//! A client that pumps far more messages than every queue and socket buffer hold, from a task
//! of its own, to a server application that echoes each one: the echoes all come back (a
//! driver must keep reading while it waits to write, and keep writing while a delivery waits).

use std::time::Duration;

use transport_core::{Message, ReconnectPolicy, Transport, TransportError};
use transport_ws::{ProxyConfig, WsConfig, WsServer, WsServerConfig};

const LIMIT: Duration = Duration::from_secs(60);

async fn pump(server_buffers: usize, size: usize, count: u32) {
    let mut server_config = WsServerConfig::default();
    server_config
        .transport
        .buffers(server_buffers, server_buffers);
    let mut server = WsServer::bind("127.0.0.1:0", server_config).await.unwrap();
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
    let mut config = WsConfig::default();
    config.proxy(ProxyConfig::none());
    config.transport.reconnect(ReconnectPolicy::disabled());
    let client = tokio::time::timeout(LIMIT, transport_ws::connect(&url, config))
        .await
        .unwrap()
        .unwrap();
    let (tx, mut rx) = client.split();
    let pump = tokio::spawn(async move {
        for i in 0..count {
            let mut payload = i.to_be_bytes().to_vec();
            payload.resize(size, 0);
            tx.send(Message::binary(payload)).await?;
        }
        Ok::<_, TransportError>(tx)
    });
    let echoed = async {
        for i in 0..count {
            let m = rx.recv().await.unwrap().unwrap();
            assert_eq!(m.as_bytes()[..4], i.to_be_bytes(), "echo {i}");
        }
    };
    tokio::time::timeout(LIMIT, echoed)
        .await
        .expect("every message echoed");
    let tx = pump.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
    echo.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pumping_client_gets_every_echo_back() {
    // One message of room each way on the server makes a wait in either direction likely.
    pump(1, 64, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_fill_the_socket_buffers_both_ways() {
    // 32 MiB each way: far past the kernel's socket buffers while both ends write.
    pump(64, 16 * 1024, 2_000).await;
}
