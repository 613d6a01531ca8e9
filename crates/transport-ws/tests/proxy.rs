//! The client through a real HTTP CONNECT proxy (Debian's tinyproxy, started on loopback),
//! plain and with BasicAuth, for ws:// and wss://.

use std::time::Duration;

use test_servers::tinyproxy::Tinyproxy;
use test_servers::ws::{Scenario, WsTestServer};
use transport_core::{Message, ReconnectPolicy, Transport, TransportError};
use transport_ws::{ProxyConfig, WsConfig, WsServer, WsServerConfig};

async fn start_proxy(auth: Option<(&'static str, &'static str)>) -> Option<Tinyproxy> {
    match tokio::task::spawn_blocking(move || Tinyproxy::start(auth))
        .await
        .unwrap()
    {
        Ok(p) => Some(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIP: {e} (cargo xtask test-all installs tinyproxy)");
            None
        }
        Err(e) => panic!("tinyproxy: {e}"),
    }
}

fn config(proxy: ProxyConfig) -> WsConfig {
    let mut c = WsConfig::default();
    c.proxy(proxy);
    c.transport.reconnect(ReconnectPolicy::disabled());
    c.transport.connect_timeout(Duration::from_secs(10));
    c
}

#[tokio::test]
async fn ws_through_tinyproxy() {
    let Some(proxy) = start_proxy(None).await else {
        return;
    };
    let server = WsTestServer::start(Scenario::Echo).await.unwrap();
    let mut conn = transport_ws::connect(
        &server.url(),
        config(ProxyConfig::http(&proxy.url()).unwrap()),
    )
    .await
    .unwrap();
    conn.send(Message::text("via proxy")).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Some(Message::text("via proxy")));
    let needle = format!("{}", server.addr().port());
    assert!(
        tokio::task::spawn_blocking(move || proxy.wait_for_log(&needle, Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap(),
        "the proxy logged the CONNECT"
    );
}

#[tokio::test]
async fn basic_auth_is_sent_and_checked() {
    let Some(proxy) = start_proxy(Some(("alice", "s3cret"))).await else {
        return;
    };
    let server = WsTestServer::start(Scenario::Echo).await.unwrap();
    let good = ProxyConfig::http(&proxy.url())
        .unwrap()
        .with_basic_auth("alice", "s3cret");
    let mut conn = transport_ws::connect(&server.url(), config(good))
        .await
        .unwrap();
    conn.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::binary(vec![1, 2, 3]))
    );

    let url_creds = proxy.url().replace("http://", "http://alice:s3cret@");
    transport_ws::connect(
        &server.url(),
        config(ProxyConfig::http(&url_creds).unwrap()),
    )
    .await
    .unwrap();

    for bad in [
        ProxyConfig::http(&proxy.url()).unwrap(),
        ProxyConfig::http(&proxy.url())
            .unwrap()
            .with_basic_auth("alice", "wrong"),
    ] {
        let err = transport_ws::connect(&server.url(), config(bad))
            .await
            .unwrap_err();
        assert_eq!(err, TransportError::HandshakeRejected { status: 407 });
    }
}

#[tokio::test]
async fn wss_through_tinyproxy() {
    let Some(proxy) = start_proxy(None).await else {
        return;
    };
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (c.cert.pem(), c.signing_key.serialize_pem());
    let tls = transport_core::tls::server_config(cert.as_bytes(), key.as_bytes(), &[b"http/1.1"])
        .unwrap();
    let mut server = WsServer::bind_tls("127.0.0.1:0", WsServerConfig::default(), tls)
        .await
        .unwrap();
    let url = server.url().replace("127.0.0.1", "localhost");
    tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    let _ = conn.send(m).await;
                }
            });
        }
    });
    let mut cfg = config(ProxyConfig::http(&proxy.url()).unwrap());
    cfg.transport.tls.add_root_ca_pem(cert);
    let mut conn = transport_ws::connect(&url, cfg).await.unwrap();
    conn.send(Message::text("tls in a tunnel")).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::text("tls in a tunnel"))
    );
}
