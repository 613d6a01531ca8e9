//! The adaptive transport on loopback, beside what it runs on.
//!
//! * `adaptive_rtt`, 32 B echo round trip: `ours-adaptive-ws` (ours: transport-adaptive client and
//!   server, session layer, over WebSocket) against `transport-ws` (the bare protocol
//!   connection it picked, no session layer) and `tokio-tungstenite` (raw WebSocket floor);
//!   `adaptive-wt` and `adaptive-sse` for the other transports.
//! * `adaptive_throughput`, 1 KiB messages, 32 in flight, echoed: `ours-adaptive-ws` against
//!   `transport-ws`.
//! * `adaptive_connect`, time from `connect` to a connection: every transport open
//!   (`wt-open`), UDP blackholed (`wt-blackholed`, WebSocket wins after its 250 ms head
//!   start), UDP blackholed and WebSocket stalled (`wt-blackholed-ws-stalled`, SSE wins).
//!   Medians over 20 tries are printed first.
//!
//! Before the `adaptive_rtt` and `adaptive_throughput` groups, a paired run is printed: the
//! adaptive and the bare connection measured alternately (one round trip, or one 1,000-message
//! pump, each in turn), with the medians of both and the median of the per-pair ratios. On a
//! shared, noisy machine the load changes between criterion's groups, one after the other; a
//! pair sees the same load on both sides, so its ratio is the figure to compare with 1.05x.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use transport_adaptive::{AdaptiveConfig, TransportKind};
use transport_benches::adaptive;
use transport_benches::paired::Table;
use transport_core::{Message, Transport};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The largest median of pair ratios (adaptive / transport-ws) issue #6 allows.
const PAIRED_TARGET: f64 = 1.05;

/// The `adaptive_paired` table of docs/benchmarks.md.
const PAIRED: Table = Table {
    title: "adaptive_paired",
    text: "The adaptive transport over WebSocket and the bare transport-ws connection it wraps: \
           one round trip, or one pump of 1,000 1 KiB messages with 32 in flight, each in turn.",
    ours: "ours-adaptive-ws",
    baseline: "transport-ws",
};

/// One echo round trip of `payload` on `conn`, timed.
fn time_echo<T: Transport>(rt: &Runtime, conn: &mut T, payload: &Bytes) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        conn.send(Message::binary(payload.clone()))
            .await
            .expect("send");
        conn.recv().await.expect("recv").expect("message");
        started.elapsed()
    })
}

fn rtt(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(adaptive::echo());
    {
        let payload = Bytes::from(vec![0x5a; 32]);
        let mut ours = rt.block_on(adaptive::client(&server, TransportKind::WebSocket));
        let mut bare = rt.block_on(adaptive::bare_ws());
        for _ in 0..200 {
            time_echo(&rt, &mut ours, &payload);
            time_echo(&rt, &mut bare, &payload);
        }
        PAIRED.run(
            "adaptive_rtt",
            PAIRED_TARGET,
            5000,
            || time_echo(&rt, &mut ours, &payload),
            || time_echo(&rt, &mut bare, &payload),
        );
    }
    let mut group = c.benchmark_group("adaptive_rtt");
    group.measurement_time(Duration::from_secs(5));
    let size = 32usize;
    let payload = Bytes::from(vec![0x5a; size]);
    for (name, kind) in [
        ("ours-adaptive-ws", TransportKind::WebSocket),
        ("adaptive-wt", TransportKind::WebTransport),
        ("adaptive-sse", TransportKind::Sse),
    ] {
        let mut conn = rt.block_on(adaptive::client(&server, kind));
        group.bench_with_input(BenchmarkId::new(name, size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(async {
                    conn.send(Message::binary(p.clone())).await.expect("send");
                    conn.recv().await.expect("recv").expect("message")
                })
            });
        });
    }

    let mut bare = rt.block_on(adaptive::bare_ws());
    group.bench_with_input(BenchmarkId::new("transport-ws", size), &payload, |b, p| {
        b.iter(|| {
            rt.block_on(async {
                bare.send(Message::binary(p.clone())).await.expect("send");
                bare.recv().await.expect("recv").expect("message")
            })
        });
    });

    let mut raw = rt.block_on(async {
        let url = transport_benches::bare_ws_echo().await;
        let addr = url.trim_start_matches("ws://").trim_end_matches('/');
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .expect("handshake");
        ws
    });
    group.bench_with_input(
        BenchmarkId::new("tokio-tungstenite", size),
        &payload,
        |b, p| {
            b.iter(|| {
                rt.block_on(async {
                    raw.send(WsMessage::Binary(p.clone())).await.expect("send");
                    raw.next().await.expect("message").expect("ok")
                })
            });
        },
    );
    group.finish();
}

