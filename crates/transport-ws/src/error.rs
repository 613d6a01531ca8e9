//! Mapping tungstenite's errors onto [`TransportError`].

use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use transport_core::{CloseFrame, TransportError};

/// What a read error means for the link.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The close handshake is over; the stream ended as it should.
    Closed,
    /// The connection broke (I/O error, reset without a close frame).
    Lost(TransportError),
    /// The peer broke the protocol; fail the connection with this close code.
    Violation(TransportError, u16),
}

pub(crate) fn classify(e: WsError) -> ReadFailure {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => ReadFailure::Closed,
        WsError::Io(io) => ReadFailure::Lost(TransportError::lost(io.to_string())),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ReadFailure::Lost(
            TransportError::lost("connection reset without a close frame"),
        ),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            ReadFailure::Violation(
                TransportError::MessageTooLarge {
                    size,
                    limit: max_size,
                },
                CloseFrame::TOO_BIG,
            )
        }
        WsError::Utf8(detail) => ReadFailure::Violation(
            TransportError::protocol(format!("invalid UTF-8 in a text message: {detail}")),
            CloseFrame::INVALID_PAYLOAD,
        ),
        other => ReadFailure::Violation(
            TransportError::protocol(other.to_string()),
            CloseFrame::PROTOCOL_ERROR,
        ),
    }
}

/// Maps a handshake (connect) error.
pub(crate) fn handshake_error(e: WsError) -> TransportError {
    match e {
        WsError::Http(response) => TransportError::HandshakeRejected {
            status: response.status().as_u16(),
        },
        WsError::Io(io) => TransportError::connection_failed("WebSocket handshake", io),
        WsError::Url(u) => TransportError::invalid_url("", u.to_string()),
        WsError::Protocol(p) => TransportError::protocol(format!("handshake: {p}")),
        other => TransportError::ConnectionFailed {
            reason: format!("WebSocket handshake: {other}"),
            source: None,
        },
    }
}
