//! Exactly once, in order, both directions, across dropped links, listener restarts and a
//! transport upgrade.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::exchange::exchange;
use common::{UdpGate, bounded, client_config, server, server_config, tune};
use transport_adaptive::{
    AdaptiveConfig, AdaptiveEvent, AdaptiveServer, ChangeReason, TransportKind,
};
use transport_core::{ConnectionState, Message, Transport, TransportError};

const N: u32 = 10_000;

/// Asserts that the connection changed transport after its first one, and only from `from` to
/// `to` for `reason`.
fn changed_only(
    events: &mut tokio::sync::broadcast::Receiver<AdaptiveEvent>,
    from: TransportKind,
    to: TransportKind,
    reason: ChangeReason,
) {
    let mut changed = false;
    while let Ok(e) = events.try_recv() {
        if let AdaptiveEvent::TransportChanged {
            from: f,
            to: t,
            reason: r,
        } = e
            && r != ChangeReason::Initial
        {
            assert_eq!((f, t, r), (Some(from), to, reason));
            changed = true;
        }
    }
    assert!(changed, "no change from {from} to {to}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severed_links_resume_exactly_once_over_each_transport() {
    for kind in [
        TransportKind::WebTransport,
        TransportKind::WebSocket,
        TransportKind::Sse,
    ] {
        let server = Arc::new(server().await);
        let client = bounded(transport_adaptive::connect(client_config(&server, &[kind])))
            .await
            .unwrap();
        let s = server.clone();
        let started = Instant::now();
        exchange(server.clone(), client, 3_000, None, |_| async move {
            // Twice, a little apart, while messages flow both ways.
            s.sever_links();
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.sever_links();
        })
        .await;
        println!(
            "{kind}: 3,000 each way across two severed links in {:?}",
            started.elapsed()
        );
        bounded(server.shutdown()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_on_the_same_ports_resumes_exactly_once() {
    let cert = transport_wt::cert::generate(&[]).unwrap();
    let mut config = server_config();
    config.wt_cert = Some(cert.clone());
    let first = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap(),
    );
    let addr = first.local_addr();
    let client = bounded(transport_adaptive::connect(client_config(
        &first,
        &[
            TransportKind::WebTransport,
            TransportKind::WebSocket,
            TransportKind::Sse,
        ],
    )))
    .await
    .unwrap();
    assert_eq!(client.transport(), Some(TransportKind::WebTransport));
    let mut events = client.events();
    let restarted: Arc<tokio::sync::Mutex<Option<Arc<AdaptiveServer>>>> = Arc::default();
    let r = restarted.clone();
    let f = first.clone();
    let started = Instant::now();
    // The handler accepts from the first server; the session survives the restart.
    exchange(first.clone(), client, N, None, |progress| async move {
        let table = f.sessions();
        bounded(f.shutdown_for_restart()).await;
        let mut config = server_config();
        config.wt_cert = Some(cert);
        let second = bounded(AdaptiveServer::bind_with_sessions(addr, config, table))
            .await
            .unwrap();
        assert_eq!(second.local_addr(), addr);
        *r.lock().await = Some(Arc::new(second));
        println!(
            "restarted after the client received {} messages",
            progress.load(std::sync::atomic::Ordering::Relaxed)
        );
    })
    .await;
    println!(
        "10,000 messages each way across a server restart in {:?}",
        started.elapsed()
    );
    let mut resumed = false;
    while let Ok(e) = events.try_recv() {
        resumed |= matches!(e, AdaptiveEvent::Resumed { .. });
    }
    assert!(resumed, "no Resumed event");
    if let Some(s) = restarted.lock().await.take() {
        bounded(s.shutdown()).await;
    }
}

#[tokio::test]
async fn a_server_that_lost_the_session_is_an_error_not_a_silent_loss() {
    let first = server().await;
    let addr = first.local_addr();
    let mut conn = bounded(transport_adaptive::connect(client_config(
        &first,
        &[TransportKind::WebSocket],
    )))
    .await
    .unwrap();
    let (server_conn, _) = bounded(first.accept()).await.unwrap();
    conn.send(Message::text("before")).await.unwrap();
    bounded(first.shutdown_for_restart()).await;
    drop(first);
    drop(server_conn);
    // A new server with a new session table: the old session cannot be resumed.
    let mut config = server_config();
    config.enable_wt = false;
    let second = bounded(AdaptiveServer::bind(addr, config)).await.unwrap();
    let err = bounded(conn.recv()).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::ProtocolViolation { reason } if reason.contains("session lost")),
        "{err}"
    );
    assert_eq!(bounded(conn.recv()).await.unwrap(), None);
    assert_eq!(conn.state(), ConnectionState::Failed);
    bounded(second.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_back_to_webtransport_without_loss() {
    let server = Arc::new(server().await);
    let wt_addr: std::net::SocketAddr = server
        .wt_url()
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches("/wt")
        .parse()
        .unwrap();
    let gate = UdpGate::new(wt_addr).await;
    let mut config = AdaptiveConfig::default();
    config.endpoint(
        TransportKind::WebTransport,
        format!("https://{}/wt", gate.addr),
    );
    config.endpoint(TransportKind::WebSocket, server.ws_url());
    tune(&mut config);
    config.wt_cert_hash(common::hex32(server.wt_cert_hash().unwrap()));
    config.wt.client.transport.connect_timeout = Duration::from_millis(400);
    config.probe_interval(Some(Duration::from_millis(200)));
    let client = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(client.transport(), Some(TransportKind::WebSocket));
    let mut events = client.events();
    let mut status = client.watch_status();
    let open = gate.open.clone();
    let started = Instant::now();
    exchange(
        server.clone(),
        client,
        5_000,
        Some(4),
        |progress| async move {
            open.store(true, std::sync::atomic::Ordering::Relaxed);
            bounded(status.wait_for(|s| s.transport == Some(TransportKind::WebTransport)))
                .await
                .unwrap();
            let at = progress.load(std::sync::atomic::Ordering::Relaxed);
            println!("upgraded after the client received {at} messages");
            assert!(
                at < 5_000,
                "the upgrade came after the exchange: it proves nothing"
            );
        },
    )
    .await;
    println!(
        "upgraded to WebTransport mid-stream; 5,000 each way in {:?}",
        started.elapsed()
    );
    changed_only(
        &mut events,
        TransportKind::WebSocket,
        TransportKind::WebTransport,
        ChangeReason::Upgrade,
    );
    bounded(server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_from_webtransport_to_websocket_mid_stream_without_loss() {
    let server = Arc::new(server().await);
    let wt_addr: std::net::SocketAddr = server
        .wt_url()
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches("/wt")
        .parse()
        .unwrap();
    let gate = UdpGate::new(wt_addr).await;
    gate.open.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut config = AdaptiveConfig::default();
    config.endpoint(
        TransportKind::WebTransport,
        format!("https://{}/wt", gate.addr),
    );
    config.endpoint(TransportKind::WebSocket, server.ws_url());
    tune(&mut config);
    config.wt_cert_hash(common::hex32(server.wt_cert_hash().unwrap()));
    // UDP silently blocked mid-connection is noticed by the keepalive.
    config
        .wt
        .client
        .transport
        .keepalive(Some(Duration::from_millis(200)), Duration::from_secs(1));
    config.wt.client.transport.connect_timeout = Duration::from_millis(500);
    config.probe_interval(None);
    let client = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(client.transport(), Some(TransportKind::WebTransport));
    let mut events = client.events();
    let mut status = client.watch_status();
    let open = gate.open.clone();
    let started = Instant::now();
    exchange(
        server.clone(),
        client,
        5_000,
        Some(2),
        |progress| async move {
            // UDP goes dark.
            open.store(false, std::sync::atomic::Ordering::Relaxed);
            bounded(status.wait_for(|s| s.transport == Some(TransportKind::WebSocket)))
                .await
                .unwrap();
            let at = progress.load(std::sync::atomic::Ordering::Relaxed);
            println!("fell back to WebSocket after the client received {at} messages");
            assert!(at < 5_000, "the fallback came after the exchange");
        },
    )
    .await;
    println!(
        "fallback mid-stream; 5,000 each way in {:?}",
        started.elapsed()
    );
    changed_only(
        &mut events,
        TransportKind::WebTransport,
        TransportKind::WebSocket,
        ChangeReason::Fallback,
    );
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_session_detached_past_its_expiry_is_lost_with_an_error() {
    let mut config = server_config();
    config.enable_wt = false;
    config.session_expiry = Duration::from_millis(200);
    let first = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config.clone())
        .await
        .unwrap();
    let addr = first.local_addr();
    let mut conn = bounded(transport_adaptive::connect(client_config(
        &first,
        &[TransportKind::WebSocket],
    )))
    .await
    .unwrap();
    let (server_conn, _) = bounded(first.accept()).await.unwrap();
    let table = first.sessions();
    assert_eq!(table.len(), 1);
    bounded(first.shutdown_for_restart()).await;
    drop(first);
    // The session expires while nobody listens; its application connection ends.
    let mut server_conn = server_conn;
    assert!(bounded(server_conn.recv()).await.is_err());
    assert!(table.is_empty());
    let second = AdaptiveServer::bind_with_sessions(addr, config, table)
        .await
        .unwrap();
    let err = bounded(conn.recv()).await.unwrap_err();
    assert!(err.to_string().contains("session lost"), "{err}");
    bounded(second.shutdown()).await;
}

/// From a link with a driver task of its own (SSE) to a WebSocket link the session task runs
/// itself, mid-stream: the replay goes out on the new link before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_from_sse_to_websocket_without_loss() {
    let server = Arc::new(server().await);
    let proxy = test_servers::fault::FaultProxy::tcp(server.local_addr())
        .await
        .unwrap();
    proxy.set(test_servers::fault::Fault::Reset);
    // Kept here: dropping the proxy would end the WebSocket link it carries.
    let proxy = Arc::new(proxy);
    let gate = proxy.clone();
    let mut config = AdaptiveConfig::default();
    config.endpoint(
        TransportKind::WebSocket,
        format!("ws://{}/ws", proxy.local_addr()),
    );
    config.endpoint(TransportKind::Sse, server.sse_url());
    tune(&mut config);
    config.probe_interval(Some(Duration::from_millis(200)));
    let client = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(client.transport(), Some(TransportKind::Sse));
    let mut events = client.events();
    let mut status = client.watch_status();
    exchange(
        server.clone(),
        client,
        5_000,
        Some(4),
        |progress| async move {
            gate.set(test_servers::fault::Fault::Pass);
            bounded(status.wait_for(|s| s.transport == Some(TransportKind::WebSocket)))
                .await
                .unwrap();
            let at = progress.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                at < 5_000,
                "the upgrade came after the exchange: it proves nothing"
            );
        },
    )
    .await;
    changed_only(
        &mut events,
        TransportKind::Sse,
        TransportKind::WebSocket,
        ChangeReason::Upgrade,
    );
    assert_eq!(proxy.fault(), test_servers::fault::Fault::Pass);
    bounded(server.shutdown()).await;
}
