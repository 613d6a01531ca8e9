//! Helpers shared by the integration tests: run the built `tcat` binary with deadlines, inside
//! guards that kill and reap it on drop.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for: the machine may be busy.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// How often exit is polled.
const POLL: Duration = Duration::from_millis(20);

/// A `tcat` command with the proxy environment cleared (tests talk to 127.0.0.1 directly).
pub(crate) fn tcat() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tcat"));
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A directory for this test's files, unique per test name and process.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tcat-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a self-signed certificate for 127.0.0.1 and localhost; returns (cert, key) paths.
pub(crate) fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert_path.to_str().unwrap().to_owned(),
        key_path.to_str().unwrap().to_owned(),
    )
}

/// A child process killed and reaped when dropped, with its stdout (and optionally stderr)
/// read line by line on threads.
pub(crate) struct Proc {
    child: Child,
    stdout: Option<Receiver<String>>,
    stderr: Option<thread::JoinHandle<String>>,
    pub(crate) stdin: Option<ChildStdin>,
}

impl Proc {
    /// Spawns `cmd` with piped stdin, stdout and stderr.
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        Self::spawn_with_stdin(cmd, Stdio::piped())
    }

    /// Spawns `cmd` with this stdin and piped stdout and stderr.
    pub(crate) fn spawn_with_stdin(cmd: &mut Command, stdin: Stdio) -> Self {
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(lines_of);
        let stderr = child.stderr.take().map(|mut err| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                s
            })
        });
        Self {
            child,
            stdout,
            stderr,
            stdin,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes to stdin and flushes.
    pub(crate) fn write(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin (EOF for the child).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, waiting at most `timeout`.
    pub(crate) fn line(&mut self, timeout: Duration) -> Option<String> {
        let rx = self.stdout.as_ref()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Waits for a stdout line satisfying `pred`; panics after `timeout` or at EOF.
    pub(crate) fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        // At most one iteration per line, and never past the deadline.
        for _ in 0..100_000 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.line(left) {
                Some(line) if pred(&line) => return line,
                Some(_) => {}
                None => break,
            }
        }
        panic!("no matching stdout line within {timeout:?}");
    }

    /// Waits for exit, at most `timeout`; kills the child and panics after that.
    pub(crate) fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("process did not exit within {timeout:?}");
    }

    /// Waits for exit, then collects the rest of stdout and all of stderr.
    pub(crate) fn finish(mut self, timeout: Duration) -> Finished {
        self.close_stdin();
        let status = self.wait(timeout);
        let mut stdout = Vec::new();
        if let Some(rx) = self.stdout.take() {
            // The writer is gone, so the channel disconnects once drained.
            while let Ok(line) = rx.recv_timeout(WAIT) {
                stdout.push(line);
            }
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn lines_of<R: Read + Send + 'static>(pipe: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A finished process: status, stdout lines, stderr text.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<String>,
    pub(crate) stderr: String,
}

impl Finished {
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `tcat ARGS` with `input` on stdin (then EOF) and waits for it to finish.
pub(crate) fn run(args: &[&str], input: &[u8]) -> Finished {
    let mut proc = Proc::spawn(tcat().args(args));
    proc.write(input);
    proc.finish(WAIT)
}

/// A running `tcat serve` and the URLs it printed.
pub(crate) struct Server {
    pub(crate) proc: Proc,
    pub(crate) urls: Vec<String>,
}

impl Server {
    /// The first URL printed.
    pub(crate) fn url(&self) -> &str {
        &self.urls[0]
    }

    /// Sends SIGTERM with the `kill` command.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.proc.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }
}

/// Starts `tcat serve ARGS` and waits for its `listening` lines (one per listener expected):
/// `listening URL`, or `listening sse URL` for SSE; the URL is the last word.
pub(crate) fn serve(args: &[&str], listeners: usize) -> Server {
    let mut cmd = tcat();
    cmd.arg("serve").args(args);
    let mut proc = Proc::spawn(&mut cmd);
    let mut urls = Vec::new();
    for _ in 0..listeners {
        let line = proc.wait_line(WAIT, |l| l.starts_with("listening "));
        let url = line.split_whitespace().last().unwrap_or_default();
        urls.push(url.to_owned());
    }
    Server { proc, urls }
}
