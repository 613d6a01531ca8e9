//! Session ends our own client cannot produce, from an aioquic client
//! (`tests/py/aioquic_wt_client.py`): a FIN on the CONNECT stream without a capsule (code 0,
//! empty reason), a CLOSE_WEBTRANSPORT_SESSION with a code and reason, one whose reason is not
//! UTF-8 (a typed protocol error, never a lossy reason), and the server's close capsule as a
//! third-party client reads it.
//!
//! The peer: a Python interpreter with `aioquic` 1.7.2, from `TRANSPORT_PYTHON_WT` or else
//! `.tools/venv-wt/bin/python`; without one, each test prints SKIP and passes (fails under CI).

mod aioquic_common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use transport_core::TransportError;
use transport_wt::cert;
use transport_wt::{SessionClose, WtServer, WtServerConfig, WtServerSession};

const LIMIT: Duration = Duration::from_secs(15);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// Runs the aioquic client in `mode` against a fresh server; `on_session` gets the server's
/// session and returns what the test checks. Returns that and the client's output lines.
async fn run<T, F, Fut>(python: &Path, mode: &str, on_session: F) -> (T, Vec<String>)
where
    T: Send + 'static,
    F: FnOnce(WtServerSession) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let cert = cert::generate(&["localhost"]).unwrap();
    let mut server = WtServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        WtServerConfig::default(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let port = server.local_addr().port().to_string();
    let serving = tokio::spawn(async move {
        let (session, _) = server.accept_session().await.unwrap();
        (on_session(session).await, server)
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/aioquic_wt_client.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(["127.0.0.1", &port, mode])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut out = Vec::new();
    while let Some(line) = bounded(lines.next_line()).await.unwrap() {
        out.push(line);
    }
    let _ = bounded(child.wait()).await;
    let (result, _server) = bounded(serving).await.unwrap();
    (result, out)
}

#[tokio::test]
async fn a_fin_without_a_capsule_is_code_zero() {
    let Some(python) = aioquic_common::python("server_close_aioquic") else {
        return;
    };
    let (close, out) = run(&python, "fin", |s| async move { s.session_closed().await }).await;
    assert_eq!(
        close,
        SessionClose::Peer {
            code: 0,
            reason: String::new()
        },
        "{out:?}"
    );
    // The server answers with its own FIN, then closes the connection.
    assert!(out.iter().any(|l| l == "FIN"), "{out:?}");
}

#[tokio::test]
async fn a_close_capsule_carries_code_and_reason() {
    let Some(python) = aioquic_common::python("server_close_aioquic") else {
        return;
    };
    let (close, out) = run(&python, "close", |s| async move {
        let error = s.accept_bi().await.err();
        (s.session_closed().await, error)
    })
    .await;
    assert_eq!(
        close.0,
        SessionClose::Peer {
            code: 4004,
            reason: "py bye".into()
        },
        "{out:?}"
    );
    assert_eq!(
        close.1,
        Some(TransportError::ClosedByPeer {
            code: 4004,
            reason: "py bye".into()
        })
    );
}

#[tokio::test]
async fn a_reason_that_is_not_utf8_is_a_protocol_error() {
    let Some(python) = aioquic_common::python("server_close_aioquic") else {
        return;
    };
    let (close, out) = run(
        &python,
        "bad-utf8",
        |s| async move { s.session_closed().await },
    )
    .await;
    match &close {
        SessionClose::Lost(TransportError::ProtocolViolation { reason }) => {
            assert!(reason.contains("CLOSE_WEBTRANSPORT_SESSION"), "{reason}");
        }
        other => panic!("unexpected close: {other:?} {out:?}"),
    }
    // H3_MESSAGE_ERROR.
    assert!(
        out.iter().any(|l| l.starts_with("CONNECTION_CLOSED 270 ")),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_servers_close_capsule_reaches_aioquic() {
    let Some(python) = aioquic_common::python("server_close_aioquic") else {
        return;
    };
    let ((), out) = run(&python, "wait", |s| async move {
        s.close(0x0102_0304, "so long");
        let _ = s.session_closed().await;
        // Keep the session until the client has gone.
        let _ = s.quic().closed().await;
    })
    .await;
    let value = format!("01020304{}", hex(b"so long"));
    assert!(
        out.iter().any(|l| *l == format!("CAPSULE 0x2843 {value}")),
        "{out:?}"
    );
    assert!(out.iter().any(|l| l == "FIN"), "{out:?}");
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
