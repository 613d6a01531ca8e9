//! `soak-client`: the client side of `cargo xtask soak`, in one process so that a hundred
//! thousand connect/close cycles take minutes, not hours.
//!
//! ```text
//! soak-client --transport ws|sse|wt --url URL [--cert-hash HEX] --cycles N --messages M ...
//! ```
//!
//! Against one `tcat serve` listener (echo mode) it runs two phases, `warm-up` and `run`, each
//! made of:
//! - connect/close cycles, `--parallel` at a time, rotating three kinds: a clean close after
//!   one echoed message (our client), an abrupt drop after one echoed message (the socket or
//!   QUIC connection dropped without any close: a bare tokio-tungstenite stream, a raw SSE GET,
//!   a WebTransport session dropped without CLOSE_WEBTRANSPORT_SESSION) and a failed handshake
//!   (half a request, a refused request, garbage; for WebTransport a wrong pinned certificate
//!   hash, so the QUIC/TLS handshake fails);
//! - echoed messages over `--connections` long-lived connections, pipelined with at most
//!   `--window` unanswered per connection; every echo is checked in order, byte for byte.
//!
//! After each phase it drops everything, waits until its own tasks and descriptors settle and
//! prints `idle PHASE RSS_KIB FDS TASKS`, then waits for a line on stdin (the xtask samples the
//! server meanwhile). Every `--sample-ms` it prints
//! `sample PHASE MILLIS CYCLES MESSAGES RSS_KIB FDS TASKS` (its own resident memory, open
//! descriptors and live tokio tasks). A failed cycle or a missing or corrupt echo prints
//! `error ...` and exits 1. Counts not reached within `--seconds` per phase exit 1 too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;
use transport_core::{Connection, Message, ReconnectPolicy, Transport as _, TransportConfig};
use transport_ws::tungstenite;

/// Deadline of one connect/close cycle.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for one echo on a long-lived connection.
const ECHO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the client's own tasks and descriptors to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Failed cycles after which a phase stops (all are reported; one already fails the run).
const MAX_ERRORS: usize = 10;
/// Largest HTTP response head read by the raw-socket cycles.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "soak-client",
    about = "Connect/close cycles and echoed messages against tcat serve"
)]
struct Cli {
    /// The transport of `--url`.
    #[arg(long, value_enum)]
    transport: Proto,
    /// ws://ADDR/, http://ADDR/events or https://ADDR/ (WebTransport).
    #[arg(long)]
    url: String,
    /// WebTransport: the server certificate's SHA-256 (64 hex digits).
    #[arg(long)]
    cert_hash: Option<String>,
    /// Connect/close cycles of the warm-up.
    #[arg(long, default_value_t = 0)]
    warm_up_cycles: u64,
    /// Echoed messages of the warm-up.
    #[arg(long, default_value_t = 0)]
    warm_up_messages: u64,
    /// Connect/close cycles after the warm-up.
    #[arg(long)]
    cycles: u64,
    /// Echoed messages after the warm-up.
    #[arg(long)]
    messages: u64,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 48)]
    parallel: usize,
    /// Long-lived connections the messages are spread over.
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// Unanswered messages allowed per connection.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Time allowed per phase (cycles and messages); counts not reached by then fail the run.
    #[arg(long, default_value_t = 1200)]
    seconds: u64,
    /// Milliseconds between two samples.
    #[arg(long, default_value_t = 1000)]
    sample_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Ws,
    Sse,
    Wt,
}

/// Where and how to connect.
#[derive(Debug)]
struct Target {
    proto: Proto,
    url: String,
    addr: SocketAddr,
    path: String,
    cert_hash: [u8; 32],
}

/// Progress shared with the sampler.
#[derive(Debug, Default)]
struct Progress {
    phase: AtomicUsize,
    cycles: AtomicU64,
    messages: AtomicU64,
    /// Milliseconds the phase's cycles, then its messages, took.
    cycle_ms: AtomicU64,
    message_ms: AtomicU64,
}

