//! `cargo xtask demo`: the adaptive transport under fire, then tcat clients on an echo server.
//!
//! Act 1 runs `crates/transport-adaptive/examples/demo.rs`: a unified server behind fault
//! proxies, an adaptive client sending numbered messages with live round trips and the
//! transport in use; UDP is blocked (fallback to WebSocket), WebSocket is blocked too (SSE
//! carries on), both are restored (upgrade back to WebTransport); it ends with a table of
//! messages sent, received, lost, duplicated and the time each switch took, and fails if any
//! message was lost, duplicated or reordered.
//!
//! Act 2 starts `tcat serve --ws 127.0.0.1:0 --sse 127.0.0.1:0 --mode echo`, then runs `--clients`
//! concurrent `tcat connect` processes, alternating WebSocket and Server-Sent Events (whose
//! client sends through the POST back channel). Each says hello, then sends `--pings` numbered lines one at
//! a time and times each echo, printing progress as it goes and min / median / p99 / max
//! at the end. The round trip includes the pipes into and out of `tcat connect`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::proc::{self, ChildGuard, target_dir};

const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// One echo must come back within this.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// The demo proper (after the build) stops here, whatever the arguments.
const DEMO_BUDGET: Duration = Duration::from_secs(25);

/// Arguments of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Concurrent clients (1..=16).
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Pings per client (1..=10000).
    #[arg(long, default_value_t = 200)]
    pings: usize,
    /// Seconds of each phase of act 1 (1..=60): normal, UDP blocked, WebSocket blocked too,
    /// restored.
    #[arg(long, default_value_t = 3)]
    phase_secs: u64,
}

/// Round trips of one client, sorted.
#[derive(Debug)]
struct Stats {
    client: usize,
    rtts: Vec<Duration>,
}

impl Stats {
    /// The value at quantile `per_mille / 1000` (nearest rank).
    fn quantile(&self, per_mille: usize) -> Duration {
        let n = self.rtts.len();
        let rank = (n * per_mille).div_ceil(1000).clamp(1, n);
        self.rtts[rank - 1]
    }
}

