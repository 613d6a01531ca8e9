//! Headless Chromium against our server: a page connects with `serverCertificateHashes` to a
//! certificate from [`cert::generate`], and does a bidirectional echo (small, 200 kB, twenty at
//! once), a unidirectional echo (answered on a stream the server opens), a datagram echo (small
//! and of the largest size) and a close with a code; reads streams the server opens; sees the server close the session; is refused by the
//! origin policy (`tests/js/chromium_wt.mjs`, driven by playwright-core).
//!
//! The peer: `node` on the PATH, Chromium at `TRANSPORT_CHROMIUM` (default `/usr/bin/chromium`),
//! and playwright-core in `TRANSPORT_NODE_MODULES/node_modules` (default `.tools/node` at the
//! workspace root). Without them the test prints SKIP, or fails when `CI` is set.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use transport_core::AcceptPolicy;
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{
    SessionClose, WtRequest, WtServer, WtServerConfig, WtServerSession, echo, echo_session,
};

/// Upper bound for the whole browser run (launch included; two shared cores are slow).
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
/// Upper bound for the server's side to end after the browser reported.
const LIMIT: Duration = Duration::from_secs(10);

/// Where the browser and its driver are, `None` (after a SKIP notice) when something is missing.
struct Peer {
    chromium: PathBuf,
    node_modules: PathBuf,
}

fn peer() -> Option<Peer> {
    let chromium = std::env::var_os("TRANSPORT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let node_modules = std::env::var_os("TRANSPORT_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/node"),
        PathBuf::from,
    );
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !node {
        Some("no `node` on the PATH".to_owned())
    } else if !chromium.is_file() {
        Some(format!(
            "no Chromium at {} (set TRANSPORT_CHROMIUM, or: apt-get install chromium)",
            chromium.display()
        ))
    } else if !node_modules
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        Some(format!(
            "no playwright-core under {}/node_modules (set TRANSPORT_NODE_MODULES, or: npm \
             install --prefix .tools/node playwright-core@1.65.1)",
            node_modules.display()
        ))
    } else {
        None
    };
    let Some(what) = missing else {
        return Some(Peer {
            chromium,
            node_modules,
        });
    };
    assert!(std::env::var_os("CI").is_none(), "{what}");
    // Straight to stderr, past the test harness's capture, so the skip shows.
    let _ = writeln!(std::io::stderr(), "SKIP interop_chromium: {what}");
    None
}

/// The node driver in a process group of its own, killed on drop with its group. Chromium, which
/// playwright starts in a group of its own, exits when its DevTools pipe to node closes (checked
/// by hand: killing node's group leaves no Chromium process behind); in the normal case the
/// driver closes the browser itself, and it does so too when its stdin closes or after 45 s.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.start_kill();
    }
}

/// The value of `key` in a flat JSON object, as written (strings with their quotes).
fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[start..];
    if rest.starts_with('"') {
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => return Some(&rest[..=i]),
                _ => {}
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(&rest[..end])
    }
}

#[test]
fn field_extraction() {
    let json = r#"{"a":"x \"y\", z","b":true,"c":12}"#;
    assert_eq!(field(json, "a"), Some(r#""x \"y\", z""#));
    assert_eq!(field(json, "b"), Some("true"));
    assert_eq!(field(json, "c"), Some("12"));
    assert_eq!(field(json, "d"), None);
}

/// Our server on 127.0.0.1, port 0, with a fresh certificate.
fn server(config: WtServerConfig) -> (WtServer, SelfSignedCert) {
    let cert = cert::generate(&[]).unwrap();
    let server = WtServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    (server, cert)
}

/// Serves one session with `handler`; sends the request, then what the handler returns.
fn serve_one<T, F, Fut>(
    mut server: WtServer,
    handler: F,
) -> (
    oneshot::Receiver<WtRequest>,
    tokio::task::JoinHandle<(T, WtServer)>,
)
where
    T: Send + 'static,
    F: FnOnce(WtServerSession) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let (request_tx, request_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let (session, request) = server.accept_session().await.unwrap();
        let _ = request_tx.send(request);
        (handler(session).await, server)
    });
    (request_rx, task)
}

