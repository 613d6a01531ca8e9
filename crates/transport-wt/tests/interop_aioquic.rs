//! Our client against an independent WebTransport server written in Python on aioquic
//! (`tests/py/aioquic_wt_server.py`): session set-up with a pinned certificate hash and with a
//! custom CA, bidirectional, unidirectional and datagram echo, streams the server opens, a
//! refused CONNECT, and the close capsule in each direction.
//!
//! The peer: a Python interpreter with `aioquic` 1.7.2, from `TRANSPORT_PYTHON_WT` or else
//! `.tools/venv-wt/bin/python` at the workspace root. Without it the tests print SKIP, or fail
//! when `CI` is set.

mod aioquic_common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use transport_core::TransportError;
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{SessionClose, WtClientConfig, WtSession, connect};

/// Upper bound for every wait.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "transport-wt-aioquic-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The aioquic server process; killed on drop.
struct AioquicServer {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    port: u16,
    cert: SelfSignedCert,
    _dir: TempDir,
}

impl Drop for AioquicServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl AioquicServer {
    /// Starts the server on 127.0.0.1 with a fresh certificate and waits for its port.
    async fn start(python: &Path) -> Self {
        let cert = cert::generate(&[]).unwrap();
        let dir = TempDir::new();
        let cert_path = dir.0.join("cert.pem");
        let key_path = dir.0.join("key.pem");
        std::fs::write(&cert_path, &cert.cert_pem).unwrap();
        std::fs::write(&key_path, &cert.key_pem).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/aioquic_wt_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&cert_path)
            .arg(&key_path)
            .arg("127.0.0.1")
            // The server stops when its stdin closes, i.e. when this process is gone.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut server = Self {
            child,
            stdout,
            port: 0,
            cert,
            _dir: dir,
        };
        let line = server.next_line().await;
        server.port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the aioquic server said {line:?} instead of its port"));
        server
    }

    /// The next line the server prints.
    async fn next_line(&mut self) -> String {
        bounded(self.stdout.next_line())
            .await
            .unwrap()
            .expect("the aioquic server exited")
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn pinned(&self) -> WtClientConfig {
        let mut config = WtClientConfig::default();
        config.cert_hash(self.cert.sha256);
        config
    }
}

async fn bidi_round_trip(session: &WtSession, payload: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    let writer = async {
        send.write_all(payload).await.unwrap();
        send.finish().unwrap();
    };
    let ((), back) = tokio::join!(writer, recv.read_to_end(1 << 21));
    back.unwrap()
}

async fn uni_round_trip(session: &WtSession, payload: &[u8]) -> Vec<u8> {
    let mut send = session.open_uni().await.unwrap();
    send.write_all(payload).await.unwrap();
    send.finish().unwrap();
    let mut back = session.accept_uni().await.unwrap();
    back.read_to_end(1 << 21).await.unwrap()
}

/// Sends datagrams until one comes back (loopback rarely loses any), at most ten tries.
async fn datagram_round_trip(session: &WtSession, payload: &'static [u8]) -> Option<Bytes> {
    for _ in 0..10 {
        session.send_datagram(Bytes::from_static(payload)).unwrap();
        if let Ok(d) =
            tokio::time::timeout(Duration::from_millis(500), session.read_datagram()).await
        {
            return Some(d.unwrap());
        }
    }
    None
}

#[tokio::test]
async fn echo_with_a_pinned_hash_then_close_capsule() {
    let Some(python) = aioquic_common::python("interop_aioquic") else {
        return;
    };
    let mut server = AioquicServer::start(&python).await;
    let session = bounded(connect(&server.url("/echo"), server.pinned()))
        .await
        .unwrap();

    for i in 0..3u8 {
        assert_eq!(
            bounded(bidi_round_trip(&session, &[i; 100])).await,
            [i; 100]
        );
    }
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let back = bounded(bidi_round_trip(&session, &big)).await;
    assert!(
        back == big,
        "large bidi echo differs ({} bytes)",
        back.len()
    );

    assert_eq!(
        bounded(uni_round_trip(&session, b"one way")).await,
        b"one way"
    );
    let back = bounded(uni_round_trip(&session, &big)).await;
    assert!(back == big, "large uni echo differs ({} bytes)", back.len());

    assert_eq!(
        bounded(datagram_round_trip(&session, b"ping"))
            .await
            .as_deref(),
        Some(b"ping".as_slice())
    );

    // aioquic hands the CONNECT stream's bytes through: the server decodes our capsule.
    bounded(session.close(7, "done")).await.unwrap();
    assert_eq!(server.next_line().await, "CLOSED 7 done");
}

#[tokio::test]
async fn custom_ca_instead_of_a_pin() {
    let Some(python) = aioquic_common::python("interop_aioquic") else {
        return;
    };
    let server = AioquicServer::start(&python).await;
    let mut config = WtClientConfig::default();
    config
        .transport
        .tls
        .add_root_ca_pem(server.cert.cert_pem.clone());
    config.transport.tls.only_custom_roots = true;
    let session = bounded(connect(&server.url("/"), config)).await.unwrap();
    assert_eq!(bounded(bidi_round_trip(&session, b"ca")).await, b"ca");
    assert_eq!(
        bounded(datagram_round_trip(&session, b"dg"))
            .await
            .as_deref(),
        Some(b"dg".as_slice())
    );
}

#[tokio::test]
async fn streams_the_server_opens() {
    let Some(python) = aioquic_common::python("interop_aioquic") else {
        return;
    };
    let server = AioquicServer::start(&python).await;
    let session = bounded(connect(&server.url("/server-streams"), server.pinned()))
        .await
        .unwrap();
    let (mut send, mut recv) = bounded(session.accept_bi()).await.unwrap();
    assert_eq!(
        bounded(recv.read_to_end(1024)).await.unwrap(),
        b"server bidi"
    );
    send.finish().unwrap();
    let mut uni = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(bounded(uni.read_to_end(1024)).await.unwrap(), b"server uni");
    // Our own streams still echo alongside.
    assert_eq!(bounded(bidi_round_trip(&session, b"mine")).await, b"mine");
}

#[tokio::test]
async fn a_refused_connect_is_handshake_rejected() {
    let Some(python) = aioquic_common::python("interop_aioquic") else {
        return;
    };
    let server = AioquicServer::start(&python).await;
    let err = bounded(connect(&server.url("/forbidden"), server.pinned()))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 403 });
}

#[tokio::test]
async fn the_servers_close_capsule_reaches_the_client() {
    let Some(python) = aioquic_common::python("interop_aioquic") else {
        return;
    };
    let server = AioquicServer::start(&python).await;
    let session = bounded(connect(&server.url("/close-on-stream"), server.pinned()))
        .await
        .unwrap();
    let (mut send, _recv) = bounded(session.open_bi()).await.unwrap();
    send.write_all(b"close, please").await.unwrap();
    match bounded(session.closed()).await {
        SessionClose::Peer { code, reason } => {
            assert_eq!(code, 42);
            assert_eq!(reason, "bye");
        }
        other => panic!("the client saw {other:?}"),
    }
    assert!(bounded(session.open_bi()).await.is_err());
}
