//! Stream types and WebTransport stream headers (RFC 9114 §6.2, RFC 9204 §4.2,
//! draft-ietf-webtrans-http3 §4), and the mapping of WebTransport error codes into the HTTP/3
//! error space (draft-ietf-webtrans-http3 §4.3).

use bytes::BufMut;

use super::{Decoded, ProtoError, varint};

/// Unidirectional stream type: control stream.
pub const CONTROL: u64 = 0x00;
/// Unidirectional stream type: push stream.
pub const PUSH: u64 = 0x01;
/// Unidirectional stream type: QPACK encoder stream.
pub const QPACK_ENCODER: u64 = 0x02;
/// Unidirectional stream type: QPACK decoder stream.
pub const QPACK_DECODER: u64 = 0x03;
/// Unidirectional stream type: WebTransport stream (followed by the session id).
pub const WEBTRANSPORT_UNI: u64 = 0x54;
/// First varint of a bidirectional WebTransport stream (WEBTRANSPORT_STREAM signal value,
/// followed by the session id).
pub const WEBTRANSPORT_BIDI: u64 = 0x41;

/// What an incoming unidirectional stream carries, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UniStream {
    /// The peer's control stream.
    Control,
    /// A push stream (never allowed by this client).
    Push,
    /// The peer's QPACK encoder stream.
    QpackEncoder,
    /// The peer's QPACK decoder stream.
    QpackDecoder,
    /// A WebTransport stream of this session.
    WebTransport {
        /// The session id (the CONNECT stream's id).
        session_id: u64,
    },
    /// Another type (including reserved grease types): to be ignored.
    Unknown(u64),
}

/// Reads the header of a unidirectional stream.
///
/// # Errors
/// [`ProtoError::InvalidSessionId`] for a WebTransport stream naming an impossible session.
pub fn decode_uni(buf: &[u8]) -> Decoded<UniStream> {
    let Some((ty, n)) = varint::decode(buf) else {
        return Ok(None);
    };
    let kind = match ty {
        CONTROL => UniStream::Control,
        PUSH => UniStream::Push,
        QPACK_ENCODER => UniStream::QpackEncoder,
        QPACK_DECODER => UniStream::QpackDecoder,
        WEBTRANSPORT_UNI => {
            let Some((session_id, m)) = varint::decode(&buf[n..]) else {
                return Ok(None);
            };
            check_session_id(session_id)?;
            return Ok(Some((UniStream::WebTransport { session_id }, n + m)));
        }
        other => UniStream::Unknown(other),
    };
    Ok(Some((kind, n)))
}

/// What an incoming bidirectional stream carries, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BidiStream {
    /// A WebTransport stream of this session.
    WebTransport {
        /// The session id.
        session_id: u64,
    },
    /// Anything else: HTTP/3 frames (a server may not open request streams; the caller
    /// refuses it).
    Other(u64),
}

/// Reads the header of a bidirectional stream.
///
/// # Errors
/// [`ProtoError::InvalidSessionId`].
pub fn decode_bidi(buf: &[u8]) -> Decoded<BidiStream> {
    let Some((ty, n)) = varint::decode(buf) else {
        return Ok(None);
    };
    if ty != WEBTRANSPORT_BIDI {
        return Ok(Some((BidiStream::Other(ty), n)));
    }
    let Some((session_id, m)) = varint::decode(&buf[n..]) else {
        return Ok(None);
    };
    check_session_id(session_id)?;
    Ok(Some((BidiStream::WebTransport { session_id }, n + m)))
}

/// A session id is the id of a client-initiated bidirectional stream: a multiple of 4.
///
/// # Errors
/// [`ProtoError::InvalidSessionId`].
pub fn check_session_id(session_id: u64) -> Result<(), ProtoError> {
    if session_id.is_multiple_of(4) && session_id <= varint::MAX {
        Ok(())
    } else {
        Err(ProtoError::InvalidSessionId(session_id))
    }
}

