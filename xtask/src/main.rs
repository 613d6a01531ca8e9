//! Project automation in the cargo-xtask style: plain Rust instead of shell scripts.
//!
//! ```text
//! cargo xtask test-all [--skip-autobahn] [--no-install]   what CI runs (.ci/run)
//! cargo xtask autobahn [--only server|client]             WebSocket conformance
//! cargo xtask demo                                        echo server + clients, round trips
//! cargo xtask install-deps                                tinyproxy, Python/Node peers for tests
//! cargo xtask bench [--quick]                           criterion benches -> docs/benchmarks.md
//! cargo xtask fuzz [--seconds N] [--target T]             the cargo-fuzz targets of fuzz/
//! cargo xtask soak [--short] [--minutes N]                 leak check: tcat serve and clients
//! ```
//!
//! Rules every command follows:
//! - child processes live inside a [`proc::ChildGuard`] that kills them (and their
//!   descendants) on drop, so an error or a panic never leaves a server behind;
//! - every wait has a deadline and every loop a bound on its count;
//! - every port is chosen by the OS and every connection goes to 127.0.0.1.

mod autobahn;
mod bench;
mod demo;
mod fuzz;
mod glance;
mod install;
mod junit;
mod proc;
mod soak;
mod test_all;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command-line interface of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    about = "Project automation for the transport workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Format check, clippy, install test peers, tests, doctests, Autobahn. What CI runs.
    TestAll(test_all::Args),
    /// Run the Autobahn|Testsuite against `tcat serve` and `autobahn-client`.
    Autobahn(autobahn::Args),
    /// Start an echo server and a few clients; print messages and round-trip times.
    Demo(demo::Args),
    /// Run the criterion benches and write docs/benchmarks.md with SVG plots.
    Bench(bench::Args),
    /// Run the cargo-fuzz targets (fuzz/fuzz_targets) for a bounded time each.
    Fuzz(fuzz::Args),
    /// Connect/close cycles and echoed messages against `tcat serve` per transport (clean,
    /// abrupt, failed handshakes); fails unless the server's and the client's memory,
    /// descriptors and tasks come back to their baseline. Full runs also run the stress tests
    /// and write the soak section of docs/benchmarks.md.
    Soak(soak::Args),
    /// Install what the tests need (tinyproxy; Python `websockets`, `aiohttp-sse` in
    /// `.tools/py`) and print the variables to export for running tests by hand.
    InstallDeps,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Prints its own summary; its last line must stay `N passed, N failed`.
        Command::TestAll(args) => return test_all::run(&args),
        Command::Autobahn(args) => autobahn::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::InstallDeps => install::apt_packages().and_then(|()| {
            let python = install::python_peers()?;
            for var in [
                install::TRANSPORT_PYTHON,
                install::TRANSPORT_PYTHON_SSE,
                install::TRANSPORT_PYTHON_WT,
            ] {
                println!("export {var}={}", python.display());
            }
            let node = install::node_peers()?;
            println!(
                "export {}={}",
                install::TRANSPORT_NODE_MODULES,
                node.display()
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
