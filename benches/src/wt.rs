//! WebTransport fixtures: echo servers on 127.0.0.1 port 0 for our server (raw session API
//! and message connections), a bare quinn server (the floor: QUIC streams and datagrams, same
//! certificate, same TLS provider) and a `wtransport` server; and the matching clients.
//!
//! Every server echoes each bidirectional stream back on itself and each datagram back as a
//! datagram. The servers are aborted when their [`Server`] is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use transport_core::tls::{self, CertCheck};
use transport_core::{TlsOptions, Transport, TransportConfig};
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{StreamConfig, WtClientConfig, WtConfig, WtServer, WtServerConfig, echo};

/// The ALPN every WebTransport fixture offers (HTTP/3), the bare quinn one included, so the TLS
/// handshakes are alike.
const ALPN: &[u8] = b"h3";

/// A running echo server; aborted on drop.
#[derive(Debug)]
pub struct Server {
    /// `https://127.0.0.1:PORT` (plus a path for message connections).
    pub url: String,
    /// The UDP address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh self-signed certificate for 127.0.0.1 (what every fixture here uses).
///
/// # Panics
/// When key generation fails (benchmarks only).
pub fn certificate() -> SelfSignedCert {
    cert::generate(&[]).expect("certificate")
}

/// Our server settings for the benches: room for `sessions` sessions, a short close timeout.
pub fn ours_server_config(sessions: usize) -> WtServerConfig {
    let mut config = WtServerConfig::default();
    config.max_sessions(sessions).accept_backlog(1024);
    // Every benchmark client comes from 127.0.0.1, thousands of times a second.
    config.ip_limits(transport_core::IpLimits::unlimited());
    config.transport.close_timeout = Duration::from_secs(1);
    config
}

/// Our server echoing raw bytes ([`echo`]). Must be called within a Tokio runtime.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn ours_raw_echo(cert: &SelfSignedCert) -> Server {
    let mut server = WtServer::bind(
        "127.0.0.1:0".parse().expect("address"),
        ours_server_config(1 << 16),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .expect("bind");
    let (url, addr) = (server.url(), server.local_addr());
    let task = tokio::spawn(async move {
        while let Some((session, _request)) = server.accept_session().await {
            tokio::spawn(echo(session));
        }
    });
    Server { url, addr, task }
}

/// Our server echoing every message of every message connection. Must be called within a
/// Tokio runtime.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn ours_message_echo(cert: &SelfSignedCert) -> Server {
    let mut server = WtServer::bind(
        "127.0.0.1:0".parse().expect("address"),
        ours_server_config(1 << 16),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .expect("bind");
    let (url, addr) = (format!("{}/messages", server.url()), server.local_addr());
    let task = tokio::spawn(async move {
        let transport = TransportConfig::default();
        while let Some((mut conn, _request)) = server
            .accept_transport(&transport, StreamConfig::default())
            .await
        {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server { url, addr, task }
}

/// Our client settings pinning `cert`; 0-RTT when `zero_rtt` (clones share the ticket store).
pub fn ours_client_config(cert: &SelfSignedCert, zero_rtt: bool) -> WtClientConfig {
    let mut config = WtClientConfig::default();
    config.cert_hash(cert.sha256);
    config.transport.close_timeout = Duration::from_millis(200);
    config.zero_rtt = zero_rtt;
    config
}

/// Our message-connection settings pinning `cert`, reconnect off.
pub fn ours_message_config(cert: &SelfSignedCert) -> WtConfig {
    let mut config = WtConfig::default();
    config.client = ours_client_config(cert, false);
    config
        .client
        .transport
        .reconnect(transport_core::ReconnectPolicy::disabled());
    config
}

/// A bare quinn server (QUIC only, no HTTP/3) with the same certificate, TLS provider and
/// 0-RTT acceptance as ours, echoing bidirectional streams and datagrams. Must be called within
/// a Tokio runtime.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn quinn_echo(cert: &SelfSignedCert) -> Server {
    let tls = tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes(), &[ALPN])
        .expect("server TLS");
    let mut tls = (*tls).clone();
    tls.max_early_data_size = u32::MAX;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("TLS 1.3");
    let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint =
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = endpoint.local_addr().expect("address");
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                quinn_echo_connection(conn).await;
            });
        }
    });
    Server {
        url: format!("https://{addr}"),
        addr,
        task,
    }
}

async fn quinn_echo_connection(conn: quinn::Connection) {
    let streams = async {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            tokio::spawn(async move {
                if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                    let _ = send.finish();
                }
            });
        }
    };
    let datagrams = async {
        while let Ok(datagram) = conn.read_datagram().await {
            let _ = conn.send_datagram(datagram);
        }
    };
    tokio::join!(streams, datagrams);
}