impl Args {
    /// The short run of `cargo xtask test-all`.
    pub(crate) fn short() -> Self {
        Self {
            clients: 2,
            pings: 20,
            phase_secs: 1,
        }
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    ensure!(
        (1..=16).contains(&args.clients),
        "--clients must be in 1..=16"
    );
    ensure!(
        (1..=60).contains(&args.phase_secs),
        "--phase-secs must be in 1..=60"
    );
    act_adaptive(args.phase_secs)?;
    println!("\n== Act 2: tcat clients over WebSocket and SSE\n");
    act_tcat(args)
}

/// Act 1: the adaptive transport's example, which fails on any lost, duplicated or reordered
/// message.
fn act_adaptive(phase_secs: u64) -> Result<()> {
    println!("== Act 1: the adaptive transport under fire\n");
    proc::run(
        proc::cargo().args(["build", "-p", "transport-adaptive", "--example", "demo"]),
        BUILD_TIMEOUT,
    )?;
    let example = target_dir().join("debug").join("examples").join("demo");
    let mut act1 = Command::new(&example);
    act1.args(["--phase-secs", &phase_secs.to_string()]);
    println!("$ {}", proc::display(&act1));
    // Four phases and the drain, plus a margin.
    let act1_limit = Duration::from_secs(4 * phase_secs + 60);
    proc::run(&mut act1, act1_limit).context("act 1 (adaptive transport)")
}

/// Act 2: `tcat serve` and concurrent `tcat connect` clients timing their echoes.
fn act_tcat(args: &Args) -> Result<()> {
    ensure!(
        (1..=10_000).contains(&args.pings),
        "--pings must be in 1..=10000"
    );
    proc::run(proc::cargo().args(["build", "-p", "tcat"]), BUILD_TIMEOUT)?;
    let tcat = target_dir().join("debug").join("tcat");

    let mut serve = Command::new(&tcat);
    serve
        .args([
            "serve",
            "--ws",
            "127.0.0.1:0",
            "--sse",
            "127.0.0.1:0",
            "--mode",
            "echo",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    println!("$ {}", proc::display(&serve));
    let mut server = ChildGuard::spawn(&mut serve)?;
    let stdout = server.child_mut().stdout.take().context("tcat stdout")?;
    let lines = proc::stdout_lines(stdout, Some("server"));
    let ws = proc::wait_for_line(
        &lines,
        Instant::now() + READY_TIMEOUT,
        "`tcat serve` to print `listening ws://...`",
        |line| line.starts_with("listening ws://"),
    )?;
    let sse = proc::wait_for_line(
        &lines,
        Instant::now() + READY_TIMEOUT,
        "`tcat serve` to print `listening sse http://...`",
        |line| line.starts_with("listening sse http://"),
    )?;
    let urls = [last_word(&ws), last_word(&sse)];
    println!(
        "echo server ready at {} and {}; {} clients x {} pings",
        urls[0], urls[1], args.clients, args.pings
    );

    let deadline = Instant::now() + DEMO_BUDGET;
    let results: Vec<Result<Stats>> = thread::scope(|scope| {
        let handles: Vec<_> = (1..=args.clients)
            .map(|client| {
                let (tcat, url) = (&tcat, urls[(client - 1) % urls.len()].as_str());
                scope.spawn(move || run_client(tcat, url, client, args.pings, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    if let Some(status) = server.try_wait()? {
        bail!("the server exited during the demo ({status})");
    }

    println!();
    println!(
        "client  pings      min   median      p99      max   (round trip, ms; odd clients WebSocket, even SSE)"
    );
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(stats) => {
                print_row(&format!("{:>6}", stats.client), &stats);
                all.extend_from_slice(&stats.rtts);
            }
            Err(err) => errors.push(format!("{err:#}")),
        }
    }
    if !all.is_empty() {
        all.sort_unstable();
        print_row(
            "   all",
            &Stats {
                client: 0,
                rtts: all,
            },
        );
    }
    if !errors.is_empty() {
        bail!("{} client(s) failed:\n{}", errors.len(), errors.join("\n"));
    }
    Ok(())
}

fn print_row(name: &str, stats: &Stats) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}  {:>5} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        stats.rtts.len(),
        ms(stats.quantile(1)),
        ms(stats.quantile(500)),
        ms(stats.quantile(990)),
        ms(stats.quantile(1000)),
    );
}

/// One `tcat connect` process: hello, then `pings` timed echoes, then a graceful close.
fn run_client(
    tcat: &std::path::Path,
    url: &str,
    client: usize,
    pings: usize,
    deadline: Instant,
) -> Result<Stats> {
    let mut connect = Command::new(tcat);
    connect
        .args(["connect", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut guard = ChildGuard::spawn(&mut connect)?;
    let mut stdin = guard.child_mut().stdin.take().context("tcat stdin")?;
    let stdout = guard.child_mut().stdout.take().context("tcat stdout")?;
    let lines = proc::stdout_lines(stdout, None);
    let mut send_and_wait = |text: &str| -> Result<(Duration, String)> {
        let started = Instant::now();
        writeln!(stdin, "{text}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("client {client}: cannot write to tcat connect"))?;
        let wait_until = deadline.min(Instant::now() + ECHO_TIMEOUT);
        let echo = echo_of(&lines, text, wait_until).with_context(|| format!("client {client}"))?;
        Ok((started.elapsed(), echo))
    };

    let hello = format!("hello from client {client}");
    let (rtt, echo) = send_and_wait(&hello)?;
    let transport = if url.starts_with("http") {
        "SSE"
    } else {
        "WebSocket"
    };
    println!(
        "client {client} ({transport}): sent {hello:?}, got {echo:?} back in {:.3} ms",
        rtt.as_secs_f64() * 1e3
    );

    let mut rtts = Vec::with_capacity(pings);
    for i in 1..=pings {
        // Fixed width so that no ping's text contains another's.
        rtts.push(send_and_wait(&format!("ping {client:02}.{i:05}"))?.0);
        if i % 50 == 0 || i == pings {
            let mut sorted = rtts.clone();
            sorted.sort_unstable();
            println!(
                "client {client}: {i:>5}/{pings} pings, last {:.3} ms, median so far {:.3} ms",
                rtts[i - 1].as_secs_f64() * 1e3,
                sorted[sorted.len() / 2].as_secs_f64() * 1e3
            );
        }
    }
    // EOF on stdin asks `tcat connect` to close gracefully and exit 0.
    drop(stdin);
    let status = guard.wait_timeout(Duration::from_secs(10));
    let status = status.with_context(|| format!("client {client}: no exit after stdin EOF"))?;
    ensure!(
        status.success(),
        "client {client}: tcat connect exited with {status}"
    );
    rtts.sort_unstable();
    Ok(Stats { client, rtts })
}

/// The last word of a `listening ...` line: the URL.
fn last_word(line: &str) -> String {
    line.split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// Waits for the echo of `text` (a line containing it) until `deadline`; returns the line.
fn echo_of(lines: &Receiver<String>, text: &str, deadline: Instant) -> Result<String> {
    proc::wait_for_line(lines, deadline, &format!("the echo of {text:?}"), |line| {
        line.contains(text)
    })
}
