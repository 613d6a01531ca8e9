//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for a bounded time each.
//!
//! cargo-fuzz passes nightly-only flags to rustc; `RUSTC_BOOTSTRAP=1` lets the machine's
//! stable toolchain accept them (no nightly toolchain can be fetched here). cargo-fuzz itself
//! is installed from crates.io when missing.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proc::{self, project_root};

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Only this target (default: every target in fuzz/fuzz_targets).
    #[arg(long)]
    pub(crate) target: Option<String>,
}

/// The fuzz targets: the files of `fuzz/fuzz_targets`.
fn targets() -> Result<Vec<String>> {
    let dir = project_root().join("fuzz").join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = proc::output(
        proc::cargo().args(["fuzz", "--version"]),
        Duration::from_secs(60),
    )
    .is_ok();
    if !installed {
        eprintln!("$ cargo install cargo-fuzz --locked");
        proc::run(
            proc::cargo().args(["install", "cargo-fuzz", "--locked"]),
            Duration::from_secs(15 * 60),
        )
        .context("installing cargo-fuzz")?;
    }
    Ok(())
}

/// Runs every target (or the chosen one) for `args.seconds`; fails on the first finding.
pub(crate) fn run(args: &Args) -> Result<()> {
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let chosen: Vec<&String> = match &args.target {
        Some(t) if all.contains(t) => all.iter().filter(|n| *n == t).collect(),
        Some(t) => bail!("no fuzz target {t:?}; have {}", all.join(", ")),
        None => all.iter().collect(),
    };
    for target in chosen {
        let corpus = project_root().join("fuzz").join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd: Command = proc::cargo();
        cmd.current_dir(project_root())
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={}", args.seconds));
        eprintln!("$ RUSTC_BOOTSTRAP=1 {}", proc::display(&cmd));
        // Building the instrumented target takes a few minutes on 2 cores.
        let limit = Duration::from_secs(args.seconds + 20 * 60);
        proc::run(&mut cmd, limit).with_context(|| {
            format!("fuzz target {target} failed; the input is in fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}
