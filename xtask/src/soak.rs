//! `cargo xtask soak [--minutes N]`: leak check of `tcat serve`.
//!
//! Starts `tcat serve --ws --sse --wt --metrics` and, for the given time, runs connect/close
//! cycles on the three transports mixing clean closes with an echoed message (`tcat connect
//! --count 1`), abrupt drops (a client killed while connected) and failed handshakes (a raw
//! socket sending a broken request or going away mid-request; for WebTransport, a client
//! pinning a wrong certificate hash, so the QUIC handshake fails). Every few cycles it samples the server's
//! resident memory (`/proc/PID/status` VmRSS), open file descriptors (`/proc/PID/fd`) and live
//! tasks (tcat's own `tcat_tasks` gauge, scraped from `/metrics` with `transport_connections`).
//!
//! The baseline is taken after a warm-up of cycles (a fifth of `--minutes`, at least 45 s: a
//! dropped SSE client's session and a killed WebTransport client's connection linger 30 s, so
//! the number of lingering ones, and the memory high-water mark they set, only levels off after
//! that), once the server is idle. Then `--minutes` of cycles run; at the end, once idle again,
//! descriptors and tasks must be back to the baseline and memory within 5 % of it. Otherwise the
//! command fails and prints the whole series. The waits for idleness (up to about 35 s each)
//! come on top of the cycling time.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

use crate::proc::{self, ChildGuard, target_dir};

const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one client cycle may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to become idle after the clients stop: an SSE session whose
/// client vanished waits 30 s (`session_grace`) for it to come back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Cycles between two samples.
const SAMPLE_EVERY: u64 = 10;
/// Shortest warm-up: longer than the 30 s that abandoned sessions and connections linger.
const MIN_WARM_UP: Duration = Duration::from_secs(45);
/// Allowed growth of resident memory over the baseline.
const RSS_TOLERANCE: f64 = 0.05;

/// Options of `cargo xtask soak`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// How long to run the cycles after the warm-up, in minutes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1440))]
    minutes: u64,
}

/// One sample of the server's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    cycles: u64,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
    connections: u64,
}

/// The running server and what it printed.
struct Server {
    guard: ChildGuard,
    pid: u32,
    ws: String,
    sse: String,
    wt: String,
    cert_hash: String,
    metrics: SocketAddr,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    proc::run(proc::cargo().args(["build", "-p", "tcat"]), BUILD_TIMEOUT)?;
    let tcat = target_dir().join("debug").join("tcat");
    let mut server = start(&tcat)?;
    let started = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let warm_up = (total / 5).max(MIN_WARM_UP);
    let total = total + warm_up;
    let mut series = Vec::new();
    let mut baseline = None;
    let mut cycles = 0u64;
    let mut failures = Vec::new();
    // Cycling time excludes the waits for the server to become idle (up to the 30 s an
    // abandoned SSE session or QUIC connection lingers), so both phases get their share.
    let mut idle_waits = Duration::ZERO;
    // Bounded: a cycle takes at least a few milliseconds.
    for _ in 0..10_000_000u64 {
        if started.elapsed().saturating_sub(idle_waits) >= total {
            break;
        }
        if let Err(e) = cycle(&tcat, &server, cycles) {
            failures.push(format!("cycle {cycles}: {e:#}"));
            if failures.len() > 10 {
                break;
            }
        }
        cycles += 1;
        if let Some(status) = server.guard.try_wait()? {
            bail!("`tcat serve` exited during the soak ({status})");
        }
        if cycles.is_multiple_of(SAMPLE_EVERY) {
            series.push(sample(&server, started, cycles)?);
        }
        if baseline.is_none() && started.elapsed() >= warm_up {
            let waiting = Instant::now();
            let idle = wait_idle(&server, started, cycles)?;
            idle_waits += waiting.elapsed();
            println!("baseline after {cycles} warm-up cycles: {}", show(&idle));
            series.push(idle);
            baseline = Some(idle);
        }
    }
    let last = wait_idle(&server, started, cycles)?;
    series.push(last);
    let elapsed = started.elapsed();
    server.guard.kill_tree();

