//! WebTransport on loopback, in one run per group: ours (transport-wt client and server) beside
//! a bare quinn client and server (QUIC without HTTP/3: the floor, same certificate and TLS
//! provider) and `wtransport` (client and server).
//!
//! * `wt_echo_rtt`: one round trip of 32 B and 16 KiB on a bidirectional stream that stays
//!   open (ours through the raw session API, and through the message connection); before it,
//!   each of ours and quinn alternately (the `wt_paired` table's `echo` rows).
//! * `wt_datagram_rtt`: one datagram round trip (32 B, 1000 B); before it, ours and quinn
//!   alternately (the `wt_paired` table's `datagram` rows).
//! * `wt_setup`: from `connect` to a usable session, full handshake and 0-RTT resumption.
//!   Before it, ours and the bare QUIC handshake are measured alternately (see
//!   [`transport_benches::paired`]): the `wt_paired` table.
//!
//! Then a datagram burst (loss under load) is measured outside criterion and written beside the
//! criterion results for `cargo xtask bench` (see [`transport_benches::extra`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use tokio::runtime::Runtime;
use transport_benches::extra::Section;
use transport_benches::paired::Table;
use transport_benches::wt;
use transport_core::{Message, Transport};
use transport_wt::cert::SelfSignedCert;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `wt_paired` echo rows of one size: each of ours alternately with quinn.
fn paired_echo(
    payload: &Bytes,
    ours: &mut dyn FnMut(&Bytes),
    messages: &mut dyn FnMut(&Bytes),
    quinn: &mut dyn FnMut(&Bytes),
) {
    let size = payload.len();
    let pairs = if size <= 1024 { 5000 } else { 1000 };
    let timed = |round: &mut dyn FnMut(&Bytes)| {
        let started = Instant::now();
        round(payload);
        started.elapsed()
    };
    PAIRED.run(
        &format!("echo {size} session"),
        ECHO_TARGET,
        pairs,
        || timed(ours),
        || timed(quinn),
    );
    PAIRED.run(
        &format!("echo {size} messages"),
        ECHO_TARGET,
        pairs,
        || timed(messages),
        || timed(quinn),
    );
}

/// `wt_echo_rtt`'s wtransport row of one size (its client and server, a reference).
fn wtransport_echo(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    cert: &SelfSignedCert,
    url: &str,
    payload: &Bytes,
) {
    let size = payload.len();
    let mut back = vec![0u8; size];
    let (client, session, mut send, mut recv) = rt.block_on(async {
        let client = wt::wtransport_client(cert);
        let session = client.connect(url).await.expect("connect");
        let (send, recv) = session
            .open_bi()
            .await
            .expect("open")
            .await
            .expect("stream");
        (client, session, send, recv)
    });
    group.bench_with_input(BenchmarkId::new("wtransport", size), payload, |b, p| {
        b.iter(|| {
            rt.block_on(async {
                send.write_all(p).await.expect("write");
                tokio::io::AsyncReadExt::read_exact(&mut recv, &mut back)
                    .await
                    .expect("read");
            });
        });
    });
    drop((send, recv, session, client));
}