const PHASES: [&str; 2] = ["warm-up", "run"];

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("error runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            println!("error {}", format!("{e:#}").replace('\n', " / "));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let target = Arc::new(Target::parse(&cli)?);
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let sampler = tokio::spawn(sample_every(
        Duration::from_millis(cli.sample_ms.max(50)),
        progress.clone(),
        started,
    ));
    let mut go = stdin_lines();
    let phases = [
        (cli.warm_up_cycles, cli.warm_up_messages),
        (cli.cycles, cli.messages),
    ];
    let mut result = Ok(());
    for (index, &(cycles, messages)) in phases.iter().enumerate() {
        progress.phase.store(index, Ordering::Relaxed);
        progress.cycles.store(0, Ordering::Relaxed);
        progress.messages.store(0, Ordering::Relaxed);
        progress.cycle_ms.store(0, Ordering::Relaxed);
        progress.message_ms.store(0, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(cli.seconds);
        let phase_started = Instant::now();
        result = phase(&cli, &target, &progress, cycles, messages, deadline).await;
        println!(
            "done {} cycles={} messages={} secs={:.1} cycle_secs={:.1} message_secs={:.1}",
            PHASES[index],
            progress.cycles.load(Ordering::Relaxed),
            progress.messages.load(Ordering::Relaxed),
            phase_started.elapsed().as_secs_f64(),
            seconds(&progress.cycle_ms),
            seconds(&progress.message_ms),
        );
        if result.is_err() {
            break;
        }
        let idle = settle().await;
        println!(
            "idle {} {} {} {}",
            PHASES[index], idle.rss_kib, idle.fds, idle.tasks
        );
        // The xtask samples the server, then answers; EOF means it has gone.
        if go.recv().await.is_none() {
            bail!("stdin closed while waiting to go on");
        }
    }
    sampler.abort();
    result
}

fn seconds(ms: &AtomicU64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // display only
    let secs = ms.load(Ordering::Relaxed) as f64 / 1000.0;
    secs
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn phase(
    cli: &Cli,
    target: &Arc<Target>,
    progress: &Arc<Progress>,
    cycles: u64,
    messages: u64,
    deadline: Instant,
) -> Result<()> {
    let started = Instant::now();
    let errors = run_cycles(target, progress, cycles, cli.parallel, deadline).await;
    progress.cycle_ms.store(millis(started), Ordering::Relaxed);
    if !errors.is_empty() {
        bail!("{} failed cycle(s): {}", errors.len(), errors.join("; "));
    }
    let done = progress.cycles.load(Ordering::Relaxed);
    if done < cycles {
        bail!("time is up: {done} of {cycles} cycles");
    }
    let started = Instant::now();
    let echoed = echo_messages(target, progress, messages, cli, deadline).await;
    progress
        .message_ms
        .store(millis(started), Ordering::Relaxed);
    echoed?;
    let done = progress.messages.load(Ordering::Relaxed);
    if done < messages {
        bail!("time is up: {done} of {messages} messages echoed");
    }
    Ok(())
}

impl Target {
    fn parse(cli: &Cli) -> Result<Self> {
        let rest = cli
            .url
            .split_once("://")
            .map(|(_, rest)| rest)
            .context("the URL has no scheme")?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        let addr = authority
            .parse()
            .with_context(|| format!("{authority:?} is not IP:PORT"))?;
        let mut cert_hash = [0u8; 32];
        if let Some(hex) = &cli.cert_hash {
            let digits = hex.as_bytes();
            if digits.len() != 64 {
                bail!("--cert-hash: 64 hex digits expected");
            }
            for (byte, pair) in cert_hash.iter_mut().zip(digits.chunks_exact(2)) {
                let pair = std::str::from_utf8(pair).context("--cert-hash")?;
                *byte = u8::from_str_radix(pair, 16).context("--cert-hash")?;
            }
        } else if cli.transport == Proto::Wt {
            bail!("--cert-hash is needed for WebTransport");
        }
        Ok(Self {
            proto: cli.transport,
            url: cli.url.clone(),
            addr,
            path: path.to_owned(),
            cert_hash,
        })
    }

    /// Our client, without reconnection: a lost connection fails the run.
    async fn connect(&self) -> Result<Connection> {
        let mut transport = TransportConfig::default();
        transport.reconnect = ReconnectPolicy::disabled();
        let connection = match self.proto {
            Proto::Ws => {
                let mut config = transport_ws::WsConfig::default();
                config.transport = transport;
                config.proxy(transport_ws::ProxyConfig::none());
                transport_ws::connect(&self.url, config).await
            }
            Proto::Sse => {
                let mut config = transport_sse::SseConfig::default();
                config.transport = transport;
                transport_sse::connect(&self.url, config).await
            }
            Proto::Wt => {
                let mut config = transport_wt::WtConfig::default();
                config.client.transport = transport;
                config.client.cert_hashes = vec![self.cert_hash];
                transport_wt::connect_transport(&self.url, config).await
            }
        };
        connection.with_context(|| format!("connecting to {}", self.url))
    }

    fn wt_session_config(cert_hash: [u8; 32]) -> transport_wt::WtClientConfig {
        let mut config = transport_wt::WtClientConfig::default();
        config.transport.reconnect = ReconnectPolicy::disabled();
        config.cert_hashes = vec![cert_hash];
        config
    }
}

/// Runs `count` cycles, `parallel` at a time, until `deadline`; returns the failures.
async fn run_cycles(
    target: &Arc<Target>,
    progress: &Arc<Progress>,
    count: u64,
    parallel: usize,
    deadline: Instant,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut cycles = futures_util::stream::iter(0..count)
        .map(|n| async move {
            if Instant::now() >= deadline {
                return None;
            }
            let outcome = match timeout(CYCLE_TIMEOUT, cycle(target, n)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("timed out after {CYCLE_TIMEOUT:?}")),
            };
            Some(outcome.with_context(|| format!("cycle {n} ({})", kind(n))))
        })
        .buffer_unordered(parallel.max(1));
    while let Some(outcome) = cycles.next().await {
        match outcome {
            Some(Ok(())) => {
                progress.cycles.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                errors.push(format!("{e:#}"));
                if errors.len() >= MAX_ERRORS {
                    break;
                }
            }
            None => {}
        }
    }
    errors
}

fn kind(n: u64) -> &'static str {
    match n % 3 {
        0 => "clean close",
        1 => "abrupt drop",
        _ => "failed handshake",
    }
}

async fn cycle(target: &Target, n: u64) -> Result<()> {
    match (n % 3, target.proto) {
        (0, _) => clean(target, n).await,
        (1, Proto::Ws) => ws_abrupt(target, n).await,
        (1, Proto::Sse) => sse_abrupt(target).await,
        (1, Proto::Wt) => wt_abrupt(target, n).await,
        (_, Proto::Wt) => wt_failed(target).await,
        (_, _) => tcp_failed(target, n / 3).await,
    }
}

/// Our client: one message echoed, then a clean close (code 1000).
async fn clean(target: &Target, n: u64) -> Result<()> {
    let mut connection = target.connect().await?;
    let text = format!("clean {n}");
    connection.send(Message::text(text.clone())).await?;
    let echo = connection.recv().await?.context("closed before the echo")?;
    if echo.as_bytes() != text.as_bytes() {
        bail!("echo {:?} instead of {text:?}", echo.as_text());
    }
    connection.close(1000, "").await?;
    Ok(())
}

/// A bare WebSocket: one echo, then the TCP socket is dropped without a close frame.
async fn ws_abrupt(target: &Target, n: u64) -> Result<()> {
    let tcp = TcpStream::connect(target.addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(target.url.as_str(), tcp).await?;
    let text = format!("abrupt {n}");
    ws.send(tungstenite::Message::text(text.clone())).await?;
    // Bounded by the cycle's deadline; control frames are skipped.
    loop {
        match ws.next().await.context("closed before the echo")?? {
            tungstenite::Message::Text(echo) if echo.as_str() == text => return Ok(()),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => bail!("unexpected {other:?} instead of the echo"),
        }
    }
}

/// A raw SSE GET: the stream's response head, then the socket is dropped (the session waits
/// for a reconnection until its grace period ends).
async fn sse_abrupt(target: &Target) -> Result<()> {
    let mut tcp = TcpStream::connect(target.addr).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        target.path, target.addr
    );
    tcp.write_all(request.as_bytes()).await?;
    let head = read_head(&mut tcp).await?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the stream was refused: {:?}", first_line(&head));
    }
    Ok(())
}