    let baseline = baseline.context("the run ended before the warm-up did")?;
    println!(
        "{cycles} cycles in {elapsed:.1?}; baseline {}; end {}",
        show(&baseline),
        show(&last)
    );
    let mut problems = failures;
    if last.fds != baseline.fds {
        problems.push(format!("open descriptors {} -> {}", baseline.fds, last.fds));
    }
    if last.tasks != baseline.tasks {
        problems.push(format!("live tasks {} -> {}", baseline.tasks, last.tasks));
    }
    #[allow(clippy::cast_precision_loss)] // KiB counts far below 2^52.
    let limit = baseline.rss_kib as f64 * (1.0 + RSS_TOLERANCE);
    #[allow(clippy::cast_precision_loss)]
    if last.rss_kib as f64 > limit {
        problems.push(format!(
            "resident memory {} KiB -> {} KiB (more than {:.0} %)",
            baseline.rss_kib,
            last.rss_kib,
            RSS_TOLERANCE * 100.0
        ));
    }
    if problems.is_empty() {
        println!("soak passed: back to the baseline");
        return Ok(());
    }
    println!("series (time, cycles, rss KiB, fds, tasks, connections):");
    for s in &series {
        println!("  {}", show(s));
    }
    bail!("soak failed:\n  {}", problems.join("\n  "))
}

fn show(s: &Sample) -> String {
    format!(
        "t={:.1}s cycles={} rss={}KiB fds={} tasks={} connections={}",
        s.at.as_secs_f64(),
        s.cycles,
        s.rss_kib,
        s.fds,
        s.tasks,
        s.connections
    )
}

fn start(tcat: &std::path::Path) -> Result<Server> {
    let mut serve = Command::new(tcat);
    serve
        .args([
            "serve",
            "--ws",
            "127.0.0.1:0",
            "--sse",
            "127.0.0.1:0",
            "--wt",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    eprintln!("$ {}", proc::display(&serve));
    let mut guard = ChildGuard::spawn(&mut serve)?;
    let pid = guard.child_mut().id();
    let stdout = guard.child_mut().stdout.take().context("tcat stdout")?;
    let lines = proc::stdout_lines(stdout, None);
    let deadline = Instant::now() + READY_TIMEOUT;
    let last_word = |line: String| line.split_whitespace().last().unwrap_or("").to_owned();
    let cert_hash = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the certificate hash",
        |l| l.starts_with("cert-sha256 "),
    )?);
    let ws = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the ws listener",
        |l| l.starts_with("listening ws://"),
    )?);
    let sse = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the sse listener",
        |l| l.starts_with("listening sse "),
    )?);
    let wt = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the wt listener",
        |l| l.starts_with("listening wt "),
    )?);
    let metrics_url = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the metrics line",
        |l| l.starts_with("metrics "),
    )?);
    let metrics = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .with_context(|| format!("metrics address in {metrics_url:?}"))?;
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || while lines.recv().is_ok() {});
    Ok(Server {
        guard,
        pid,
        ws,
        sse,
        wt,
        cert_hash,
        metrics,
    })
}

/// One client cycle; the transport rotates (WebSocket, SSE, WebTransport) and, every round,
/// the kind: clean close with an echo, abrupt drop, failed handshake.
fn cycle(tcat: &std::path::Path, server: &Server, n: u64) -> Result<()> {
    let wt_args = [
        "--transport",
        "wt",
        "--cert-hash",
        server.cert_hash.as_str(),
    ];
    let (url, extra): (&str, &[&str]) = match n % 3 {
        0 => (&server.ws, &[]),
        1 => (&server.sse, &[]),
        _ => (&server.wt, &wt_args),
    };
    match (n / 3) % 3 {
        0 => clean(tcat, url, extra, n),
        1 => abrupt(tcat, url, extra),
        _ if n % 3 == 2 => failed_wt_handshake(tcat, url),
        _ => failed_handshake(url, n),
    }
}

