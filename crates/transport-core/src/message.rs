//! Messages: text or binary payloads carried as [`Bytes`], zero-copy end to end.

use bytes::Bytes;
use bytestring::ByteString;

use crate::TransportError;

/// The kind of a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// UTF-8 text. The payload is guaranteed to be valid UTF-8.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// Extra information some transports attach to a message (the SSE event type and id).
///
/// WebSocket and WebTransport messages carry none; it costs one pointer per message when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MessageMetadata {
    /// The SSE event type (`event:` field); `None` means the default type, `message`.
    pub event: Option<String>,
    /// The SSE last event id in force when this event was dispatched.
    pub id: Option<String>,
}

impl MessageMetadata {
    /// Metadata with an event type and an id.
    pub fn new(event: Option<String>, id: Option<String>) -> Self {
        Self { event, id }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Payload {
    Text(ByteString),
    Binary(Bytes),
}

/// One message: text (valid UTF-8, checked on construction) or binary.
///
/// The payload is a [`Bytes`]: cloning a message or handing it from a socket to the
/// application never copies the data.
///
/// ```
/// use transport_core::{Message, MessageType};
///
/// let m = Message::text("hello");
/// assert_eq!(m.kind(), MessageType::Text);
/// assert_eq!(m.as_text(), Some("hello"));
///
/// // Invalid UTF-8 is an error, never a lossy conversion.
/// assert!(Message::text_from_bytes(vec![0xff, 0xfe]).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    payload: Payload,
    metadata: Option<Box<MessageMetadata>>,
}

impl Message {
    /// A text message from anything that becomes a `String` (no copy for an owned `String`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::from_payload(Payload::Text(ByteString::from(text.into())))
    }

    /// A text message from a `'static` string, without allocating.
    pub fn text_static(text: &'static str) -> Self {
        Self::from_payload(Payload::Text(ByteString::from_static(text)))
    }

    /// A text message from bytes that must be valid UTF-8.
    ///
    /// # Errors
    /// [`TransportError::InvalidUtf8`] when they are not; nothing is replaced or dropped.
    pub fn text_from_bytes(bytes: impl Into<Bytes>) -> Result<Self, TransportError> {
        ByteString::try_from(bytes.into())
            .map(|s| Self::from_payload(Payload::Text(s)))
            .map_err(|e| TransportError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            })
    }

    /// A text message from an already validated [`ByteString`].
    pub fn from_byte_string(text: ByteString) -> Self {
        Self::from_payload(Payload::Text(text))
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::from_payload(Payload::Binary(bytes.into()))
    }

    fn from_payload(payload: Payload) -> Self {
        Self {
            payload,
            metadata: None,
        }
    }

    /// Attaches metadata (used by the SSE transport for event type and id).
    #[must_use]
    pub fn with_metadata(mut self, metadata: MessageMetadata) -> Self {
        self.metadata = Some(Box::new(metadata));
        self
    }

    /// The metadata, when the transport attached some.
    pub fn metadata(&self) -> Option<&MessageMetadata> {
        self.metadata.as_deref()
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageType {
        match self.payload {
            Payload::Text(_) => MessageType::Text,
            Payload::Binary(_) => MessageType::Binary,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self.payload, Payload::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self.payload, Payload::Binary(_))
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match &self.payload {
            Payload::Text(s) => Some(s),
            Payload::Binary(_) => None,
        }
    }

    /// The text as a [`ByteString`] (cheap clone), for a text message.
    pub fn as_byte_string(&self) -> Option<&ByteString> {
        match &self.payload {
            Payload::Text(s) => Some(s),
            Payload::Binary(_) => None,
        }
    }

    /// The payload bytes (the UTF-8 encoding for text).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.payload {
            Payload::Text(s) => s.as_bytes(),
            Payload::Binary(b) => b,
        }
    }

    /// The payload as [`Bytes`] (a cheap clone, no copy).
    pub fn payload(&self) -> Bytes {
        match &self.payload {
            Payload::Text(s) => s.as_bytes().clone(),
            Payload::Binary(b) => b.clone(),
        }
    }

    /// Consumes the message and returns its payload.
    pub fn into_payload(self) -> Bytes {
        match self.payload {
            Payload::Text(s) => s.into_bytes(),
            Payload::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 64;
        let mut d = f.debug_struct("Message");
        match &self.payload {
            Payload::Text(s) => {
                let cut = s.char_indices().nth(SHOW).map_or(s.len(), |(i, _)| i);
                d.field("text", &&s[..cut]);
            }
            Payload::Binary(b) => {
                d.field("binary", &&b[..b.len().min(SHOW)]);
            }
        }
        d.field("len", &self.len());
        if let Some(m) = &self.metadata {
            d.field("metadata", m);
        }
        d.finish()
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::binary(b)
    }
}

