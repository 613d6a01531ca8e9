//! The adaptive transport under fire, live: `cargo xtask demo` runs this.
//!
//! A unified server (`AdaptiveServer`, echo) sits behind three fault proxies of
//! `test-servers` on loopback, one per transport. An adaptive client sends a numbered message
//! every few milliseconds and checks every echo. The demo then blocks UDP (WebTransport dies,
//! the client falls back to WebSocket), blocks WebSocket too (SSE carries on), lifts both (a
//! background probe moves the connection back to WebTransport), and prints a table: messages
//! sent, received, lost, duplicated, out of order, and the time each switch took.
//!
//! Usage: `demo [--phase-secs N]` (default 3 seconds per phase).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use test_servers::fault::{Fault, FaultProxy};
use tokio::sync::Mutex;
use tokio::time::Instant;
use transport_adaptive::transport_ws::ProxyConfig;
use transport_adaptive::{
    AdaptiveConfig, AdaptiveEvent, AdaptiveServer, AdaptiveServerConfig, TransportKind,
};
use transport_core::{Message, Transport};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The whole demo stops after this, whatever happens.
const BUDGET: Duration = Duration::from_secs(120);
/// A message goes out this often.
const PACE: Duration = Duration::from_millis(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let phase = phase_secs()?;
    match tokio::time::timeout(BUDGET, run(phase)).await {
        Ok(result) => result,
        Err(_) => Err(format!("the demo did not finish within {BUDGET:?}").into()),
    }
}

fn phase_secs() -> Result<Duration, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(Duration::from_secs(3)),
        [flag, n] if flag == "--phase-secs" => {
            let n: u64 = n.parse()?;
            if !(1..=60).contains(&n) {
                return Err("--phase-secs takes 1 to 60".into());
            }
            Ok(Duration::from_secs(n))
        }
        _ => Err("usage: demo [--phase-secs N]".into()),
    }
}

/// What the receiving side saw.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    next: u64,
    /// Round trips of the last second or so, for the live line.
    recent_rtts: Vec<Duration>,
}

/// A switch of transport and how long it took from the fault (or the repair).
#[derive(Debug)]
struct Switch {
    what: &'static str,
    from: Option<TransportKind>,
    to: TransportKind,
    took: Option<Duration>,
}

/// The server with its echo task, and one fault proxy per transport.
struct Stage {
    server: Arc<AdaptiveServer>,
    echo: tokio::task::JoinHandle<()>,
    udp_proxy: FaultProxy,
    ws_proxy: FaultProxy,
    sse_proxy: FaultProxy,
}

