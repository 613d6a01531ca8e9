//! `cargo xtask soak [--short] [--minutes N]`: leak check of `tcat serve` and of our clients.
//!
//! For each transport (WebSocket, SSE, WebTransport) it starts `tcat serve --<transport>
//! 127.0.0.1:0 --metrics 127.0.0.1:0` (its own process, so its memory and descriptors are its
//! own) and `soak-client` (test-servers/src/bin/soak_client.rs), which runs in one process:
//! - connect/close cycles, 48 at a time, a third each: clean closes after an echoed message,
//!   abrupt drops after an echoed message (no close frame, no session close) and failed
//!   handshakes (broken HTTP requests; for WebTransport, a wrong pinned certificate hash);
//! - echoed messages over 4 long-lived connections, pipelined (256 unanswered at most per
//!   connection), every echo checked in order, byte for byte.
//!
//! Both run a warm-up first (half the counts; twice them with `--short`, whose run is too
//! short for one pass to reach the allocator's and quinn's high-water marks: with a warm-up
//! of 5,000 WebTransport cycles the server's resident memory still rose by up to 5.5 % in
//! the next 5,000, with 20,000 it stayed flat; `--warm-up-percent`). Once the client has dropped everything
//! and the server is idle again (no connection open, tasks and descriptors steady), the
//! baseline is taken: resident memory (`VmRSS`), open descriptors and live tokio tasks of the
//! server (`tcat_tasks` from its `/metrics`) and of the client (its own runtime's
//! `num_alive_tasks`). Then the full counts run, and at the end, once idle again, descriptors
//! and tasks must equal the baseline on both sides and memory be within 5 % of it. Otherwise
//! the command fails and prints the series. A failed cycle, or a missing or corrupt echo,
//! fails it too.
//!
//! Two settings keep resident memory a measure of what is live: the SSE server runs with
//! `--session-grace 0.2` (with the default 30 s, thousands of abandoned sessions linger at
//! once, more in the long run than in the warm-up, and glibc keeps that high-water mark), and
//! both processes run with `GLIBC_TUNABLES` fixing malloc's mmap and trim thresholds (see
//! [`GLIBC_TUNABLES`]).
//!
//! Sizes: by default the issue's, 100,000 cycles and 10,000,000 echoed messages per transport,
//! release builds. `--short` (what `cargo xtask test-all` runs): 5,000 cycles and 200,000
//! messages per transport after a warm-up of twice that, debug builds, about a minute and a
//! half once built (most of it waiting for the WebTransport server to close what the client
//! abandoned).
//! `--minutes N` is the time each phase of each transport may take (default 25; 3 with
//! `--short`): counts not reached by then fail the run, honestly, instead of shrinking it.
//!
//! The full run also runs the `#[ignore]`d stress tests (`stress_*` in crates/*/tests) and
//! writes docs/bench/soak.csv, docs/bench/soak-{ws,sse,wt}.svg and the soak section of
//! docs/benchmarks.md (between `<!-- soak:begin -->` and `<!-- soak:end -->`, which
//! `cargo xtask bench` keeps).

pub(crate) mod report;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};

use crate::proc::{self, ChildGuard, target_dir};

const BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to become idle after the client went quiet: an SSE session
/// whose client vanished waits 30 s (`session_grace`) for it to come back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the stress tests may take.
const STRESS_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// glibc settings of both processes: a fixed mmap threshold (so freed large buffers go back
/// to the system instead of raising the threshold and staying in the heap) and a low trim
/// threshold. Without them resident memory shows the allocator's high-water mark, not what is
/// live: a WebTransport client with 48 sessions at a time (one quinn endpoint with its UDP
/// buffers each) stays at about 450 MiB after they are all gone.
pub(crate) const GLIBC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072";
/// `tcat serve --session-grace`: how long an SSE session whose client vanished (an abrupt
/// drop) waits for it to come back. The default 30 s would keep thousands of abandoned
/// sessions alive at once during the cycles, a high-water mark the warm-up does not reach.
const SSE_SESSION_GRACE: &str = "0.2";
/// Allowed growth of resident memory over the baseline.
const RSS_TOLERANCE: f64 = 0.05;
/// The sizes, per transport.
const FULL_CYCLES: u64 = 100_000;
const FULL_MESSAGES: u64 = 10_000_000;
/// `--short` sizes, per transport.
const SHORT_CYCLES: u64 = 5_000;
const SHORT_MESSAGES: u64 = 200_000;

