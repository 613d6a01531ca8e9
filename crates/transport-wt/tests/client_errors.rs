//! Typed set-up errors of the client: a refused CONNECT, certificate pinning failures, a
//! silent server, a bad URL; and the request the server sees (path, origin, headers).

mod client_common;

use std::time::Duration;

use client_common::{bounded, pinned, server};
use http::StatusCode;
use transport_core::TransportError;
use transport_wt::{WtClientConfig, WtServer, WtServerConfig, connect};

#[tokio::test]
async fn refused_connect_reports_the_status() {
    let (mut srv, cert) = server(WtServerConfig::default());
    let url = srv.url();
    let task = tokio::spawn(async move {
        let incoming = srv.accept().await.unwrap();
        incoming.reject(StatusCode::FORBIDDEN).await;
    });
    let err = bounded(connect(&format!("{url}/x"), pinned(&cert)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 403 });
    assert!(!err.is_retryable());
    bounded(task).await.unwrap();
}

#[tokio::test]
async fn the_server_sees_path_origin_and_headers() {
    let (mut srv, cert) = server(WtServerConfig::default());
    let url = srv.url();
    let task = tokio::spawn(async move {
        let incoming = srv.accept().await.unwrap();
        let request = incoming.request().clone();
        let session = incoming.accept().await.unwrap();
        (request, session, srv)
    });
    let mut config = pinned(&cert);
    config.origin("https://app.example");
    config
        .transport
        .header("Authorization", "Bearer t0k3n")
        .unwrap();
    let session = bounded(connect(&format!("{url}/room/7?user=ann"), config))
        .await
        .unwrap();
    let (request, _server_session, _srv) = bounded(task).await.unwrap();
    assert_eq!(request.path, "/room/7");
    assert_eq!(request.query.as_deref(), Some("user=ann"));
    assert_eq!(request.origin.as_deref(), Some("https://app.example"));
    assert_eq!(request.headers["authorization"], "Bearer t0k3n");
    assert_eq!(
        session.response_headers()["sec-webtransport-http3-draft"],
        "draft02"
    );
}

#[tokio::test]
async fn a_wrong_pin_is_a_tls_error() {
    let (srv, _cert) = server(WtServerConfig::default());
    let mut config = WtClientConfig::default();
    config.cert_hash([0x42; 32]);
    let err = bounded(connect(&srv.url(), config)).await.unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
    // And without pin or CA, the system roots do not know the self-signed certificate.
    let err = bounded(connect(&srv.url(), WtClientConfig::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn a_pinned_certificate_valid_for_too_long_is_refused() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(30 * 86_400)).into();
    let cert = params.self_signed(&key).unwrap();
    let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, cert.der())
        .as_ref()
        .try_into()
        .unwrap();
    let srv = WtServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        WtServerConfig::default(),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut config = WtClientConfig::default();
    config.cert_hash(hash);
    let err = bounded(connect(&srv.url(), config)).await.unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // A UDP socket that never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = WtClientConfig::default();
    config.transport.connect_timeout(Duration::from_millis(300));
    let err = bounded(connect(
        &format!("https://{}/", silent.local_addr().unwrap()),
        config,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err,
        TransportError::Timeout {
            operation: "WebTransport session set-up",
            after: Duration::from_millis(300)
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn bad_urls_and_configs() {
    for url in ["http://127.0.0.1:1/", "wss://127.0.0.1:1/", "not a url"] {
        let err = connect(url, WtClientConfig::default()).await.unwrap_err();
        assert!(matches!(err, TransportError::InvalidUrl { .. }), "{url}");
    }
    let mut config = WtClientConfig::default();
    config.transport.buffers(0, 0);
    assert!(matches!(
        connect("https://127.0.0.1:1/", config).await,
        Err(TransportError::InvalidConfig(_))
    ));
}
