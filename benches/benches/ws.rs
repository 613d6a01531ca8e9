//! WebSocket echo round trip on loopback, in one run: ours (transport-ws client and server),
//! bare tokio-tungstenite (client and server), and a raw TCP echo (the floor). 32 B and 16 KiB.

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use transport_core::{Message, ReconnectPolicy, Transport};
use transport_ws::{ProxyConfig, WsConfig};

fn echo_round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("ws_echo_rtt");
    group.measurement_time(Duration::from_secs(5));
    for size in [32usize, 16 * 1024] {
        let payload = Bytes::from(vec![0x5a; size]);

        let mut ours = rt.block_on(async {
            let url = transport_benches::ours_ws_echo().await;
            let mut config = WsConfig::default();
            config.proxy(ProxyConfig::none());
            config.transport.reconnect(ReconnectPolicy::disabled());
            transport_ws::connect(&url, config).await.expect("connect")
        });
        group.bench_with_input(BenchmarkId::new("ours", size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(async {
                    ours.send(Message::binary(p.clone())).await.expect("send");
                    ours.recv().await.expect("recv").expect("message")
                })
            });
        });

        let mut bare = rt.block_on(async {
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
                        bare.send(WsMessage::Binary(p.clone())).await.expect("send");
                        bare.next().await.expect("message").expect("ok")
                    })
                });
            },
        );

        let (mut tcp, mut scratch) = rt.block_on(async {
            let addr = transport_benches::raw_tcp_echo().await;
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            (tcp, Vec::new())
        });
        group.bench_with_input(BenchmarkId::new("raw-tcp", size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(transport_benches::raw_tcp_round_trip(
                    &mut tcp,
                    p,
                    &mut scratch,
                ));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, echo_round_trip);
criterion_main!(benches);
