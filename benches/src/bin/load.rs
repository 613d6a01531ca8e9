//! `transport-load`: how many idle connections a server holds on this machine, and the
//! server's resident memory per idle connection: ours (WebSocket, SSE, WebTransport) beside a
//! bare server of the library each wraps (tokio-tungstenite with its defaults, a raw hyper
//! streaming body, `wtransport`).
//!
//! ```text
//! transport-load [--quick] [--ws N] [--sse N] [--wt N]   measure; prints (and saves) a table
//! transport-load serve --proto ws|sse|wt --server ours|bare   one server (started by the above)
//! ```
//!
//! Each server runs in its own process, so the client's memory does not mix in: the measuring
//! process starts it, reads its resident set (`VmRSS`) before and after opening N connections,
//! and divides the difference by N. Both processes raise `RLIMIT_NOFILE` to the hard limit.
//! TCP clients spread over the source addresses 127.0.0.1..127.0.0.4, each with its own
//! ephemeral ports. Every wait has a deadline; the server is killed when the run ends.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use transport_benches::extra::{self, Section};
use transport_benches::{sse, wt};
use transport_core::Transport;

/// Connection attempts in flight at once.
const PARALLEL: usize = 128;
/// Deadline of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for a server to start, and for it to report every connection as open.
const SERVER_DEADLINE: Duration = Duration::from_secs(60);
/// Source addresses the TCP clients rotate over.
const SOURCES: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "transport-load",
    about = "Concurrent idle connections and server memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Small counts (1,000 WebSocket, 1,000 SSE, 100 WebTransport): for CI smoke runs.
    #[arg(long)]
    quick: bool,
    /// WebSocket connections (default 10,000; 1,000 with --quick).
    #[arg(long)]
    ws: Option<usize>,
    /// SSE streams (default 10,000; 1,000 with --quick).
    #[arg(long)]
    sse: Option<usize>,
    /// WebTransport sessions (default 1,000; 100 with --quick).
    #[arg(long)]
    wt: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs one server until stdin closes; answers `stat` lines with `stat OPEN RSS_KIB`.
    Serve {
        #[arg(long, value_enum)]
        proto: Proto,
        #[arg(long, value_enum)]
        server: Impl,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Ws,
    Sse,
    Wt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Impl {
    Ours,
    Bare,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let nofile = raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    match cli.command {
        Some(Cmd::Serve { proto, server }) => rt.block_on(serve(proto, server)),
        None => {
            let counts = [
                (
                    Proto::Ws,
                    cli.ws.unwrap_or(if cli.quick { 1_000 } else { 10_000 }),
                ),
                (
                    Proto::Sse,
                    cli.sse.unwrap_or(if cli.quick { 1_000 } else { 10_000 }),
                ),
                (
                    Proto::Wt,
                    cli.wt.unwrap_or(if cli.quick { 100 } else { 1_000 }),
                ),
            ];
            let section = rt.block_on(measure_all(&counts, nofile))?;
            extra::write(&section);
            Ok(())
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit in force.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Measuring side
// ---------------------------------------------------------------------------------------

/// What one run found.
#[derive(Debug)]
struct Outcome {
    proto: Proto,
    server: Impl,
    wanted: usize,
    open: usize,
    failed: usize,
    first_error: Option<String>,
    connect_time: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

async fn measure_all(counts: &[(Proto, usize)], nofile: u64) -> Result<Section> {
    let mut rows = Vec::new();
    for &(proto, n) in counts {
        for server in [Impl::Ours, Impl::Bare] {
            let outcome = measure(proto, server, n)
                .await
                .with_context(|| format!("{proto:?} {server:?}"))?;
            eprintln!("{outcome:?}");
            rows.push(row(&outcome));
        }
    }
    Ok(Section {
        title: "load_idle_connections".into(),
        text: format!(
            "`transport-load`: N idle connections opened ({PARALLEL} attempts at a time) to a \
             server in its own process; server resident memory (VmRSS) before and after, the \
             difference divided by N. Clients: bare tokio-tungstenite (WebSocket), a raw hyper \
             GET (SSE), our client (WebTransport, one UDP socket per session). Bare servers: \
             tokio-tungstenite `accept_async` with its default `WebSocketConfig`, a raw hyper \
             HTTP/1.1 streaming body, `wtransport` with its defaults on a UDP socket with the \
             receive buffer ours asks for (4 MiB). RLIMIT_NOFILE: {nofile}. \
             Targets (ours): every connection open; at most 16 KiB (WebSocket), 16 KiB (SSE), \
             64 KiB (WebTransport) per connection."
        ),
        headers: [
            "protocol",
            "server",
            "connections",
            "open",
            "failed",
            "time to open all",
            "server RSS before",
            "server RSS after",
            "per connection",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        rows,
    })
}

fn row(o: &Outcome) -> Vec<String> {
    let proto = match o.proto {
        Proto::Ws => "WebSocket",
        Proto::Sse => "SSE",
        Proto::Wt => "WebTransport",
    };
    let server = match (o.proto, o.server) {
        (_, Impl::Ours) => "ours",
        (Proto::Ws, Impl::Bare) => "tokio-tungstenite",
        (Proto::Sse, Impl::Bare) => "raw hyper",
        (Proto::Wt, Impl::Bare) => "wtransport",
    };
    #[allow(clippy::cast_precision_loss)] // memory sizes far below 2^52
    let per = if o.open == 0 {
        "—".to_owned()
    } else {
        let kib = (o.rss_after_kib.saturating_sub(o.rss_before_kib)) as f64 / o.open as f64;
        format!("{kib:.1} KiB")
    };
    let failed = match &o.first_error {
        Some(e) if o.failed > 0 => format!("{} ({e})", o.failed),
        _ => o.failed.to_string(),
    };
    vec![
        proto.into(),
        server.into(),
        o.wanted.to_string(),
        o.open.to_string(),
        failed,
        format!("{:.1} s", o.connect_time.as_secs_f64()),
        format!("{:.1} MiB", kib_to_mib(o.rss_before_kib)),
        format!("{:.1} MiB", kib_to_mib(o.rss_after_kib)),
        per,
    ]
}

#[allow(clippy::cast_precision_loss)] // memory sizes far below 2^52
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A server child process: killed when dropped (`kill_on_drop`).
struct ServerProcess {
    _child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    /// The certificate hash (WebTransport).
    cert_hash: Option<[u8; 32]>,
}

impl ServerProcess {
    async fn start(proto: Proto, server: Impl) -> Result<Self> {
        let exe = std::env::current_exe().context("own path")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--proto")
            .arg(format!("{proto:?}").to_lowercase())
            .arg("--server")
            .arg(format!("{server:?}").to_lowercase())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server process")?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(SERVER_DEADLINE, stdout.next_line())
            .await
            .context("server start timed out")??
            .context("the server exited before it was ready")?;
        let mut words = line.split_whitespace();
        if words.next() != Some("ready") {
            bail!("unexpected server line {line:?}");
        }
        let addr: SocketAddr = words.next().context("address")?.parse()?;
        let cert_hash = words.next().map(parse_hex).transpose()?;
        Ok(Self {
            _child: child,
            stdin,
            stdout,
            addr,
            cert_hash,
        })
    }

    /// `(open connections, resident KiB)` as the server sees them.
    async fn stat(&mut self) -> Result<(usize, u64)> {
        self.stdin.write_all(b"stat\n").await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .context("stat timed out")??
            .context("the server exited")?;
        let mut words = line.split_whitespace().skip(1);
        let open = words.next().context("open")?.parse()?;
        let rss = words.next().context("rss")?.parse()?;
        Ok((open, rss))
    }
}

fn parse_hex(hex: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        bail!("a SHA-256 in hex has 64 digits, not {}", hex.len());
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// An open client connection: the task that keeps reading it (answering pings), or the
/// session itself.
enum Client {
    Task(JoinHandle<()>),
    /// Held, not read: the session stays open while the client is kept.
    Wt {
        _session: Box<transport_wt::WtSession>,
    },
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Self::Task(task) = self {
            task.abort();
        }
    }
}

async fn measure(proto: Proto, server: Impl, n: usize) -> Result<Outcome> {
    let mut process = ServerProcess::start(proto, server).await?;
    let (_, rss_before_kib) = process.stat().await?;
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:40}] {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{proto:?} {server:?}"));
    let addr = process.addr;
    let cert_hash = process.cert_hash;
    let started = Instant::now();
    let results: Vec<Result<Client>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let client =
                    tokio::time::timeout(CONNECT_TIMEOUT, open_client(proto, addr, cert_hash, i))
                        .await
                        .context("timed out")
                        .and_then(|r| r);
                bar.inc(1);
                client
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let connect_time = started.elapsed();
    bar.finish_and_clear();
    let mut clients = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(client) => clients.push(client),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    // The server counts a connection once its application holds it.
    let deadline = Instant::now() + SERVER_DEADLINE;
    let mut open = 0;
    while Instant::now() < deadline {
        (open, _) = process.stat().await?;
        if open >= clients.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (open_now, rss_after_kib) = process.stat().await?;
    open = open.min(open_now);
    drop(clients);
    Ok(Outcome {
        proto,
        server,
        wanted: n,
        open,
        failed,
        first_error,
        connect_time,
        rss_before_kib,
        rss_after_kib,
    })
}

/// A TCP connection to `addr` from 127.0.0.(1 + i % SOURCES), no Nagle.
async fn tcp_from(addr: SocketAddr, i: usize) -> Result<TcpStream> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + u8::try_from(i % usize::from(SOURCES))?);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// One client connection of `proto` to `addr`; the same client whichever server listens.
async fn open_client(
    proto: Proto,
    addr: SocketAddr,
    cert_hash: Option<[u8; 32]>,
    i: usize,
) -> Result<Client> {
    match proto {
        Proto::Ws => {
            let tcp = tcp_from(addr, i).await?;
            let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await?;
            Ok(Client::Task(tokio::spawn(async move {
                while let Some(Ok(_)) = ws.next().await {}
            })))
        }
        Proto::Sse => {
            let tcp = tcp_from(addr, i).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
            let request = http::Request::builder()
                .uri("/events")
                .header("host", addr.to_string())
                .header("accept", "text/event-stream")
                .body(http_body_util::Empty::<Bytes>::new())?;
            let driver = tokio::spawn(conn);
            let response = sender.send_request(request).await?;
            if !response.status().is_success() {
                driver.abort();
                bail!("status {}", response.status());
            }
            let mut body = response.into_body();
            Ok(Client::Task(tokio::spawn(async move {
                use http_body_util::BodyExt;
                while let Some(Ok(_)) = body.frame().await {}
                drop(sender);
                driver.abort();
            })))
        }
        Proto::Wt => {
            let hash = cert_hash.context("the server printed no certificate hash")?;
            let mut config = transport_wt::WtClientConfig::default();
            config.cert_hash(hash);
            let session = transport_wt::connect(&format!("https://{addr}/"), config).await?;
            Ok(Client::Wt {
                _session: Box::new(session),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// Connections the server application holds.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Counts a connection while alive.
struct Held;

impl Held {
    fn new() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Room for every connection the measuring side may open.
const SERVER_CAPACITY: usize = 50_000;

async fn serve(proto: Proto, server: Impl) -> Result<()> {
    let (addr, hash, task) = match (proto, server) {
        (Proto::Ws, Impl::Ours) => serve_ws_ours().await?,
        (Proto::Ws, Impl::Bare) => serve_ws_bare().await?,
        (Proto::Sse, Impl::Ours) => serve_sse_ours().await?,
        (Proto::Sse, Impl::Bare) => serve_sse_bare().await,
        (Proto::Wt, Impl::Ours) => serve_wt_ours()?,
        (Proto::Wt, Impl::Bare) => serve_wt_bare(),
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {addr} {}", hash.unwrap_or_default())?;
        out.flush()?;
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    // Ends when the measuring process closes stdin or dies (bounded by its lifetime).
    while let Ok(Some(line)) = stdin.next_line().await {
        if line.trim() == "stat" {
            let mut out = std::io::stdout().lock();
            writeln!(out, "stat {} {}", OPEN.load(Ordering::Relaxed), rss_kib())?;
            out.flush()?;
        }
    }
    task.abort();
    Ok(())
}

/// Resident set of this process, KiB (`VmRSS` of `/proc/self/status`; 0 elsewhere).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

type Serving = (SocketAddr, Option<String>, JoinHandle<()>);

async fn serve_ws_ours() -> Result<Serving> {
    let mut config = transport_ws::WsServerConfig::default();
    config.max_connections = SERVER_CAPACITY;
    config.accept_backlog = 1024;
    // Thousands of connections from a few loopback addresses.
    config.ip_limits = transport_core::IpLimits::unlimited();
    let mut server = transport_ws::WsServer::bind("127.0.0.1:0", config).await?;
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let _held = Held::new();
                while let Ok(Some(_)) = conn.recv().await {}
            });
        }
    });
    Ok((addr, None, task))
}

async fn serve_ws_bare() -> Result<Serving> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _held = Held::new();
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    Ok((addr, None, task))
}

async fn serve_sse_ours() -> Result<Serving> {
    let mut server =
        transport_sse::SseServer::bind("127.0.0.1:0", sse::ours_server_config(SERVER_CAPACITY))
            .await?;
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                let _held = Held::new();
                while let Ok(Some(_)) = conn.recv().await {}
            });
        }
    });
    Ok((addr, None, task))
}

async fn serve_sse_bare() -> Serving {
    let (addr, mut streams) = sse::raw_hyper_server().await;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded by the connections the measuring side opens.
        while let Some(stream) = streams.recv().await {
            held.push((stream, Held::new()));
        }
    });
    (addr, None, task)
}

