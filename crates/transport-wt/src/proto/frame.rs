//! HTTP/3 frames (RFC 9114 §7): type varint, length varint, payload.
//!
//! [`decode`] reads one frame from a slice; [`FrameReader`] reads a stream of frames pushed in
//! chunks and skips unknown and reserved-for-extension frames of any length without buffering
//! them (RFC 9114 §9: "implementations MUST discard frames ... that have unknown or unsupported
//! types").

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::settings::Settings;
use super::{Decoded, ProtoError, varint};

/// DATA (RFC 9114 §7.2.1).
pub const DATA: u64 = 0x0;
/// HEADERS (RFC 9114 §7.2.2).
pub const HEADERS: u64 = 0x1;
/// CANCEL_PUSH (RFC 9114 §7.2.3); skipped (this client never allows push).
pub const CANCEL_PUSH: u64 = 0x3;
/// SETTINGS (RFC 9114 §7.2.4).
pub const SETTINGS: u64 = 0x4;
/// PUSH_PROMISE (RFC 9114 §7.2.5); skipped.
pub const PUSH_PROMISE: u64 = 0x5;
/// GOAWAY (RFC 9114 §7.2.6).
pub const GOAWAY: u64 = 0x7;
/// MAX_PUSH_ID (RFC 9114 §7.2.7); skipped.
pub const MAX_PUSH_ID: u64 = 0xd;

/// Frame types HTTP/2 used that HTTP/3 reserves; receiving one is H3_FRAME_UNEXPECTED
/// (RFC 9114 §7.2.8).
pub const RESERVED_HTTP2_TYPES: [u64; 4] = [0x2, 0x6, 0x8, 0x9];

/// The default limit on a frame payload this crate buffers: 64 KiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// DATA with its payload.
    Data(Bytes),
    /// HEADERS with its encoded field section (see [`super::qpack`]).
    Headers(Bytes),
    /// SETTINGS.
    Settings(Settings),
    /// GOAWAY with its stream or push id.
    Goaway(u64),
}

impl Frame {
    /// The frame's type.
    pub fn frame_type(&self) -> u64 {
        match self {
            Self::Data(_) => DATA,
            Self::Headers(_) => HEADERS,
            Self::Settings(_) => SETTINGS,
            Self::Goaway(_) => GOAWAY,
        }
    }

    /// Appends the encoded frame to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::Data(p) | Self::Headers(p) => {
                encode_header(self.frame_type(), p.len(), buf);
                buf.put_slice(p);
            }
            Self::Settings(s) => {
                let mut payload = Vec::new();
                s.encode(&mut payload);
                encode_header(SETTINGS, payload.len(), buf);
                buf.put_slice(&payload);
            }
            Self::Goaway(id) => {
                let id = (*id).min(varint::MAX);
                encode_header(GOAWAY, varint::encoded_len(id), buf);
                varint::put(id, buf);
            }
        }
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Appends a frame header (type and payload length).
pub fn encode_header(frame_type: u64, payload_len: usize, buf: &mut impl BufMut) {
    varint::put(frame_type, buf);
    varint::put_len(payload_len, buf);
}

/// A frame's type and payload length, read from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub frame_type: u64,
    /// The payload length.
    pub len: u64,
}

/// Reads a frame header.
///
/// # Errors
/// [`ProtoError::ReservedFrameType`] for an HTTP/2 frame type.
pub fn decode_header(buf: &[u8]) -> Decoded<FrameHeader> {
    let Some((frame_type, n1)) = varint::decode(buf) else {
        return Ok(None);
    };
    if RESERVED_HTTP2_TYPES.contains(&frame_type) {
        return Err(ProtoError::ReservedFrameType(frame_type));
    }
    let Some((len, n2)) = varint::decode(&buf[n1..]) else {
        return Ok(None);
    };
    Ok(Some((FrameHeader { frame_type, len }, n1 + n2)))
}

/// Whether a frame of this type is decoded into a [`Frame`] (the others are skipped).
pub fn is_known(frame_type: u64) -> bool {
    matches!(frame_type, DATA | HEADERS | SETTINGS | GOAWAY)
}

/// Decodes a known frame's payload.
///
/// # Errors
/// [`ProtoError::MalformedFrame`] and the SETTINGS errors.
fn decode_payload(frame_type: u64, payload: Bytes) -> Result<Option<Frame>, ProtoError> {
    Ok(Some(match frame_type {
        DATA => Frame::Data(payload),
        HEADERS => Frame::Headers(payload),
        SETTINGS => Frame::Settings(Settings::decode(&payload)?),
        GOAWAY => match varint::decode(&payload) {
            Some((id, n)) if n == payload.len() => Frame::Goaway(id),
            _ => return Err(ProtoError::MalformedFrame("GOAWAY")),
        },
        _ => return Ok(None),
    }))
}

/// Decodes one frame from the front of `buf`. Unknown frames are consumed and yield `None` in
/// the item position (`Ok(Some((None, n)))`), so a caller can loop; they are subject to the same
/// `max_payload` here, since this function only sees a slice (use [`FrameReader`] to skip large
/// ones without buffering).
///
/// # Errors
/// [`ProtoError::TooLarge`] for a payload over `max_payload`, and every frame-level error.
pub fn decode(buf: &[u8], max_payload: usize) -> Decoded<Option<Frame>> {
    let Some((header, n)) = decode_header(buf)? else {
        return Ok(None);
    };
    check_len(header, max_payload)?;
    // check_len bounded it by a usize.
    let len = usize::try_from(header.len).unwrap_or(usize::MAX);
    let Some(payload) = buf.get(n..n.saturating_add(len)) else {
        return Ok(None);
    };
    let frame = decode_payload(header.frame_type, Bytes::copy_from_slice(payload))?;
    Ok(Some((frame, n + len)))
}

