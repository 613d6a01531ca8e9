//! Helpers shared by the client tests: a server of this crate on 127.0.0.1 port 0 with a fresh
//! certificate, and a client configuration pinning it.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{WtClientConfig, WtServer, WtServerConfig};

/// Upper bound for every wait in the tests.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` under [`LIMIT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// A server with a fresh self-signed certificate (or the given PEM pair).
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

/// A client configuration trusting `cert` by its hash.
pub fn pinned(cert: &SelfSignedCert) -> WtClientConfig {
    let mut config = WtClientConfig::default();
    config.cert_hash(cert.sha256);
    config
}
