//! The server's accept policy (origin allow-list) applies to every transport.

mod common;

use common::{bounded, client_config, server_config};
use transport_adaptive::{AdaptiveServer, TransportKind};
use transport_core::TransportError;

#[tokio::test]
async fn origin_allow_list_applies_to_all_three_transports() {
    let mut config = server_config();
    config.policy.allow_origins(["https://ok.example"]);
    let server = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    for kind in [
        TransportKind::WebSocket,
        TransportKind::Sse,
        TransportKind::WebTransport,
    ] {
        for (origin, allowed) in [
            ("https://ok.example", true),
            ("https://evil.example", false),
        ] {
            let mut c = client_config(&server, &[kind]);
            c.ws.transport.header("Origin", origin).unwrap();
            c.sse.transport.header("Origin", origin).unwrap();
            c.wt.client.origin(origin);
            let result = bounded(transport_adaptive::connect(c)).await;
            if allowed {
                let conn = result.unwrap_or_else(|e| panic!("{kind} {origin}: {e}"));
                assert_eq!(conn.transport(), Some(kind));
            } else {
                let err = result.expect_err(origin);
                assert_eq!(
                    err,
                    TransportError::HandshakeRejected { status: 403 },
                    "{kind}"
                );
            }
        }
    }
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn a_full_session_table_refuses_new_sessions() {
    let mut config = server_config();
    config.max_sessions = 1;
    config.enable_wt = false;
    let server = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let first = bounded(transport_adaptive::connect(client_config(
        &server,
        &[TransportKind::WebSocket],
    )))
    .await
    .unwrap();
    let err = bounded(transport_adaptive::connect(client_config(
        &server,
        &[TransportKind::WebSocket],
    )))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("session table full"), "{err}");
    assert!(err.is_retryable());
    assert_eq!(server.sessions().len(), 1);
    drop(first);
    bounded(server.shutdown()).await;
}

#[tokio::test]
async fn refused_everywhere_is_the_typed_refusal() {
    let mut config = server_config();
    config.policy.allow_origins(["https://ok.example"]);
    let server = AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let mut c = client_config(
        &server,
        &[
            TransportKind::WebTransport,
            TransportKind::WebSocket,
            TransportKind::Sse,
        ],
    );
    c.ws.transport
        .header("Origin", "https://evil.example")
        .unwrap();
    c.sse
        .transport
        .header("Origin", "https://evil.example")
        .unwrap();
    c.wt.client.origin("https://evil.example");
    let err = bounded(transport_adaptive::connect(c)).await.unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 403 });
    assert!(!err.is_retryable());
    bounded(server.shutdown()).await;
}
