//! Per-IP limits on the adaptive server's TCP listener: connections over
//! `max_connections_per_ip` from one address are answered 429 and closed (and counted in
//! `transport_handshakes_rejected_total{transport="adaptive",reason="ip_limit"}`), another
//! address is unaffected, and a slot freed by a closed connection admits a client again.

mod common;

use std::sync::Arc;

use common::recorder::TestRecorder;
use common::{bounded, client_config, round_trip, server_config, spawn_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use transport_adaptive::{AdaptiveServer, TransportKind};
use transport_core::{IpLimits, Message, Transport};

const REJECTED: &str = "transport_handshakes_rejected_total{reason=ip_limit,transport=adaptive}";

/// A TCP connection to `server` from `source`, held open.
async fn tcp_from(source: &str, server: &AdaptiveServer) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// Sends a negotiation request on `tcp` and returns the status line of the answer.
async fn status_line(mut tcp: TcpStream) -> String {
    tcp.write_all(b"GET /transport/negotiate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok();
    let mut answer = Vec::new();
    let _ = bounded(tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_connections_are_refused_other_addresses_and_freed_slots_pass() {
    let recorder = TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).expect("the only recorder of this binary");
    let mut config = server_config();
    config.enable_wt = false;
    let mut limits = IpLimits::unlimited();
    limits.max_connections_per_ip(Some(2));
    config.ip_limits = limits;
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap(),
    );
    let _echo = spawn_echo(server.clone());

    // Two connections from 127.0.0.1 take its two slots; a third is refused.
    let held = [
        tcp_from("127.0.0.1", &server).await,
        tcp_from("127.0.0.1", &server).await,
    ];
    let refused = status_line(tcp_from("127.0.0.1", &server).await).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused:?}");
    assert_eq!(recorder.counter(REJECTED), 1);
    // The adaptive client from 127.0.0.1 cannot get in either.
    let mut config = client_config(&server, &[TransportKind::WebSocket]);
    config.reconnect(transport_core::ReconnectPolicy::disabled());
    assert!(
        bounded(transport_adaptive::connect(config.clone()))
            .await
            .is_err()
    );
    assert!(recorder.counter(REJECTED) >= 2);

    // Another address has slots of its own.
    let other = status_line(tcp_from("127.0.0.2", &server).await).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other:?}");

    // A slot freed by a closed connection admits a client again, which echoes.
    drop(held);
    let mut client = bounded(async {
        loop {
            match transport_adaptive::connect(config.clone()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(client.transport(), Some(TransportKind::WebSocket));
    round_trip(&mut client, Message::text("admitted")).await;
    client.close(1000, "").await.unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn invalid_limits_are_refused_at_bind() {
    let mut config = server_config();
    config.enable_wt = false;
    config.ip_limits.max_connections_per_ip(Some(0));
    let refused = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config).await;
    assert!(
        matches!(
            refused,
            Err(transport_core::TransportError::InvalidConfig(_))
        ),
        "{refused:?}"
    );
}
