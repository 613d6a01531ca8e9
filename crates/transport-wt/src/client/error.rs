//! quinn's errors mapped onto [`TransportError`].

use quinn::{ConnectionError, ReadError, WriteError};
use transport_core::TransportError;

/// HTTP/3 error codes (RFC 9114 §8.1) this client sends or names.
pub(crate) mod h3_code {
    pub(crate) const NO_ERROR: u32 = 0x100;
    pub(crate) const GENERAL_PROTOCOL_ERROR: u32 = 0x101;
    pub(crate) const STREAM_CREATION_ERROR: u32 = 0x103;
    pub(crate) const CLOSED_CRITICAL_STREAM: u32 = 0x104;
    pub(crate) const FRAME_UNEXPECTED: u32 = 0x105;
    pub(crate) const FRAME_ERROR: u32 = 0x106;
    pub(crate) const ID_ERROR: u32 = 0x108;
    pub(crate) const SETTINGS_ERROR: u32 = 0x109;
    pub(crate) const MISSING_SETTINGS: u32 = 0x10a;
    pub(crate) const REQUEST_CANCELLED: u32 = 0x10c;

    /// The name of an HTTP/3 or QPACK error code, for messages.
    pub(crate) fn name(code: u64) -> &'static str {
        match code {
            0x100 => "H3_NO_ERROR",
            0x101 => "H3_GENERAL_PROTOCOL_ERROR",
            0x102 => "H3_INTERNAL_ERROR",
            0x103 => "H3_STREAM_CREATION_ERROR",
            0x104 => "H3_CLOSED_CRITICAL_STREAM",
            0x105 => "H3_FRAME_UNEXPECTED",
            0x106 => "H3_FRAME_ERROR",
            0x107 => "H3_EXCESSIVE_LOAD",
            0x108 => "H3_ID_ERROR",
            0x109 => "H3_SETTINGS_ERROR",
            0x10a => "H3_MISSING_SETTINGS",
            0x10b => "H3_REQUEST_REJECTED",
            0x10c => "H3_REQUEST_CANCELLED",
            0x10d => "H3_REQUEST_INCOMPLETE",
            0x10e => "H3_MESSAGE_ERROR",
            0x10f => "H3_CONNECT_ERROR",
            0x110 => "H3_VERSION_FALLBACK",
            0x200 => "QPACK_DECOMPRESSION_FAILED",
            0x201 => "QPACK_ENCODER_STREAM_ERROR",
            0x202 => "QPACK_DECODER_STREAM_ERROR",
            0x33 => "H3_DATAGRAM_ERROR",
            _ => "application error",
        }
    }
}

/// Whether a QUIC transport error code is a TLS alert (CRYPTO_ERROR, RFC 9001 §4.8).
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// A connection error while the session is being set up: a timeout is the set-up's timeout,
/// TLS failures are [`TransportError::Tls`], the rest [`TransportError::ConnectionFailed`].
pub(crate) fn setup_error(e: &ConnectionError, after: std::time::Duration) -> TransportError {
    match e {
        ConnectionError::TimedOut => TransportError::Timeout {
            operation: "QUIC handshake",
            after,
        },
        ConnectionError::TransportError(t) if is_crypto(t.code) => {
            TransportError::tls(t.to_string())
        }
        ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
            TransportError::tls(format!("server refused the TLS handshake: {c}"))
        }
        other => TransportError::ConnectionFailed {
            reason: describe(other),
            source: None,
        },
    }
}

/// A connection error once the session is up.
pub(crate) fn connection_error(e: &ConnectionError) -> TransportError {
    match e {
        ConnectionError::LocallyClosed => TransportError::Closed,
        ConnectionError::TimedOut => {
            TransportError::lost("idle timeout: nothing heard from the server")
        }
        ConnectionError::TransportError(t) if is_crypto(t.code) => {
            TransportError::tls(t.to_string())
        }
        ConnectionError::ApplicationClosed(c) => TransportError::ClosedByPeer {
            code: u16::try_from(c.error_code.into_inner()).unwrap_or(u16::MAX),
            reason: crate::client::reason_text(&c.reason),
        },
        other => TransportError::lost(describe(other)),
    }
}

fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(c) => {
            let code = c.error_code.into_inner();
            format!(
                "server closed the connection with {} ({code:#x}): {}",
                h3_code::name(code),
                crate::client::reason_text(&c.reason)
            )
        }
        other => other.to_string(),
    }
}

/// A stream read error.
pub(crate) fn read_error(e: &ReadError) -> TransportError {
    match e {
        ReadError::Reset(code) => {
            let code = code.into_inner();
            TransportError::lost(format!(
                "server reset the stream with {} ({code:#x})",
                h3_code::name(code)
            ))
        }
        ReadError::ConnectionLost(c) => connection_error(c),
        other => TransportError::lost(other.to_string()),
    }
}

/// A stream write error.
pub(crate) fn write_error(e: &WriteError) -> TransportError {
    match e {
        WriteError::Stopped(code) => {
            let code = code.into_inner();
            TransportError::SendFailed {
                reason: format!(
                    "server stopped the stream with {} ({code:#x})",
                    h3_code::name(code)
                ),
                source: None,
            }
        }
        WriteError::ConnectionLost(c) => connection_error(c),
        other => TransportError::SendFailed {
            reason: other.to_string(),
            source: None,
        },
    }
}
