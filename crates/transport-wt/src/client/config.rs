//! [`WtClientConfig`].

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
