//! `wss://`: a real rustls server with a self-signed certificate; verification on by default,
//! a custom CA makes it pass, `danger_accept_invalid_certs` is the only way to skip it.

use std::time::Duration;

use transport_core::{Message, ReconnectPolicy, Transport, TransportError};
use transport_ws::{ProxyConfig, WsConfig, WsServer, WsServerConfig};

fn cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

async fn tls_echo_server(cert_pem: &str, key_pem: &str) -> String {
    let tls =
        transport_core::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), &[b"http/1.1"])
            .unwrap();
    let mut server = WsServer::bind_tls("127.0.0.1:0", WsServerConfig::default(), tls)
        .await
        .unwrap();
    let url = server.url();
    assert!(url.starts_with("wss://"));
    tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    let _ = conn.send(m).await;
                }
            });
        }
    });
    url
}

fn config() -> WsConfig {
    let mut c = WsConfig::default();
    c.proxy(ProxyConfig::none());
    c.transport.reconnect(ReconnectPolicy::disabled());
    c.transport.connect_timeout(Duration::from_secs(5));
    c
}

#[tokio::test]
async fn custom_ca_verifies_the_server() {
    let (cert, key) = cert();
    let url = tls_echo_server(&cert, &key).await;
    for host_url in [url.clone(), url.replace("127.0.0.1", "localhost")] {
        let mut c = config();
        c.transport.tls.add_root_ca_pem(cert.clone());
        let mut conn = transport_ws::connect(&host_url, c).await.unwrap();
        conn.send(Message::text("over tls")).await.unwrap();
        assert_eq!(conn.recv().await.unwrap(), Some(Message::text("over tls")));
        conn.close(1000, "").await.unwrap();
    }
}

#[tokio::test]
async fn unknown_issuer_is_a_tls_error() {
    let (cert, key) = cert();
    let url = tls_echo_server(&cert, &key).await;
    let err = transport_ws::connect(&url, config()).await.unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err}");
    assert!(!err.is_retryable());
    // A CA that did not sign the server's certificate does not help either.
    let (other, _) = cert_other();
    let mut c = config();
    c.transport.tls.add_root_ca_pem(other);
    c.transport.tls.only_custom_roots = true;
    assert!(matches!(
        transport_ws::connect(&url, c).await,
        Err(TransportError::Tls { .. })
    ));
}

fn cert_other() -> (String, String) {
    cert()
}

#[tokio::test]
async fn danger_option_skips_verification() {
    let (cert, key) = cert();
    let url = tls_echo_server(&cert, &key).await;
    let mut c = config();
    c.transport.tls.danger_accept_invalid_certs = true;
    let mut conn = transport_ws::connect(&url, c).await.unwrap();
    conn.send(Message::binary(vec![9; 100_000])).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::binary(vec![9; 100_000]))
    );
}
