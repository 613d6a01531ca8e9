//! Child processes with deadlines: run-to-completion with a timeout, long-lived servers
//! inside kill-on-drop guards, readiness by stdout line or by TCP connect.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// How often a wait loop re-checks a child or a socket.
const POLL: Duration = Duration::from_millis(50);

/// Upper bound on stdout lines inspected while waiting for a readiness line.
const MAX_READY_LINES: usize = 10_000;

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    }
}

/// Variables `cargo run` sets for xtask itself, by prefix. A nested cargo must not see them:
/// build scripts such as ring's watch `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`, so inheriting
/// xtask's values would rebuild them (and everything above) on every switch between a shell
/// `cargo build` and an xtask one.
const CARGO_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
];

/// A `cargo` command: the cargo that started us (`$CARGO`) or the one on `PATH`, run from
/// the workspace root, without the variables `cargo run` set for xtask.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    for (key, _) in std::env::vars_os() {
        let inherited_from_cargo_run = key
            .to_str()
            .is_some_and(|k| CARGO_RUN_VARS.iter().any(|prefix| k.starts_with(prefix)));
        if inherited_from_cargo_run {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Is `name` an executable file in one of the `PATH` directories?
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Renders a command the way a shell user would type it, for logs.
/// `$CARGO` is an absolute toolchain path; it shows as plain `cargo`.
pub(crate) fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let mut out = if program.file_name() == Some(OsStr::new("cargo")) {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    };
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Runs `cmd` with inherited stdio; fails on non-zero exit or after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<()> {
    eprintln!("$ {}", display(cmd));
    let mut guard = ChildGuard::spawn(cmd)?;
    let status = guard.wait_timeout(timeout)?;
    if !status.success() {
        bail!("`{}` failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` with stdout and stderr going to `log`; on failure prints the log's tail.
pub(crate) fn run_logged(cmd: &mut Command, timeout: Duration, log: &Path) -> Result<()> {
    eprintln!("$ {}  > {}", display(cmd), log.display());
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(file.try_clone()?).stderr(file);
    let result = ChildGuard::spawn(cmd)?
        .wait_timeout(timeout)
        .and_then(|status| {
            if status.success() {
                Ok(())
            } else {
                bail!("`{}` failed: {status}", display(cmd))
            }
        });
    if result.is_err() {
        print_tail(log, 40);
    }
    result
}

/// Prints the last `lines` lines of a log file to stderr.
pub(crate) fn print_tail(log: &Path, lines: usize) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    let all: Vec<&str> = text.lines().collect();
    eprintln!("--- last lines of {} ---", log.display());
    for line in &all[all.len().saturating_sub(lines)..] {
        eprintln!("{line}");
    }
    eprintln!("---");
}

/// Runs `cmd` quietly and returns its stdout; stderr is returned in the error on failure.
pub(crate) fn output(cmd: &mut Command, timeout: Duration) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(cmd)?;
    let stdout = guard.child_mut().stdout.take().map(drain_in_thread);
    let stderr = guard.child_mut().stderr.take().map(drain_in_thread);
    let status = guard.wait_timeout(timeout)?;
    let stdout = stdout.map(join_drain).unwrap_or_default();
    let stderr = stderr.map(join_drain).unwrap_or_default();
    if !status.success() {
        bail!("`{}` failed: {status}\n{}", display(cmd), stderr.trim_end());
    }
    Ok(stdout)
}

fn drain_in_thread<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error only truncates what we show; the exit status decides success.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join_drain(handle: thread::JoinHandle<String>) -> String {
    handle.join().unwrap_or_default()
}

/// A child process that is killed, with all its descendants, when the guard is dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd`; the guard is named after the program for messages.
    pub(crate) fn spawn(cmd: &mut Command) -> Result<Self> {
        let name = Path::new(cmd.get_program())
            .file_name()
            .unwrap_or_else(|| OsStr::new("child"))
            .to_string_lossy()
            .into_owned();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{}`", display(cmd)))?;
        Ok(Self { name, child })
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has already exited.
    pub(crate) fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("cannot poll `{}`", self.name))
    }

    /// Waits for exit; after `timeout` kills the process tree and fails.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill_tree();
                bail!("`{}` timed out after {timeout:?} and was killed", self.name);
            }
            thread::sleep(POLL);
        }
    }

    /// Kills the child and every descendant found in `/proc`. Idempotent.
    pub(crate) fn kill_tree(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Collect descendants before the parent dies and they are re-parented.
        let descendants = descendants(self.child.id());
        let _ = self.child.kill();
        if !descendants.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(descendants.iter().map(u32::to_string))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_tree();
    }
}

/// Process ids below `root` in the process tree (Linux `/proc`; empty elsewhere).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(parent) = parent {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root]);
    // Bounded by the number of processes read above: each pid is queued at most once.
    while let Some(pid) = queue.pop_front() {
        for &child in children.get(&pid).map_or(&[][..], Vec::as_slice) {
            if !out.contains(&child) && child != root {
                out.push(child);
                queue.push_back(child);
            }
        }
    }
    out
}

/// Forwards a child's stdout lines to a channel; with a `prefix`, also echoes them to
/// stderr as `[prefix] line`.
pub(crate) fn stdout_lines(stdout: ChildStdout, prefix: Option<&str>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.map(str::to_owned);
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(prefix) = &prefix {
                eprintln!("[{prefix}] {line}");
            }
            // The receiver may be gone once readiness was seen; keep draining the pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits until a line satisfying `ready` arrives, or fails at `deadline` or on EOF.
pub(crate) fn wait_for_line(
    lines: &Receiver<String>,
    deadline: Instant,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> Result<String> {
    for _ in 0..MAX_READY_LINES {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining) {
            Ok(line) if ready(&line) => return Ok(line),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => bail!("timed out waiting for {what}"),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("{what}: the process closed stdout (exited?) before it was ready")
            }
        }
    }
    bail!("{what}: no readiness line within {MAX_READY_LINES} lines")
}

/// Waits until `addr` accepts a TCP connection, failing at `deadline` or if `guard` exits.
pub(crate) fn wait_for_tcp(
    addr: SocketAddr,
    guard: &mut ChildGuard,
    deadline: Instant,
) -> Result<()> {
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = guard.try_wait()? {
            bail!(
                "`{}` exited ({status}) before accepting on {addr}",
                guard.name
            );
        }
        if Instant::now() >= deadline {
            bail!("`{}` did not accept on {addr} in time", guard.name);
        }
        thread::sleep(POLL);
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, close).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn run_reports_exit_status_and_timeout() {
        assert!(run(&mut Command::new("true"), Duration::from_secs(10)).is_ok());
        assert!(run(&mut Command::new("false"), Duration::from_secs(10)).is_err());
        let started = Instant::now();
        let err = run(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .expect_err("must time out");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn guard_kills_descendants() {
        let mut guard = ChildGuard::spawn(
            Command::new("sh")
                .args(["-c", "sleep 30 & echo $!; wait"])
                .stdout(Stdio::piped()),
        )
        .expect("spawn sh");
        let stdout = guard.child_mut().stdout.take().expect("piped");
        let lines = stdout_lines(stdout, Some("sh"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = wait_for_line(&lines, deadline, "sleep pid", |l| l.parse::<u32>().is_ok())
            .expect("pid line");
        drop(guard);
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        // A killed child of a dead parent is reaped by init shortly after.
        for _ in 0..100 {
            let zombie_or_gone =
                std::fs::read_to_string(proc_dir.join("stat")).map_or(true, |s| s.contains(") Z"));
            if zombie_or_gone {
                return;
            }
            thread::sleep(POLL);
        }
        panic!("sleep {pid} survived the guard");
    }

    #[test]
    fn output_captures_stdout() {
        let out = output(
            Command::new("sh").args(["-c", "echo hello"]),
            Duration::from_secs(10),
        )
        .expect("sh runs");
        assert_eq!(out, "hello\n");
    }
}
