//! [`WtClientConfig`].

use std::sync::{Arc, Mutex, PoisonError};

use transport_core::{TransportConfig, TransportError};

/// Settings of a WebTransport client.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WtClientConfig {
    /// Settings shared by every transport. Used here: `connect_timeout` (the whole session
    /// set-up: QUIC and TLS handshakes, SETTINGS, CONNECT), `keepalive_interval` (QUIC PINGs),
    /// `dead_peer_timeout` (the QUIC idle timeout), `close_timeout` (how long
    /// [`close`](crate::WtSession::close) waits for the server to acknowledge the close
    /// capsule), `recv_buffer` (incoming streams queued before the server is held back),
    /// `headers` (sent with the CONNECT, e.g. `authorization`) and `tls`.
    pub transport: TransportConfig,
    /// Pinned SHA-256 hashes of the server certificate, as a browser's
    /// `serverCertificateHashes`. When non-empty, only a certificate whose hash is listed *and*
    /// that is an ECDSA P-256 certificate, currently valid, with a validity period of at most 14
    /// days is accepted; the CA roots in `transport.tls` are not consulted. Default: empty (CA
    /// verification).
    pub cert_hashes: Vec<[u8; 32]>,
    /// The `origin` header of the CONNECT (browsers always send one; servers with an origin
    /// allow-list require it). Default: none.
    pub origin: Option<String>,
    /// The QUIC congestion controller of the connection. Default: CUBIC.
    pub congestion: crate::transport::CongestionControl,
    /// Resume TLS sessions and send 0-RTT data: when an earlier connection made with this
    /// configuration (or a clone of it) left a session ticket for the server, the client's
    /// HTTP/3 SETTINGS go out in the first flight, before the handshake completes, and the
    /// handshake is abbreviated. The CONNECT itself still waits for the server's SETTINGS. If
    /// the server refuses the 0-RTT data, the SETTINGS are sent again; nothing else changes.
    /// 0-RTT data can be replayed by an attacker on the path; SETTINGS are harmless to replay.
    /// [`WtSession::zero_rtt_accepted`](crate::WtSession::zero_rtt_accepted) tells whether it
    /// was used. Default: `false`.
    pub zero_rtt: bool,
    /// The TLS configuration built for these settings, shared by the clones of this
    /// configuration (with `zero_rtt`, its session tickets too).
    pub(crate) sessions: SessionCache,
}

/// The TLS configuration (with its session tickets) built for a client configuration and
/// shared by its clones, so a connect does not build it again; and rustls resumes a session
/// only with the very same certificate verifier, so with 0-RTT it must outlive one connection.
/// It is reused only while the settings it was built from are unchanged. The system roots
/// (CA verification without `only_custom_roots`) are read when it is built.
#[derive(Clone, Default)]
pub(crate) struct SessionCache(Arc<Mutex<Option<BuiltTls>>>);

/// A TLS configuration and the settings it was built from.
type BuiltTls = (TlsKey, Arc<rustls::ClientConfig>);

/// The settings a TLS configuration is built from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsKey {
    hashes: Vec<[u8; 32]>,
    roots: Vec<Vec<u8>>,
    only_custom_roots: bool,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    danger_accept_invalid_certs: bool,
    zero_rtt: bool,
}

impl TlsKey {
    pub(crate) fn of(config: &WtClientConfig) -> Self {
        let tls = &config.transport.tls;
        Self {
            hashes: config.cert_hashes.clone(),
            roots: tls.root_ca_pem.clone(),
            only_custom_roots: tls.only_custom_roots,
            client_cert: tls.client_cert_pem.clone(),
            danger_accept_invalid_certs: tls.danger_accept_invalid_certs,
            zero_rtt: config.zero_rtt,
        }
    }
}

impl SessionCache {
    /// The configuration built for `key`, building (and keeping) it when there is none or the
    /// settings changed.
    pub(crate) fn get_or_build(
        &self,
        key: TlsKey,
        build: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, TransportError>,
    ) -> Result<Arc<rustls::ClientConfig>, TransportError> {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, tls)) = &*cached
            && *k == key
        {
            return Ok(tls.clone());
        }
        let tls = build()?;
        *cached = Some((key, tls.clone()));
        Ok(tls)
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCache")
    }
}

impl WtClientConfig {
    /// Adds a pinned certificate hash (see [`cert_hashes`](Self::cert_hashes)).
    pub fn cert_hash(&mut self, sha256: [u8; 32]) -> &mut Self {
        self.cert_hashes.push(sha256);
        self
    }

    /// Sets the `origin` header.
    pub fn origin(&mut self, origin: impl Into<String>) -> &mut Self {
        self.origin = Some(origin.into());
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.transport.validate()?;
        if let Some(origin) = &self.origin
            && http::HeaderValue::from_str(origin).is_err()
        {
            return Err(TransportError::InvalidConfig(format!(
                "origin {origin:?} is not a valid header value"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut c = WtClientConfig::default();
        c.validate().unwrap();
        assert!(c.cert_hashes.is_empty());
        c.cert_hash([1; 32]).origin("https://app.example");
        c.validate().unwrap();
        c.origin("bad\norigin");
        assert!(matches!(
            c.validate(),
            Err(TransportError::InvalidConfig(_))
        ));
    }
}
