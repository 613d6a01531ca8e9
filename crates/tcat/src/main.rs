//! # tcat
//!
//! netcat for real-time transports: `tcat connect URL` turns stdin lines into messages and
//! received messages into stdout lines; `tcat serve` runs an echo or broadcast server. WebSocket
//! (`ws://`, `wss://`), Server-Sent Events (`http://`, `https://`, with the send URL back
//! channel of `docs/protocols/sse.md`) and WebTransport (`https://` with `--transport wt`, the
//! message framing of `docs/protocols/wt.md`; `serve --wt` echoes raw bytes).
//!
//! ```text
//!  stdin ─lines─▶ pump task ─send─▶ Connection ─▶ peer
//!  stdout ◀─lines─ main loop ◀─recv─ Connection ◀─ peer
//! ```
//!
//! Exit codes: 0 ok, 1 connection or protocol error, 2 usage, 3 timeout (see `docs/tcat.md`).
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod auto;
mod cli;
mod connect;
mod exit;
mod input;
mod metrics;
mod output;
mod serve;
mod serve_all;
mod signal;
mod sse;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

fn main() -> ExitCode {
    // Usage errors exit 2 here (clap's default), before anything else happens.
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return exit::report(Err(Failure::error(format!("starting tokio: {e}")))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Connect(args) => connect::run(args).await,
            Command::Serve(args) => serve::run(args).await,
        }
    });
    // Tasks still running (a close in progress, the stdin reader) do not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(100));
    exit::report(result)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
