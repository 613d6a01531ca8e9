//! `cargo xtask test-all`: everything CI checks, in order, each step counted.
//!
//! 1. `cargo fmt --all -- --check`
//! 2. `cargo clippy --workspace --all-targets -- -D warnings`
//! 3. Debian packages the tests need (tinyproxy, chromium), installed only if missing
//! 4. Python peers (`websockets`, `aiohttp-sse`, `aioquic`) in `.tools/py`, exported as
//!    `TRANSPORT_PYTHON`, `TRANSPORT_PYTHON_SSE`, `TRANSPORT_PYTHON_WT`;
//!    and Node peers (`eventsource`, `playwright-core`) in `.tools/node`, exported as `TRANSPORT_NODE_MODULES`
//! 5. `cargo nextest run --workspace --profile ci` (or `cargo test --workspace` without
//!    nextest); the tests that failed, or passed only on the one retry the profile allows, are
//!    named in the summary (read from nextest's JUnit report)
//! 6. `cargo test --workspace --doc` (nextest does not run doctests)
//! 7. `cargo xtask fuzz --seconds 30`: every cargo-fuzz target, briefly
//! 8. `cargo xtask bench --quick`: the criterion benches compile and run (docs/benchmarks.md)
//! 9. `cargo xtask demo` with 1-second phases (the adaptive transport under faults, then tcat)
//! 10. `cargo xtask soak --short`: leak check, scaled down (about a minute and a half)
//! 11. `cargo xtask autobahn`, when Python 2.7 is present
//!
//! A failing step does not stop the later ones. The last line printed is
//! `N passed, N failed`; the exit code is non-zero if any step failed.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::install::{
    self, TRANSPORT_NODE_MODULES, TRANSPORT_PYTHON, TRANSPORT_PYTHON_SSE, TRANSPORT_PYTHON_WT,
};
use crate::{autobahn, bench, demo, fuzz, junit, proc, soak};

/// The whole run stops starting work after this; CI allows 90 minutes.
const BUDGET: Duration = Duration::from_secs(75 * 60);

/// Arguments of `cargo xtask test-all`.
#[derive(Debug, clap::Args)]
// Command-line switches are naturally independent booleans.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Args {
    /// Do not run the Autobahn|Testsuite.
    #[arg(long)]
    skip_autobahn: bool,
    /// Do not run `cargo xtask bench --quick`.
    #[arg(long)]
    skip_bench: bool,
    /// Do not run the fuzz targets' 30-second smoke runs.
    #[arg(long)]
    skip_fuzz: bool,
    /// Install nothing; use the Debian packages and Python venv already present.
    #[arg(long)]
    no_install: bool,
}

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug)]
struct Runner {
    deadline: Instant,
    steps: Vec<(String, Outcome, Duration)>,
    /// Lines printed after the summary's table, such as the tests that passed only on a retry.
    notes: Vec<String>,
}

