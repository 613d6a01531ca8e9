//! `autobahn-client`: the transport-ws client as an Autobahn|Testsuite testee.
//!
//! Run against `wstest -m fuzzingserver` (see `cargo xtask autobahn`):
//! 1. `/getCaseCount` sends one text message, the number of cases;
//! 2. for each case, `/runCase?case=N&agent=AGENT`: every message received is sent back
//!    unchanged (text as text, binary as binary) until the connection ends;
//! 3. `/updateReports?agent=AGENT` makes the server write its reports.
//!
//! Reconnects are off, messages up to 64 MiB are accepted (case 9.* sends 16 MiB), and each
//! case has a deadline so that one bad case cannot hang the run. Errors inside a case are
//! expected (many cases send protocol violations on purpose) and only logged; the reports
//! judge the outcome. The exit code is non-zero only when the count or the report update
//! fails.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use transport_ws::transport_core::{Connection, ReconnectPolicy};
use transport_ws::{ProxyConfig, WsConfig};

/// Largest message and frame accepted: well above the 16 MiB of case 9.*.
const MAX_MESSAGE: usize = 64 << 20;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "autobahn-client",
    about = "Autobahn|Testsuite client testee for transport-ws"
)]
struct Args {
    /// Base URL of the fuzzing server, e.g. `ws://127.0.0.1:9001`.
    #[arg(long)]
    url: String,
    /// Agent name under which the reports are filed.
    #[arg(long, default_value = "transport-ws", value_parser = parse_agent)]
    agent: String,
    /// Deadline for one case, seconds.
    #[arg(long, default_value_t = 120)]
    case_timeout: u64,
    /// Print one line per case.
    #[arg(long)]
    verbose: bool,
}

fn parse_agent(agent: &str) -> Result<String, String> {
    let ok = !agent.is_empty()
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(agent.to_owned())
    } else {
        Err("use letters, digits, '-', '_' and '.' only".to_owned())
    }
}

fn config() -> WsConfig {
    let mut config = WsConfig::default();
    config.proxy(ProxyConfig::none());
    config.max_frame_size = MAX_MESSAGE;
    config
        .transport
        .max_message_size(MAX_MESSAGE)
        .reconnect(ReconnectPolicy::disabled())
        // No pings of our own: the suite compares every frame it receives.
        .keepalive(None, Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(10));
    config
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let base = args.url.trim_end_matches('/');
    let case_timeout = Duration::from_secs(args.case_timeout);

    let count = case_count(base).await?;
    eprintln!(
        "autobahn-client: {count} cases at {base}, agent {}",
        args.agent
    );
    let started = Instant::now();
    let (mut clean, mut with_error, mut timed_out) = (0_u32, 0_u32, 0_u32);
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        match tokio::time::timeout(case_timeout, run_case(&url)).await {
            Ok(Ok(echoed)) => {
                clean += 1;
                if args.verbose {
                    eprintln!("case {case}/{count}: echoed {echoed} message(s)");
                }
            }
            Ok(Err(err)) => {
                with_error += 1;
                if args.verbose {
                    eprintln!("case {case}/{count}: ended with error: {err:#}");
                }
            }
            Err(_) => {
                timed_out += 1;
                eprintln!("case {case}/{count}: no end after {case_timeout:?}; dropped");
            }
        }
    }
    eprintln!(
        "autobahn-client: {count} cases in {:.1}s: {clean} ended cleanly, {with_error} with a \
         connection error (often expected), {timed_out} timed out",
        started.elapsed().as_secs_f64()
    );

    let url = format!("{base}/updateReports?agent={}", args.agent);
    tokio::time::timeout(Duration::from_secs(120), drain(&url))
        .await
        .context("updateReports did not finish in 120 s")?
        .context("updateReports")?;
    Ok(())
}

/// Opens `url` without reconnects.
async fn open(url: &str) -> Result<Connection> {
    transport_ws::connect(url, config())
        .await
        .with_context(|| format!("connect {url}"))
}

/// `/getCaseCount`: one text message with the number.
async fn case_count(base: &str) -> Result<u32> {
    let url = format!("{base}/getCaseCount");
    let mut conn = tokio::time::timeout(Duration::from_secs(30), open(&url))
        .await
        .context("getCaseCount: connect timed out")??;
    let message = tokio::time::timeout(Duration::from_secs(30), conn.receiver().recv())
        .await
        .context("getCaseCount: no answer in 30 s")?
        .context("getCaseCount")?
        .context("getCaseCount: closed without a message")?;
    let text = message
        .as_text()
        .context("getCaseCount: not a text message")?;
    let count: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("getCaseCount: {text:?} is not a number"))?;
    if count == 0 || count > 10_000 {
        bail!("getCaseCount: implausible count {count}");
    }
    Ok(count)
}

/// One case: echo until the connection ends; returns how many messages were echoed.
async fn run_case(url: &str) -> Result<u64> {
    let mut conn = open(url).await?;
    let sender = conn.sender();
    let mut echoed = 0;
    loop {
        match conn.receiver().recv().await {
            Ok(Some(message)) => {
                // A send can fail when the peer already started closing; keep reading so
                // the close handshake completes.
                if sender.send(message).await.is_ok() {
                    echoed += 1;
                }
            }
            Ok(None) => return Ok(echoed),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Connects and reads until the server closes (used for `/updateReports`).
async fn drain(url: &str) -> Result<()> {
    let mut conn = open(url).await?;
    // Bounded: the server sends nothing and closes right away.
    for _ in 0..1000 {
        if conn.receiver().recv().await?.is_none() {
            return Ok(());
        }
    }
    bail!("{url}: unexpected messages")
}