/// Appends the header of an outgoing unidirectional WebTransport stream.
pub fn encode_uni_header(session_id: u64, buf: &mut impl BufMut) {
    varint::put(WEBTRANSPORT_UNI, buf);
    varint::put(session_id, buf);
}

/// Appends the header of an outgoing bidirectional WebTransport stream.
pub fn encode_bidi_header(session_id: u64, buf: &mut impl BufMut) {
    varint::put(WEBTRANSPORT_BIDI, buf);
    varint::put(session_id, buf);
}

/// The first HTTP/3 error code reserved for WebTransport application codes.
pub const WT_ERROR_FIRST: u64 = 0x52e4_a40f_a8db;
/// The last one (the image of `u32::MAX`).
pub const WT_ERROR_LAST: u64 = 0x52e5_ac98_3162;

/// Maps a WebTransport application error code (for RESET_STREAM / STOP_SENDING) into the
/// HTTP/3 error space: `first + n + n / 0x1e`, skipping the reserved grease codepoints.
pub const fn error_to_http3(code: u32) -> u64 {
    let n = code as u64;
    WT_ERROR_FIRST + n + n / 0x1e
}

/// The reverse of [`error_to_http3`]: `None` for codes outside the WebTransport range and for
/// the reserved grease codepoints inside it.
pub fn error_from_http3(h: u64) -> Option<u32> {
    if !(WT_ERROR_FIRST..=WT_ERROR_LAST).contains(&h) || (h - 0x21).is_multiple_of(0x1f) {
        return None;
    }
    let shifted = h - WT_ERROR_FIRST;
    u32::try_from(shifted - shifted / 0x1f).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut b = Vec::new();
        encode_uni_header(4, &mut b);
        assert_eq!(b, [0x40, 0x54, 0x04]);
        assert_eq!(
            decode_uni(&b),
            Ok(Some((UniStream::WebTransport { session_id: 4 }, 3)))
        );
        assert_eq!(decode_uni(&b[..2]), Ok(None));
        let mut b = Vec::new();
        encode_bidi_header(0, &mut b);
        assert_eq!(b, [0x40, 0x41, 0x00]);
        assert_eq!(
            decode_bidi(&b),
            Ok(Some((BidiStream::WebTransport { session_id: 0 }, 3)))
        );
        assert_eq!(decode_bidi(&[0x01]), Ok(Some((BidiStream::Other(1), 1))));
        assert_eq!(decode_uni(&[0x00]), Ok(Some((UniStream::Control, 1))));
        assert_eq!(decode_uni(&[0x03]), Ok(Some((UniStream::QpackDecoder, 1))));
        assert_eq!(decode_uni(&[0x21]), Ok(Some((UniStream::Unknown(0x21), 1))));
        assert_eq!(decode_uni(&[]), Ok(None));
        assert_eq!(
            decode_uni(&[0x40, 0x54, 0x05]),
            Err(ProtoError::InvalidSessionId(5))
        );
    }

    #[test]
    fn error_code_mapping() {
        assert_eq!(error_to_http3(0), WT_ERROR_FIRST);
        assert_eq!(error_to_http3(u32::MAX), WT_ERROR_LAST);
        for code in [0, 1, 0x1d, 0x1e, 0x1f, 1000, 0xffff, u32::MAX - 1, u32::MAX] {
            let h = error_to_http3(code);
            assert!(
                !(h - 0x21).is_multiple_of(0x1f),
                "{code} maps onto a grease codepoint"
            );
            assert_eq!(error_from_http3(h), Some(code));
        }
        assert_eq!(error_from_http3(0x100), None);
        assert_eq!(error_from_http3(WT_ERROR_LAST + 1), None);
        // A grease codepoint inside the range.
        let grease = (WT_ERROR_FIRST..WT_ERROR_FIRST + 0x1f)
            .find(|h| (h - 0x21).is_multiple_of(0x1f))
            .unwrap();
        assert_eq!(error_from_http3(grease), None);
    }
}