/// Options of `cargo xtask soak`.
#[derive(Debug, ClapArgs)]
pub(crate) struct Args {
    /// Time each phase (warm-up, run) of each transport may take, in minutes; counts not
    /// reached by then fail the run. Default: 25, or 3 with --short.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub(crate) minutes: Option<u64>,
    /// About a minute and a half with small counts and debug builds (what `cargo xtask test-all`
    /// runs); no stress tests, no docs.
    #[arg(long)]
    pub(crate) short: bool,
    /// Only this transport (repeatable). Default: all three.
    #[arg(long = "transport", value_enum)]
    pub(crate) transports: Vec<Proto>,
    /// Connect/close cycles per transport (default 100,000; 5,000 with --short).
    #[arg(long)]
    pub(crate) cycles: Option<u64>,
    /// Echoed messages per transport (default 10,000,000; 200,000 with --short).
    #[arg(long)]
    pub(crate) messages: Option<u64>,
    /// Warm-up size, in percent of --cycles and --messages (default 50; 200 with --short).
    /// Resident memory must have levelled off by the baseline: with 10 %, WebTransport's
    /// went on rising until about 40,000 cycles (then stayed flat to 100,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=400))]
    pub(crate) warm_up_percent: Option<u64>,
    /// Do not run the `#[ignore]`d stress tests.
    #[arg(long)]
    pub(crate) skip_stress: bool,
    /// Do not write docs/ (a full run writes them by default).
    #[arg(long)]
    pub(crate) no_docs: bool,
}

impl Args {
    /// What `cargo xtask test-all` runs.
    pub(crate) fn short() -> Self {
        Self {
            minutes: None,
            short: true,
            transports: Vec::new(),
            cycles: None,
            messages: None,
            warm_up_percent: None,
            skip_stress: true,
            no_docs: true,
        }
    }
}

/// A transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Proto {
    Ws,
    Sse,
    Wt,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Wt => "wt",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Ws => "WebSocket",
            Self::Sse => "SSE",
            Self::Wt => "WebTransport",
        }
    }
}

/// One sample of server and client.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) at: Duration,
    /// `warm-up`, `baseline`, `run` or `end`.
    pub(crate) phase: String,
    pub(crate) cycles: u64,
    pub(crate) messages: u64,
    pub(crate) client: Resources,
    pub(crate) server: Resources,
    pub(crate) connections: u64,
}

/// Memory, descriptors and tasks of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
    pub(crate) tasks: u64,
}

/// What one transport's soak found.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) proto: Proto,
    pub(crate) cycles: u64,
    pub(crate) messages: u64,
    /// `("PHASE secs|cycle_secs|message_secs", seconds)` as the client reported them.
    pub(crate) durations: Vec<(String, f64)>,
    pub(crate) series: Vec<Row>,
    pub(crate) baseline: Option<Row>,
    pub(crate) end: Option<Row>,
    pub(crate) problems: Vec<String>,
    pub(crate) elapsed: Duration,
}

