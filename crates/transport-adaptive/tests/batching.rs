//! The session loops move up to a batch of messages per wake-up; that must not loosen
//! backpressure: while the receiving application does not read, the sender is held back by the
//! session window and the bounded queues (not buffered without bound), and once it reads, every
//! message arrives exactly once, in order.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, client_config, server_config};
use transport_adaptive::{AdaptiveServer, TransportKind};
use transport_core::{Connection, Message, Transport};

/// The senders' session window: more than one batch (64), far less than the socket buffers.
const WINDOW: usize = 100;
/// The receiving application's queue.
const RECV_QUEUE: usize = 4;
/// The sending application's queue.
const SEND_QUEUE: usize = 16;

fn message(i: usize) -> Message {
    let mut payload = vec![0x5a; 1024];
    payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Message::binary(Bytes::from(payload))
}

/// Sends until a send has waited 300 ms; returns how many went.
async fn send_until_held<T: Transport>(sender: &T) -> usize {
    let mut sent = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), sender.send(message(sent))).await {
            Ok(result) => {
                result.unwrap();
                sent += 1;
            }
            Err(_) => return sent,
        }
        assert!(sent < 10_000, "never held back");
    }
}

/// Reads `n` messages and checks they are 0..n in order.
async fn read_in_order<T: Transport>(receiver: &mut T, n: usize) {
    for i in 0..n {
        let m = bounded(receiver.recv()).await.unwrap().unwrap();
        assert_eq!(m, message(i), "message {i}");
    }
}

/// Whatever a held sender may have queued: the window, its application's send queue, and what
/// the receiving side may have acknowledged (its application's queue, plus the one message its
/// session loop holds while that queue is full), with one to spare.
fn bound() -> usize {
    WINDOW + SEND_QUEUE + RECV_QUEUE + 2
}

async fn pair() -> (
    AdaptiveServer,
    transport_adaptive::AdaptiveConnection,
    Connection,
) {
    let mut config = server_config();
    config.enable_wt = false;
    config.session.max_unacked_messages = WINDOW;
    config.transport.send_buffer = SEND_QUEUE;
    config.transport.recv_buffer = RECV_QUEUE;
    let server = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let mut client = client_config(&server, &[TransportKind::WebSocket]);
    client.session.max_unacked_messages = WINDOW;
    client.transport.send_buffer = SEND_QUEUE;
    client.transport.recv_buffer = RECV_QUEUE;
    let conn = bounded(transport_adaptive::connect(client)).await.unwrap();
    let (server_conn, request) = bounded(server.accept()).await.unwrap();
    assert!(request.delivery_guaranteed);
    (server, conn, server_conn)
}

/// Sends from `sender` while `receiver` does not read: held back after more than a batch and
/// within [`bound`]; then `receiver` reads every message once, in order, and the held sender
/// goes on.
async fn held_back_then_delivered<S: Transport, R: Transport>(
    direction: &str,
    sender: &S,
    receiver: &mut R,
) {
    let sent = send_until_held(sender).await;
    println!("{direction}: {sent} sent before being held back");
    // More than a batch went, so batches were moved; no more than the window and the queues.
    assert!(sent > 64, "{sent}");
    assert!(sent <= bound(), "{sent} > {}", bound());

    read_in_order(receiver, sent).await;
    // Room again: the held sender goes on, nothing was lost or repeated.
    bounded(sender.send(message(sent))).await.unwrap();
    let m = bounded(receiver.recv()).await.unwrap().unwrap();
    assert_eq!(m, message(sent));
}

#[tokio::test]
async fn server_to_client_is_held_back_while_the_client_does_not_read() {
    let (_server, mut conn, server_conn) = pair().await;
    held_back_then_delivered("server to client", &server_conn, &mut conn).await;
}

#[tokio::test]
async fn client_to_server_is_held_back_while_the_server_does_not_read() {
    let (_server, conn, mut server_conn) = pair().await;
    held_back_then_delivered("client to server", &conn, &mut server_conn).await;
}