/// Runs the page's `scenario` against `url` and returns its flat JSON result.
async fn run_page(
    peer: &Peer,
    url: &str,
    cert: &SelfSignedCert,
    token: &str,
    scenario: &str,
) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/chromium_wt.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .args([url, &cert.sha256_hex(), token, scenario])
        .env("TRANSPORT_CHROMIUM", &peer.chromium)
        .env("TRANSPORT_NODE_MODULES", &peer.node_modules)
        .process_group(0)
        // The driver stops when its stdin closes, i.e. when this process is gone.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut driver = Driver(child);

    let result = tokio::time::timeout(BROWSER_LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(json) = line.strip_prefix("RESULT ") {
                return json.to_owned();
            }
        }
        panic!("the driver exited without a result");
    })
    .await
    .expect("no result from the browser in time");
    let status = tokio::time::timeout(LIMIT, driver.0.wait())
        .await
        .expect("the driver did not exit")
        .unwrap();
    assert!(status.success(), "driver: {status}");
    let _ = writeln!(std::io::stderr(), "chromium {scenario}: {result}");
    result
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

#[tokio::test]
async fn chromium_echo_through_our_server() {
    let Some(peer) = peer() else { return };
    let (server, cert) = server(WtServerConfig::default());
    let url = format!("{}/echo", server.url());
    let (request, serving) = serve_one(server, echo);
    let token = format!("t{}", std::process::id());
    let result = run_page(&peer, &url, &cert, &token, "echo").await;

    let get = |key: &str| field(&result, key);
    assert_eq!(get("error"), None, "the page failed: {result}");
    assert_eq!(get("secure"), Some("true"), "{result}");
    assert_eq!(get("ready"), Some("true"), "{result}");
    assert_eq!(get("bidi"), Some(quoted(&format!("bidi {token}")).as_str()));
    assert_eq!(get("bidiLargeLength"), Some("200000"), "{result}");
    assert_eq!(get("bidiLargeEqual"), Some("true"), "{result}");
    assert_eq!(get("uni"), Some(quoted(&format!("uni {token}")).as_str()));
    assert_eq!(
        get("datagram"),
        Some(quoted(&format!("dg {token}")).as_str())
    );
    let max: usize = get("datagramMax").unwrap().parse().unwrap();
    assert!(max > 1000, "maxDatagramSize {max}");
    assert_eq!(
        get("bigDatagramLength"),
        Some(max.to_string().as_str()),
        "{result}"
    );
    assert_eq!(get("parallelEchoes"), Some("20"), "{result}");
    // The browser's own view of its close.
    assert_eq!(get("closedCode"), Some("7"), "{result}");
    assert_eq!(
        get("closedReason"),
        Some(quoted("done").as_str()),
        "{result}"
    );

    // The server saw the page's origin and path.
    let request = tokio::time::timeout(LIMIT, request).await.unwrap().unwrap();
    let origin = get("origin").unwrap().trim_matches('"');
    assert_eq!(request.origin.as_deref(), Some(origin));
    assert_eq!(request.path, "/echo");
    // The server's view of the close is `server_sees_the_browser_close`.
    serving.abort();
}

