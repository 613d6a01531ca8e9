//! Interop with a third-party SSE server: Python's aiohttp-sse (`tests/py/aiohttp_sse_server.py`).
//!
//! The interpreter is `$TRANSPORT_PYTHON_SSE` (set by `cargo xtask test-all`, which installs
//! aiohttp and aiohttp-sse into a venv), else `python3` if it can import both; without either
//! the test prints SKIP and passes.

mod client_common;

use std::process::Stdio;
use std::time::Duration;

use client_common::{config, event, recv};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use transport_core::{Message, Transport, TransportError};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/py/aiohttp_sse_server.py"
);

/// The interpreter to use, or `None` to skip.
fn python() -> Option<String> {
    if let Ok(python) = std::env::var("TRANSPORT_PYTHON_SSE")
        && !python.is_empty()
    {
        return Some(python);
    }
    let importable = std::process::Command::new("python3")
        .args(["-c", "import aiohttp, aiohttp_sse"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    importable.then(|| "python3".to_owned())
}

/// The running Python server; killed when dropped.
struct PyServer {
    child: Child,
    port: u16,
}

impl PyServer {
    async fn start(python: &str) -> Self {
        let mut child = Command::new(python)
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {python} {SCRIPT}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the server printed its port in time")
        .expect("reading the server's stdout");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("expected a port, got {line:?}"));
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/events", self.port)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn aiohttp_sse_events_arrive_and_reconnects_resume() {
    let Some(python) = python() else {
        eprintln!(
            "SKIP: no Python with aiohttp-sse (set TRANSPORT_PYTHON_SSE or pip install aiohttp aiohttp-sse)"
        );
        return;
    };
    let server = PyServer::start(&python).await;
    let mut conn = transport_sse::connect(&server.url(), config())
        .await
        .unwrap();
    for n in 1..=2 {
        let id = |k: u32| format!("{n}.{k}");
        assert_eq!(
            recv(&mut conn).await,
            event(&format!("hello {n}"), None, Some(&id(1)))
        );
        assert_eq!(
            recv(&mut conn).await,
            event("line 1\nline 2", Some("multi"), Some(&id(2)))
        );
        assert_eq!(
            recv(&mut conn).await,
            event("ünïcödé ✓", Some("tick"), Some(&id(3)))
        );
        // The second connection is a reconnect: it carries the id of the last event.
        let last = if n == 1 { "" } else { "1.4" };
        assert_eq!(
            recv(&mut conn).await,
            event(&format!("last-event-id={last}"), Some("echo"), Some(&id(4)))
        );
        assert_eq!(
            recv(&mut conn).await,
            event("text/event-stream", Some("accept"), Some(&id(4)))
        );
    }
    // A plain SSE server offers no way back.
    let error = conn.send(Message::text("up")).await.unwrap_err();
    assert!(matches!(error, TransportError::Unsupported(_)), "{error:?}");
    conn.close(1000, "").await.unwrap();
}
