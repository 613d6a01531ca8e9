//! A sender that pumps far more messages than every queue holds, from a task of its own, to a
//! server that echoes each one: the echoes all come back. A driver that awaited a delivery (or
//! a write) inside one branch of its loop would stop taking sends (or reading) meanwhile, and
//! the echo server's own driver, waiting for its application, would wait forever on it.

mod transport_common;

use std::time::Duration;

use transport_common::{AbortOnDrop, accepting, client, server_transport};
use transport_core::{Message, Transport, TransportError};
use transport_wt::{StreamConfig, connect_transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pumping_sender_gets_every_echo_back() {
    // One message of room each way on the server makes a wait in either direction likely
    // at every message instead of once in a while.
    pump(1, 64, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_fill_the_flow_control_windows_both_ways() {
    // 32 MiB each way: far past QUIC's stream windows while both ends' drivers write.
    pump(64, 16 * 1024, 2_000).await;
}

async fn pump(server_buffers: usize, size: usize, count: u32) {
    let mut transport = server_transport();
    transport.buffers(server_buffers, server_buffers);
    let (url, cert, mut accepted, accept) = accepting(transport, StreamConfig::default());
    let _accept = AbortOnDrop(accept);
    let echo = AbortOnDrop(tokio::spawn(async move {
        let Some(mut conn) = accepted.recv().await else {
            return;
        };
        while let Ok(Some(m)) = conn.recv().await {
            if conn.send(m).await.is_err() {
                return;
            }
        }
    }));
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        connect_transport(&url, client(&cert, StreamConfig::default())),
    )
    .await
    .unwrap()
    .unwrap();
    let (tx, mut rx) = conn.split();
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
    tokio::time::timeout(Duration::from_secs(60), echoed)
        .await
        .expect("every message echoed");
    let tx = pump.await.unwrap().unwrap();
    tx.close(1000, "done").await.unwrap();
    drop(echo);
}
