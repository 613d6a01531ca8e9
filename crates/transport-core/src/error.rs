//! The error type shared by every transport.

use std::io;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong with a connection, a send or a receive.
///
/// Every variant says when it happens and whether trying again can help; [`is_retryable`]
/// condenses that for reconnect logic (the adaptive transport and [`ReconnectPolicy`] use it).
///
/// The enum is `Clone` (I/O errors are shared behind an `Arc`) so a driver can hand the same
/// failure to every pending caller, and `PartialEq` so tests can assert exact errors (I/O
/// errors compare by [`io::ErrorKind`]).
///
/// [`is_retryable`]: TransportError::is_retryable
/// [`ReconnectPolicy`]: crate::ReconnectPolicy
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be established: DNS, TCP/QUIC connect, proxy, or a handshake
    /// the server refused. Retryable: the network or the server may come back.
    #[error("connection failed: {reason}")]
    ConnectionFailed {
        /// What failed, in words.
        reason: String,
        /// The underlying I/O error, when there is one.
        #[source]
        source: Option<SharedIoError>,
    },

    /// The server answered the handshake with an HTTP status that means "no" (401, 403, 404, ...).
    /// Retryable only for 408, 429 and 5xx; a client error will not go away by itself.
    #[error("handshake rejected with HTTP status {status}")]
    HandshakeRejected {
        /// The HTTP status code the server answered with.
        status: u16,
    },

    /// Writing to the connection failed after it was established (broken pipe, reset).
    /// Retryable: a new connection may succeed.
    #[error("send failed: {reason}")]
    SendFailed {
        /// What failed, in words.
        reason: String,
        /// The underlying I/O error, when there is one.
        #[source]
        source: Option<SharedIoError>,
    },

    /// The connection broke without a clean close: reset, EOF without a close frame, or the
    /// peer stopped answering keepalives within the dead-peer timeout. Retryable.
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What happened, in words.
        reason: String,
    },

    /// The peer closed the connection with a close code and reason. Retryable when the code says
    /// the condition is temporary (1001 going away, 1011 server error, 1012 restart, 1013 try
    /// again later); not for a normal close (1000) or a policy/protocol complaint.
    #[error("closed by peer with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ClosedByPeer {
        /// The close code the peer sent (1005 when it sent none).
        code: u16,
        /// The reason text the peer sent (may be empty).
        reason: String,
    },

    /// The connection was closed by this side; the handle can no longer be used. Not retryable
    /// on this handle: connect again.
    #[error("connection closed")]
    Closed,

    /// An operation did not complete in time (connect, handshake, close). Retryable.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out, e.g. `"connect"`.
        operation: &'static str,
        /// The limit that ran out.
        after: Duration,
    },

    /// The URL is malformed or uses a scheme this transport does not speak. Not retryable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// A TLS failure: bad certificate, unknown issuer, name mismatch, unreadable PEM. Not
    /// retryable: the same certificate will fail the same way.
    #[error("TLS error: {reason}")]
    Tls {
        /// What failed, in words.
        reason: String,
    },

    /// The peer broke the protocol (bad frame, bad handshake, bad event stream). Not retryable
    /// against the same peer.
    #[error("protocol violation: {reason}")]
    ProtocolViolation {
        /// What the peer did wrong.
        reason: String,
    },

    /// A text payload was not valid UTF-8. Text is never converted lossily. Not retryable.
    #[error("text payload is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the longest valid prefix.
        valid_up_to: usize,
    },

    /// A message (sent or received) is larger than the configured limit. Not retryable: the same
    /// message will be too large again.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The size of the offending message (or a lower bound when it was cut short).
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The transport is not connected (never connected, reconnecting with sends refused, or
    /// failed). Retryable after a (re)connect.
    #[error("not connected")]
    NotConnected,

    /// The operation is not supported by this transport or this peer (e.g. sending over a plain
    /// SSE stream). Not retryable.
    #[error("unsupported operation: {0}")]
    Unsupported(String),

    /// A configuration value is invalid. Not retryable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl TransportError {
    /// Whether trying again (a new attempt, or a reconnect) can reasonably succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ConnectionFailed { .. }
            | Self::SendFailed { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::NotConnected => true,
            Self::HandshakeRejected { status } => {
                *status == 408 || *status == 429 || (500..=599).contains(status)
            }
            Self::ClosedByPeer { code, .. } => close_code_is_retryable(*code),
            Self::Closed
            | Self::InvalidUrl { .. }
            | Self::Tls { .. }
            | Self::ProtocolViolation { .. }
            | Self::InvalidUtf8 { .. }
            | Self::MessageTooLarge { .. }
            | Self::Unsupported(_)
            | Self::InvalidConfig(_) => false,
        }
    }

    /// Whether this error is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// A [`TransportError::ConnectionFailed`] carrying an I/O error.
    pub fn connection_failed(reason: impl Into<String>, source: io::Error) -> Self {
        Self::ConnectionFailed {
            reason: reason.into(),
            source: Some(SharedIoError(Arc::new(source))),
        }
    }

    /// A [`TransportError::SendFailed`] carrying an I/O error.
    pub fn send_failed(reason: impl Into<String>, source: io::Error) -> Self {
        Self::SendFailed {
            reason: reason.into(),
            source: Some(SharedIoError(Arc::new(source))),
        }
    }

    /// A [`TransportError::ProtocolViolation`].
    pub fn protocol(reason: impl Into<String>) -> Self {
        Self::ProtocolViolation {
            reason: reason.into(),
        }
    }

    /// A [`TransportError::ConnectionLost`].
    pub fn lost(reason: impl Into<String>) -> Self {
        Self::ConnectionLost {
            reason: reason.into(),
        }
    }

    /// A [`TransportError::Tls`].
    pub fn tls(reason: impl Into<String>) -> Self {
        Self::Tls {
            reason: reason.into(),
        }
    }

    /// A [`TransportError::InvalidUrl`].
    pub fn invalid_url(url: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidUrl {
            url: url.into(),
            reason: reason.into(),
        }
    }
}