/// `tcat connect --count 1`: one message echoed, then a clean close.
fn clean(tcat: &std::path::Path, url: &str, extra: &[&str], n: u64) -> Result<()> {
    let mut cmd = Command::new(tcat);
    cmd.arg("connect")
        .args(extra)
        .args(["--count", "1", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(&mut cmd)?;
    let mut stdin = child.child_mut().stdin.take().context("stdin")?;
    writeln!(stdin, "soak {n}")?;
    let status = child.wait_timeout(CYCLE_TIMEOUT)?;
    drop(stdin);
    let mut out = String::new();
    if let Some(mut stdout) = child.child_mut().stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    if !status.success() || out.trim() != format!("soak {n}") {
        bail!("clean cycle on {url}: {status}, output {out:?}");
    }
    Ok(())
}

/// A client killed once connected (its echo seen): the server sees the socket drop.
fn abrupt(tcat: &std::path::Path, url: &str, extra: &[&str]) -> Result<()> {
    let mut cmd = Command::new(tcat);
    cmd.arg("connect")
        .args(extra)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(&mut cmd)?;
    let mut stdin = child.child_mut().stdin.take().context("stdin")?;
    writeln!(stdin, "then gone")?;
    let stdout = child.child_mut().stdout.take().context("stdout")?;
    let lines = proc::stdout_lines(stdout, None);
    proc::wait_for_line(
        &lines,
        Instant::now() + CYCLE_TIMEOUT,
        "the echo before the drop",
        |l| l == "then gone",
    )?;
    child.kill_tree();
    drop(stdin);
    Ok(())
}

/// A WebTransport client pinning a certificate hash the server does not have: the QUIC
/// handshake fails on the client's side.
fn failed_wt_handshake(tcat: &std::path::Path, url: &str) -> Result<()> {
    let mut cmd = Command::new(tcat);
    cmd.args([
        "connect",
        "--transport",
        "wt",
        "--cert-hash",
        &"00".repeat(32),
        url,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let status = ChildGuard::spawn(&mut cmd)?.wait_timeout(CYCLE_TIMEOUT)?;
    if status.success() {
        bail!("a wrong certificate hash was accepted by {url}");
    }
    Ok(())
}

/// A raw socket that sends half a request (and, every other time, a broken one) and goes away.
fn failed_handshake(url: &str, n: u64) -> Result<()> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let addr: SocketAddr = authority.parse().with_context(|| url.to_owned())?;
    let mut tcp = TcpStream::connect_timeout(&addr, CYCLE_TIMEOUT)?;
    tcp.set_read_timeout(Some(CYCLE_TIMEOUT))?;
    if n % 4 < 2 {
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\n")?;
    } else {
        tcp.write_all(b"NONSENSE\r\n\r\n")?;
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    Ok(())
}

fn sample(server: &Server, started: Instant, cycles: u64) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid))
        .context("reading /proc/PID/status")?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid))
        .context("reading /proc/PID/fd")?
        .count() as u64;
    let text = scrape(server.metrics)?;
    Ok(Sample {
        at: started.elapsed(),
        cycles,
        rss_kib,
        fds,
        tasks: gauge(&text, "tcat_tasks", None),
        connections: ["ws", "sse", "wt"]
            .iter()
            .map(|t| gauge(&text, "transport_connections", Some(t)))
            .sum(),
    })
}

/// Samples until no connection is open and tasks and descriptors have stopped changing.
fn wait_idle(server: &Server, started: Instant, cycles: u64) -> Result<Sample> {
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut previous: Option<Sample> = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sample(server, started, cycles)?;
        let settled = previous.is_some_and(|p| p.fds == now.fds && p.tasks == now.tasks);
        if now.connections == 0 && settled {
            return Ok(now);
        }
        if Instant::now() >= deadline {
            let mut msg = String::new();
            let _ = write!(msg, "the server did not become idle: {}", show(&now));
            bail!(msg);
        }
        previous = Some(now);
    }
}

fn scrape(addr: SocketAddr) -> Result<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, CYCLE_TIMEOUT).context("metrics endpoint")?;
    tcp.set_read_timeout(Some(CYCLE_TIMEOUT))?;
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers in the metrics response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// A sample's value (0 when absent); `transport` selects the `transport` label.
fn gauge(text: &str, name: &str, transport: Option<&str>) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let rest = series.strip_prefix(name).unwrap_or("-");
            match transport {
                None => rest.is_empty() || rest.starts_with('{'),
                Some(t) => rest.contains(&format!("transport=\"{t}\"")),
            }
        })
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map_or(0, |v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let whole = v.max(0.0) as u64;
            whole
        })
}
