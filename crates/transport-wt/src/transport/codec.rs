//! The message framing, sans-IO: bytes in, [`Frame`]s out, no I/O.
//!
//! ```text
//! message: type (1 byte: 0x01 text, 0x02 binary) | length (QUIC varint) | payload
//! close:   0x03 | code (u16, big-endian) | reason length (QUIC varint) | reason (UTF-8)
//! ```
//!
//! The same framing runs on the message stream (a sequence of frames), on each unidirectional
//! stream (exactly one message) and in each datagram (exactly one message).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use transport_core::{CloseFrame, Message, TransportError};

use crate::proto::varint;

/// Frame type of a text message.
pub const TYPE_TEXT: u8 = 0x01;
/// Frame type of a binary message.
pub const TYPE_BINARY: u8 = 0x02;
/// Frame type of a close.
pub const TYPE_CLOSE: u8 = 0x03;
/// Payloads up to this size are copied out of the read buffer; longer ones are split off it
/// (no copy).
const COPY_MAX: usize = 4 * 1024;
/// Longest close reason accepted (as a WebSocket close frame: 123 bytes).
pub const MAX_CLOSE_REASON: usize = 123;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text or binary message.
    Message(Message),
    /// The peer closes with this code and reason.
    Close(CloseFrame),
}

/// The header (type and length) of a message.
pub fn message_header(message: &Message, buf: &mut impl BufMut) {
    buf.put_u8(if message.is_text() {
        TYPE_TEXT
    } else {
        TYPE_BINARY
    });
    varint::put_len(message.len(), buf);
}

/// A whole message frame, header and payload.
pub fn encode_message(message: &Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(message.len() + 9);
    message_header(message, &mut buf);
    buf.put_slice(message.as_bytes());
    buf.freeze()
}

/// A close frame; the reason is cut to [`MAX_CLOSE_REASON`] bytes at a character boundary.
pub fn encode_close(frame: &CloseFrame) -> Bytes {
    let mut cut = frame.reason.len().min(MAX_CLOSE_REASON);
    while !frame.reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &frame.reason.as_bytes()[..cut];
    let mut buf = BytesMut::with_capacity(reason.len() + 4);
    buf.put_u8(TYPE_CLOSE);
    buf.put_u16(frame.code);
    varint::put_len(reason.len(), &mut buf);
    buf.put_slice(reason);
    buf.freeze()
}

/// The close code that tells the peer why a frame was refused.
pub fn close_code_for(error: &TransportError) -> u16 {
    match error {
        TransportError::MessageTooLarge { .. } => CloseFrame::TOO_BIG,
        TransportError::InvalidUtf8 { .. } => CloseFrame::INVALID_PAYLOAD,
        _ => CloseFrame::PROTOCOL_ERROR,
    }
}

fn varint_at(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    varint::decode(buf.get(at..)?)
}

fn length(value: u64, max: usize) -> Result<usize, TransportError> {
    match usize::try_from(value) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(TransportError::MessageTooLarge {
            size: usize::try_from(value).unwrap_or(usize::MAX),
            limit: max,
        }),
    }
}

/// Takes one frame from the front of `buf`: `Ok(None)` when more bytes are needed (nothing is
/// consumed then). A message longer than `max` fails as soon as its header is read, before its
/// payload is buffered.
///
/// # Errors
/// [`TransportError::MessageTooLarge`], [`TransportError::InvalidUtf8`] for a text message or a
/// close reason that is not UTF-8, [`TransportError::ProtocolViolation`] for an unknown type or
/// an over-long close reason.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, TransportError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        TYPE_TEXT | TYPE_BINARY => {
            let Some((len, n)) = varint_at(buf, 1) else {
                return Ok(None);
            };
            let len = length(len, max)?;
            if buf.len() < 1 + n + len {
                return Ok(None);
            }
            buf.advance(1 + n);
            let payload = if len <= COPY_MAX {
                // A copy of its own: splitting it off would make the buffer shared (an
                // allocation), so that the next read needs a new buffer (another), and the
                // message would keep the whole buffer alive.
                let payload = Bytes::copy_from_slice(&buf[..len]);
                buf.advance(len);
                payload
            } else {
                buf.split_to(len).freeze()
            };
            let message = if kind == TYPE_TEXT {
                Message::text_from_bytes(payload)?
            } else {
                Message::binary(payload)
            };
            Ok(Some(Frame::Message(message)))
        }
        TYPE_CLOSE => {
            if buf.len() < 3 {
                return Ok(None);
            }
            let code = u16::from_be_bytes([buf[1], buf[2]]);
            let Some((len, n)) = varint_at(buf, 3) else {
                return Ok(None);
            };
            let len = match usize::try_from(len) {
                Ok(len) if len <= MAX_CLOSE_REASON => len,
                _ => {
                    return Err(TransportError::protocol(format!(
                        "close reason of {len} bytes (at most {MAX_CLOSE_REASON})"
                    )));
                }
            };
            if buf.len() < 3 + n + len {
                return Ok(None);
            }
            buf.advance(3 + n);
            let reason = buf.split_to(len);
            let reason = std::str::from_utf8(&reason).map_err(|e| TransportError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            })?;
            Ok(Some(Frame::Close(CloseFrame::new(code, reason))))
        }
        other => Err(TransportError::protocol(format!(
            "unknown frame type {other:#04x}"
        ))),
    }
}

