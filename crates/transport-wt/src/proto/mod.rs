//! The HTTP/3 and WebTransport framing the client needs, sans-IO: bytes in, values out.
//!
//! Nothing here touches a socket or a clock. Decoders take a byte slice and return
//! `Ok(None)` when the input is a valid prefix that needs more bytes ("need more"), `Ok(Some((value,
//! consumed)))` when a whole item was read, and a typed [`ProtoError`] when the peer broke the
//! protocol. Every length read from the wire is checked against a limit *before* anything is
//! allocated for it.
//!
//! | module | covers |
//! |---|---|
//! | [`varint`] | QUIC variable-length integers (RFC 9000 §16) |
//! | [`frame`] | HTTP/3 frames (RFC 9114 §7): DATA, HEADERS, SETTINGS, GOAWAY; others skipped |
//! | [`settings`] | the SETTINGS payload and the identifiers WebTransport needs |
//! | [`qpack`] | QPACK field sections with the static table only (RFC 9204) |
//! | [`huffman`] | the HPACK/QPACK Huffman code (RFC 7541 Appendix B) |
//! | [`capsule`] | the capsule protocol (RFC 9297) and WebTransport's close/drain capsules |
//! | [`stream`] | stream types and WebTransport stream headers, error-code mapping |
//! | [`datagram`] | the quarter-stream-id prefix of HTTP datagrams (RFC 9297 §2.1) |

pub mod capsule;
pub mod datagram;
pub mod frame;
pub mod huffman;
pub mod qpack;
pub mod settings;
pub mod stream;
pub mod varint;

use transport_core::TransportError;

/// The result of decoding one item from the front of a buffer: `Ok(None)` means the buffer holds
/// a valid but incomplete prefix (read more and try again); `Ok(Some((item, n)))` means `item` was
/// read from the first `n` bytes.
pub type Decoded<T> = Result<Option<(T, usize)>, ProtoError>;

/// A violation of HTTP/3, QPACK, the capsule protocol or WebTransport by the peer (or an attempt to
/// encode something unrepresentable). Not retryable against the same peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A value does not fit a QUIC varint (at most 2^62 - 1). Raised when encoding.
    #[error("value {0} does not fit a QUIC variable-length integer")]
    VarintOverflow(u64),
    /// An item whose encoding must be complete (a frame payload, a datagram) ended early.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length read from the wire exceeds the configured limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// An HTTP/2 frame type that HTTP/3 reserves (RFC 9114 §7.2.8): H3_FRAME_UNEXPECTED.
    #[error("reserved HTTP/2 frame type {0:#x} received")]
    ReservedFrameType(u64),
    /// A frame's payload does not parse (e.g. trailing bytes in GOAWAY): H3_FRAME_ERROR.
    #[error("malformed {0} frame")]
    MalformedFrame(&'static str),
    /// A setting identifier appeared twice (RFC 9114 §7.2.4): H3_SETTINGS_ERROR.
    #[error("setting {0:#x} repeated")]
    DuplicateSetting(u64),
    /// An HTTP/2 setting identifier HTTP/3 reserves (RFC 9114 §7.2.4.1): H3_SETTINGS_ERROR.
    #[error("reserved HTTP/2 setting {0:#x} received")]
    ReservedSetting(u64),
    /// More settings than this decoder keeps.
    #[error("more than {0} settings")]
    TooManySettings(usize),
    /// A QPACK prefixed integer does not fit 62 bits.
    #[error("QPACK integer overflow")]
    QpackIntegerOverflow,
    /// A field section refers to the dynamic table, which this endpoint disabled (capacity 0):
    /// QPACK_DECOMPRESSION_FAILED.
    #[error("QPACK field section refers to the dynamic table, which is disabled")]
    QpackDynamicReference,
    /// A static table index past its 99 entries: QPACK_DECOMPRESSION_FAILED.
    #[error("QPACK static table index {0} out of range")]
    QpackStaticIndex(u64),
    /// A Huffman-coded string is invalid (EOS symbol, padding longer than 7 bits or not all ones).
    #[error("invalid Huffman-coded string")]
    Huffman,
    /// A decoded field name is not a valid lower-case HTTP field name, or a value holds a
    /// forbidden byte.
    #[error("invalid header field {0:?}")]
    InvalidField(String),
    /// A required header (e.g. `:status`) is missing or invalid.
    #[error("invalid or missing {0}")]
    BadHeader(&'static str),
    /// A capsule that must carry a particular payload does not (e.g. CLOSE_WEBTRANSPORT_SESSION
    /// shorter than 4 bytes, or a reason that is not UTF-8).
    #[error("malformed {0} capsule")]
    MalformedCapsule(&'static str),
    /// A WebTransport session id that is not a client-initiated bidirectional stream id.
    #[error("invalid WebTransport session id {0}")]
    InvalidSessionId(u64),
}

impl From<ProtoError> for TransportError {
    fn from(e: ProtoError) -> Self {
        TransportError::protocol(e.to_string())
    }
}