fn throughput(c: &mut Criterion) {
    const N: usize = 1000;
    // Below every queue (64 by default): a window past them deadlocks any bounded echo.
    const WINDOW: usize = 32;
    let rt = runtime();
    let server = rt.block_on(adaptive::echo());
    let mut group = c.benchmark_group("adaptive_throughput");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    let size = 1024usize;
    let payload = Bytes::from(vec![0x5a; size]);
    group.throughput(Throughput::Bytes((N * size) as u64));
    let mut ours = rt.block_on(adaptive::client(&server, TransportKind::WebSocket));
    let mut bare = rt.block_on(adaptive::bare_ws());
    {
        let mut pump_ours = || {
            let started = Instant::now();
            rt.block_on(adaptive::pump(&mut ours, &payload, N, WINDOW));
            started.elapsed()
        };
        let mut pump_bare = || {
            let started = Instant::now();
            rt.block_on(adaptive::pump(&mut bare, &payload, N, WINDOW));
            started.elapsed()
        };
        pump_ours();
        pump_bare();
        PAIRED.run(
            "adaptive_throughput",
            PAIRED_TARGET,
            40,
            pump_ours,
            pump_bare,
        );
    }
    group.bench_with_input(
        BenchmarkId::new("ours-adaptive-ws", size),
        &payload,
        |b, p| {
            b.iter(|| rt.block_on(adaptive::pump(&mut ours, p, N, WINDOW)));
        },
    );
    group.bench_with_input(BenchmarkId::new("transport-ws", size), &payload, |b, p| {
        b.iter(|| rt.block_on(adaptive::pump(&mut bare, p, N, WINDOW)));
    });
    group.finish();
}

/// A UDP port that swallows everything, and a TCP port that accepts and never answers.
async fn holes() -> (UdpSocket, SocketAddr, SocketAddr) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let udp_addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_addr = tcp.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tcp.accept().await {
            held.push(s);
            if held.len() > 64 {
                held.remove(0);
            }
        }
    });
    (udp, udp_addr, tcp_addr)
}

/// One connect with `config`: the time it took, and whether the transport that won is
/// `expect` (on a loaded machine a preferred transport can miss its head start).
async fn time_connect(config: AdaptiveConfig, expect: TransportKind) -> (Duration, bool) {
    let started = Instant::now();
    let conn = transport_adaptive::connect(config).await.expect("connect");
    let took = started.elapsed();
    let as_expected = conn.transport() == Some(expect);
    let _ = conn.close(1000, "").await;
    (took, as_expected)
}

fn connect_time(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(adaptive::echo());
    let (_udp, udp_hole, tcp_stall) = rt.block_on(holes());
    let all = [
        TransportKind::WebTransport,
        TransportKind::WebSocket,
        TransportKind::Sse,
    ];
    let cases = [
        ("wt-open", vec![], TransportKind::WebTransport),
        (
            "wt-blackholed",
            vec![(
                TransportKind::WebTransport,
                format!("https://{udp_hole}/wt"),
            )],
            TransportKind::WebSocket,
        ),
        (
            "wt-blackholed-ws-stalled",
            vec![
                (
                    TransportKind::WebTransport,
                    format!("https://{udp_hole}/wt"),
                ),
                (TransportKind::WebSocket, format!("ws://{tcp_stall}/ws")),
            ],
            TransportKind::Sse,
        ),
    ];
    let configs: Vec<_> = cases
        .iter()
        .map(|(name, replace, expect)| {
            let config = rt.block_on(adaptive::client_config(&server, &all, replace));
            (*name, config, *expect)
        })
        .collect();
    for (name, config, expect) in &configs {
        let runs: Vec<(Duration, bool)> = (0..20)
            .map(|_| rt.block_on(time_connect(config.clone(), *expect)))
            .collect();
        let others = runs.iter().filter(|(_, ok)| !ok).count();
        let mut times: Vec<Duration> = runs.into_iter().map(|(t, _)| t).collect();
        times.sort();
        println!(
            "adaptive_connect/{name}: median {:?} over 20 (min {:?}, max {:?}), over {expect} \
             ({others} of 20 over another transport)",
            times[10], times[0], times[19]
        );
    }
    let mut group = c.benchmark_group("adaptive_connect");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for (name, config, expect) in &configs {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(time_connect(config.clone(), *expect)).0)
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, rtt, throughput, connect_time);
criterion_main!(benches);
