//! Server-Sent Events delivery latency on loopback: the time from the server application
//! handing over an event to the client application holding it. Ours (transport-sse server
//! session → our client, parsed into a message) beside the floor: a raw hyper streaming body
//! fed by a channel, read frame by frame by a raw hyper client (same hyper, HTTP/1.1, no SSE
//! parsing). 32 B and 4 KiB of event data.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hyper::body::Frame;
use transport_benches::sse;
use transport_core::{Message, Transport};

fn delivery_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sse_latency");
    let (server, session, mut client) = rt.block_on(sse::ours_pair());
    let (addr, mut streams) = rt.block_on(sse::raw_hyper_server());
    let (mut body, tx) = rt.block_on(async {
        let (body, tx) = tokio::join!(sse::raw_hyper_get(addr), streams.recv());
        (body, tx.expect("a stream"))
    });
    for size in [32usize, 4096] {
        let text = "x".repeat(size);
        group.bench_with_input(BenchmarkId::new("ours", size), &text, |b, text| {
            b.iter(|| {
                rt.block_on(async {
                    session
                        .send(Message::text(text.as_str()))
                        .await
                        .expect("send");
                    client.recv().await.expect("recv").expect("event")
                })
            });
        });

        let mut seq = 0u64;
        group.bench_with_input(BenchmarkId::new("raw-hyper", size), &text, |b, text| {
            b.iter(|| {
                rt.block_on(async {
                    seq += 1;
                    let event = Bytes::from(format!("id: {seq}\ndata: {text}\n\n"));
                    let len = event.len();
                    tx.send(Ok(Frame::data(event))).await.expect("send");
                    sse::read_body_bytes(&mut body, len).await;
                });
            });
        });
    }
    group.finish();
    drop((session, client, tx));
    rt.block_on(server.shutdown());
}

criterion_group!(benches, delivery_latency);
criterion_main!(benches);