/// Chromium closes a session with a CLOSE_WEBTRANSPORT_SESSION capsule and a FIN on the CONNECT
/// stream, and keeps the QUIC connection: the server's session driver reads the capsule, so the
/// session ends at once with the page's code and reason (not by the QUIC idle timeout).
#[tokio::test]
async fn server_sees_the_browser_close() {
    let Some(peer) = peer() else { return };
    let (server, cert) = server(WtServerConfig::default());
    let url = server.url();
    let (_request, serving) = serve_one(server, |session| async move {
        let echoed = echo_session(&session).await;
        (echoed, session.session_closed().await)
    });
    let result = run_page(&peer, &url, &cert, "close", "echo").await;
    assert_eq!(field(&result, "closedCode"), Some("7"), "{result}");
    let ((ended, close), server) = tokio::time::timeout(LIMIT, serving)
        .await
        .expect("the server did not notice the browser's close")
        .unwrap();
    assert_eq!(ended, Ok(()));
    match close {
        SessionClose::Peer { code: 7, reason } => assert_eq!(reason, "done"),
        other => panic!("unexpected close: {other:?}"),
    }
    tokio::time::timeout(LIMIT, server.shutdown())
        .await
        .unwrap();
}

#[tokio::test]
async fn chromium_reads_streams_the_server_opens() {
    let Some(peer) = peer() else { return };
    let (server, cert) = server(WtServerConfig::default());
    let url = server.url();
    let (_request, serving) = serve_one(server, |session| async move {
        let mut bidi = session.open_bi().await.unwrap();
        bidi.write_all(b"server bidi").await.unwrap();
        bidi.shutdown().await.unwrap();
        let mut uni = session.open_uni().await.unwrap();
        uni.write_all(b"server uni").await.unwrap();
        uni.shutdown().await.unwrap();
        let mut reply = Vec::new();
        bidi.read_to_end(&mut reply).await.unwrap();
        (reply, session)
    });
    let result = run_page(&peer, &url, &cert, "streams", "server-streams").await;
    assert_eq!(field(&result, "error"), None, "the page failed: {result}");
    assert_eq!(
        field(&result, "serverBidi"),
        Some(quoted("server bidi").as_str())
    );
    assert_eq!(
        field(&result, "serverUni"),
        Some(quoted("server uni").as_str())
    );
    let ((reply, _session), _server) = tokio::time::timeout(LIMIT, serving).await.unwrap().unwrap();
    assert_eq!(reply, b"reply");
}

/// `WtServerSession::close` sends CLOSE_WEBTRANSPORT_SESSION and a FIN: Chromium resolves
/// `closed` with the server's code and reason.
#[tokio::test]
async fn chromium_sees_the_server_close() {
    let Some(peer) = peer() else { return };
    let (server, cert) = server(WtServerConfig::default());
    let url = server.url();
    let (_request, serving) = serve_one(server, |session| async move {
        let _ = session.accept_bi().await;
        session.close(42, "bye");
        session
    });
    let result = run_page(&peer, &url, &cert, "close", "server-close").await;
    assert_eq!(field(&result, "error"), None, "the page failed: {result}");
    assert_eq!(
        field(&result, "closedHow"),
        Some(quoted("resolved").as_str()),
        "{result}"
    );
    assert_eq!(field(&result, "closedCode"), Some("42"), "{result}");
    assert_eq!(
        field(&result, "closedReason"),
        Some(quoted("bye").as_str()),
        "{result}"
    );
    let _ = tokio::time::timeout(LIMIT, serving).await.unwrap().unwrap();
}

#[tokio::test]
async fn chromium_is_refused_by_the_origin_policy() {
    let Some(peer) = peer() else { return };
    let mut config = WtServerConfig::default();
    config.policy({
        let mut policy = AcceptPolicy::default();
        policy.allow_origins(["https://app.example"]);
        policy
    });
    let (server, cert) = server(config);
    let url = server.url();
    let (_request, serving) = serve_one(server, |session| async move { session });
    let result = run_page(&peer, &url, &cert, "refused", "refused").await;
    assert_eq!(field(&result, "error"), None, "the page failed: {result}");
    assert_eq!(field(&result, "ready"), Some("false"), "{result}");
    assert_eq!(
        field(&result, "readySource"),
        Some(quoted("session").as_str()),
        "{result}"
    );
    // No session got through.
    assert!(!serving.is_finished());
    serving.abort();
}
