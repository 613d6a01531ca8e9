//! Our client against an independent WebTransport server, the `wtransport` crate's: session
//! set-up with a pinned certificate hash and with a custom CA, bidirectional, unidirectional and
//! datagram echo, streams the server opens, a refused CONNECT, a session close in each direction
//! with its code, and IPv6 loopback.
//!
//! (The other way round, a `wtransport` client against our server, is in `server_*.rs`.)

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{SessionClose, WtClientConfig, WtSession, connect};
use wtransport::error::ConnectionError;
use wtransport::{Connection, Endpoint, Identity, ServerConfig, VarInt};

/// Upper bound for every wait.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// What the `wtransport` server does with each session.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Echo until the session ends.
    Echo,
    /// Close the session with code 42, reason "bye", when the client opens a bidirectional
    /// stream (closing at once could overtake the CONNECT response).
    CloseOnFirstStream,
    /// Open a bidirectional stream (send "server bidi", then echo what comes back on it) and a
    /// unidirectional one ("server uni"), then echo.
    ServerOpens,
    /// Answer the CONNECT with 403.
    Forbid,
}

/// A `wtransport` server on 127.0.0.1, port 0, with a certificate from [`cert::generate`].
/// Reports how each session ended; aborted when dropped.
struct WtransportServer {
    addr: SocketAddr,
    cert: SelfSignedCert,
    ended: mpsc::Receiver<ConnectionError>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WtransportServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WtransportServer {
    fn start(mode: Mode) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), mode).unwrap()
    }

    /// As [`start`](Self::start) on another address; `None` when it cannot be bound.
    fn start_on(bind: SocketAddr, mode: Mode) -> Option<Self> {
        let cert = cert::generate(&[]).unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let identity = Identity::new(
            wtransport::tls::CertificateChain::single(
                wtransport::tls::Certificate::from_der(cert.cert_der.clone()).unwrap(),
            ),
            wtransport::tls::PrivateKey::from_der_pkcs8(key.secret_der().to_vec()),
        );
        let config = ServerConfig::builder()
            .with_bind_address(bind)
            .with_identity(identity)
            .keep_alive_interval(Some(Duration::from_secs(1)))
            .build();
        let endpoint = Endpoint::server(config).ok()?;
        let addr = endpoint.local_addr().unwrap();
        let (tx, ended) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            loop {
                let incoming = endpoint.accept().await;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(request) = incoming.await else { return };
                    if let Mode::Forbid = mode {
                        request.forbidden().await;
                        return;
                    }
                    let Ok(conn) = request.accept().await else {
                        return;
                    };
                    let end = match mode {
                        Mode::Echo => echo(&conn).await,
                        Mode::ServerOpens => {
                            let _ = server_opens(&conn).await;
                            echo(&conn).await
                        }
                        Mode::Forbid => unreachable!("refused above"),
                        Mode::CloseOnFirstStream => {
                            let _ = conn.accept_bi().await;
                            conn.close(VarInt::from_u32(42), b"bye");
                            conn.closed().await
                        }
                    };
                    let _ = tx.send(end).await;
                });
            }
        });
        Some(Self {
            addr,
            cert,
            ended,
            task,
        })
    }

    /// `https://ADDR` plus `path` (IPv6 addresses in brackets).
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn pinned(&self) -> WtClientConfig {
        let mut config = WtClientConfig::default();
        config.cert_hash(self.cert.sha256);
        config
    }
}

/// Echoes on a `wtransport` session: bidi bytes back on the same stream, each uni stream back on
/// a new uni stream, each datagram back. Returns how the session ended.
async fn echo(conn: &Connection) -> ConnectionError {
    let bidi = async {
        loop {
            match conn.accept_bi().await {
                Ok((mut send, mut recv)) => {
                    tokio::spawn(async move {
                        if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                            let _ = send.finish().await;
                        }
                    });
                }
                Err(e) => break e,
            }
        }
    };
    let uni = async {
        loop {
            let mut recv = match conn.accept_uni().await {
                Ok(recv) => recv,
                Err(e) => break e,
            };
            let opening = match conn.open_uni().await {
                Ok(opening) => opening,
                Err(e) => break e,
            };
            tokio::spawn(async move {
                let Ok(mut send) = opening.await else { return };
                if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                    let _ = send.finish().await;
                }
            });
        }
    };
    let datagrams = async {
        loop {
            match conn.receive_datagram().await {
                Ok(d) => {
                    let _ = conn.send_datagram(d.payload());
                }
                Err(e) => break e,
            }
        }
    };
    tokio::select! {
        e = bidi => e,
        e = uni => e,
        e = datagrams => e,
    }
}

