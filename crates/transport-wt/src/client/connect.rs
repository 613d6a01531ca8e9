//! [`connect`]: URL, UDP socket, QUIC and TLS configuration, then the HTTP/3 handshake in
//! [`super::session`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use transport_core::TransportError;

use super::config::WtClientConfig;
use super::error::setup_error;
use super::handshake;
use super::session::WtSession;

/// ALPN of HTTP/3.
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// Opens a WebTransport session to an `https://` URL.
///
/// The whole set-up (name resolution, QUIC and TLS handshakes, SETTINGS exchange, extended
/// CONNECT) must finish within `config.transport.connect_timeout`.
///
/// # Errors
/// * [`TransportError::InvalidUrl`] for a URL that is not `https://host[:port][/path]`;
///   [`TransportError::InvalidConfig`];
/// * [`TransportError::Timeout`] when the set-up takes too long;
/// * [`TransportError::Tls`] for a certificate the client refuses (or pinning mismatch), or a
///   TLS alert from the server;
/// * [`TransportError::HandshakeRejected`] with the status when the server answers the CONNECT
///   with anything but 2xx;
/// * [`TransportError::Unsupported`] when the server's SETTINGS lack WebTransport or HTTP
///   datagrams;
/// * [`TransportError::ConnectionFailed`] for resolution, socket and QUIC failures (with the
///   server's HTTP/3 error code when it closed the connection);
/// * [`TransportError::ProtocolViolation`] when the server breaks HTTP/3.
///
/// # Cancel safety
/// Cancel safe: dropping the future closes the connection it had opened.
pub async fn connect(url: &str, config: WtClientConfig) -> Result<WtSession, TransportError> {
    config.validate()?;
    let target = Target::parse(url)?;
    let after = config.transport.connect_timeout;
    tokio::time::timeout(after, establish(target, config))
        .await
        .map_err(|_| TransportError::Timeout {
            operation: "WebTransport session set-up",
            after,
        })?
}

/// What the client needs from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Host without brackets, for name resolution and TLS.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `:authority` as in the URL (host, and port when given).
    pub(crate) authority: String,
    /// `:path`, with the query.
    pub(crate) path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, TransportError> {
        let bad = |reason: &str| TransportError::invalid_url(url, reason);
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("WebTransport needs an https:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        Ok(Self {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }
}

async fn resolve(target: &Target) -> Result<SocketAddr, TransportError> {
    let mut addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| TransportError::connection_failed(format!("resolving {}", target.host), e))?;
    addrs
        .next()
        .ok_or_else(|| TransportError::ConnectionFailed {
            reason: format!("{} resolves to no address", target.host),
            source: None,
        })
}

fn tls_config(config: &WtClientConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    if config.cert_hashes.is_empty() {
        transport_core::tls::client_config(&config.transport.tls, &[ALPN_H3])
    } else {
        super::cert_hash::client_config(&config.cert_hashes, &config.transport.tls)
    }
}

/// The rustls configuration of a connect with `config`.
fn rustls_config(config: &WtClientConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    // Built once per configuration (and its clones) and reused while its TLS settings stay the
    // same: building it costs a crypto provider, a verifier and, with CA verification, loading
    // the system roots. Every handshake still verifies the server's certificate (or its pinned
    // hash) with it. With `zero_rtt` it also keeps the session tickets resumption needs (rustls
    // resumes only with the very same verifier); without, resumption is off, so each connect is
    // a full handshake, as with a configuration built per connect.
    config
        .sessions
        .get_or_build(super::config::TlsKey::of(config), || {
            let mut tls = (*tls_config(config)?).clone();
            if config.zero_rtt {
                tls.enable_early_data = true;
            } else {
                tls.resumption = rustls::client::Resumption::disabled();
            }
            Ok(Arc::new(tls))
        })
}

fn quic_config(config: &WtClientConfig) -> Result<quinn::ClientConfig, TransportError> {
    let tls = rustls_config(config)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::tls(format!("QUIC needs TLS 1.3: {e}")))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport(config)?));
    Ok(client)
}

fn transport(config: &WtClientConfig) -> Result<quinn::TransportConfig, TransportError> {
    let t = &config.transport;
    let mut q = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(t.dead_peer_timeout).map_err(|_| {
        TransportError::InvalidConfig("dead_peer_timeout is too long for QUIC".into())
    })?;
    q.max_idle_timeout(Some(idle))
        .keep_alive_interval(t.keepalive_interval)
        // Datagrams on (quinn's default buffer), and a bounded number of streams the server may
        // open towards us.
        .datagram_receive_buffer_size(Some(1024 * 1024))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(100))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(100))
        .congestion_controller_factory(config.congestion.factory());
    Ok(q)
}

async fn establish(target: Target, config: WtClientConfig) -> Result<WtSession, TransportError> {
    let addr = resolve(&target).await?;
    let bind = if addr.is_ipv6() {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    };
    let endpoint = quinn::Endpoint::client(bind)
        .map_err(|e| TransportError::connection_failed("binding a UDP socket", e))?;
    let connecting = endpoint
        .connect_with(quic_config(&config)?, addr, &target.host)
        .map_err(|e| match e {
            quinn::ConnectError::InvalidServerName(name) => {
                TransportError::invalid_url(name, "not a valid TLS server name")
            }
            other => TransportError::ConnectionFailed {
                reason: other.to_string(),
                source: None,
            },
        })?;
    let (conn, zero_rtt) = match connecting.into_0rtt() {
        // Only possible with `zero_rtt` (early data enabled) and a ticket for this server.
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => {
            let conn = connecting
                .await
                .map_err(|e| setup_error(&e, config.transport.dead_peer_timeout))?;
            (conn, None)
        }
    };
    tracing::debug!(%addr, zero_rtt = zero_rtt.is_some(), "QUIC connection up");
    handshake::handshake(endpoint, conn, zero_rtt, &target, config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_configuration_is_built_once_per_settings() {
        let mut config = WtClientConfig::default();
        config.cert_hash([1; 32]);
        let first = rustls_config(&config).unwrap();
        // Clones share it.
        assert!(Arc::ptr_eq(
            &first,
            &rustls_config(&config.clone()).unwrap()
        ));
        assert!(!first.enable_early_data);
        // Changed settings get their own.
        let mut other = config.clone();
        other.cert_hash([2; 32]);
        let second = rustls_config(&other).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        other.zero_rtt = true;
        let third = rustls_config(&other).unwrap();
        assert!(!Arc::ptr_eq(&second, &third));
        assert!(third.enable_early_data);
        // A configuration made separately does not share the cache.
        let mut fresh = WtClientConfig::default();
        fresh.cert_hash([1; 32]);
        assert!(!Arc::ptr_eq(&first, &rustls_config(&fresh).unwrap()));
    }

    #[test]
    fn urls() {
        let t = Target::parse("https://example.com/chat?x=1").unwrap();
        assert_eq!(
            t,
            Target {
                host: "example.com".into(),
                port: 443,
                authority: "example.com".into(),
                path: "/chat?x=1".into()
            }
        );
        let t = Target::parse("https://[::1]:4433").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 4433, "/")
        );
        assert_eq!(t.authority, "[::1]:4433");
        for bad in [
            "http://x/",
            "wss://x/",
            "https:///x",
            "https://u@x/",
            "nonsense",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(TransportError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
