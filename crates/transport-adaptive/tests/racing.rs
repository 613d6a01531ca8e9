//! Happy Eyeballs: a blackholed or refused preferred transport loses the race quickly.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    bounded, client_config, refused_port, round_trip, server, spawn_echo, tcp_blackhole, tune,
    udp_blackhole,
};
use transport_adaptive::{AdaptiveConfig, AdaptiveEvent, ChangeReason, TransportKind};
use transport_core::{Message, Transport};

#[tokio::test]
async fn websocket_wins_quickly_when_udp_is_blackholed() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let (_hole, hole) = udp_blackhole().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebTransport, format!("https://{hole}/wt"));
    config.endpoint(TransportKind::WebSocket, server.ws_url());
    config.endpoint(TransportKind::Sse, server.sse_url());
    tune(&mut config);
    config.wt_cert_hash(common::hex32(server.wt_cert_hash().unwrap()));

    let started = Instant::now();
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let elapsed = started.elapsed();
    println!("connected over WebSocket with WebTransport blackholed in {elapsed:?}");
    assert_eq!(conn.transport(), Some(TransportKind::WebSocket));
    // The anchors' per-attempt timeouts are 5 s and more; the head start is 250 ms.
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(200),
        "WS did not wait for its head start"
    );
    round_trip(&mut conn, Message::text("through ws")).await;
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn sse_wins_when_websocket_stalls_and_udp_is_blackholed() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let (_hole, udp) = udp_blackhole().await;
    let (stall, _stall_task) = tcp_blackhole().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebTransport, format!("https://{udp}/wt"));
    config.endpoint(TransportKind::WebSocket, format!("ws://{stall}/ws"));
    config.endpoint(TransportKind::Sse, server.sse_url());
    tune(&mut config);
    let started = Instant::now();
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let elapsed = started.elapsed();
    println!("connected over SSE with WT blackholed and WS stalled in {elapsed:?}");
    assert_eq!(conn.transport(), Some(TransportKind::Sse));
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    round_trip(&mut conn, Message::binary(vec![9u8; 1000])).await;
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_refused_transport_hands_over_at_once_and_events_say_so() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let refused = refused_port().await;
    let mut config = client_config(&server, &[]);
    config.endpoint(TransportKind::WebSocket, format!("ws://{refused}/ws"));
    config.endpoint(TransportKind::Sse, server.sse_url());
    // A long head start: only the failure can start SSE early.
    config.head_start(Duration::from_secs(5));
    let started = Instant::now();
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let elapsed = started.elapsed();
    println!("connected over SSE after a refused WebSocket in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(conn.transport(), Some(TransportKind::Sse));
    let mut events = conn.events();
    assert!(matches!(
        events.try_recv().unwrap(),
        AdaptiveEvent::AttemptFailed {
            transport: TransportKind::WebSocket,
            ..
        }
    ));
    assert!(matches!(
        events.try_recv().unwrap(),
        AdaptiveEvent::TransportChanged {
            from: None,
            to: TransportKind::Sse,
            reason: ChangeReason::Initial
        }
    ));
    round_trip(&mut conn, Message::text("x")).await;
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_proxy_that_accepts_and_stalls_fails_the_health_check() {
    // Only one endpoint, which accepts TCP and never answers: the attempt fails within the
    // attempt timeout instead of hanging.
    let (stall, _task) = tcp_blackhole().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, format!("ws://{stall}/ws"));
    tune(&mut config);
    config.attempt_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = bounded(transport_adaptive::connect(config))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_severed_link_is_reported_and_resumed() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let config = client_config(&server, &[TransportKind::WebSocket]);
    let conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let mut events = conn.events();
    // connect's own events first: the initial choice.
    assert!(matches!(
        events.try_recv().unwrap(),
        AdaptiveEvent::TransportChanged {
            from: None,
            reason: ChangeReason::Initial,
            ..
        }
    ));
    server.sever_links();
    let mut saw_drop = false;
    loop {
        match bounded(events.recv()).await.unwrap() {
            AdaptiveEvent::Disconnected { transport, .. } => {
                assert_eq!(transport, TransportKind::WebSocket);
                saw_drop = true;
            }
            AdaptiveEvent::TransportChanged { from, to, reason } => {
                assert_eq!(from, Some(TransportKind::WebSocket));
                assert_eq!(to, TransportKind::WebSocket);
                assert_eq!(reason, ChangeReason::Reconnected);
                break;
            }
            AdaptiveEvent::Resumed { .. } => break,
            _ => {}
        }
    }
    assert!(saw_drop);
    bounded(server.shutdown()).await;
}

/// A WebSocket server that completes the upgrade and then never answers (like a proxy that
/// accepts the upgrade and stalls): the health check catches it.
async fn upgrade_then_stall() -> (String, common::AbortOnDrop) {
    let mut server =
        transport_ws::WsServer::bind("127.0.0.1:0", transport_ws::WsServerConfig::default())
            .await
            .unwrap();
    let url = server.url();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some((conn, _)) = server.accept().await {
            if held.len() < 32 {
                held.push(conn);
            }
        }
    });
    (url, common::AbortOnDrop(task))
}

#[tokio::test]
async fn an_upgrade_that_stalls_loses_to_the_next_transport() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let (stalled, _stall) = upgrade_then_stall().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, stalled);
    config.endpoint(TransportKind::Sse, server.sse_url());
    tune(&mut config);
    let started = Instant::now();
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    let elapsed = started.elapsed();
    println!("connected over SSE past a stalled WebSocket upgrade in {elapsed:?}");
    assert_eq!(conn.transport(), Some(TransportKind::Sse));
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    round_trip(&mut conn, Message::text("x")).await;
    bounded(conn.close(1000, "")).await.unwrap();

    // Alone, the stalled upgrade fails its health check in time.
    let (stalled, _stall) = upgrade_then_stall().await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(TransportKind::WebSocket, stalled);
    tune(&mut config);
    config.health_timeout(Duration::from_millis(300));
    let err = bounded(transport_adaptive::connect(config))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_remembered_winner_is_raced_first_and_the_preferred_one_probed_later() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let mut config = client_config(
        &server,
        &[
            TransportKind::WebTransport,
            TransportKind::WebSocket,
            TransportKind::Sse,
        ],
    );
    // An earlier run ended on WebSocket and the application kept that.
    config.remembered(Some(TransportKind::WebSocket));
    config.probe_interval(Some(Duration::from_millis(200)));
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(conn.transport(), Some(TransportKind::WebSocket));
    let mut events = conn.events();
    // WebTransport works: the background probe moves the connection up to it.
    let mut status = conn.watch_status();
    bounded(status.wait_for(|s| s.transport == Some(TransportKind::WebTransport)))
        .await
        .unwrap();
    round_trip(&mut conn, Message::text("after the upgrade")).await;
    let mut upgraded = false;
    while let Ok(event) = events.try_recv() {
        if let AdaptiveEvent::TransportChanged { from, to, reason } = event
            && reason == ChangeReason::Upgrade
        {
            assert_eq!(
                (from, to),
                (Some(TransportKind::WebSocket), TransportKind::WebTransport)
            );
            upgraded = true;
        }
    }
    assert!(upgraded, "no Upgrade event");
    bounded(conn.close(1000, "")).await.unwrap();
    bounded(server.shutdown()).await;
}