/// Starts the stage and returns it with the client's settings (endpoints through the proxies).
async fn stage() -> Result<(Stage, AdaptiveConfig), Error> {
    // The server, with an echo handler for every connection.
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse()?, AdaptiveServerConfig::default()).await?,
    );
    let echo_server = server.clone();
    let echo = tokio::spawn(async move {
        while let Some((mut conn, _)) = echo_server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let tcp = server.local_addr();
    let wt_url = server.wt_url().ok_or("the server has no WebTransport")?;
    let udp: std::net::SocketAddr = wt_url
        .trim_start_matches("https://")
        .trim_end_matches("/wt")
        .parse()?;

    // One fault proxy per transport, so each can be blocked alone.
    let udp_proxy = FaultProxy::udp(udp).await?;
    let ws_proxy = FaultProxy::tcp(tcp).await?;
    let sse_proxy = FaultProxy::tcp(tcp).await?;
    println!(
        "server      {}  (ws /ws, sse /sse, wt /wt on UDP)",
        server.base_url()
    );
    println!(
        "proxies     wt udp {}   ws tcp {}   sse tcp {}",
        udp_proxy.local_addr(),
        ws_proxy.local_addr(),
        sse_proxy.local_addr()
    );

    let mut config = AdaptiveConfig::new(
        Some(&format!("https://{}/wt", udp_proxy.local_addr())),
        Some(&format!("ws://{}/ws", ws_proxy.local_addr())),
        Some(&format!("http://{}/sse", sse_proxy.local_addr())),
    );
    if let Some(hash) = server.wt_cert_hash() {
        config.wt_cert_hash(hex32(hash).ok_or("bad certificate hash")?);
    }
    config.ws.proxy(ProxyConfig::none());
    // A blocked path is noticed within a second (keepalive every 250 ms), and a preferred
    // transport that works again is found within a second.
    for transport in [
        &mut config.ws.transport,
        &mut config.sse.transport,
        &mut config.wt.client.transport,
    ] {
        transport.keepalive(Some(Duration::from_millis(250)), Duration::from_secs(1));
    }
    config.attempt_timeout(Duration::from_secs(1));
    config.probe_interval(Some(Duration::from_secs(1)));
    config
        .transport
        .reconnect
        .delays(Duration::from_millis(20), Duration::from_millis(250));
    let stage = Stage {
        server,
        echo,
        udp_proxy,
        ws_proxy,
        sse_proxy,
    };
    Ok((stage, config))
}

async fn run(phase: Duration) -> Result<(), Error> {
    let (stage, config) = stage().await?;
    let Stage {
        server,
        echo,
        udp_proxy,
        ws_proxy,
        sse_proxy: _sse_proxy,
    } = stage;

    let connected_at = Instant::now();
    let client = transport_adaptive::connect(config).await?;
    let first = client.transport();
    println!(
        "connected   over {} in {:?}, exactly-once: {}\n",
        first.map_or("?", TransportKind::name),
        connected_at.elapsed(),
        client.status().delivery_guaranteed
    );
    let mut events = client.events();
    let status = client.watch_status();
    let (sender, receiver) = client.into_inner().split();

    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let stop_sending = tokio_util::sync::CancellationToken::new();

    let sending = spawn_sender(sender, sent_at.clone(), stop_sending.clone());
    let receiving = spawn_receiver(receiver, sent_at.clone(), tally.clone());

    // The script: each step at its time, a live line every half second meanwhile.
    let start = Instant::now();
    let mut switches: Vec<Switch> = Vec::new();
    let mut current = first;
    let mut fault_at: Option<(Instant, &'static str)> = Some((start, "connect"));
    let steps: [(u32, &'static str, &dyn Fn()); 4] = [
        (1, "block UDP (WebTransport)", &|| {
            udp_proxy.set(Fault::Blackhole);
        }),
        (2, "block WebSocket too", &|| {
            ws_proxy.set(Fault::Reset);
        }),
        (3, "restore UDP and WebSocket", &|| {
            udp_proxy.set(Fault::Pass);
            ws_proxy.set(Fault::Pass);
        }),
        (4, "stop sending", &|| stop_sending.cancel()),
    ];
    let mut next_step = 0;
    let mut live = tokio::time::interval(Duration::from_millis(500));
    let end = start + phase * 4 + Duration::from_secs(1);
    while Instant::now() < end {
        tokio::select! {
            _ = live.tick() => {
                let (done, rtts) = {
                    let mut t = tally.lock().await;
                    (t.received, std::mem::take(&mut t.recent_rtts))
                };
                let in_flight = sent_at.lock().await.len();
                println!(
                    "t={:>5.1}s  transport={:<4} received={:<6} in flight={:<5} rtt p50={}",
                    start.elapsed().as_secs_f64(),
                    status.borrow().transport.map_or("-", TransportKind::name),
                    done,
                    in_flight,
                    median(rtts).map_or("-".to_owned(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3)),
                );
            }
            event = events.recv() => {
                let Ok(event) = event else { continue };
                if let Some(line) = describe(&event) {
                    println!("            {line}");
                }
                if let AdaptiveEvent::TransportChanged { from, to, .. } = event {
                    let took = fault_at.map(|(at, _)| at.elapsed());
                    switches.push(Switch { what: fault_at.map_or("probe", |(_, w)| w), from, to, took });
                    current = Some(to);
                    fault_at = None;
                }
            }
        }
        if next_step < steps.len() && start.elapsed() >= phase * steps[next_step].0 {
            let (_, what, act) = steps[next_step];
            println!(">>> {what}");
            act();
            if next_step < 3 {
                fault_at = Some((Instant::now(), what));
            }
            next_step += 1;
        }
    }
    let (sent, sender) = sending.await?;
    // Every echo still on its way gets a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sent_at.lock().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = sender.close(1000, "demo over").await;
    let _ = tokio::time::timeout(Duration::from_secs(5), receiving).await;
    echo.abort();
    server.shutdown().await;

    let t = tally.lock().await;
    let lost = sent_at.lock().await.len();
    report(&switches, sent, &t, lost, current)
}

/// Sends a numbered message every [`PACE`] until `stop`; returns how many and the sender.
fn spawn_sender(
    sender: transport_core::Sender,
    sent_at: Arc<Mutex<HashMap<u64, Instant>>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<(u64, transport_core::Sender)> {
    tokio::spawn(async move {
        let mut n: u64 = 0;
        let mut tick = tokio::time::interval(PACE);
        while !stop.is_cancelled() {
            tick.tick().await;
            sent_at.lock().await.insert(n, Instant::now());
            if sender.send(Message::text(n.to_string())).await.is_err() {
                break;
            }
            n += 1;
        }
        (n, sender)
    })
}

/// Checks every echo against what was sent.
fn spawn_receiver(
    mut receiver: transport_core::Receiver,
    sent_at: Arc<Mutex<HashMap<u64, Instant>>>,
    tally: Arc<Mutex<Tally>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(message)) = receiver.recv().await {
            let Some(n) = message.as_text().and_then(|t| t.parse::<u64>().ok()) else {
                continue;
            };
            let rtt = sent_at.lock().await.remove(&n).map(|at| at.elapsed());
            let mut t = tally.lock().await;
            let Some(rtt) = rtt else {
                t.duplicated += 1;
                continue;
            };
            t.received += 1;
            if n != t.next {
                t.out_of_order += 1;
            }
            t.next = n + 1;
            t.recent_rtts.push(rtt);
        }
    })
}

/// The closing tables; an error if anything was lost, duplicated or reordered.
fn report(
    switches: &[Switch],
    sent: u64,
    tally: &Tally,
    lost: usize,
    final_transport: Option<TransportKind>,
) -> Result<(), Error> {
    println!("\n| transport switch | from | to | time to switch |");
    println!("|---|---|---|---|");
    for s in switches {
        println!(
            "| after {} | {} | {} | {} |",
            s.what,
            s.from.map_or("-", TransportKind::name),
            s.to.name(),
            s.took
                .map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()))
        );
    }
    println!("\n| messages | count |");
    println!("|---|---|");
    println!("| sent | {sent} |");
    println!("| received | {} |", tally.received);
    println!("| lost | {lost} |");
    println!("| duplicated | {} |", tally.duplicated);
    println!("| out of order | {} |", tally.out_of_order);
    println!(
        "| final transport | {} |",
        final_transport.map_or("-", TransportKind::name)
    );
    if lost > 0 || tally.duplicated > 0 || tally.out_of_order > 0 || tally.received != sent {
        return Err("messages were lost, duplicated or reordered".into());
    }
    Ok(())
}

fn describe(event: &AdaptiveEvent) -> Option<String> {
    Some(match event {
        AdaptiveEvent::TransportChanged { from, to, reason } => format!(
            "transport {} -> {to} ({reason:?})",
            from.map_or("-", TransportKind::name)
        ),
        AdaptiveEvent::Disconnected { transport, error } => {
            format!("{transport} dropped: {error}")
        }
        AdaptiveEvent::Resumed { replayed } => {
            format!("session resumed, {replayed} messages replayed")
        }
        AdaptiveEvent::AttemptFailed { transport, error } => {
            format!("{transport} attempt failed: {error}")
        }
        _ => return None,
    })
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
