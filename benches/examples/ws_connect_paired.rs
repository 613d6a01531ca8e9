//! The `ws_paired` "connect tcp" loop of `benches/ws.rs` on its own, repeated:
//! `ws_connect_paired PAIRS ROUNDS` measures PAIRS pairs (ours, bare tokio-tungstenite,
//! alternately; which goes first alternates) ROUNDS times and prints each round's median of
//! per-pair ratios, then the median of the rounds. Both ends in this process, one thread, as in
//! the bench. `WITH_TLS=1` also starts the bench's two idle TLS servers on the runtime; `ECHO1=1`
//! adds one 32 B echo round trip after the set-up, inside the time.
//!
//! Note: this binary gives ~1.0x where the bench binary's own loop gives 1.12–1.16x. The
//! difference is glibc's dynamic mmap threshold: here bare tokio-tungstenite's 128 KiB buffers
//! are mmapped and unmapped per connection, in the bench binary (whose echo group's set-up ran
//! first) they come from the heap, which is not trimmed after each. Run with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=67108864`
//! (1.12x then) to compare in the bench's (warm) state
//! (docs/bench/findings.md, "WS connect: the link in its handshake's task"); judge changes with
//! the bench.

use transport_benches::paired;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pairs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(300);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    // `ECHO1` set: one 32 B echo round trip after the set-up, inside the time.
    let echo = std::env::var_os("ECHO1").is_some();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ours_url, bare_url) = rt.block_on(async {
        (
            transport_benches::ours_ws_echo().await,
            transport_benches::bare_ws_echo().await,
        )
    });
    if std::env::var_os("WITH_TLS").is_some() {
        let (server_tls, _client_tls) = transport_benches::ws_tls();
        rt.block_on(async {
            transport_benches::ours_ws_echo_with(Some(server_tls.clone())).await;
            transport_benches::bare_ws_echo_with(Some(server_tls)).await;
        });
    }
    let connector =
        transport_ws::WsConnector::new(&ours_url, transport_benches::ours_ws_config(false))
            .expect("connector");
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let p = paired::measure(
            pairs,
            || rt.block_on(transport_benches::ours_ws_connect_timed(&connector, echo)),
            || {
                rt.block_on(transport_benches::bare_ws_connect_timed(
                    &bare_url, None, echo,
                ))
            },
        );
        println!(
            "round {round}: ours {:.2} µs, bare {:.2} µs, median of pair ratios {:.3}",
            p.ours.as_secs_f64() * 1e6,
            p.baseline.as_secs_f64() * 1e6,
            p.ratio
        );
        ratios.push(p.ratio);
    }
    println!(
        "median of {rounds} rounds: {:.3}",
        paired::median(&mut ratios)
    );
}