impl Runner {
    /// Runs one step with `limit`, capped by what is left of [`BUDGET`].
    fn step(&mut self, name: &str, limit: Duration, body: impl FnOnce(Duration) -> Result<()>) {
        eprintln!("\n==> [{}] {name}{}", self.steps.len() + 1, disk_free());
        let started = Instant::now();
        let remaining = self.deadline.saturating_duration_since(started);
        let outcome = if remaining.is_zero() {
            Outcome::Failed(format!("not started: the {BUDGET:?} budget is spent"))
        } else {
            match body(limit.min(remaining)) {
                Ok(()) => Outcome::Passed,
                Err(err) => {
                    eprintln!("==> {name}: FAILED: {err:#}");
                    Outcome::Failed(format!("{err:#}"))
                }
            }
        };
        self.steps
            .push((name.to_owned(), outcome, started.elapsed()));
    }

    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("\n==> {name}: skipped ({why})");
        self.steps.push((
            name.to_owned(),
            Outcome::Skipped(why.to_owned()),
            Duration::ZERO,
        ));
    }

    /// Prints the summary; the very last line is `N passed, N failed`.
    fn finish(self) -> ExitCode {
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        println!("\n==> summary");
        for (name, outcome, elapsed) in &self.steps {
            let secs = elapsed.as_secs_f64();
            match outcome {
                Outcome::Passed => {
                    passed += 1;
                    println!("  PASS  {name:<28} {secs:>7.1}s");
                }
                Outcome::Failed(why) => {
                    failed += 1;
                    let first = why.lines().next().unwrap_or("");
                    println!("  FAIL  {name:<28} {secs:>7.1}s  {first}");
                }
                Outcome::Skipped(why) => {
                    skipped += 1;
                    println!("  SKIP  {name:<28}           {why}");
                }
            }
        }
        for note in &self.notes {
            println!("  {note}");
        }
        if skipped > 0 {
            println!("{skipped} step(s) skipped");
        }
        println!("{passed} passed, {failed} failed");
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// `" (N GiB free for target/)"`, from `df`: a CI run that fills its disk fails in odd ways
/// (linkers dying of SIGBUS, pip unable to make a temporary directory), and this line in
/// front of every step says so at once. Empty when `df` cannot tell.
fn disk_free() -> String {
    let target = proc::target_dir();
    let dir = if target.exists() {
        target
    } else {
        proc::project_root()
    };
    let out = proc::output(
        Command::new("df").arg("-Pk").arg(&dir),
        Duration::from_secs(10),
    );
    let free_kib = out.ok().and_then(|text| {
        let line = text.lines().nth(1)?;
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match free_kib {
        // Display only: f64 is plenty for a disk size.
        #[allow(clippy::cast_precision_loss)]
        Some(kib) => format!(
            " ({:.1} GiB free for target/)",
            kib as f64 / 1024.0 / 1024.0
        ),
        None => String::new(),
    }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

pub(crate) fn run(args: &Args) -> ExitCode {
    let mut runner = Runner {
        deadline: Instant::now() + BUDGET,
        steps: Vec::new(),
        notes: Vec::new(),
    };

    runner.step("cargo fmt --check", minutes(5), |limit| {
        proc::run(proc::cargo().args(["fmt", "--all", "--", "--check"]), limit)
    });
    runner.step("cargo clippy", minutes(30), |limit| {
        proc::run(
            proc::cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            limit,
        )
    });

    let mut python: Option<PathBuf> = None;
    let mut node: Option<PathBuf> = None;
    if args.no_install {
        runner.skip("install Debian packages", "--no-install");
        runner.skip("install Python peers", "--no-install");
        runner.skip("install Node peers", "--no-install");
        python = install::existing_python_peer();
        node = install::existing_node_peers();
    } else {
        runner.step("install Debian packages", minutes(15), |_| {
            install::apt_packages()
        });
        runner.step("install Python peers", minutes(10), |_| {
            python = Some(install::python_peers()?);
            Ok(())
        });
        runner.step("install Node peers", minutes(10), |_| {
            node = Some(install::node_peers()?);
            Ok(())
        });
    }
    let with_env = |mut cmd: Command| {
        if let Some(python) = &python {
            cmd.env(TRANSPORT_PYTHON, python)
                .env(TRANSPORT_PYTHON_SSE, python)
                .env(TRANSPORT_PYTHON_WT, python);
        }
        if let Some(node) = &node {
            cmd.env(TRANSPORT_NODE_MODULES, node);
        }
        cmd
    };
    match &python {
        Some(p) => eprintln!(
            "{TRANSPORT_PYTHON}={0} {TRANSPORT_PYTHON_SSE}={0}",
            p.display()
        ),
        None => eprintln!("{TRANSPORT_PYTHON} not set by xtask (no .tools/py venv)"),
    }

    let nextest = proc::output(
        proc::cargo().args(["nextest", "--version"]),
        Duration::from_secs(60),
    )
    .is_ok();
    if nextest {
        nextest_step(&mut runner, &with_env);
    } else {
        runner.step("cargo test", minutes(40), |limit| {
            let mut cmd = with_env(proc::cargo());
            cmd.args(["test", "--workspace", "--no-fail-fast"]);
            proc::run(&mut cmd, limit)
        });
    }
    runner.step("cargo test --doc", minutes(15), |limit| {
        let mut cmd = with_env(proc::cargo());
        cmd.args(["test", "--workspace", "--doc"]);
        proc::run(&mut cmd, limit)
    });

    extra_checks(&mut runner, args);
    runner.finish()
}

/// `cargo nextest run --profile ci`; the tests that failed go into the step's error, those
/// that passed only on the retry into a note under the summary.
fn nextest_step(runner: &mut Runner, with_env: &dyn Fn(Command) -> Command) {
    let report = junit::path();
    // A report left by an earlier run must not be read as this one's.
    let _ = std::fs::remove_file(&report);
    let (mut failed, mut flaky) = (Vec::new(), Vec::new());
    runner.step("cargo nextest run", minutes(40), |limit| {
        let mut cmd = with_env(proc::cargo());
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--profile",
            "ci",
            "--no-fail-fast",
            "--no-tests=warn",
        ]);
        let outcome = proc::run(&mut cmd, limit);
        let tests = junit::read(&report).unwrap_or_default();
        flaky = tests.flaky;
        for (name, message) in &tests.failed {
            failed.push(match message {
                Some(message) => format!("failed: {name}: {message}"),
                None => format!("failed: {name}"),
            });
        }
        match outcome {
            Err(err) if !tests.failed.is_empty() => Err(err.context(format!(
                "{} test(s) failed, named below",
                tests.failed.len()
            ))),
            other => other,
        }
    });
    runner.notes.extend(failed);
    if !flaky.is_empty() {
        runner.notes.push(format!(
            "flaky (failed, then passed on the retry): {}",
            flaky.join(", ")
        ));
    }
}

/// The slower checks after the tests: fuzz smoke runs, quick benches, Autobahn.
fn extra_checks(runner: &mut Runner, args: &Args) {
    if args.skip_fuzz {
        runner.skip("fuzz (smoke)", "--skip-fuzz");
    } else {
        runner.step("fuzz (smoke)", minutes(30), |_| {
            fuzz::run(&fuzz::Args {
                seconds: 30,
                target: None,
            })
        });
    }

    if args.skip_bench {
        runner.skip("bench (quick)", "--skip-bench");
    } else {
        runner.step("bench (quick)", minutes(20), |_| {
            bench::run(&bench::Args {
                quick: true,
                report_only: false,
            })
        });
    }

    // The README's main job, shortened: fails on any lost, duplicated or reordered message.
    runner.step("demo (1 s phases)", minutes(10), |_| {
        demo::run(&demo::Args::short())
    });

    // Connect/close cycles and echoed messages, scaled down; fails on a leak or a lost echo.
    runner.step("soak (short)", minutes(10), |_| {
        soak::run(&soak::Args::short())
    });

    if args.skip_autobahn {
        runner.skip("autobahn", "--skip-autobahn");
    } else if autobahn::find_python27().is_none() {
        runner.skip(
            "autobahn",
            "Python 2.7 not found (set AUTOBAHN_PYTHON); the testsuite needs it",
        );
    } else {
        runner.step("autobahn", minutes(45), |_| {
            // Bounded by autobahn's own per-process timeouts.
            autobahn::run(&autobahn::Args::default())
        });
    }
}