/// Whether a WebSocket-style close code means "try again later" rather than "go away".
pub fn close_code_is_retryable(code: u16) -> bool {
    matches!(code, 1001 | 1006 | 1011 | 1012 | 1013 | 1014)
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        use TransportError as E;
        match (self, other) {
            (
                E::ConnectionFailed {
                    reason: a,
                    source: sa,
                },
                E::ConnectionFailed {
                    reason: b,
                    source: sb,
                },
            )
            | (
                E::SendFailed {
                    reason: a,
                    source: sa,
                },
                E::SendFailed {
                    reason: b,
                    source: sb,
                },
            ) => a == b && sa == sb,
            (E::HandshakeRejected { status: a }, E::HandshakeRejected { status: b }) => a == b,
            (E::ConnectionLost { reason: a }, E::ConnectionLost { reason: b })
            | (E::Tls { reason: a }, E::Tls { reason: b })
            | (E::ProtocolViolation { reason: a }, E::ProtocolViolation { reason: b })
            | (E::Unsupported(a), E::Unsupported(b))
            | (E::InvalidConfig(a), E::InvalidConfig(b)) => a == b,
            (
                E::ClosedByPeer {
                    code: a,
                    reason: ra,
                },
                E::ClosedByPeer {
                    code: b,
                    reason: rb,
                },
            ) => a == b && ra == rb,
            (E::Closed, E::Closed) | (E::NotConnected, E::NotConnected) => true,
            (
                E::Timeout {
                    operation: a,
                    after: ta,
                },
                E::Timeout {
                    operation: b,
                    after: tb,
                },
            ) => a == b && ta == tb,
            (E::InvalidUrl { url: a, reason: ra }, E::InvalidUrl { url: b, reason: rb }) => {
                a == b && ra == rb
            }
            (E::InvalidUtf8 { valid_up_to: a }, E::InvalidUtf8 { valid_up_to: b }) => a == b,
            (
                E::MessageTooLarge { size: a, limit: la },
                E::MessageTooLarge { size: b, limit: lb },
            ) => a == b && la == lb,
            _ => false,
        }
    }
}

/// An [`io::Error`] shared behind an `Arc`, so [`TransportError`] can be cloned.
///
/// Two shared errors compare equal when their [`io::ErrorKind`]s are equal.
#[derive(Debug, Clone)]
pub struct SharedIoError(pub Arc<io::Error>);

impl SharedIoError {
    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind()
    }
}

impl PartialEq for SharedIoError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
    }
}

impl std::fmt::Display for SharedIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        assert!(TransportError::lost("reset").is_retryable());
        assert!(
            TransportError::Timeout {
                operation: "connect",
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(TransportError::HandshakeRejected { status: 503 }.is_retryable());
        assert!(TransportError::HandshakeRejected { status: 429 }.is_retryable());
        assert!(!TransportError::HandshakeRejected { status: 401 }.is_retryable());
        assert!(!TransportError::tls("bad cert").is_retryable());
        assert!(!TransportError::invalid_url("x", "no scheme").is_retryable());
        assert!(!TransportError::MessageTooLarge { size: 10, limit: 5 }.is_retryable());
        let closed = |code| TransportError::ClosedByPeer {
            code,
            reason: String::new(),
        };
        assert!(closed(1001).is_retryable());
        assert!(closed(1012).is_retryable());
        assert!(!closed(1000).is_retryable());
        assert!(!closed(1008).is_retryable());
        assert!(!closed(1007).is_retryable());
    }

    #[test]
    fn io_errors_compare_by_kind() {
        let a = TransportError::connection_failed(
            "x",
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        let b = TransportError::connection_failed("x", io::Error::other("refused"));
        let c = TransportError::connection_failed(
            "x",
            io::Error::new(io::ErrorKind::ConnectionRefused, "other text"),
        );
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn display_mentions_code_and_reason() {
        let e = TransportError::ClosedByPeer {
            code: 1008,
            reason: "policy".into(),
        };
        assert_eq!(e.to_string(), "closed by peer with code 1008: policy");
    }
}
