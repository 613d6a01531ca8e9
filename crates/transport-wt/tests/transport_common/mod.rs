//! Helpers shared by the `Transport` adapter tests: servers of this crate on 127.0.0.1 port 0
//! with a fresh certificate (accepting message connections, echoing them, or echoing raw
//! bytes), and client configurations pinning that certificate.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use transport_core::{Connection, Transport, TransportConfig};
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{StreamConfig, WtConfig, WtServer, WtServerConfig, echo};

/// Upper bound for every wait in the tests.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` under [`LIMIT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// A server with a fresh self-signed certificate.
pub fn server() -> (WtServer, SelfSignedCert) {
    let cert = cert::generate(&[]).unwrap();
    let mut config = WtServerConfig::default();
    config.transport.close_timeout = Duration::from_secs(2);
    let server = WtServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    (server, cert)
}

/// The settings of accepted connections in these tests.
pub fn server_transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.close_timeout = Duration::from_secs(2);
    t
}

/// A server handing every message connection to the test.
pub fn accepting(
    transport: TransportConfig,
    stream: StreamConfig,
) -> (
    String,
    SelfSignedCert,
    mpsc::Receiver<Connection>,
    JoinHandle<()>,
) {
    let (mut server, cert) = server();
    let url = format!("{}/messages", server.url());
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        while let Some((conn, _request)) = server.accept_transport(&transport, stream).await {
            if tx.send(conn).await.is_err() {
                return;
            }
        }
    });
    (url, cert, rx, task)
}

/// A server echoing every message of every connection (through the adapter).
pub fn echoing(stream: StreamConfig) -> (String, SelfSignedCert, JoinHandle<()>) {
    let (url, cert, mut rx, accept) = accepting(server_transport(), stream);
    let task = tokio::spawn(async move {
        let _accept = AbortOnDrop(accept);
        while let Some(mut conn) = rx.recv().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, cert, task)
}

/// A server echoing raw bytes ([`echo`]), unaware of the message framing.
pub fn raw_echo() -> (String, SelfSignedCert, JoinHandle<()>) {
    let (mut server, cert) = server();
    let url = server.url();
    let task = tokio::spawn(async move {
        while let Some((session, _request)) = server.accept_session().await {
            tokio::spawn(echo(session));
        }
    });
    (url, cert, task)
}

/// A client configuration pinning `cert`, with short close and reconnect delays.
pub fn client(cert: &SelfSignedCert, stream: StreamConfig) -> WtConfig {
    let mut config = WtConfig::default();
    config.client.cert_hash(cert.sha256);
    config.client.transport.close_timeout = Duration::from_secs(2);
    config
        .client
        .transport
        .reconnect
        .delays(Duration::from_millis(50), Duration::from_millis(200));
    config.stream = stream;
    config
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
