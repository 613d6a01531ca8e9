//! SSE parser throughput on a realistic stream fed in network-sized chunks: ours
//! (`transport_sse::SseParser`, sans-IO) against `eventsource-stream`, the parser most Rust SSE
//! clients (reqwest-eventsource among them) use. Same input, same chunking, same run.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use transport_sse::{ParserLimits, SseParser};

const EVENTS: usize = 10_000;
const CHUNK: usize = 4096;

fn parser(c: &mut Criterion) {
    let stream = transport_benches::sse_stream(EVENTS);
    let chunks: Vec<Bytes> = stream.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
    let mut group = c.benchmark_group("sse_parser");
    group.throughput(Throughput::Bytes(stream.len() as u64));

    group.bench_function("ours", |b| {
        b.iter(|| {
            let mut p = SseParser::new(ParserLimits::default());
            let mut n = 0usize;
            for chunk in &chunks {
                p.feed(chunk);
                while let Some(event) = p.next_event() {
                    n += black_box(event).map_or(0, |e| e.data.len());
                }
            }
            p.finish();
            assert!(n > 0);
            n
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    group.bench_function("eventsource-stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = futures_util::stream::iter(
                    chunks
                        .iter()
                        .cloned()
                        .map(Ok::<_, std::convert::Infallible>),
                );
                let mut events = body.eventsource();
                let mut n = 0usize;
                while let Some(event) = events.next().await {
                    n += black_box(event).map_or(0, |e| e.data.len());
                }
                assert!(n > 0);
                n
            })
        });
    });
    group.finish();
}

criterion_group!(benches, parser);
criterion_main!(benches);
