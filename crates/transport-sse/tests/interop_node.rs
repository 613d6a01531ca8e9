//! Interop with an independent client: the `eventsource` package for Node, a WHATWG-compliant
//! `EventSource`, reading our [`SseServer`] (`tests/node/read_events.mjs` prints what it
//! receives as JSON lines).
//!
//! The package is looked for in `TRANSPORT_NODE_MODULES` (a directory holding
//! `node_modules/eventsource`; `cargo xtask test-all` sets it), else in `.tools/node` at the
//! workspace root, where
//! `npm install --prefix .tools/node eventsource@4.1.1` puts it. Without it (or without
//! `node`), the tests print SKIP on stderr and pass, unless `CI` is set: then they fail.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinSet;
use transport_core::{Connection, Message, MessageMetadata, Transport as _};
use transport_sse::{SseRequest, SseServer, SseServerConfig};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(20);

/// The directory holding `node_modules/eventsource`, or `None` (after a SKIP note) when there
/// is none and `CI` is not set.
fn node_modules(test: &str) -> Option<PathBuf> {
    let promised = std::env::var_os("TRANSPORT_NODE_MODULES");
    let dir = promised.clone().map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(".tools/node")
        },
        PathBuf::from,
    );
    let has_package = dir.join("node_modules/eventsource/package.json").is_file();
    let has_node = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_package && has_node {
        return Some(dir);
    }
    let why = format!(
        "{test}: no `node` with the `eventsource` package in {} (set TRANSPORT_NODE_MODULES, or \
         run `npm install --prefix .tools/node eventsource@4.1.1` at the workspace root)",
        dir.display()
    );
    assert!(
        promised.is_none() && std::env::var_os("CI").is_none(),
        "{why}"
    );
    eprintln!("SKIP {why}");
    None
}

/// `read_events.mjs URL N TYPES...`, killed when dropped; its stdout read line by line.
struct NodeReader {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeReader {
    fn spawn(modules: &Path, url: &str, count: usize, types: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/read_events.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(url)
            .arg(count.to_string())
            .args(types)
            .env("TRANSPORT_NODE_MODULES", modules)
            .env("TIMEOUT_MS", WAIT.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next event Node printed.
    async fn event(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("node printed an event in time")
            .expect("node's stdout is readable")
            .expect("node printed an event before exiting");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Waits for Node to exit; asserts it exited 0.
    async fn exits_0(mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("node exited in time")
            .expect("node's status");
        assert!(status.success(), "node: {status}");
    }
}

/// Our server with a short `retry:` so reconnects are quick.
async fn server() -> SseServer {
    let mut config = SseServerConfig::default();
    config.retry = Some(Duration::from_millis(100));
    SseServer::bind("127.0.0.1:0", config).await.unwrap()
}

async fn accept(server: &mut SseServer) -> (Connection, SseRequest) {
    tokio::time::timeout(WAIT, server.accept())
        .await
        .expect("a session in time")
        .expect("the server is accepting")
}

fn typed(text: &str, event: &str) -> Message {
    Message::text(text).with_metadata(MessageMetadata::new(Some(event.to_owned()), None))
}

#[tokio::test]
async fn node_eventsource_reads_text_multiline_and_typed_events() {
    let Some(modules) = node_modules("node_eventsource_reads_text_multiline_and_typed_events")
    else {
        return;
    };
    let mut server = server().await;
    let mut node = NodeReader::spawn(&modules, &server.url(), 6, &["transport.session", "tick"]);
    let (session, request) = accept(&mut server).await;
    let token = request.session.clone();

    session.send(Message::text("hello")).await.unwrap();
    session
        .send(Message::text("line one\nline two\n\nline four"))
        .await
        .unwrap();
    session.send(typed("{\"n\":1}", "tick")).await.unwrap();
    session.send(Message::text("héllo ✓ 😀")).await.unwrap();
    session.send(Message::text("")).await.unwrap();

    // The session event, readable by a browser: the send URL and the id to resume from.
    let first = node.event().await;
    assert_eq!(first["type"], "transport.session", "{first}");
    assert_eq!(first["lastEventId"], format!("{token}.0"));
    let data: Value = serde_json::from_str(first["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"session": token, "send": format!("/events/send/{token}")})
    );

    let expected = [
        ("message", "hello"),
        ("message", "line one\nline two\n\nline four"),
        ("tick", "{\"n\":1}"),
        ("message", "héllo ✓ 😀"),
        ("message", ""),
    ];
    for (seq, (kind, data)) in expected.into_iter().enumerate() {
        assert_eq!(
            node.event().await,
            json!({"type": kind, "data": data, "lastEventId": format!("{token}.{}", seq + 1)})
        );
    }
    node.exits_0().await;
    server.shutdown().await;
}

/// A TCP proxy whose connections the test can cut, recording each request head.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let (h, c) = (heads.clone(), connections.clone());
        let accept_task = tokio::spawn(async move {
            // Ends when the test aborts it (on drop).
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let heads = h.clone();
                lock(&c).spawn(async move {
                    let _ = forward(client, upstream, &heads).await;
                });
            }
        });
        Self {
            addr,
            heads,
            connections,
            accept_task,
        }
    }

    /// Drops every connection open now (both sides see the TCP connection end).
    fn cut(&self) {
        lock(&self.connections).abort_all();
    }

    fn heads(&self) -> Vec<String> {
        lock(&self.heads).clone()
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the request head (bounded), then copies both ways until either side ends.
async fn forward(
    mut client: TcpStream,
    upstream: std::net::SocketAddr,
    heads: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    lock(heads).push(String::from_utf8_lossy(&head).into_owned());
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// The value of a header in a raw request head (name in any case).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[tokio::test]
async fn node_eventsource_resumes_with_last_event_id_after_a_dropped_stream() {
    let Some(modules) =
        node_modules("node_eventsource_resumes_with_last_event_id_after_a_dropped_stream")
    else {
        return;
    };
    let mut server = server().await;
    let proxy = CuttableProxy::start(server.local_addr()).await;
    let url = format!("http://{}/events", proxy.addr);
    let mut node = NodeReader::spawn(&modules, &url, 4, &[]);
    let (session, request) = accept(&mut server).await;
    let token = request.session.clone();

    session.send(Message::text("one")).await.unwrap();
    session.send(Message::text("two")).await.unwrap();
    for (seq, data) in [(1, "one"), (2, "two")] {
        assert_eq!(
            node.event().await,
            json!({"type": "message", "data": data, "lastEventId": format!("{token}.{seq}")})
        );
    }

    // The stream drops; what is sent meanwhile waits in the session's replay buffer.
    proxy.cut();
    session.send(Message::text("three")).await.unwrap();
    session.send(Message::text("four")).await.unwrap();
    for (seq, data) in [(3, "three"), (4, "four")] {
        assert_eq!(
            node.event().await,
            json!({"type": "message", "data": data, "lastEventId": format!("{token}.{seq}")})
        );
    }
    node.exits_0().await;

    // Node came back with the id of the last event it had, and resumed the same session.
    let heads = proxy.heads();
    assert!(heads.len() >= 2, "{heads:?}");
    assert_eq!(header(&heads[0], "last-event-id"), None, "{}", heads[0]);
    assert_eq!(
        header(&heads[1], "last-event-id"),
        Some(format!("{token}.2").as_str()),
        "{}",
        heads[1]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.accept())
            .await
            .is_err(),
        "no new session was started"
    );
    drop(session);
    server.shutdown().await;
}