/// The running server.
struct Server {
    guard: ChildGuard,
    pid: u32,
    url: String,
    cert_hash: Option<String>,
    metrics: SocketAddr,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let (cycles, messages) = if args.short {
        (
            args.cycles.unwrap_or(SHORT_CYCLES),
            args.messages.unwrap_or(SHORT_MESSAGES),
        )
    } else {
        (
            args.cycles.unwrap_or(FULL_CYCLES),
            args.messages.unwrap_or(FULL_MESSAGES),
        )
    };
    let minutes = args.minutes.unwrap_or(if args.short { 3 } else { 25 });
    let profile = if args.short { "debug" } else { "release" };
    let mut build = proc::cargo();
    build.args(["build", "-p", "tcat", "-p", "test-servers"]);
    if !args.short {
        build.arg("--release");
    }
    proc::run(&mut build, BUILD_TIMEOUT)?;
    let bin = target_dir().join(profile);
    let transports = if args.transports.is_empty() {
        vec![Proto::Ws, Proto::Sse, Proto::Wt]
    } else {
        args.transports.clone()
    };
    let plan = Plan {
        cycles,
        messages,
        warm_up_percent: args
            .warm_up_percent
            .unwrap_or(if args.short { 200 } else { 50 }),
        seconds: minutes * 60,
    };
    let mut outcomes = Vec::new();
    for proto in transports {
        eprintln!(
            "\n==> soak {}: {cycles} cycles, {messages} echoed messages",
            proto.title()
        );
        let outcome = soak_one(&bin, proto, &plan)?;
        report::print_verdict(&outcome);
        outcomes.push(outcome);
    }
    let mut failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.problems.is_empty())
        .map(|o| format!("{}: {}", o.proto.title(), o.problems.join("; ")))
        .collect();
    let stress = if args.short || args.skip_stress {
        None
    } else {
        let result = run_stress_tests();
        if let Err(e) = &result {
            failed.push(format!("stress tests: {e:#}"));
        }
        Some(result.is_ok())
    };
    if !args.short && !args.no_docs {
        report::write_docs(&outcomes, stress, &plan, started.elapsed())?;
    }
    eprintln!("soak took {:.1?}", started.elapsed());
    if failed.is_empty() {
        println!("soak passed: every transport back to its baseline");
        return Ok(());
    }
    for o in outcomes.iter().filter(|o| !o.problems.is_empty()) {
        report::print_series(o);
    }
    bail!("soak failed:\n  {}", failed.join("\n  "))
}

/// Counts and time allowed, per transport.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) cycles: u64,
    pub(crate) messages: u64,
    pub(crate) warm_up_percent: u64,
    pub(crate) seconds: u64,
}

fn soak_one(bin: &Path, proto: Proto, plan: &Plan) -> Result<Outcome> {
    let started = Instant::now();
    let mut server = start(&bin.join("tcat"), proto)?;
    let mut client_cmd = Command::new(bin.join("soak-client"));
    client_cmd
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES)
        .args(["--transport", proto.name(), "--url", &server.url])
        .args([
            "--warm-up-cycles",
            &(plan.cycles * plan.warm_up_percent / 100).to_string(),
        ])
        .args([
            "--warm-up-messages",
            &(plan.messages * plan.warm_up_percent / 100).to_string(),
        ])
        .args(["--cycles", &plan.cycles.to_string()])
        .args(["--messages", &plan.messages.to_string()])
        .args(["--seconds", &plan.seconds.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(hash) = &server.cert_hash {
        client_cmd.args(["--cert-hash", hash]);
    }
    eprintln!("$ {}", proc::display(&client_cmd));
    let mut client = ChildGuard::spawn(&mut client_cmd)?;
    let client_pid = client.child_mut().id();
    let mut stdin = client.child_mut().stdin.take().context("client stdin")?;
    let stdout = client.child_mut().stdout.take().context("client stdout")?;
    let lines = proc::stdout_lines(stdout, None);
    let mut outcome = Outcome {
        proto,
        cycles: 0,
        messages: 0,
        durations: Vec::new(),
        series: Vec::new(),
        baseline: None,
        end: None,
        problems: Vec::new(),
        elapsed: Duration::ZERO,
    };
    // Two phases, each with its time plus the idle waits.
    let deadline = Instant::now() + Duration::from_secs(plan.seconds * 2) + 4 * IDLE_TIMEOUT;
    let mut last_progress = Instant::now();
    // Bounded by the deadline: each turn waits at most until then.
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            outcome
                .problems
                .push("the client did not finish in time".into());
            break;
        }
        let line = match lines.recv_timeout(remaining.min(Duration::from_secs(5))) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                if last_progress.elapsed() > Duration::from_secs(120) {
                    outcome.problems.push("the client went silent".into());
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last_progress = Instant::now();
        if let Some(status) = server.guard.try_wait()? {
            outcome
                .problems
                .push(format!("`tcat serve` exited during the soak ({status})"));
            break;
        }
        if handle_line(&line, &mut server, &mut stdin, started, &mut outcome)? {
            // Samples the client printed while the server was awaited are stale: the
            // idle polls stand in for them.
            while let Ok(queued) = lines.try_recv() {
                if !queued.starts_with("sample ") {
                    handle_line(&queued, &mut server, &mut stdin, started, &mut outcome)?;
                }
            }
        }
    }
    let status = client.wait_timeout(Duration::from_secs(30))?;
    if !status.success() && outcome.problems.is_empty() {
        outcome
            .problems
            .push(format!("soak-client (pid {client_pid}) failed: {status}"));
    }
    server.guard.kill_tree();
    outcome.elapsed = started.elapsed();
    judge(&mut outcome);
    Ok(outcome)
}

