//! Server-Sent Events delivery latency on loopback: the time from the server application
//! handing over an event to the client application holding it. Ours (transport-sse server
//! session → our client, parsed into a message) beside the floor: a raw hyper streaming body
//! fed by a channel, read frame by frame by a raw hyper client (same hyper, HTTP/1.1, no SSE
//! parsing). 32 B and 4 KiB of event data.
//!
//! Before each size's criterion runs, ours and raw hyper are measured alternately (see
//! [`transport_benches::paired`]): the `sse_paired` table.

use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hyper::body::Frame;
use transport_benches::paired::Table;
use transport_benches::sse;
use transport_core::{Message, Transport};

/// The `sse_paired` table of docs/benchmarks.md.
const PAIRED: Table = Table {
    title: "sse_paired",
    text: "Delivery latency of one event, ours (our server session to our client) and the raw \
           hyper floor (a streaming body read frame by frame), each in turn.",
    ours: "ours",
    baseline: "raw-hyper",
};

/// Largest ratio of delivery latencies (ours / raw hyper) issue #6 allows.
const TARGET: f64 = 1.10;

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
    let mut seq = 0u64;
    for size in [32usize, 4096] {
        let text = "x".repeat(size);
        let mut ours = |text: &str| {
            rt.block_on(async {
                let started = Instant::now();
                session.send(Message::text(text)).await.expect("send");
                client.recv().await.expect("recv").expect("event");
                started.elapsed()
            })
        };
        let mut raw = |text: &str| {
            rt.block_on(async {
                let started = Instant::now();
                seq += 1;
                let event = Bytes::from(format!("id: {seq}\ndata: {text}\n\n"));
                let len = event.len();
                tx.send(Ok(Frame::data(event))).await.expect("send");
                sse::read_body_bytes(&mut body, len).await;
                started.elapsed()
            })
        };
        PAIRED.run(
            &size.to_string(),
            TARGET,
            5000,
            || ours(&text),
            || raw(&text),
        );
        group.bench_with_input(BenchmarkId::new("ours", size), &text, |b, text| {
            b.iter(|| ours(text));
        });
        group.bench_with_input(BenchmarkId::new("raw-hyper", size), &text, |b, text| {
            b.iter(|| raw(text));
        });
    }
    group.finish();
    drop((session, client, tx));
    rt.block_on(server.shutdown());
}

criterion_group!(benches, delivery_latency);
criterion_main!(benches);
