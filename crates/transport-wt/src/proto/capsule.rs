//! The capsule protocol (RFC 9297 §3.2) and WebTransport's session capsules
//! (draft-ietf-webtrans-http3 §5): type varint, length varint, value. On HTTP/3 the capsules of
//! a session travel in the DATA frames of its CONNECT stream.

use bytes::{BufMut, Bytes};

use super::{Decoded, ProtoError, varint};

/// DATAGRAM capsule (RFC 9297 §3.5).
pub const DATAGRAM: u64 = 0x00;
/// CLOSE_WEBTRANSPORT_SESSION: a 32-bit error code and a UTF-8 reason.
pub const CLOSE_WEBTRANSPORT_SESSION: u64 = 0x2843;
/// DRAIN_WEBTRANSPORT_SESSION: no payload.
pub const DRAIN_WEBTRANSPORT_SESSION: u64 = 0x78ae;

/// The longest close reason the draft allows: 1024 bytes.
pub const MAX_CLOSE_REASON: usize = 1024;

/// The default limit on a capsule value this crate buffers: 64 KiB.
pub const DEFAULT_MAX_CAPSULE: usize = 64 * 1024;

/// A decoded capsule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capsule {
    /// CLOSE_WEBTRANSPORT_SESSION.
    Close {
        /// The application's error code.
        code: u32,
        /// The reason, at most [`MAX_CLOSE_REASON`] bytes.
        reason: String,
    },
    /// DRAIN_WEBTRANSPORT_SESSION: the peer asks to wind the session down.
    Drain,
    /// DATAGRAM carried reliably.
    Datagram(Bytes),
    /// Any other type; RFC 9297 says to skip it.
    Unknown {
        /// The capsule type.
        capsule_type: u64,
        /// Its value length.
        len: usize,
    },
}

impl Capsule {
    /// A close capsule, checking the reason's length.
    ///
    /// # Errors
    /// [`ProtoError::TooLarge`] for a reason over [`MAX_CLOSE_REASON`] bytes.
    pub fn close(code: u32, reason: &str) -> Result<Self, ProtoError> {
        if reason.len() > MAX_CLOSE_REASON {
            return Err(ProtoError::TooLarge {
                what: "close reason",
                len: reason.len() as u64,
                limit: MAX_CLOSE_REASON as u64,
            });
        }
        Ok(Self::Close {
            code,
            reason: reason.to_owned(),
        })
    }

    /// Appends the encoded capsule. An [`Unknown`](Self::Unknown) capsule is written with a
    /// zero-filled value.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::Close { code, reason } => {
                varint::put(CLOSE_WEBTRANSPORT_SESSION, buf);
                varint::put_len(4 + reason.len(), buf);
                buf.put_u32(*code);
                buf.put_slice(reason.as_bytes());
            }
            Self::Drain => {
                varint::put(DRAIN_WEBTRANSPORT_SESSION, buf);
                varint::put(0, buf);
            }
            Self::Datagram(p) => {
                varint::put(DATAGRAM, buf);
                varint::put_len(p.len(), buf);
                buf.put_slice(p);
            }
            Self::Unknown { capsule_type, len } => {
                varint::put(*capsule_type, buf);
                varint::put_len(*len, buf);
                buf.put_bytes(0, *len);
            }
        }
    }

    /// The encoded capsule.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }
}

/// Decodes one capsule from the front of `buf`, with values of at most `max_len` bytes.
///
/// # Errors
/// [`ProtoError::TooLarge`] for a longer value, [`ProtoError::MalformedCapsule`] for a close
/// capsule shorter than 4 bytes, with a reason over 1024 bytes or not UTF-8, or a drain capsule
/// with a value.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded<Capsule> {
    let Some((capsule_type, n1)) = varint::decode(buf) else {
        return Ok(None);
    };
    let Some((len, n2)) = varint::decode(&buf[n1..]) else {
        return Ok(None);
    };
    let limit = max_len as u64;
    if len > limit {
        return Err(ProtoError::TooLarge {
            what: "capsule",
            len,
            limit,
        });
    }
    // len <= max_len, a usize.
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let start = n1 + n2;
    let Some(value) = buf.get(start..start.saturating_add(len)) else {
        return Ok(None);
    };
    let capsule = match capsule_type {
        CLOSE_WEBTRANSPORT_SESSION => {
            let malformed = ProtoError::MalformedCapsule("CLOSE_WEBTRANSPORT_SESSION");
            if value.len() < 4 || value.len() - 4 > MAX_CLOSE_REASON {
                return Err(malformed);
            }
            let code = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            let reason = std::str::from_utf8(&value[4..]).map_err(|_| malformed)?;
            Capsule::Close {
                code,
                reason: reason.to_owned(),
            }
        }
        DRAIN_WEBTRANSPORT_SESSION if value.is_empty() => Capsule::Drain,
        DRAIN_WEBTRANSPORT_SESSION => {
            return Err(ProtoError::MalformedCapsule("DRAIN_WEBTRANSPORT_SESSION"));
        }
        DATAGRAM => Capsule::Datagram(Bytes::copy_from_slice(value)),
        capsule_type => Capsule::Unknown { capsule_type, len },
    };
    Ok(Some((capsule, start + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_truncation() {
        for c in [
            Capsule::close(0, "").unwrap(),
            Capsule::close(u32::MAX, "bye \u{1f44b}").unwrap(),
            Capsule::close(7, &"r".repeat(MAX_CLOSE_REASON)).unwrap(),
            Capsule::Drain,
            Capsule::Datagram(Bytes::from_static(b"dg")),
            Capsule::Unknown {
                capsule_type: 0x29,
                len: 3,
            },
        ] {
            let b = c.to_bytes();
            assert_eq!(
                decode(&b, DEFAULT_MAX_CAPSULE),
                Ok(Some((c.clone(), b.len())))
            );
            for cut in 0..b.len() {
                assert_eq!(decode(&b[..cut], DEFAULT_MAX_CAPSULE), Ok(None));
            }
        }
    }

    #[test]
    fn close_wire_format() {
        let b = Capsule::close(0x0102_0304, "ok").unwrap().to_bytes();
        // 0x2843 as a two-byte varint is 0x68 0x43; length 6.
        assert_eq!(&b[..], [0x68, 0x43, 0x06, 1, 2, 3, 4, b'o', b'k']);
    }

    #[test]
    fn errors() {
        assert!(Capsule::close(0, &"r".repeat(MAX_CLOSE_REASON + 1)).is_err());
        let malformed = Err(ProtoError::MalformedCapsule("CLOSE_WEBTRANSPORT_SESSION"));
        assert_eq!(decode(&[0x68, 0x43, 0x03, 0, 0, 0], 100), malformed);
        assert_eq!(
            decode(&[0x68, 0x43, 0x05, 0, 0, 0, 0, 0xff], 100),
            malformed
        );
        let mut long = vec![0x68, 0x43, 0x44, 0x05, 0, 0, 0, 0];
        long.extend(std::iter::repeat_n(b'a', 1025));
        assert_eq!(decode(&long, 4096), malformed);
        assert_eq!(
            decode(&[0x80, 0x00, 0x78, 0xae, 0x01, 0x00], 100),
            Err(ProtoError::MalformedCapsule("DRAIN_WEBTRANSPORT_SESSION"))
        );
        assert_eq!(
            decode(&[0x00, 0xbf, 0xff, 0xff, 0xff], 100),
            Err(ProtoError::TooLarge {
                what: "capsule",
                len: 0x3fff_ffff,
                limit: 100
            })
        );
    }
}