fn serve_wt_ours() -> Result<Serving> {
    let cert = wt::certificate();
    let mut server = transport_wt::WtServer::bind(
        "127.0.0.1:0".parse()?,
        wt::ours_server_config(SERVER_CAPACITY),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )?;
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        while let Some((session, _)) = server.accept_session().await {
            tokio::spawn(async move {
                let _held = Held::new();
                let _ = session.closed().await;
            });
        }
    });
    Ok((addr, Some(cert.sha256_hex()), task))
}

fn serve_wt_bare() -> Serving {
    let cert = wt::certificate();
    let endpoint = wt::wtransport_endpoint(&cert);
    let addr = endpoint
        .local_addr()
        .unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
    let task = tokio::spawn(async move {
        loop {
            let incoming = endpoint.accept().await;
            tokio::spawn(async move {
                let Ok(request) = incoming.await else { return };
                let Ok(session) = request.accept().await else {
                    return;
                };
                let _held = Held::new();
                let _ = session.closed().await;
            });
        }
    });
    (addr, Some(cert.sha256_hex()), task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_hashes_parse_from_hex() {
        let hex = "00ff".repeat(16);
        let hash = parse_hex(&hex).expect("valid");
        assert_eq!(hash[0], 0);
        assert_eq!(hash[1], 0xff);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_kib() > 0);
        }
    }
}