fn echo_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let cert = wt::certificate();
    let (ours_server, message_server, quinn_server, wtransport_server) = rt.block_on(async {
        (
            wt::ours_raw_echo(&cert),
            wt::ours_message_echo(&cert),
            wt::quinn_echo(&cert),
            wt::wtransport_echo(&cert),
        )
    });
    let mut group = c.benchmark_group("wt_echo_rtt");
    for size in [32usize, 16 * 1024] {
        let payload = Bytes::from(vec![0x5a; size]);
        let mut back = vec![0u8; size];

        let (session, mut send, mut recv) = rt.block_on(async {
            let session =
                transport_wt::connect(&ours_server.url, wt::ours_client_config(&cert, false))
                    .await
                    .expect("connect");
            let (send, recv) = session.open_bi().await.expect("stream");
            (session, send, recv)
        });
        let mut conn = rt.block_on(async {
            transport_wt::connect_transport(&message_server.url, wt::ours_message_config(&cert))
                .await
                .expect("connect")
        });
        let (endpoint, quic, mut quinn_send, mut quinn_recv) = rt.block_on(async {
            let endpoint = wt::quinn_client_endpoint();
            let quic = wt::quinn_connect(
                &endpoint,
                wt::quinn_client_config(&cert, false),
                quinn_server.addr,
            )
            .await;
            let (send, recv) = quic.open_bi().await.expect("stream");
            (endpoint, quic, send, recv)
        });
        let mut quinn_back = vec![0u8; size];
        let mut ours_round = |p: &Bytes| {
            rt.block_on(async {
                send.write_all(p).await.expect("write");
                recv.read_exact(&mut back).await.expect("read");
            });
        };
        let mut messages_round = |p: &Bytes| {
            rt.block_on(async {
                conn.send(Message::binary(p.clone())).await.expect("send");
                conn.recv().await.expect("recv").expect("message")
            });
        };
        let mut quinn_round = |p: &Bytes| {
            rt.block_on(async {
                quinn_send.write_all(p).await.expect("write");
                quinn_recv.read_exact(&mut quinn_back).await.expect("read");
            });
        };

        paired_echo(
            &payload,
            &mut ours_round,
            &mut messages_round,
            &mut quinn_round,
        );

        group.bench_with_input(BenchmarkId::new("ours", size), &payload, |b, p| {
            b.iter(|| ours_round(p));
        });
        group.bench_with_input(BenchmarkId::new("ours-messages", size), &payload, |b, p| {
            b.iter(|| messages_round(p));
        });
        group.bench_with_input(BenchmarkId::new("quinn", size), &payload, |b, p| {
            b.iter(|| quinn_round(p));
        });
        drop((send, recv, session, conn));
        quic.close(0u32.into(), b"");
        drop((quinn_send, quinn_recv, endpoint));

        wtransport_echo(&mut group, &rt, &cert, &wtransport_server.url, &payload);
    }
    group.finish();
}

fn datagram_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let cert = wt::certificate();
    let (ours_server, quinn_server, wtransport_server) = rt.block_on(async {
        (
            wt::ours_raw_echo(&cert),
            wt::quinn_echo(&cert),
            wt::wtransport_echo(&cert),
        )
    });
    let ours = rt.block_on(async {
        transport_wt::connect(&ours_server.url, wt::ours_client_config(&cert, false))
            .await
            .expect("connect")
    });
    let (endpoint, quic) = rt.block_on(async {
        let endpoint = wt::quinn_client_endpoint();
        let quic = wt::quinn_connect(
            &endpoint,
            wt::quinn_client_config(&cert, false),
            quinn_server.addr,
        )
        .await;
        (endpoint, quic)
    });
    let (client, session) = rt.block_on(async {
        let client = wt::wtransport_client(&cert);
        let session = client
            .connect(&wtransport_server.url)
            .await
            .expect("connect");
        (client, session)
    });
    // Paired first (the `wt_paired` table): ours and quinn alternately, one round trip each.
    for size in [32usize, 1000] {
        let payload = Bytes::from(vec![0x5a; size]);
        let timed = |round_trip: &dyn Fn() -> Bytes| {
            let started = Instant::now();
            round_trip();
            started.elapsed()
        };
        PAIRED.run(
            &format!("datagram {size}"),
            DATAGRAM_TARGET,
            5000,
            || {
                timed(&|| {
                    rt.block_on(wt::datagram_round_trip(
                        || ours.send_datagram(payload.clone()).is_ok(),
                        || async { ours.read_datagram().await.ok() },
                    ))
                })
            },
            || {
                timed(&|| {
                    rt.block_on(wt::datagram_round_trip(
                        || quic.send_datagram(payload.clone()).is_ok(),
                        || async { quic.read_datagram().await.ok() },
                    ))
                })
            },
        );
    }
    let mut group = c.benchmark_group("wt_datagram_rtt");
    for size in [32usize, 1000] {
        let payload = Bytes::from(vec![0x5a; size]);
        group.bench_with_input(BenchmarkId::new("ours", size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(wt::datagram_round_trip(
                    || ours.send_datagram(p.clone()).is_ok(),
                    || async { ours.read_datagram().await.ok() },
                ))
            });
        });
        group.bench_with_input(BenchmarkId::new("quinn", size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(wt::datagram_round_trip(
                    || quic.send_datagram(p.clone()).is_ok(),
                    || async { quic.read_datagram().await.ok() },
                ))
            });
        });
        group.bench_with_input(BenchmarkId::new("wtransport", size), &payload, |b, p| {
            b.iter(|| {
                rt.block_on(wt::datagram_round_trip(
                    || session.send_datagram(p).is_ok(),
                    || async {
                        session
                            .receive_datagram()
                            .await
                            .ok()
                            .map(|d| Bytes::copy_from_slice(&d.payload()))
                    },
                ))
            });
        });
    }
    group.finish();
    drop((ours, quic, endpoint, session, client));
}