/// A close code and reason, as sent in a WebSocket close frame (and mapped onto the other
/// transports' close mechanisms).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// The close code (1000 = normal closure).
    pub code: u16,
    /// A short human-readable reason (at most 123 bytes on WebSocket).
    pub reason: String,
}

impl CloseFrame {
    /// Normal closure (1000).
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown, page navigation): 1001.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: 1002.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Unsupported data type: 1003.
    pub const UNSUPPORTED: u16 = 1003;
    /// No status code was present (never sent on the wire): 1005.
    pub const NO_STATUS: u16 = 1005;
    /// Closed abnormally without a close frame (never sent on the wire): 1006.
    pub const ABNORMAL: u16 = 1006;
    /// Invalid payload data, e.g. non-UTF-8 text: 1007.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: 1008.
    pub const POLICY: u16 = 1008;
    /// Message too big: 1009.
    pub const TOO_BIG: u16 = 1009;
    /// Internal server error: 1011.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Service restart: 1012.
    pub const RESTART: u16 = 1012;
    /// Try again later: 1013.
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// A close frame with a code and a reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// A normal closure with no reason.
    pub fn normal() -> Self {
        Self::new(Self::NORMAL, "")
    }

    /// What a peer's close with this frame means for the connection: a clean end with 1000
    /// or no code (`None`), otherwise [`TransportError::ClosedByPeer`] with its code and reason.
    pub fn peer_error(&self) -> Option<TransportError> {
        (!matches!(self.code, Self::NORMAL | Self::NO_STATUS)).then(|| {
            TransportError::ClosedByPeer {
                code: self.code,
                reason: self.reason.clone(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip_is_zero_copy() {
        let b = Bytes::from_static("héllo".as_bytes());
        let m = Message::text_from_bytes(b.clone()).unwrap();
        assert_eq!(m.as_text(), Some("héllo"));
        assert_eq!(m.payload().as_ptr(), b.as_ptr());
    }

    #[test]
    fn invalid_utf8_is_rejected_with_position() {
        let err = Message::text_from_bytes(vec![b'o', b'k', 0xc3]).unwrap_err();
        assert_eq!(err, TransportError::InvalidUtf8 { valid_up_to: 2 });
        let err = Message::text_from_bytes(vec![0xed, 0xa0, 0x80]).unwrap_err();
        assert_eq!(err, TransportError::InvalidUtf8 { valid_up_to: 0 });
    }

    #[test]
    fn kinds_and_accessors() {
        let t = Message::text_static("x");
        assert!(t.is_text() && !t.is_binary());
        let b = Message::binary(vec![1, 2, 3]);
        assert_eq!(b.kind(), MessageType::Binary);
        assert_eq!(b.as_text(), None);
        assert_eq!(b.as_bytes(), &[1, 2, 3]);
        assert_eq!(b.len(), 3);
        assert!(Message::binary(Bytes::new()).is_empty());
    }

    #[test]
    fn metadata_is_optional() {
        let m = Message::text("data");
        assert!(m.metadata().is_none());
        let m = m.with_metadata(MessageMetadata::new(Some("tick".into()), Some("7".into())));
        assert_eq!(m.metadata().and_then(|m| m.event.as_deref()), Some("tick"));
    }

    #[test]
    fn debug_truncates_long_payloads() {
        let long = "é".repeat(1000);
        let s = format!("{:?}", Message::text(long));
        assert!(s.len() < 300, "{s}");
    }
}