/// A WebTransport session with one echo on a stream, dropped without closing the session.
async fn wt_abrupt(target: &Target, n: u64) -> Result<()> {
    let session =
        transport_wt::connect(&target.url, Target::wt_session_config(target.cert_hash)).await?;
    let (mut send, mut recv) = session.open_bi().await?;
    let text = format!("abrupt {n}");
    send.write_all(text.as_bytes()).await?;
    let mut echo = vec![0; text.len()];
    recv.read_exact(&mut echo).await?;
    if echo != text.as_bytes() {
        bail!(
            "echo {:?} instead of {text:?}",
            String::from_utf8_lossy(&echo)
        );
    }
    drop((send, recv, session));
    Ok(())
}

/// A client pinning a certificate hash the server does not have: the handshake must fail.
async fn wt_failed(target: &Target) -> Result<()> {
    let mut wrong = target.cert_hash;
    wrong[0] ^= 0xff;
    match transport_wt::connect(&target.url, Target::wt_session_config(wrong)).await {
        Ok(_) => bail!("a wrong certificate hash was accepted"),
        Err(_) => Ok(()),
    }
}

/// A broken HTTP handshake on a raw socket, by `variant`: half a request then gone, a request
/// the server must refuse (no upgrade; an unknown path), or garbage.
async fn tcp_failed(target: &Target, variant: u64) -> Result<()> {
    let mut tcp = TcpStream::connect(target.addr).await?;
    match variant % 3 {
        0 => {
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\n").await?;
        }
        1 => {
            let path = match target.proto {
                Proto::Sse => "/nowhere",
                _ => "/",
            };
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                target.addr
            );
            tcp.write_all(request.as_bytes()).await?;
            let head = read_head(&mut tcp).await.unwrap_or_default();
            if head.starts_with("HTTP/1.1 101") || head.starts_with("HTTP/1.1 200") {
                bail!("a broken handshake was accepted: {:?}", first_line(&head));
            }
        }
        _ => {
            tcp.write_all(b"NONSENSE\r\n\r\n").await?;
            let mut sink = [0u8; 1024];
            // Until the server closes (bounded by the cycle's deadline); errors are fine.
            while matches!(tcp.read(&mut sink).await, Ok(1..)) {}
        }
    }
    Ok(())
}