/// Handles one line of the client (see soak_client.rs for the protocol); true after an idle
/// point, when the samples queued meanwhile are stale.
fn handle_line(
    line: &str,
    server: &mut Server,
    stdin: &mut ChildStdin,
    started: Instant,
    outcome: &mut Outcome,
) -> Result<bool> {
    let mut words = line.split_whitespace();
    let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
    match words.next() {
        Some("sample") => {
            let phase = words.next().unwrap_or("?").to_owned();
            let _millis = words.next();
            let cycles = number(words.next());
            let messages = number(words.next());
            let client = Resources {
                rss_kib: number(words.next()),
                fds: number(words.next()),
                tasks: number(words.next()),
            };
            let (server_res, connections) = sample(server)?;
            outcome.series.push(Row {
                at: started.elapsed(),
                phase,
                cycles,
                messages,
                client,
                server: server_res,
                connections,
            });
        }
        Some("idle") => {
            let phase = words.next().unwrap_or("?");
            let client = Resources {
                rss_kib: number(words.next()),
                fds: number(words.next()),
                tasks: number(words.next()),
            };
            let (cycles, messages) = outcome
                .series
                .last()
                .map_or((0, 0), |r| (r.cycles, r.messages));
            let (server_res, connections) = wait_idle(server, |server_res, connections| {
                outcome.series.push(Row {
                    at: started.elapsed(),
                    phase: "idle".to_owned(),
                    cycles,
                    messages,
                    client,
                    server: server_res,
                    connections,
                });
            })?;
            let at = if phase == "warm-up" {
                "baseline"
            } else {
                "end"
            };
            let row = Row {
                at: started.elapsed(),
                phase: at.to_owned(),
                cycles,
                messages,
                client,
                server: server_res,
                connections,
            };
            eprintln!("{at}: {}", report::show(&row));
            outcome.series.push(row.clone());
            if at == "baseline" {
                outcome.baseline = Some(row);
            } else {
                outcome.end = Some(row);
            }
            writeln!(stdin, "next").context("writing to soak-client")?;
            stdin.flush()?;
            return Ok(true);
        }
        Some("done") => {
            eprintln!("{line}");
            let phase = words.next().unwrap_or("?").to_owned();
            for word in words {
                if let Some(v) = word.strip_prefix("cycles=") {
                    outcome.cycles = v.parse().unwrap_or(0);
                } else if let Some(v) = word.strip_prefix("messages=") {
                    outcome.messages = v.parse().unwrap_or(0);
                } else if let Some((key, v)) = word.split_once('=') {
                    let secs = v.parse().unwrap_or(0.0);
                    outcome.durations.push((format!("{phase} {key}"), secs));
                }
            }
        }
        Some("error") => {
            eprintln!("soak-client: {line}");
            outcome
                .problems
                .push(line.trim_start_matches("error ").to_owned());
        }
        _ => eprintln!("soak-client: {line}"),
    }
    Ok(false)
}

