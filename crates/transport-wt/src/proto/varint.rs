//! QUIC variable-length integers (RFC 9000 §16): the two high bits of the first byte give the
//! length (1, 2, 4 or 8 bytes), the rest is the value, big-endian.

use bytes::BufMut;

use super::ProtoError;

/// The largest value a varint holds: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Reads a varint from the front of `buf`: `None` when `buf` is shorter than the length its first
/// byte announces (every byte sequence is otherwise a valid varint).
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

/// How many bytes [`encode`] writes for `value` (the shortest encoding); 0 when it is too large.
pub const fn encoded_len(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else if value <= MAX {
        8
    } else {
        0
    }
}

/// Writes `value` in its shortest encoding.
///
/// # Errors
/// [`ProtoError::VarintOverflow`] when `value` exceeds [`MAX`].
pub fn encode(value: u64, buf: &mut impl BufMut) -> Result<(), ProtoError> {
    match encoded_len(value) {
        1 => buf.put_u8(u8::try_from(value).map_err(|_| ProtoError::VarintOverflow(value))?),
        2 => buf
            .put_u16(u16::try_from(value).map_err(|_| ProtoError::VarintOverflow(value))? | 0x4000),
        4 => buf.put_u32(
            u32::try_from(value).map_err(|_| ProtoError::VarintOverflow(value))? | 0x8000_0000,
        ),
        8 => buf.put_u64(value | 0xc000_0000_0000_0000),
        _ => return Err(ProtoError::VarintOverflow(value)),
    }
    Ok(())
}

/// Writes a value known to fit (a constant below 2^62, a length of an in-memory buffer).
pub(crate) fn put(value: u64, buf: &mut impl BufMut) {
    debug_assert!(value <= MAX);
    // A value above MAX cannot reach here: callers pass constants and buffer lengths.
    let _ = encode(value.min(MAX), buf);
}

/// [`put`] for a `usize` length.
pub(crate) fn put_len(len: usize, buf: &mut impl BufMut) {
    put(u64::try_from(len).unwrap_or(MAX), buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out).unwrap();
        out
    }

    #[test]
    fn rfc9000_appendix_a1_examples() {
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(decode(bytes), Some((value, bytes.len())));
            assert_eq!(enc(value), bytes);
        }
        // A two-byte encoding of 37 is valid too (non-minimal).
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn boundaries_round_trip() {
        for v in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, MAX] {
            let e = enc(v);
            assert_eq!(e.len(), encoded_len(v));
            assert_eq!(decode(&e), Some((v, e.len())));
        }
        assert_eq!(
            encode(MAX + 1, &mut Vec::new()),
            Err(ProtoError::VarintOverflow(MAX + 1))
        );
        assert_eq!(encoded_len(u64::MAX), 0);
    }

    #[test]
    fn truncated_needs_more() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0x40]), None);
        assert_eq!(decode(&[0x80, 0, 0]), None);
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0, 0, 0]), None);
    }
}