/// Reads an HTTP response head (up to the blank line).
async fn read_head(tcp: &mut TcpStream) -> Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the end of the response head");
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// `messages` echoed over `cli.connections` connections, each pipelined with a window.
async fn echo_messages(
    target: &Arc<Target>,
    progress: &Arc<Progress>,
    messages: u64,
    cli: &Cli,
    deadline: Instant,
) -> Result<()> {
    if messages == 0 {
        return Ok(());
    }
    let connections = cli.connections.clamp(1, messages);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let share = messages / connections + u64::from(c < messages % connections);
        let (target, progress, stop) = (target.clone(), progress.clone(), stop.clone());
        let window = cli.window.max(1);
        tasks.spawn(async move {
            echo_one(&target, &progress, c, share, window, deadline, &stop)
                .await
                .with_context(|| format!("connection {c}"))
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn payload(c: u64, seq: u64) -> String {
    format!("echo {c}:{seq} the quick brown fox jumps over the lazy dog")
}

async fn echo_one(
    target: &Target,
    progress: &Progress,
    c: u64,
    count: u64,
    window: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<()> {
    let connection = target.connect().await?;
    let (sender, mut receiver) = connection.split();
    let credit = Semaphore::new(window);
    // Messages this connection will echo: `count`, or fewer once the sender stops early.
    let limit = AtomicU64::new(count);
    let send = async {
        for seq in 0..count {
            if seq % 1024 == 0 && (stop.load(Ordering::Relaxed) || Instant::now() >= deadline) {
                limit.store(seq, Ordering::Release);
                break;
            }
            credit.acquire().await.context("window closed")?.forget();
            sender.send(Message::text(payload(c, seq))).await?;
        }
        anyhow::Ok(())
    };
    let receive = async {
        let mut seq = 0;
        let mut waited = Duration::ZERO;
        // Bounded: each turn receives a message or waits a slice of ECHO_TIMEOUT.
        while seq < limit.load(Ordering::Acquire) {
            let slice = Duration::from_millis(200);
            let Ok(next) = timeout(slice, receiver.recv()).await else {
                waited += slice;
                if waited >= ECHO_TIMEOUT {
                    bail!("no echo for message {seq} within {ECHO_TIMEOUT:?}");
                }
                continue;
            };
            let message = next?.context("closed before every echo came back")?;
            waited = Duration::ZERO;
            let expected = payload(c, seq);
            if message.as_bytes() != expected.as_bytes() {
                bail!(
                    "echo {seq} corrupt: {:?} instead of {expected:?}",
                    String::from_utf8_lossy(message.as_bytes())
                );
            }
            seq += 1;
            credit.add_permits(1);
            progress.messages.fetch_add(1, Ordering::Relaxed);
        }
        anyhow::Ok(())
    };
    // The first error ends both halves (a sender waiting for credit would wait forever).
    tokio::try_join!(send, receive)?;
    sender.close(1000, "").await?;
    Ok(())
}

/// One sample of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Own {
    rss_kib: u64,
    fds: u64,
    tasks: u64,
}

fn own() -> Own {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as u64;
    Own {
        rss_kib,
        fds,
        tasks,
    }
}

async fn sample_every(every: Duration, progress: Arc<Progress>, started: Instant) {
    let mut ticker = tokio::time::interval(every);
    // Runs until aborted at the end of `run`.
    loop {
        ticker.tick().await;
        let s = own();
        let phase = PHASES[progress.phase.load(Ordering::Relaxed).min(PHASES.len() - 1)];
        println!(
            "sample {phase} {} {} {} {} {} {}",
            started.elapsed().as_millis(),
            progress.cycles.load(Ordering::Relaxed),
            progress.messages.load(Ordering::Relaxed),
            s.rss_kib,
            s.fds,
            s.tasks
        );
    }
}

/// Waits until this process's tasks and descriptors have stayed the same for a second.
async fn settle() -> Own {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = own();
    let mut steady = 0;
    while Instant::now() < deadline && steady < 4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = own();
        if now.fds == last.fds && now.tasks == last.tasks {
            steady += 1;
        } else {
            steady = 0;
        }
        last = now;
    }
    last
}

/// Lines of stdin, read by a plain thread (no tokio task stays parked on it).
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