/// A bare quinn client configuration trusting exactly `cert` (checked by its DER, as ours
/// checks its hash); early data when `zero_rtt` (clones share the ticket store). Without
/// `zero_rtt`, TLS resumption is off, as in ours: each connection is a full handshake
/// (otherwise the clones would resume with the tickets of earlier connections, skipping the
/// certificate and its signature, and a "full" handshake would be an abbreviated one).
///
/// # Panics
/// When the TLS configuration cannot be built (benchmarks only).
pub fn quinn_client_config(cert: &SelfSignedCert, zero_rtt: bool) -> quinn::ClientConfig {
    let der = cert.cert_der.clone();
    let check = CertCheck::new(move |presented, _| {
        if presented.as_ref() == der.as_slice() {
            Ok(())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    });
    let tls =
        tls::client_config_with_check(&TlsOptions::default(), &[ALPN], &check).expect("client TLS");
    let mut tls = (*tls).clone();
    tls.enable_early_data = zero_rtt;
    if !zero_rtt {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).expect("TLS 1.3");
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// A fresh bare quinn client endpoint on 127.0.0.1 (ours binds one per session too).
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn quinn_client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")).expect("bind")
}

/// A bare quinn connection to `server` (full handshake awaited).
///
/// # Panics
/// When the connection fails (benchmarks only).
pub async fn quinn_connect(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    server: SocketAddr,
) -> quinn::Connection {
    endpoint
        .connect_with(config, server, "127.0.0.1")
        .expect("connect")
        .await
        .expect("handshake")
}

/// A `wtransport` server endpoint on 127.0.0.1:0 with `cert` and its default settings, on a
/// UDP socket with the receive buffer our server asks for by default (wtransport keeps the
/// system's, which drops handshake packets under a burst of connects and would make the
/// comparison one of socket buffers). Must be called within a Tokio runtime.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn wtransport_endpoint(
    cert: &SelfSignedCert,
) -> wtransport::Endpoint<wtransport::endpoint::endpoint_side::Server> {
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let identity = wtransport::Identity::new(
        wtransport::tls::CertificateChain::single(
            wtransport::tls::Certificate::from_der(cert.cert_der.clone()).expect("cert"),
        ),
        wtransport::tls::PrivateKey::from_der_pkcs8(key.secret_der().to_vec()),
    );
    let config = wtransport::ServerConfig::builder()
        .with_bind_socket(
            transport_wt::bind_udp(
                "127.0.0.1:0".parse().expect("address"),
                Some(transport_wt::DEFAULT_UDP_RECV_BUFFER),
            )
            .expect("bind"),
        )
        .with_identity(identity)
        .build();
    wtransport::Endpoint::server(config).expect("bind")
}

/// A `wtransport` server with `cert`, echoing bidirectional streams and datagrams. Must be
/// called within a Tokio runtime.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn wtransport_echo(cert: &SelfSignedCert) -> Server {
    let endpoint = wtransport_endpoint(cert);
    let addr = endpoint.local_addr().expect("address");
    let task = tokio::spawn(async move {
        loop {
            let incoming = endpoint.accept().await;
            tokio::spawn(async move {
                let Ok(request) = incoming.await else { return };
                let Ok(conn) = request.accept().await else {
                    return;
                };
                wtransport_echo_session(conn).await;
            });
        }
    });
    Server {
        url: format!("https://{addr}"),
        addr,
        task,
    }
}

async fn wtransport_echo_session(conn: wtransport::Connection) {
    let streams = async {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            tokio::spawn(async move {
                if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                    let _ = send.finish().await;
                }
            });
        }
    };
    let datagrams = async {
        while let Ok(datagram) = conn.receive_datagram().await {
            let _ = conn.send_datagram(datagram.payload());
        }
    };
    tokio::join!(streams, datagrams);
}

/// A `wtransport` client endpoint on 127.0.0.1 trusting `cert` by its hash.
///
/// # Panics
/// When binding fails (benchmarks only).
pub fn wtransport_client(
    cert: &SelfSignedCert,
) -> wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client> {
    let config = wtransport::ClientConfig::builder()
        .with_bind_address("127.0.0.1:0".parse().expect("address"))
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(cert.sha256)])
        .build();
    wtransport::Endpoint::client(config).expect("bind")
}

/// One datagram round trip, resent (at most 10 times) when no answer comes within 100 ms, so
/// a lost datagram cannot stall a benchmark.
///
/// # Panics
/// When ten sends in a row go unanswered (benchmarks only).
pub async fn datagram_round_trip<S, R, F>(send: S, mut recv: R) -> Bytes
where
    S: Fn() -> bool,
    R: FnMut() -> F,
    F: Future<Output = Option<Bytes>>,
{
    for _ in 0..10 {
        assert!(send(), "sending a datagram failed");
        if let Ok(Some(back)) = tokio::time::timeout(Duration::from_millis(100), recv()).await {
            return back;
        }
    }
    panic!("ten datagrams in a row were lost");
}
