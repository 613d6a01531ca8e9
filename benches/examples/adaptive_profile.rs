//! A fixed number of echo pumps through the adaptive transport over WebSocket, or through the
//! bare transport-ws connection it wraps, for profilers whose totals divide by the count:
//! `adaptive_profile adaptive|ws PUMPS [SIZE] [MESSAGES] [WINDOW]` (both ends in this process,
//! one thread; defaults as the `adaptive_throughput` bench: 1 KiB, 1,000 messages, 32 in
//! flight). Subtract a run with fewer pumps to get the cost of one.

use bytes::Bytes;
use transport_adaptive::TransportKind;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let which = args.get(1).map_or("adaptive", String::as_str).to_owned();
    let (pumps, size, messages, window) = (arg(2, 10), arg(3, 1024), arg(4, 1000), arg(5, 32));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(vec![0x5a; size]);
    rt.block_on(async {
        if which == "adaptive" {
            let server = transport_benches::adaptive::echo().await;
            let mut conn =
                transport_benches::adaptive::client(&server, TransportKind::WebSocket).await;
            for _ in 0..pumps {
                transport_benches::adaptive::pump(&mut conn, &payload, messages, window).await;
            }
        } else {
            let mut conn = transport_benches::adaptive::bare_ws().await;
            for _ in 0..pumps {
                transport_benches::adaptive::pump(&mut conn, &payload, messages, window).await;
            }
        }
    });
}
