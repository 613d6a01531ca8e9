//! `connect_lazy`: the connection exists at once, reports `Connecting` while the race runs,
//! buffers sends, then reports `Connected` (or `Failed` with the race's error).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, refused_port, server, spawn_echo, tcp_blackhole, tune, udp_blackhole};
use transport_adaptive::{AdaptiveConfig, TransportKind};
use transport_core::{ConnectionState, Message, Transport};

#[tokio::test]
async fn reports_connecting_during_the_race_and_buffers_sends() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let (_hole, hole) = udp_blackhole().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebTransport, format!("https://{hole}/wt"));
    config.endpoint(TransportKind::WebSocket, server.ws_url());
    tune(&mut config);
    config.wt_cert_hash(common::hex32(server.wt_cert_hash().unwrap()));

    let started = Instant::now();
    let mut conn = transport_adaptive::connect_lazy(config).unwrap();
    assert_eq!(conn.state(), ConnectionState::Connecting);
    assert_eq!(conn.transport(), None);
    // Sent before any link exists: waits in the send buffer.
    conn.send(Message::text("early")).await.unwrap();
    bounded(
        conn.watch_state()
            .wait_for(|s| *s == ConnectionState::Connected),
    )
    .await
    .unwrap();
    println!(
        "Connecting for {:?} (WebTransport blackholed), then Connected over {:?}",
        started.elapsed(),
        conn.transport()
    );
    assert_eq!(conn.transport(), Some(TransportKind::WebSocket));
    assert_eq!(
        bounded(conn.recv()).await.unwrap(),
        Some(Message::text("early"))
    );
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_race_that_fails_ends_in_failed_with_its_error() {
    let refused = refused_port().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, format!("ws://{refused}/ws"));
    tune(&mut config);
    let mut conn = transport_adaptive::connect_lazy(config).unwrap();
    assert_eq!(conn.state(), ConnectionState::Connecting);
    let err = bounded(conn.recv()).await.unwrap_err();
    println!("lazy connect to a refused port: {err}");
    assert!(err.is_retryable(), "{err}");
    bounded(
        conn.watch_state()
            .wait_for(|s| *s == ConnectionState::Failed),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn close_while_connecting_stops_the_attempt() {
    let (stall, _task) = tcp_blackhole().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, format!("ws://{stall}/ws"));
    tune(&mut config);
    let conn = transport_adaptive::connect_lazy(config).unwrap();
    assert_eq!(conn.state(), ConnectionState::Connecting);
    let started = Instant::now();
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(
        conn.watch_state()
            .wait_for(|s| *s == ConnectionState::Disconnected),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "close waited for the attempt: {:?}",
        started.elapsed()
    );
}

#[test]
fn an_invalid_config_fails_at_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert!(transport_adaptive::connect_lazy(AdaptiveConfig::default()).is_err());
}