fn check_len(header: FrameHeader, max_payload: usize) -> Result<(), ProtoError> {
    let limit = u64::try_from(max_payload).unwrap_or(u64::MAX);
    if header.len > limit {
        return Err(ProtoError::TooLarge {
            what: "HTTP/3 frame payload",
            len: header.len,
            limit,
        });
    }
    Ok(())
}

/// Reads the frames of one stream from chunks of bytes.
///
/// Known frames are buffered whole up to `max_payload` bytes (a larger one is an error); unknown
/// ones are skipped as their bytes arrive, whatever their length.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    skip: u64,
    max_payload: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl FrameReader {
    /// A reader accepting known-frame payloads of up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            skip: 0,
            max_payload,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        let skipped = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.skip -= skipped as u64;
        self.buf.extend_from_slice(&bytes[skipped..]);
    }

    /// Bytes held, waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the reader stands between frames (nothing partial held, nothing left to skip): a
    /// stream may end here cleanly.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.skip == 0
    }

    /// The next whole known frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// Every frame-level error; the stream cannot be read further after one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        loop {
            let Some((header, n)) = decode_header(&self.buf)? else {
                return Ok(None);
            };
            if !is_known(header.frame_type) {
                let available = (self.buf.len() - n) as u64;
                if header.len <= available {
                    // header.len <= available, which is a usize.
                    let len = usize::try_from(header.len).unwrap_or(usize::MAX);
                    self.buf.advance(n + len);
                } else {
                    self.skip = header.len - available;
                    self.buf.clear();
                    return Ok(None);
                }
                continue;
            }
            check_len(header, self.max_payload)?;
            let len = usize::try_from(header.len).unwrap_or(usize::MAX);
            if self.buf.len() - n < len {
                return Ok(None);
            }
            self.buf.advance(n);
            let payload = self.buf.split_to(len).freeze();
            if let Some(frame) = decode_payload(header.frame_type, payload)? {
                return Ok(Some(frame));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut settings = Settings::new();
        settings.set(0x33, 1).unwrap();
        for frame in [
            Frame::Data(Bytes::from_static(b"hello")),
            Frame::Headers(Bytes::from_static(&[0, 0, 0xd1])),
            Frame::Settings(settings),
            Frame::Goaway(1 << 20),
            Frame::Data(Bytes::new()),
        ] {
            let bytes = frame.to_bytes();
            assert_eq!(
                decode(&bytes, 1024),
                Ok(Some((Some(frame.clone()), bytes.len())))
            );
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut], 1024), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn reserved_types_are_errors_unknown_are_skipped() {
        assert_eq!(
            decode(&[0x02, 0x00], 10),
            Err(ProtoError::ReservedFrameType(2))
        );
        // A grease frame type (0x1f * 3 + 0x21 = 0x7e, two-byte varint) with two bytes.
        assert_eq!(decode(&[0x40, 0x7e, 0x02, 1, 2], 10), Ok(Some((None, 5))));
        assert_eq!(decode(&[0x21, 0x00], 10), Ok(Some((None, 2))));
    }

    #[test]
    fn oversize_and_malformed() {
        assert_eq!(
            decode(&[0x00, 0x80, 0x01, 0x00, 0x00], 1024),
            Err(ProtoError::TooLarge {
                what: "HTTP/3 frame payload",
                len: 65_536,
                limit: 1024
            })
        );
        // A maximal length never allocates.
        let huge = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode(&huge, usize::MAX), Ok(None)));
        assert_eq!(
            decode(&[0x07, 0x02, 0x01, 0x00], 10),
            Err(ProtoError::MalformedFrame("GOAWAY"))
        );
        assert_eq!(
            decode(&[0x07, 0x01, 0x40], 10),
            Err(ProtoError::MalformedFrame("GOAWAY"))
        );
    }

    #[test]
    fn reader_handles_any_chunking_and_skips_big_unknown_frames() {
        let mut stream = Vec::new();
        Frame::Headers(Bytes::from_static(b"abc")).encode(&mut stream);
        // An unknown frame with a 100 000-byte payload.
        encode_header(0x21, 100_000, &mut stream);
        stream.extend(std::iter::repeat_n(7u8, 100_000));
        Frame::Data(Bytes::from_static(b"xyz")).encode(&mut stream);
        Frame::Goaway(4).encode(&mut stream);
        for chunk in [1, 2, 7, 1000, stream.len()] {
            let mut r = FrameReader::new(16);
            let mut got = Vec::new();
            for part in stream.chunks(chunk) {
                r.push(part);
                assert!(r.buffered() <= 16 + 16 + chunk);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert!(r.is_idle());
            assert_eq!(
                got,
                [
                    Frame::Headers(Bytes::from_static(b"abc")),
                    Frame::Data(Bytes::from_static(b"xyz")),
                    Frame::Goaway(4)
                ]
            );
        }
    }

    #[test]
    fn reader_refuses_oversize_known_frames() {
        let mut r = FrameReader::new(4);
        r.push(&Frame::Data(Bytes::from_static(b"12345")).to_bytes());
        assert!(matches!(r.next_frame(), Err(ProtoError::TooLarge { .. })));
    }
}
