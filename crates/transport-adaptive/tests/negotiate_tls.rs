//! Negotiation over an `https://` base URL, verified with the config's `TlsOptions`: through a
//! TLS-terminating front on loopback, in front of the unified server.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{AbortOnDrop, bounded, round_trip, server, spawn_echo, tune};
use tokio::net::{TcpListener, TcpStream};
use transport_adaptive::{AdaptiveConfig, TransportKind};
use transport_core::{Message, TransportError};
use transport_wt::cert::SelfSignedCert;

/// A TLS front on 127.0.0.1:0 (certificate `cert`) forwarding plain TCP to `upstream`.
async fn tls_front(cert: &SelfSignedCert, upstream: SocketAddr) -> (SocketAddr, AbortOnDrop) {
    let config = transport_core::tls::server_config(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        &[b"http/1.1"],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, AbortOnDrop(task))
}

#[tokio::test]
async fn negotiates_over_https_with_a_trusted_root() {
    let server = Arc::new(server().await);
    let _echo = spawn_echo(server.clone());
    let cert = transport_wt::cert::generate(&["127.0.0.1"]).unwrap();
    let (front, _front) = tls_front(&cert, server.local_addr()).await;
    let base = format!("https://{front}");

    let mut config = AdaptiveConfig::default();
    tune(&mut config);
    config
        .transport
        .tls
        .add_root_ca_pem(cert.cert_pem.as_bytes());
    let mut config = bounded(transport_adaptive::negotiate(&base, config))
        .await
        .unwrap();
    let kinds: Vec<_> = config.endpoints.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            TransportKind::WebTransport,
            TransportKind::WebSocket,
            TransportKind::Sse
        ]
    );
    // URLs are built from the Host header: the front's address.
    assert_eq!(config.endpoints[1].url, format!("ws://{front}/ws"));
    println!("negotiated over {base}: {:?}", config.endpoints);
    // The document is usable: WebTransport (direct, UDP) with the pinned hash it carried.
    config.endpoints.truncate(1);
    let mut conn = bounded(transport_adaptive::connect(config)).await.unwrap();
    assert_eq!(conn.transport(), Some(TransportKind::WebTransport));
    round_trip(&mut conn, Message::text("negotiated over https")).await;
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let server = Arc::new(server().await);
    let cert = transport_wt::cert::generate(&["127.0.0.1"]).unwrap();
    let (front, _front) = tls_front(&cert, server.local_addr()).await;
    let mut config = AdaptiveConfig::default();
    tune(&mut config);
    // Trusting another certificate only: the front's is unknown.
    let other = transport_wt::cert::generate(&["127.0.0.1"]).unwrap();
    config.transport.tls.only_custom_roots = true;
    config
        .transport
        .tls
        .add_root_ca_pem(other.cert_pem.as_bytes());
    let err = bounded(transport_adaptive::negotiate(
        &format!("https://{front}"),
        config,
    ))
    .await
    .unwrap_err();
    println!("untrusted: {err}");
    assert!(
        matches!(&err, TransportError::Tls { reason } if reason.contains("handshake")),
        "{err}"
    );

    // Other schemes are still refused with a clear error.
    let err = bounded(transport_adaptive::negotiate(
        &format!("ftp://{front}"),
        AdaptiveConfig::default(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::InvalidUrl { .. }), "{err}");
    bounded(server.shutdown()).await;
}