/// The `wt_paired` table of docs/benchmarks.md.
const PAIRED: Table = Table {
    title: "wt_paired",
    text: "Ours (transport-wt client to our server: raw session API, or the message \
           Transport for the `messages` rows) and bare quinn: one echo round trip on an open \
           stream (`wt_echo_rtt`'s iteration), one datagram round trip on an open session \
           (`wt_datagram_rtt`'s), or one \
           set-up to a usable session against a bare QUIC handshake (a fresh endpoint per \
           connection, as ours), full or resumed with 0-RTT (closed and settled outside the \
           time), each in turn.",
    ours: "ours",
    baseline: "quinn",
};

/// Largest ratio of echo round trips on a stream (ours / bare quinn) issue #6 allows.
const ECHO_TARGET: f64 = 1.10;

/// Largest ratio of datagram round trips (ours / bare quinn) issue #6 allows.
const DATAGRAM_TARGET: f64 = 1.10;

/// Largest ratio of session set-up times (ours / the bare QUIC handshake) issue #6 allows.
const SETUP_TARGET: f64 = 1.5;

/// One session set-up of ours, timed; closed and settled outside the time.
async fn ours_setup_once(
    url: &str,
    config: &transport_wt::WtClientConfig,
    zero_rtt: bool,
) -> Duration {
    let started = Instant::now();
    let session = transport_wt::connect(url, config.clone())
        .await
        .expect("connect");
    let took = started.elapsed();
    assert_eq!(session.zero_rtt_accepted(), zero_rtt);
    let _ = session.close(0, "").await;
    transport_benches::settle().await;
    took
}

/// One bare QUIC handshake (0-RTT when `zero_rtt`), timed, from a fresh endpoint (UDP socket)
/// per connection as ours; closed and settled outside the time.
async fn quinn_setup_once(
    config: &quinn::ClientConfig,
    addr: std::net::SocketAddr,
    zero_rtt: bool,
) -> Duration {
    let started = Instant::now();
    let endpoint = wt::quinn_client_endpoint();
    let connecting = endpoint
        .connect_with(config.clone(), addr, "127.0.0.1")
        .expect("connect");
    let conn = if zero_rtt {
        let (conn, accepted) = connecting.into_0rtt().expect("a ticket for 0-RTT");
        // Handshake done, with the early data accepted.
        assert!(accepted.await, "0-RTT accepted");
        conn
    } else {
        connecting.await.expect("handshake")
    };
    let took = started.elapsed();
    // The client has the server's Finished, the server not yet ours: the next ticket comes
    // after. One echo (unmeasured) lets it arrive.
    quinn_echo_once(&conn).await;
    conn.close(0u32.into(), b"");
    transport_benches::settle().await;
    took
}

fn session_setup(c: &mut Criterion) {
    let rt = runtime();
    let cert = wt::certificate();
    let (ours_server, quinn_server) =
        rt.block_on(async { (wt::ours_raw_echo(&cert), wt::quinn_echo(&cert)) });
    let cases = [("full", false), ("0-rtt", true)].map(|(case, zero_rtt)| {
        (
            case,
            zero_rtt,
            wt::ours_client_config(&cert, zero_rtt),
            wt::quinn_client_config(&cert, zero_rtt),
        )
    });
    // A first session of each fetches the tickets the later ones resume with: right before
    // they are used, as the servers keep a bounded number of sessions (each full handshake
    // adds some, and evicts the oldest).
    let fetch_tickets = |ours: &transport_wt::WtClientConfig, quinn: &quinn::ClientConfig| {
        rt.block_on(async {
            let first = transport_wt::connect(&ours_server.url, ours.clone())
                .await
                .expect("connect");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = first.close(0, "").await;
            let endpoint = wt::quinn_client_endpoint();
            let conn = wt::quinn_connect(&endpoint, quinn.clone(), quinn_server.addr).await;
            quinn_echo_once(&conn).await;
            conn.close(0u32.into(), b"");
        });
    };
    for (case, zero_rtt, ours, quinn) in &cases {
        if *zero_rtt {
            fetch_tickets(ours, quinn);
        }
        PAIRED.run(
            &format!("setup {case}"),
            SETUP_TARGET,
            300,
            || rt.block_on(ours_setup_once(&ours_server.url, ours, *zero_rtt)),
            || rt.block_on(quinn_setup_once(quinn, quinn_server.addr, *zero_rtt)),
        );
    }
    let mut group = c.benchmark_group("wt_setup");
    for (case, zero_rtt, ours, quinn) in &cases {
        if *zero_rtt {
            fetch_tickets(ours, quinn);
        }
        group.bench_function(BenchmarkId::new("ours", case), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += ours_setup_once(&ours_server.url, ours, *zero_rtt).await;
                    }
                    total
                })
            });
        });
        group.bench_function(BenchmarkId::new("quinn", case), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += quinn_setup_once(quinn, quinn_server.addr, *zero_rtt).await;
                    }
                    total
                })
            });
        });
    }
    group.finish();
}

