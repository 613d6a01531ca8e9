//! Helpers shared by the server tests: a server on 127.0.0.1 port 0 with a fresh certificate,
//! an independent client (the `wtransport` crate) that trusts it by its SHA-256 hash, and a raw
//! HTTP/3 client (h3 on quinn) that reads the CONNECT response status.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{WtServer, WtServerConfig};
use wtransport::endpoint::ConnectOptions;
use wtransport::error::ConnectingError;

/// Upper bound for every wait in the tests.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` under [`LIMIT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

pub fn server(config: WtServerConfig) -> (WtServer, SelfSignedCert) {
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

/// A `wtransport` client endpoint on 127.0.0.1 trusting `cert` by its hash only.
pub fn client_endpoint(
    cert: &SelfSignedCert,
) -> wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client> {
    let config = wtransport::ClientConfig::builder()
        .with_bind_address("127.0.0.1:0".parse().unwrap())
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(cert.sha256)])
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .build();
    wtransport::Endpoint::client(config).unwrap()
}

/// Connects with `wtransport` to `url` with extra headers.
pub async fn connect(
    cert: &SelfSignedCert,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<wtransport::Connection, ConnectingError> {
    let endpoint = client_endpoint(cert);
    let mut options = ConnectOptions::builder(url);
    for (k, v) in headers {
        options = options.add_header(*k, *v);
    }
    endpoint.connect(options.build()).await
}

/// A QUIC connection (ALPN h3) to `addr` from a bare quinn client that accepts any certificate.
pub async fn bare_quic(addr: SocketAddr) -> quinn::Connection {
    bare_quic_from("127.0.0.1:0".parse().unwrap(), addr)
        .await
        .unwrap()
}

/// As [`bare_quic`], from a client socket bound to `local` (e.g. 127.0.0.2:0); the error when
/// the server refuses the connection.
pub async fn bare_quic_from(
    local: SocketAddr,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let tls = transport_core::tls::client_config(
        &{
            let mut o = transport_core::TlsOptions::default();
            o.danger_accept_invalid_certs = true;
            o
        },
        &[b"h3"],
    )
    .unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from((*tls).clone()).unwrap();
    let mut endpoint = quinn::Endpoint::client(local).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint.connect(addr, "localhost").unwrap().await
}

/// Sends a WebTransport CONNECT for `path` over raw HTTP/3 and returns the response status.
/// The connection stays open until the returned handle is dropped.
pub async fn connect_status(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, quinn::Connection) {
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{addr}{path}"))
        .extension(h3::ext::Protocol::WEB_TRANSPORT);
    let request = headers
        .iter()
        .fold(request, |r, (k, v)| r.header(*k, *v))
        .body(())
        .unwrap();
    request_status(addr, request).await
}

/// Sends any request over raw HTTP/3 and returns the response status.
pub async fn request_status(
    addr: SocketAddr,
    request: http::Request<()>,
) -> (http::StatusCode, quinn::Connection) {
    let quic = bare_quic(addr).await;
    let (mut driver, mut send) = h3::client::builder()
        .enable_extended_connect(true)
        .enable_datagram(true)
        .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut stream = send.send_request(request).await.unwrap();
    let response = stream.recv_response().await.unwrap();
    (response.status(), quic)
}