/// Opens a bidirectional stream that greets and then echoes, and a unidirectional stream with a
/// greeting. `None` when opening failed (the session is gone; `echo` then says why).
async fn server_opens(conn: &Connection) -> Option<()> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?.await.ok()?;
    tokio::spawn(async move {
        if send.write_all(b"server bidi").await.is_ok()
            && tokio::io::copy(&mut recv, &mut send).await.is_ok()
        {
            let _ = send.finish().await;
        }
    });
    let mut send = conn.open_uni().await.ok()?.await.ok()?;
    tokio::spawn(async move {
        if send.write_all(b"server uni").await.is_ok() {
            let _ = send.finish().await;
        }
    });
    Some(())
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
async fn echo_with_a_pinned_hash_then_client_closes() {
    let mut server = WtransportServer::start(Mode::Echo);
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

    // Our close reaches wtransport with its code.
    bounded(session.close(7, "done")).await.unwrap();
    match bounded(server.ended.recv()).await.unwrap() {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.code(), VarInt::from_u32(7));
        }
        other => panic!("wtransport saw {other:?}"),
    }
}

#[tokio::test]
async fn custom_ca_instead_of_a_pin() {
    let server = WtransportServer::start(Mode::Echo);
    let mut config = WtClientConfig::default();
    config
        .transport
        .tls
        .add_root_ca_pem(server.cert.cert_pem.clone());
    config.transport.tls.only_custom_roots = true;
    // Verified against the certificate's IP address name.
    let session = bounded(connect(&server.url("/"), config)).await.unwrap();
    assert_eq!(bounded(bidi_round_trip(&session, b"ca")).await, b"ca");
}

#[tokio::test]
async fn server_close_reaches_the_client_with_its_code() {
    let server = WtransportServer::start(Mode::CloseOnFirstStream);
    let session = bounded(connect(&server.url("/"), server.pinned()))
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

#[tokio::test]
async fn streams_the_server_opens() {
    let server = WtransportServer::start(Mode::ServerOpens);
    let session = bounded(connect(&server.url("/"), server.pinned()))
        .await
        .unwrap();

    let (mut send, mut recv) = bounded(session.accept_bi()).await.unwrap();
    let mut greeting = [0u8; 11];
    bounded(recv.read_exact(&mut greeting)).await.unwrap();
    assert_eq!(&greeting, b"server bidi");
    send.write_all(b"reply").await.unwrap();
    send.finish().unwrap();
    assert_eq!(bounded(recv.read_to_end(1024)).await.unwrap(), b"reply");

    let mut uni = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(bounded(uni.read_to_end(1024)).await.unwrap(), b"server uni");

    // Our own streams still echo alongside.
    assert_eq!(bounded(bidi_round_trip(&session, b"mine")).await, b"mine");
}

#[tokio::test]
async fn a_refused_connect_is_handshake_rejected() {
    let server = WtransportServer::start(Mode::Forbid);
    let err = bounded(connect(&server.url("/"), server.pinned()))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        transport_core::TransportError::HandshakeRejected { status: 403 }
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn over_ipv6_loopback() {
    let Some(server) = WtransportServer::start_on("[::1]:0".parse().unwrap(), Mode::Echo) else {
        // Straight to stderr, past the test harness's capture, so the skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "SKIP over_ipv6_loopback: cannot bind [::1]"
        );
        return;
    };
    let url = server.url("/v6");
    assert!(url.starts_with("https://[::1]:"), "{url}");
    let session = bounded(connect(&url, server.pinned())).await.unwrap();
    assert!(session.remote_addr().is_ipv6());
    assert_eq!(bounded(bidi_round_trip(&session, b"six")).await, b"six");
    assert_eq!(
        bounded(datagram_round_trip(&session, b"v6"))
            .await
            .as_deref(),
        Some(b"v6".as_slice())
    );
}
