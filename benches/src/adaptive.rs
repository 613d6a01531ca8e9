//! Fixtures of the adaptive benchmarks (`benches/adaptive.rs`, `examples/adaptive_profile.rs`):
//! an adaptive echo server, clients over a chosen transport, and the bare transport-ws
//! connection the adaptive one is compared with.

use std::sync::Arc;

use bytes::Bytes;

use transport_adaptive::{AdaptiveConfig, AdaptiveServer, AdaptiveServerConfig, TransportKind};
use transport_core::{Message, ReconnectPolicy, Transport};
use transport_ws::{ProxyConfig, WsConfig};

/// An adaptive echo server on 127.0.0.1:0 (every transport).
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn echo() -> Arc<AdaptiveServer> {
    let mut config = AdaptiveServerConfig::default();
    // Every benchmark client comes from 127.0.0.1, hundreds of times a second: the per-IP
    // handshake rate would otherwise turn WebTransport attempts away (and WebSocket would win).
    // `ip_limits` covers the server's TCP listener and its WebTransport server.
    config.ip_limits = transport_core::IpLimits::unlimited();
    let server = Arc::new(
        AdaptiveServer::bind("127.0.0.1:0".parse().expect("addr"), config)
            .await
            .expect("bind"),
    );
    let s = server.clone();
    tokio::spawn(async move {
        while let Some((mut conn, _)) = s.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    server
}

/// Client settings for `server` (discovered through negotiation, certificate pinned), keeping
/// only `kinds`; endpoints of `replace` are swapped for the given URLs.
///
/// # Panics
/// When negotiation fails (benchmarks only).
pub async fn client_config(
    server: &AdaptiveServer,
    kinds: &[TransportKind],
    replace: &[(TransportKind, String)],
) -> AdaptiveConfig {
    let mut base = AdaptiveConfig::default();
    base.ws.proxy(ProxyConfig::none());
    let mut config = transport_adaptive::negotiate(&server.base_url(), base)
        .await
        .expect("negotiate");
    config.endpoints.retain(|e| kinds.contains(&e.kind));
    for (kind, url) in replace {
        for e in &mut config.endpoints {
            if e.kind == *kind {
                e.url.clone_from(url);
            }
        }
    }
    config.probe_interval(None);
    config
}

/// An adaptive client of `server` over `kind` only.
///
/// # Panics
/// When connecting fails or another transport won (benchmarks only).
pub async fn client(
    server: &AdaptiveServer,
    kind: TransportKind,
) -> transport_adaptive::AdaptiveConnection {
    let conn = transport_adaptive::connect(client_config(server, &[kind], &[]).await)
        .await
        .expect("connect");
    assert_eq!(conn.transport(), Some(kind));
    conn
}

/// A bare transport-ws client of our WebSocket echo server (no session layer, no reconnect).
///
/// # Panics
/// When connecting fails (benchmarks only).
pub async fn bare_ws() -> transport_core::Connection {
    let url = crate::ours_ws_echo().await;
    let mut config = WsConfig::default();
    config.proxy(ProxyConfig::none());
    config.transport.reconnect(ReconnectPolicy::disabled());
    transport_ws::connect(&url, config).await.expect("connect")
}

/// Sends `n` messages of `payload` with at most `window` unanswered, and reads every echo.
///
/// # Panics
/// When the connection fails (benchmarks only).
pub async fn pump<T: Transport>(conn: &mut T, payload: &Bytes, n: usize, window: usize) {
    let mut sent = 0;
    let mut received = 0;
    while received < n {
        while sent < n && sent - received < window {
            conn.send(Message::binary(payload.clone()))
                .await
                .expect("send");
            sent += 1;
        }
        conn.recv().await.expect("recv").expect("message");
        received += 1;
    }
}
