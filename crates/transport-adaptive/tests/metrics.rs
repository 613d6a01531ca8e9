//! The adaptive server's metrics: a session resumed on a new link counts in
//! `transport_adaptive_resumes_total{transport}` (the new link's transport), one that resumed
//! on another transport than its last link's also in
//! `transport_adaptive_fallbacks_total{from,to}`; the client's stats count its reconnects.

mod common;

use std::sync::Arc;

use common::recorder::TestRecorder;
use common::{bounded, hex32, round_trip, server_config, spawn_echo, tune};
use test_servers::fault::{Fault, FaultProxy};
use transport_adaptive::{AdaptiveConfig, AdaptiveServer, TransportKind};
use transport_core::{Message, Transport};

const RESUMED_WS: &str = "transport_adaptive_resumes_total{transport=ws}";
const RESUMED_SSE: &str = "transport_adaptive_resumes_total{transport=sse}";
const WS_TO_SSE: &str = "transport_adaptive_fallbacks_total{from=ws,to=sse}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_and_transport_switches_are_counted() {
    let recorder = TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).expect("the only recorder of this binary");
    let mut config = server_config();
    config.enable_wt = false;
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap(),
    );
    let _echo = spawn_echo(server.clone());
    // WebSocket through a proxy that can be cut, SSE straight.
    let ws = FaultProxy::tcp(server.local_addr()).await.unwrap();
    let mut config = AdaptiveConfig::default();
    config.endpoint(
        TransportKind::WebSocket,
        format!("ws://{}/ws", ws.local_addr()),
    );
    config.endpoint(TransportKind::Sse, server.sse_url());
    config.probe_interval(None);
    tune(&mut config);
    if let Some(hash) = server.wt_cert_hash() {
        config.wt_cert_hash(hex32(hash));
    }
    let mut client = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(client.transport(), Some(TransportKind::WebSocket));
    round_trip(&mut client, Message::text("first")).await;
    assert_eq!(
        recorder.counter(RESUMED_WS),
        0,
        "a new session is no resume"
    );

    // A drop, resumed on the same transport: a resume, no fallback.
    server.sever_links();
    round_trip(&mut client, Message::text("after the drop")).await;
    recorder.reaches(RESUMED_WS, 1).await;
    assert_eq!(recorder.counter(WS_TO_SSE), 0);
    assert!(client.stats().reconnects >= 1, "{:?}", client.stats());

    // WebSocket refused from now on: the session resumes over SSE.
    ws.set(Fault::Reset);
    ws.sever();
    round_trip(&mut client, Message::text("over sse")).await;
    recorder.reaches(WS_TO_SSE, 1).await;
    recorder.reaches(RESUMED_SSE, 1).await;
    assert_eq!(client.transport(), Some(TransportKind::Sse));
    assert!(client.stats().reconnects >= 2, "{:?}", client.stats());
    assert_eq!(client.info().transport, "sse");
    client.close(1000, "").await.unwrap();
    bounded(server.shutdown()).await;
}