/// Baseline against end: descriptors and tasks equal, memory within [`RSS_TOLERANCE`].
fn judge(outcome: &mut Outcome) {
    let (Some(baseline), Some(end)) = (&outcome.baseline, &outcome.end) else {
        outcome
            .problems
            .push("no baseline or no end sample (the run stopped early)".into());
        return;
    };
    let mut problems = Vec::new();
    for (side, b, e) in [
        ("server", baseline.server, end.server),
        ("client", baseline.client, end.client),
    ] {
        if e.fds != b.fds {
            problems.push(format!("{side} open descriptors {} -> {}", b.fds, e.fds));
        }
        if e.tasks != b.tasks {
            problems.push(format!("{side} live tasks {} -> {}", b.tasks, e.tasks));
        }
        if !within_tolerance(b.rss_kib, e.rss_kib) {
            problems.push(format!(
                "{side} resident memory {} KiB -> {} KiB (more than {:.0} %)",
                b.rss_kib,
                e.rss_kib,
                RSS_TOLERANCE * 100.0
            ));
        }
    }
    outcome.problems.extend(problems);
}

/// Is `end` at most [`RSS_TOLERANCE`] above `baseline`?
pub(crate) fn within_tolerance(baseline: u64, end: u64) -> bool {
    #[allow(clippy::cast_precision_loss)] // KiB counts far below 2^52.
    let limit = baseline as f64 * (1.0 + RSS_TOLERANCE);
    #[allow(clippy::cast_precision_loss)]
    let end = end as f64;
    end <= limit
}

fn start(tcat: &Path, proto: Proto) -> Result<Server> {
    let mut serve = Command::new(tcat);
    serve
        .args([
            "serve",
            &format!("--{}", proto.name()),
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("GLIBC_TUNABLES", GLIBC_TUNABLES)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if proto == Proto::Sse {
        serve.args(["--session-grace", SSE_SESSION_GRACE]);
    }
    eprintln!("$ {}", proc::display(&serve));
    let mut guard = ChildGuard::spawn(&mut serve)?;
    let pid = guard.child_mut().id();
    let stdout = guard.child_mut().stdout.take().context("tcat stdout")?;
    let lines = proc::stdout_lines(stdout, None);
    let deadline = Instant::now() + READY_TIMEOUT;
    let last_word = |line: String| line.split_whitespace().last().unwrap_or("").to_owned();
    let cert_hash = if proto == Proto::Wt {
        Some(last_word(proc::wait_for_line(
            &lines,
            deadline,
            "the certificate hash",
            |l| l.starts_with("cert-sha256 "),
        )?))
    } else {
        None
    };
    let prefix = match proto {
        Proto::Ws => "listening ws://",
        Proto::Sse => "listening sse ",
        Proto::Wt => "listening wt ",
    };
    let url = last_word(proc::wait_for_line(
        &lines,
        deadline,
        "the listening line",
        |l| l.starts_with(prefix),
    )?);
    let url = if proto == Proto::Ws {
        url.trim_end_matches('/').to_owned() + "/"
    } else {
        url
    };
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
        url,
        cert_hash,
        metrics,
    })
}

/// The server's resources and open connections now.
fn sample(server: &Server) -> Result<(Resources, u64)> {
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
    let connections = ["ws", "sse", "wt"]
        .iter()
        .map(|t| gauge(&text, "transport_connections", Some(t)))
        .sum();
    Ok((
        Resources {
            rss_kib,
            fds,
            tasks: gauge(&text, "tcat_tasks", None),
        },
        connections,
    ))
}

