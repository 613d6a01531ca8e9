//! Configuration shared by every transport.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{ReconnectPolicy, TransportError};

/// Settings every transport understands. Each protocol crate wraps it in its own config with the
/// protocol-specific knobs.
///
/// Defaults are chosen so that an idle connection costs little and a misbehaving peer cannot
/// make memory grow without bound: every buffer is bounded, every wait has a deadline.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Deadline for one connection attempt, handshakes included. Default: 10 s.
    pub connect_timeout: Duration,
    /// Largest message accepted or sent, in bytes. Larger incoming messages fail the connection
    /// with a typed error (WebSocket close 1009); larger outgoing ones are refused by `send`.
    /// Default: 16 MiB.
    pub max_message_size: usize,
    /// Messages queued from the application to the connection before `send` waits
    /// (backpressure). Default: 64.
    pub send_buffer: usize,
    /// Messages received and not yet taken by the application before the transport stops
    /// reading the socket (backpressure to the peer). Default: 64.
    pub recv_buffer: usize,
    /// Interval between keepalive pings; `None` disables them. Default: 20 s.
    pub keepalive_interval: Option<Duration>,
    /// A peer that sends nothing (no data, no pong) for this long while we are reading is
    /// considered dead and the connection is dropped (then reconnected, if enabled).
    /// Default: 30 s. Must exceed `keepalive_interval`.
    pub dead_peer_timeout: Duration,
    /// How long a graceful close waits for the peer's answer before dropping the connection.
    /// Default: 5 s.
    pub close_timeout: Duration,
    /// Extra headers for the handshake request (e.g. `Authorization`).
    pub headers: HeaderMap,
    /// TLS settings for `wss://` / `https://`.
    pub tls: TlsOptions,
    /// What to do when an established connection drops.
    pub reconnect: ReconnectPolicy,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
            send_buffer: 64,
            recv_buffer: 64,
            keepalive_interval: Some(Duration::from_secs(20)),
            dead_peer_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            headers: HeaderMap::new(),
            tls: TlsOptions::default(),
            reconnect: ReconnectPolicy::default(),
        }
    }
}

impl TransportConfig {
    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(&mut self, bytes: usize) -> &mut Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`send_buffer`](Self::send_buffer) and [`recv_buffer`](Self::recv_buffer).
    pub fn buffers(&mut self, send: usize, recv: usize) -> &mut Self {
        self.send_buffer = send;
        self.recv_buffer = recv;
        self
    }

    /// Sets the keepalive interval and the dead-peer timeout.
    pub fn keepalive(
        &mut self,
        interval: Option<Duration>,
        dead_peer_timeout: Duration,
    ) -> &mut Self {
        self.keepalive_interval = interval;
        self.dead_peer_timeout = dead_peer_timeout;
        self
    }

    /// Sets [`reconnect`](Self::reconnect).
    pub fn reconnect(&mut self, policy: ReconnectPolicy) -> &mut Self {
        self.reconnect = policy;
        self
    }

    /// Adds a handshake header, e.g. `("Authorization", "Bearer ...")`.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] when the name or value is not a valid HTTP header.
    pub fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, TransportError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| TransportError::InvalidConfig(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| TransportError::InvalidConfig(format!("header value for {name}: {e}")))?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Checks that the values make sense together.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |what: &str| Err(TransportError::InvalidConfig(what.to_owned()));
        if self.send_buffer == 0 || self.recv_buffer == 0 {
            return bad("send_buffer and recv_buffer must be at least 1");
        }
        if self.max_message_size == 0 {
            return bad("max_message_size must be at least 1");
        }
        if self.connect_timeout.is_zero() || self.close_timeout.is_zero() {
            return bad("connect_timeout and close_timeout must be non-zero");
        }
        if let Some(interval) = self.keepalive_interval {
            if interval.is_zero() {
                return bad("keepalive_interval must be non-zero (use None to disable)");
            }
            if self.dead_peer_timeout <= interval {
                return bad("dead_peer_timeout must exceed keepalive_interval");
            }
        }
        self.reconnect.validate()
    }
}

/// TLS client options. Verification against the system's root certificates is the default;
/// it can only be turned off through the explicitly named
/// [`danger_accept_invalid_certs`](Self::danger_accept_invalid_certs).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra trusted root certificates, PEM (one or more certificates per entry). When any are
    /// given, they are trusted in addition to the system roots.
    pub root_ca_pem: Vec<Vec<u8>>,
    /// Trust only `root_ca_pem`, not the system roots. Default: `false`.
    pub only_custom_roots: bool,
    /// Client certificate chain and private key, both PEM, for mutual TLS.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any server certificate. **Dangerous**: anyone on the path can impersonate the
    /// server. For tests against self-signed certificates only. Default: `false`.
    pub danger_accept_invalid_certs: bool,
}

impl TlsOptions {
    /// Adds a trusted root CA (PEM).
    pub fn add_root_ca_pem(&mut self, pem: impl Into<Vec<u8>>) -> &mut Self {
        self.root_ca_pem.push(pem.into());
        self
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("root_ca_pem", &self.root_ca_pem.len())
            .field("only_custom_roots", &self.only_custom_roots)
            .field("client_cert", &self.client_cert_pem.is_some())
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounded() {
        let c = TransportConfig::default();
        c.validate().unwrap();
        assert!(c.send_buffer > 0 && c.send_buffer <= 1024);
        assert!(!c.tls.danger_accept_invalid_certs);
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = TransportConfig::default();
        c.buffers(0, 1);
        assert!(
            matches!(c.validate(), Err(TransportError::InvalidConfig(m)) if m.contains("send_buffer"))
        );
        let mut c = TransportConfig::default();
        c.keepalive(Some(Duration::from_secs(5)), Duration::from_secs(5));
        assert!(c.validate().is_err());
        let mut c = TransportConfig::default();
        c.keepalive(None, Duration::from_secs(1));
        c.validate().unwrap();
    }

    #[test]
    fn headers_are_checked() {
        let mut c = TransportConfig::default();
        c.header("Authorization", "Bearer x").unwrap();
        assert!(c.header("bad header", "x").is_err());
        assert!(c.header("X-Ok", "line\nbreak").is_err());
        assert_eq!(c.headers.len(), 1);
    }
}