/// How many bytes the message frame at the front of `buf` still lacks, once its header is
/// complete and its length within `max`; `None` otherwise (no header yet, a close frame, or a
/// length [`decode`] refuses). Lets a reader reserve room for the whole frame at once instead
/// of growing (and copying) its buffer read by read.
pub fn missing(buf: &[u8], max: usize) -> Option<usize> {
    match buf.first() {
        Some(&(TYPE_TEXT | TYPE_BINARY)) => {
            let (len, n) = varint_at(buf, 1)?;
            let len = length(len, max).ok()?;
            Some((1 + n + len).saturating_sub(buf.len()))
        }
        _ => None,
    }
}

/// Decodes a unit that holds exactly one message (a unidirectional stream, a datagram).
///
/// # Errors
/// As [`decode`], and [`TransportError::ProtocolViolation`] for a truncated frame, trailing
/// bytes or a close frame.
pub fn decode_single(bytes: &[u8], max: usize) -> Result<Message, TransportError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, max)? {
        Some(Frame::Message(m)) if buf.is_empty() => Ok(m),
        Some(Frame::Message(_)) => Err(TransportError::protocol(
            "bytes after the message of a single-message stream or datagram",
        )),
        Some(Frame::Close(_)) => Err(TransportError::protocol(
            "a close frame outside the message stream",
        )),
        None => Err(TransportError::protocol("truncated message frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8], max: usize) -> Result<Vec<Frame>, TransportError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // One byte at a time: every prefix must be "need more", never an error or a wrong frame.
        for b in bytes {
            buf.put_u8(*b);
            while let Some(f) = decode(&mut buf, max)? {
                out.push(f);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    #[test]
    fn round_trips_in_any_chunking() {
        let big = Message::binary(vec![7u8; 20_000]);
        let frames = [
            Frame::Message(Message::text("héllo")),
            Frame::Message(Message::binary(vec![0, 1, 2])),
            Frame::Message(Message::text("")),
            Frame::Message(big.clone()),
            Frame::Close(CloseFrame::new(4000, "bye")),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            match f {
                Frame::Message(m) => wire.extend_from_slice(&encode_message(m)),
                Frame::Close(c) => wire.extend_from_slice(&encode_close(c)),
            }
        }
        assert_eq!(all(&wire, 1 << 20).unwrap(), frames);
        assert_eq!(
            &encode_message(&Message::text("hi"))[..],
            &[TYPE_TEXT, 2, b'h', b'i']
        );
        assert_eq!(
            &encode_close(&CloseFrame::new(1000, "x"))[..],
            &[TYPE_CLOSE, 0x03, 0xe8, 1, b'x']
        );
        let mut header = Vec::new();
        message_header(&big, &mut header);
        assert_eq!(header, [TYPE_BINARY, 0x80, 0, 0x4e, 0x20]);
    }

    #[test]
    fn limits_and_errors() {
        let wire = encode_message(&Message::binary(vec![0u8; 100]));
        // The length alone fails, before the payload arrives.
        assert_eq!(
            decode(&mut BytesMut::from(&wire[..3]), 99),
            Err(TransportError::MessageTooLarge {
                size: 100,
                limit: 99
            })
        );
        assert_eq!(
            decode(&mut BytesMut::from(&[TYPE_TEXT, 2, 0xff, 0xfe][..]), 10),
            Err(TransportError::InvalidUtf8 { valid_up_to: 0 })
        );
        assert!(matches!(
            decode(&mut BytesMut::from(&[0x09u8][..]), 10),
            Err(TransportError::ProtocolViolation { .. })
        ));
        assert!(matches!(
            decode(
                &mut BytesMut::from(&[TYPE_CLOSE, 3, 0xe8, 0x40, 200][..]),
                10
            ),
            Err(TransportError::ProtocolViolation { .. })
        ));
        let long = "é".repeat(100);
        let close = encode_close(&CloseFrame::new(1000, long));
        let Some(Frame::Close(c)) = decode(&mut BytesMut::from(&close[..]), 10).unwrap() else {
            panic!("no close")
        };
        assert!(c.reason.len() <= MAX_CLOSE_REASON);
    }

    #[test]
    fn missing_counts_the_rest_of_a_message_frame() {
        let wire = encode_message(&Message::binary(vec![1u8; 16_384]));
        // Header: type, four-byte varint length (16,384 is past the two-byte range).
        for partial in 1..5 {
            assert_eq!(missing(&wire[..partial], 1 << 20), None);
        }
        assert_eq!(missing(&wire[..5], 1 << 20), Some(16_384));
        assert_eq!(missing(&wire[..1000], 1 << 20), Some(16_389 - 1000));
        assert_eq!(missing(&wire, 1 << 20), Some(0));
        // Over the limit: left to `decode`, which refuses it.
        assert_eq!(missing(&wire[..5], 16_383), None);
        assert_eq!(missing(&encode_close(&CloseFrame::normal()), 10), None);
        assert_eq!(missing(&[], 10), None);
    }

    #[test]
    fn single_units() {
        let m = Message::text("one");
        assert_eq!(decode_single(&encode_message(&m), 10).unwrap(), m);
        let mut two = encode_message(&m).to_vec();
        two.extend_from_slice(&encode_message(&m));
        assert!(decode_single(&two, 10).is_err());
        assert!(decode_single(&[TYPE_TEXT, 5, b'a'], 10).is_err());
        assert!(decode_single(&encode_close(&CloseFrame::normal()), 10).is_err());
        assert_eq!(
            close_code_for(&TransportError::MessageTooLarge { size: 2, limit: 1 }),
            1009
        );
    }
}
