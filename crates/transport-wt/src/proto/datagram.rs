//! HTTP datagrams on QUIC DATAGRAM frames (RFC 9297 §2.1): the payload is prefixed with the
//! Quarter Stream ID, the session's (CONNECT stream's) id divided by 4.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ProtoError, stream, varint};

/// How many bytes the prefix takes for a session.
pub fn prefix_len(session_id: u64) -> usize {
    varint::encoded_len(session_id / 4)
}

/// A datagram for a session: prefix plus payload.
///
/// # Errors
/// [`ProtoError::InvalidSessionId`] for an id that is not a client bidirectional stream id.
pub fn encode(session_id: u64, payload: &[u8]) -> Result<Bytes, ProtoError> {
    stream::check_session_id(session_id)?;
    let mut out = BytesMut::with_capacity(prefix_len(session_id) + payload.len());
    varint::put(session_id / 4, &mut out);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Splits a received datagram into its session id and payload (a slice of `datagram`).
///
/// # Errors
/// [`ProtoError::Truncated`] when the datagram is shorter than its prefix (a datagram is always
/// whole, so this is no "need more").
pub fn decode(datagram: &Bytes) -> Result<(u64, Bytes), ProtoError> {
    let (quarter, n) = varint::decode(datagram).ok_or(ProtoError::Truncated("HTTP datagram"))?;
    // quarter <= 2^62 - 1, so quarter * 4 may exceed the varint range: such an id cannot name a
    // stream of ours, and the caller compares it with its own session.
    Ok((quarter.saturating_mul(4), datagram.slice(n..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for id in [0u64, 4, 252, 256, 1 << 20] {
            let d = encode(id, b"payload").unwrap();
            assert_eq!(d.len(), prefix_len(id) + 7);
            assert_eq!(decode(&d), Ok((id, Bytes::from_static(b"payload"))));
        }
        assert_eq!(encode(8, b"").unwrap()[..], [0x02]);
    }

    #[test]
    fn errors() {
        assert_eq!(encode(2, b"x"), Err(ProtoError::InvalidSessionId(2)));
        assert_eq!(
            decode(&Bytes::new()),
            Err(ProtoError::Truncated("HTTP datagram"))
        );
        assert_eq!(
            decode(&Bytes::from_static(&[0x40])),
            Err(ProtoError::Truncated("HTTP datagram"))
        );
    }
}