/// Samples (each one handed to `record`) until no connection is open and tasks and
/// descriptors have stopped changing.
fn wait_idle(server: &Server, mut record: impl FnMut(Resources, u64)) -> Result<(Resources, u64)> {
    let deadline = Instant::now() + IDLE_TIMEOUT;
    let mut previous: Option<Resources> = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (now, connections) = sample(server)?;
        record(now, connections);
        let settled = previous.is_some_and(|p| p.fds == now.fds && p.tasks == now.tasks);
        if connections == 0 && settled {
            return Ok((now, connections));
        }
        if Instant::now() >= deadline {
            bail!(
                "the server did not become idle: rss={}KiB fds={} tasks={} connections={connections}",
                now.rss_kib,
                now.fds,
                now.tasks
            );
        }
        previous = Some(now);
    }
}

fn scrape(addr: SocketAddr) -> Result<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).context("metrics endpoint")?;
    tcp.set_read_timeout(Some(HTTP_TIMEOUT))?;
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

/// The crates (directory names under crates/, which are their package names) with a
/// `stress_*` test in tests/.
fn crates_with_stress_tests() -> Result<Vec<String>> {
    let crates = proc::project_root().join("crates");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&crates).context("reading crates/")? {
        let dir = entry?.path();
        let Ok(tests) = std::fs::read_dir(dir.join("tests")) else {
            continue;
        };
        let has_stress = tests.filter_map(Result::ok).any(|t| {
            std::fs::read_to_string(t.path()).is_ok_and(|text| text.contains("fn stress_"))
        });
        if has_stress && let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
            found.push(name.to_owned());
        }
    }
    found.sort();
    Ok(found)
}

/// The `#[ignore]`d stress tests (`stress_*`), release builds like the soak's, only the
/// crates that have some (a release build of every test would take longer than the soak).
fn run_stress_tests() -> Result<()> {
    let crates = crates_with_stress_tests()?;
    if crates.is_empty() {
        bail!("no stress_* test found under crates/*/tests");
    }
    let packages: Vec<String> = crates
        .iter()
        .flat_map(|c| ["-p".to_owned(), c.clone()])
        .collect();
    let nextest = proc::output(
        proc::cargo().args(["nextest", "--version"]),
        Duration::from_secs(60),
    )
    .is_ok();
    let mut cmd = proc::cargo();
    if nextest {
        cmd.args(["nextest", "run", "--release"])
            .args(&packages)
            .args([
                "--no-fail-fast",
                "--run-ignored",
                "ignored-only",
                "-E",
                "test(/^stress_/)",
            ]);
    } else {
        cmd.args(["test", "--release"]).args(&packages).args([
            "--no-fail-fast",
            "--",
            "--ignored",
            "stress_",
        ]);
    }
    proc::run(&mut cmd, STRESS_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_by_name_and_label() {
        let text = "# HELP tcat_tasks x\ntcat_tasks 7\n\
                    transport_connections{transport=\"ws\"} 3\n\
                    transport_connections{transport=\"sse\"} 0\n";
        assert_eq!(gauge(text, "tcat_tasks", None), 7);
        assert_eq!(gauge(text, "transport_connections", Some("ws")), 3);
        assert_eq!(gauge(text, "transport_connections", Some("wt")), 0);
    }

    #[test]
    fn memory_tolerance_is_five_percent() {
        assert!(within_tolerance(100_000, 105_000));
        assert!(!within_tolerance(100_000, 105_001));
        assert!(within_tolerance(100_000, 90_000));
    }

    #[test]
    fn stress_tests_are_found() {
        let crates = crates_with_stress_tests().expect("crates/ readable");
        assert!(crates.contains(&"transport-ws".to_owned()), "{crates:?}");
        assert!(crates.contains(&"transport-sse".to_owned()), "{crates:?}");
    }
}
