//! Client and server in different network namespaces, joined by a veth pair with real packet
//! delay and loss (`tc qdisc ... netem`), then with UDP dropped on the server's side.
//!
//! Needs root, `ip netns` and the netem qdisc; where one is missing the test prints why and
//! returns (it cannot prove anything there). The server runs in a child process (this test
//! binary again, started with `ip netns exec`), the client in the test's own namespace.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bounded, round_trip, server_config, tune};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use transport_adaptive::{AdaptiveConfig, AdaptiveServer, TransportKind};
use transport_core::{Message, Transport};

/// Set in the child: bind the server on this address and serve until stdin closes.
const ROLE: &str = "TRANSPORT_ADAPTIVE_NETNS_SERVER";
const TEST: &str = "across_namespaces_with_delay_loss_and_blocked_udp";
/// Messages each way per phase.
const N: u32 = 1_000;

/// Runs a command line (words separated by spaces, none containing one); `Err` carries its
/// stderr.
fn run(line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap_or_default();
    let out = Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{line}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace and the veth pair; deleted on drop.
struct Net {
    ns: String,
    host_if: String,
    ns_if: String,
    ns_ip: String,
}

impl Net {
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let net = Self {
            ns: format!("tadapt{id}"),
            host_if: format!("tah{id}"),
            ns_if: format!("tan{id}"),
            ns_ip: format!("10.231.{}.2", id % 250),
        };
        run(&format!("ip netns add {}", net.ns))?;
        // From here on, `net` cleans up on an early return.
        let (ns, host, peer) = (&net.ns, &net.host_if, &net.ns_if);
        let host_ip = format!("10.231.{}.1", id % 250);
        let exec = format!("ip netns exec {ns}");
        for step in [
            format!("ip link add {host} type veth peer name {peer}"),
            format!("ip link set {peer} netns {ns}"),
            format!("ip addr add {host_ip}/30 dev {host}"),
            format!("ip link set {host} up"),
            format!("{exec} ip addr add {}/30 dev {peer}", net.ns_ip),
            format!("{exec} ip link set {peer} up"),
            format!("{exec} ip link set lo up"),
            // Delay and loss at both ends (each end shapes what it sends).
            format!("tc qdisc add dev {host} root netem delay 10ms loss 2%"),
            format!("{exec} tc qdisc add dev {peer} root netem delay 10ms loss 2%"),
        ] {
            run(&step)?;
        }
        Ok(net)
    }

    /// Drops every UDP datagram the namespace sends (policy routing: UDP looks up a table whose
    /// only route is a blackhole), so WebTransport's server goes silent, TCP still flows.
    fn block_udp(&self) -> Result<(), String> {
        let exec = format!("ip netns exec {}", self.ns);
        run(&format!("{exec} ip route add blackhole default table 100"))?;
        run(&format!(
            "{exec} ip rule add ipproto udp lookup 100 pref 100"
        ))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = run(&format!("ip netns del {}", self.ns));
        let _ = run(&format!("ip link del {}", self.host_if));
    }
}

/// Child side: serve on `addr` (echo), print `LISTEN <tcp addr> <cert sha256>`, stop when
/// stdin closes.
async fn serve(addr: &str) {
    let server = std::sync::Arc::new(
        AdaptiveServer::bind(format!("{addr}:0").parse().unwrap(), server_config())
            .await
            .unwrap(),
    );
    let _echo = common::spawn_echo(server.clone());
    println!(
        "LISTEN {} {}",
        server.local_addr(),
        server.wt_cert_hash().unwrap()
    );
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::io::stdin().read_to_end(&mut sink),
    )
    .await;
    bounded(server.shutdown()).await;
}

/// Sends `N` numbered messages and checks their echoes, in order, once each.
async fn echo_n(conn: &mut transport_adaptive::AdaptiveConnection, label: &str) {
    let started = Instant::now();
    // In windows of 50, so that neither side's queues fill while the other waits.
    for window in (1..=N).collect::<Vec<_>>().chunks(50) {
        for i in window {
            bounded(conn.send(Message::text(i.to_string())))
                .await
                .unwrap();
        }
        for i in window {
            assert_eq!(
                bounded(conn.recv()).await.unwrap(),
                Some(Message::text(i.to_string())),
                "{label}: out of order, lost or duplicated"
            );
        }
    }
    println!(
        "{label}: {N} echoed in order over {:?} in {:?}",
        conn.transport(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_namespaces_with_delay_loss_and_blocked_udp() {
    if let Ok(addr) = std::env::var(ROLE) {
        serve(&addr).await;
        return;
    }
    let net = match Net::create() {
        Ok(net) => net,
        Err(why) => {
            println!("SKIPPED: network namespaces with netem are not available here ({why})");
            return;
        }
    };
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", &net.ns])
        .arg(&exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, &net.ns_ip)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (addr, hash) = bounded(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("child ended");
            // libtest may have written "test NAME ... " on the same line first.
            if let Some((_, rest)) = line.split_once("LISTEN ") {
                let (a, h) = rest.split_once(' ').unwrap();
                break (a.to_owned(), h.to_owned());
            }
        }
    })
    .await;
    let mut config = AdaptiveConfig::new(
        Some(&format!("https://{addr}/wt")),
        Some(&format!("ws://{addr}/ws")),
        Some(&format!("http://{addr}/sse")),
    );
    tune(&mut config);
    config.wt_cert_hash(common::hex32(&hash));
    config.health_timeout(Duration::from_secs(5));
    config
        .wt
        .client
        .transport
        .keepalive(Some(Duration::from_millis(200)), Duration::from_secs(2));
    config.probe_interval(None);
    let started = Instant::now();
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    println!(
        "netns, 10 ms each way, 2% loss: connected over {:?} in {:?}",
        conn.transport(),
        started.elapsed()
    );
    assert_eq!(conn.transport(), Some(TransportKind::WebTransport));
    echo_n(&mut conn, "netns delay+loss").await;

    match net.block_udp() {
        Ok(()) => {
            let mut status = conn.watch_status();
            let blocked = Instant::now();
            // Traffic keeps flowing while the link is replaced.
            let sent = tokio::spawn(async move {
                round_trip(&mut conn, Message::text("across the block")).await;
                conn
            });
            bounded(status.wait_for(|s| s.transport == Some(TransportKind::WebSocket)))
                .await
                .unwrap();
            println!(
                "netns, UDP dropped: on WebSocket {:?} later",
                blocked.elapsed()
            );
            let mut conn = bounded(sent).await.unwrap();
            echo_n(&mut conn, "netns UDP blocked").await;
            bounded(conn.close(1000, "")).await.unwrap();
        }
        Err(why) => {
            println!("netns: UDP block phase skipped ({why})");
            bounded(conn.close(1000, "")).await.unwrap();
        }
    }
    drop(child.stdin.take());
    let _ = bounded(child.wait()).await;
    drop(net);
}