/// One byte echoed on a new stream.
async fn quinn_echo_once(conn: &quinn::Connection) {
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(b"x").await.expect("write");
    send.finish().expect("finish");
    recv.read_to_end(16).await.expect("read");
}

/// Sends bursts of datagrams without waiting and counts the echoes that come back within a
/// second: loss under load, ours and bare quinn, for `cargo xtask bench`.
fn datagram_burst() -> Section {
    const BURSTS: [usize; 2] = [100, 1000];
    const SIZE: usize = 1000;
    let rt = runtime();
    let cert = wt::certificate();
    let mut rows = Vec::new();
    rt.block_on(async {
        let ours_server = wt::ours_raw_echo(&cert);
        let quinn_server = wt::quinn_echo(&cert);
        let ours = transport_wt::connect(&ours_server.url, wt::ours_client_config(&cert, false))
            .await
            .expect("connect");
        let endpoint = wt::quinn_client_endpoint();
        let quic = wt::quinn_connect(
            &endpoint,
            wt::quinn_client_config(&cert, false),
            quinn_server.addr,
        )
        .await;
        let payload = Bytes::from(vec![0x5a; SIZE]);
        for burst in BURSTS {
            let (sent, back) = burst_once(
                burst,
                || ours.send_datagram(payload.clone()).is_ok(),
                || async { ours.read_datagram().await.ok() },
            )
            .await;
            rows.push(burst_row("ours", burst, sent, back));
            let (sent, back) = burst_once(
                burst,
                || quic.send_datagram(payload.clone()).is_ok(),
                || async { quic.read_datagram().await.ok() },
            )
            .await;
            rows.push(burst_row("quinn", burst, sent, back));
        }
        quic.close(0u32.into(), b"");
        let _ = ours.close(0, "").await;
    });
    Section {
        title: "wt_datagram_burst".into(),
        text: format!(
            "Datagrams of {SIZE} B sent back to back (no pacing by the application), echoed by \
             the server; echoes counted for one second after the last send. Loss is what \
             neither the send buffers nor the receive queues held. Each server keeps its \
             default UDP receive buffer: ours asks for 4 MiB (`WtServerConfig::udp_recv_buffer`), \
             bare quinn has the system default (`net.core.rmem_default`), which makes most of \
             the difference in loss: with equal buffers the two lost the same (552 of 1000 \
             echoed each, before that option existed; docs/bench/findings.md)."
        ),
        headers: vec![
            "implementation".into(),
            "burst".into(),
            "accepted by send".into(),
            "echoed back".into(),
            "loss".into(),
        ],
        rows,
    }
}

fn burst_row(name: &str, burst: usize, sent: usize, back: usize) -> Vec<String> {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let loss = 100.0 * (1.0 - back as f64 / burst as f64);
    vec![
        name.into(),
        burst.to_string(),
        sent.to_string(),
        back.to_string(),
        format!("{loss:.1} %"),
    ]
}

async fn burst_once<S, R, F>(burst: usize, send: S, mut recv: R) -> (usize, usize)
where
    S: Fn() -> bool,
    R: FnMut() -> F,
    F: Future<Output = Option<Bytes>>,
{
    // Drain what an earlier burst left behind (at most one burst's worth).
    for _ in 0..burst {
        if !matches!(
            tokio::time::timeout(Duration::from_millis(200), recv()).await,
            Ok(Some(_))
        ) {
            break;
        }
    }
    let delivered_to_quic = (0..burst).filter(|_| send()).count();
    let mut echoed = 0;
    while echoed < burst {
        match tokio::time::timeout(Duration::from_secs(1), recv()).await {
            Ok(Some(_)) => echoed += 1,
            _ => break,
        }
    }
    (delivered_to_quic, echoed)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    echo_round_trip(&mut c);
    datagram_round_trip(&mut c);
    session_setup(&mut c);
    transport_benches::extra::write(&datagram_burst());
    c.final_summary();
}
